"""The `ilgnet` command's error model and argument checks, without Caffe: a user error is one line and exit 1,
a command line argparse refuses one line and exit 2, anything else is a bug that keeps its traceback;
ILGNET_DEBUG=1 shows the traceback of user errors too. Every path and number a command takes is checked before
it does any work, so nothing is left half-made."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from ilgnet.cli import main
from ilgnet.commands import log as log_command
from ilgnet.fileio import atomic_path, atomic_paths


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "ilgnet.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env})


@pytest.fixture
def not_a_log(tmp_path):
    path = tmp_path / "notes.log"
    path.write_text("no glog line here\n")
    return path


def test_a_user_error_is_one_line_and_exit_1(not_a_log):
    result = run_cli("log", str(not_a_log))
    assert result.returncode == 1
    assert result.stderr == (f"ilgnet log: error: {not_a_log}: no training iteration logged (no `Iteration N (...), "
                             f"loss = X` line): not a `caffe train` log, or training stopped before it displayed a "
                             f"loss\n")
    assert not (not_a_log.parent / "train_log.csv").exists() and not (not_a_log.parent / "curves.png").exists()


def test_debug_shows_the_traceback_of_a_user_error(not_a_log):
    result = run_cli("log", str(not_a_log), ILGNET_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "BadInput" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"ilgnet log: error: {not_a_log}: no training iteration")


def test_a_bug_keeps_its_traceback(monkeypatch, not_a_log):
    def broken(args):
        raise ValueError("a programming error, not the user's")

    monkeypatch.setattr(log_command, "run", broken)
    with pytest.raises(ValueError, match="a programming error"):
        main(["log", str(not_a_log)])


@pytest.fixture
def places(tmp_path):
    """A file, a folder and a name that does not exist, for the path checks."""
    (tmp_path / "a_file").write_text("x\n")
    (tmp_path / "a_folder").mkdir()
    return tmp_path


# One refused command line per line, `ARGUMENTS  =>  how the one line after "error: " starts`; @FILE, @DIR and
# @NONE stand for the places above.
REFUSED = [tuple(line.split("  =>  ")) for line in """
split ava1 --ava-txt @DIR --out @NONE/o  =>  argument --ava-txt: @DIR is a folder, not a file
split ava2 --ava-txt @FILE --out @FILE  =>  argument --out: @FILE is a file, not a folder
split ava2 --ava-txt @FILE --out @FILE/sub  =>  argument --out: @FILE/sub: @FILE is a file, not a folder
split ava1 --ava-txt @FILE --out o --delta -1  =>  argument --delta: must be at least 0, got -1
split ava1 --ava-txt @FILE --out o --delta nan  =>  argument --delta: must be at least 0, got nan
split ava2 --ava-txt @FILE --out o --fraction 0.7  =>  argument --fraction: must be above 0 and at most 0.5, got
split ava1 --ava-txt @FILE --out o --seed -1  =>  argument --seed: must be at least 0, got -1
split ava1 --ava-txt @NONE/AVA.txt --out o  =>  argument --ava-txt: @NONE/AVA.txt does not exist
lmdb --split @DIR --images @DIR --jobs -1  =>  argument --jobs: must be at least 1, got -1
lmdb --split @DIR --images @DIR --resize 0  =>  argument --resize: must be at least 1 and at most 4096, got 0
lmdb --split @FILE --images @DIR  =>  argument --split: @FILE is a file, not a folder
lmdb --split @DIR --images @NONE  =>  argument --images: folder @NONE does not exist
lmdb --split @DIR --images @DIR --encoded gif  =>  argument --encoded: invalid choice: 'gif' (choose from 'png'
train --profile ava2 --data @DIR --cpu --train-batch 0  =>  argument --train-batch: must be at least 1, got 0
train --profile ava2 --data @DIR --cpu --train-batch -3  =>  argument --train-batch: must be at least 1, got -3
train --profile ava2 --data @DIR --cpu --max-iter 0  =>  argument --max-iter: must be at least 1, got 0
train --profile ava2 --data @DIR --cpu --snapshot -1  =>  argument --snapshot: must be at least 0, got -1
train --max-iter 3000000000  =>  argument --max-iter: must be at least 1 and at most 2147483647, got 3000000000
train --snapshot 2147483648  =>  argument --snapshot: must be at least 0 and at most 2147483647, got 2147483648
train --test-interval 2147483648  =>  argument --test-interval: must be at least 1 and at most 2147483647
train --display 2147483648  =>  argument --display: must be at least 1 and at most 2147483647, got 2147483648
train --train-batch 2147483648  =>  argument --train-batch: must be at least 1 and at most 2147483647, got 2147483648
train --val-batch 2147483648  =>  argument --val-batch: must be at least 1 and at most 2147483647, got 2147483648
train --name ../../escape  =>  argument --name: run name '../../escape': expected one folder name
train --name runs/x  =>  argument --name: run name 'runs/x': expected one folder name
train --name ..  =>  argument --name: run name '..': expected one folder name
train --name ' x'  =>  argument --name: run name ' x': expected one folder name
train --name .  =>  argument --name: run name '.': expected one folder name
train --name ''  =>  argument --name: run name '': expected one folder name
train --profile ava3 --data @DIR --cpu --runs @DIR/runs  =>  argument --profile: invalid choice
train --profile ava2 --data @DIR --cpu --weights @NONE/w  =>  argument --weights: @NONE/w does not exist
train --profile ava2 --data @DIR --cpu --seed -1  =>  argument --seed: must be at least 0, got -1
train --profile ava2 --data @DIR --gpu first  =>  argument --gpu: expected a GPU id, ids separated by commas
test --weights @NONE/m --data @DIR  =>  argument --weights: @NONE/m: not ilgnet-ava1 or ilgnet-ava2, and no such file
test --weights @FILE --data @DIR --batch 0  =>  argument --batch: must be at least 1, got 0
test --weights @FILE --data @DIR --json @DIR  =>  argument --json: @DIR is a folder; give a file name
test --weights @FILE --data @DIR --gpu -1  =>  argument --gpu: must be at least 0, got -1
predict p.jpg --model @FILE --top 0  =>  argument --top: must be at least 1, got 0
predict p.jpg --model @FILE --out @DIR  =>  argument --out: @DIR is a folder; give a file name
predict p.jpg --model @FILE --mean @NONE  =>  argument --mean: @NONE does not exist
predict p.jpg --model @NONE/m  =>  argument --model: @NONE/m: not ilgnet-ava1 or ilgnet-ava2, and no such file
predict p.jpg --model @FILE --backend tensorflow  =>  argument --backend: invalid choice: 'tensorflow'
test --weights @FILE --data @DIR --backend onnx  =>  argument --backend: invalid choice: 'onnx'
export @NONE/m --out o.onnx  =>  argument model: @NONE/m: not ilgnet-ava1 or ilgnet-ava2, and no such file
export @FILE --out @DIR  =>  argument --out: @DIR is a folder; give a file name
export @FILE --out o.onnx --calibrate @DIR  =>  --calibrate goes with --precision int8
export @FILE --out o.onnx --mean @NONE  =>  argument --mean: @NONE does not exist
export @FILE --out o.onnx --precision fp8  =>  argument --precision: invalid choice: 'fp8'
export @FILE  =>  the following arguments are required: --out
export @FILE --out @FILE  =>  argument --out: a_file does not end in .onnx
export @FILE --out mean.binaryproto  =>  argument --out: mean.binaryproto is the name of a mean image; this writes an
log @FILE --csv curves.png  =>  argument --csv: curves.png is the name of a PNG image; this writes a CSV table (.csv)
log @FILE --png table.csv  =>  argument --png: table.csv is the name of a CSV table; this writes a PNG image (.png)
log @FILE --png curves.svg  =>  argument --png: curves.svg is the name of an SVG image; this writes a PNG image (.png)
log @FILE --csv rows.txt  =>  argument --csv: rows.txt does not end in .csv; this writes a CSV table
test --weights @FILE --data @DIR --json m.md  =>  argument --json: m.md is the name of a markdown table; this writes JSON
test --weights @FILE --data @DIR --json m.csv  =>  argument --json: m.csv is the name of a CSV table; this writes JSON
test --weights @FILE --data @DIR --markdown m.json  =>  argument --markdown: m.json is the name of JSON; this writes a
test --weights @FILE --data @DIR --markdown m.txt  =>  argument --markdown: m.txt does not end in .md or .markdown
test --weights @FILE --data @DIR --per-image p.png  =>  argument --per-image: p.png is the name of a PNG image; this
test --weights @FILE --data @DIR --per-image p.json  =>  argument --per-image: p.json is the name of JSON; this writes a
predict p.jpg --model @FILE --out scores.png  =>  argument --out: scores.png is the name of a PNG image; this writes a
predict p.jpg --model @FILE --out scores.html  =>  argument --out: scores.html is the name of an HTML page; this writes
predict p.jpg --model @FILE --out m.caffemodel  =>  argument --out: m.caffemodel is the name of a caffemodel; this
predict p.jpg --model @FILE --html g.csv  =>  argument --html: g.csv is the name of a CSV table; this writes an HTML page
predict p.jpg --model @FILE --html g.txt  =>  argument --html: g.txt does not end in .html or .htm; this writes an HTML
report @DIR --out report.html  =>  argument --out: report.html is the name of an HTML page; give a folder
report @DIR --out fig.png  =>  argument --out: fig.png is the name of a PNG image; give a folder
split ava2 --ava-txt @FILE --out split.csv  =>  argument --out: split.csv is the name of a CSV table; give a folder
export @FILE --out o.onnx/  =>  argument --out: o.onnx/ is a folder; give a file name
doctor --bogus  =>  unrecognized arguments: --bogus
log @FILE --csv c.csv extra  =>  unrecognized arguments: extra
test --weights @FILE --data @DIR --backend opencv --engine caffe  =>  --engine caffe, --docker and --paper-protocol run the `caffe test` binary on a caffemodel
log @DIR  =>  argument LOG: @DIR is a folder, not a file
log @FILE --png @DIR  =>  argument --png: @DIR is a folder; give a file name
nets --batch 0  =>  argument --batch: must be at least 1, got 0
nets --iterations 2147483648  =>  argument --iterations: must be at least 1 and at most 2147483647, got 2147483648
lmdb --split @DIR --images @DIR --seed 2147483648  =>  argument --seed: must be at least 0 and at most 2147483647
split ava2 --ava-txt @FILE --out o --seed 4294967296  =>  argument --seed: must be at least 0 and at most 2147483647
demo --iterations 2147483648  =>  argument --iterations: must be at least 1 and at most 2147483647
demo --batch 2147483648  =>  argument --batch: must be at least 1 and at most 2147483647
test --weights @FILE --data @DIR --batch 2147483648  =>  argument --batch: must be at least 1 and at most 2147483647
demo --work @FILE  =>  argument --work: @FILE is a file, not a folder
demo --iterations many  =>  argument --iterations: expected an integer, got 'many'
gen --out @FILE  =>  argument --out: @FILE is a file, not a folder
campaign @NONE/p.toml  =>  argument PLAN: @NONE/p.toml: not a built-in plan (table2, table3, table4, paper, recipes, official) and no such
campaign @DIR  =>  argument PLAN: @DIR is a folder, not a plan file
campaign paper --slurm --dry-run --time banana  =>  argument --time: 'banana' is not a Slurm time limit
campaign paper --jobs 0  =>  argument --jobs: must be at least 1, got 0
campaign paper --ray photos.jpg  =>  argument --ray: photos.jpg: not a Ray address (auto, HOST:PORT or ray://HOST:PORT)
campaign paper --seeds 1,x  =>  argument --seeds: expected an integer, got 'x'
campaign paper --seeds 1,-2  =>  argument --seeds: must be at least 0, got -2
campaign paper --gpus first  =>  argument --gpus: expected a GPU id, ids separated by commas
campaign paper --ray --ray-cpus 0  =>  argument --ray-cpus: must be above 0, got 0
campaign paper --runs @FILE  =>  argument --runs: @FILE is a file, not a folder
campaign paper --ray-cpus 2  =>  --ray-cpus goes with --ray
campaign paper --gpus 0 --jobs 2  =>  --jobs is for runs on the CPU
report @DIR --out @FILE  =>  argument --out: @FILE is a file, not a folder
report @NONE --out o  =>  argument RUNS: folder @NONE does not exist
report @DIR --out o --time-batch 0  =>  argument --time-batch: must be at least 1, got 0
report @DIR --out o --plan nope  =>  argument --plan: nope: not a built-in plan
weights install ilgnet-ava2 @NONE/m.caffemodel  =>  argument FILE: @NONE/m.caffemodel does not exist
weights fetch bvlc_googlenet --dest @FILE  =>  argument --dest: @FILE is a file, not a folder
""".strip().splitlines()]  # noqa: E501


@pytest.mark.parametrize("command_line, message", REFUSED)
def test_bad_arguments_are_one_line_naming_the_argument(places, command_line, message, capsys, monkeypatch):
    monkeypatch.chdir(places)
    args = shlex.split(command_line)
    names = {"@FILE": "a_file", "@DIR": "a_folder", "@NONE": "missing"}

    def place(text: str) -> str:
        for token, name in names.items():
            text = text.replace(token, name)
        return text
    before = sorted(places.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        main([place(arg) for arg in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    command = " ".join(["ilgnet", *args[:2 if args[0] in ("split", "weights") else 1]])
    assert err.count("\n") == 1 and err.startswith(f"{command}: error: {place(message)}"), err
    assert sorted(places.rglob("*")) == before                  # nothing made, nothing half-made


def test_missing_weights_and_data_are_a_usage_error(capsys):
    """Required unless --replay: argparse cannot say so itself, so the command raises UsageError, which ends as
    argparse's own errors do (one line, exit 2)."""
    for command_line, missing in ((["test"], "--weights and --data are"), (["test", "--data", "."], "--weights is"),
                                  (["test", "--weights", "ilgnet-ava2"], "--data is")):
        with pytest.raises(SystemExit) as exit_:
            main(command_line)
        assert exit_.value.code == 2
        assert capsys.readouterr().err == (f"ilgnet test: error: {missing} required (or --replay LOG) "
                                           f"(see `ilgnet test --help`)\n")


def test_a_warning_is_one_line_naming_the_command(monkeypatch, capsys):
    """Not Python's warnings format (file:line: UserWarning: ..., then the source line); ILGNET_DEBUG=1 keeps it."""
    import warnings

    from ilgnet.commands import log

    monkeypatch.setattr(log, "run", lambda args: warnings.warn("test_iter 2 x val batch 50: 13 of them twice"))
    assert main(["log", __file__]) == 0
    assert capsys.readouterr().err == "ilgnet log: warning: test_iter 2 x val batch 50: 13 of them twice\n"
    monkeypatch.setenv("ILGNET_DEBUG", "1")
    with warnings.catch_warnings(record=True) as caught:         # Python's own showwarning
        warnings.simplefilter("always")
        assert main(["log", __file__]) == 0
    assert [str(w.message) for w in caught] == ["test_iter 2 x val batch 50: 13 of them twice"]


def test_make_evaluate_without_weights_leaves_nothing(repo, tmp_path):
    result = subprocess.run(["make", "-n", "-f", str(repo / "Makefile"), "evaluate", "RUN=x"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "make evaluate needs WEIGHTS=<a run folder, a .caffemodel, or ilgnet-ava1 / ilgnet-ava2>" in result.stderr
    assert "mkdir" not in (repo / "Makefile").read_text().split("\nevaluate:")[1].split("\n\n")[0]


def test_atomic_path_publishes_whole_files_only(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as partial:
        partial.write_text("whole")
    assert target.read_text() == "whole" and not partial.exists()
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "whole" and not partial.exists()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "folder") as partial:
        partial.mkdir()
        raise RuntimeError("interrupted")
    assert not partial.exists() and not (tmp_path / "folder").exists()


def test_atomic_paths_replace_all_or_nothing_and_keep_the_old_until_then(tmp_path):
    """Two folders and a file replaced together: an error on the way leaves the old ones as they were."""
    old = [tmp_path / "a_lmdb", tmp_path / "b_lmdb", tmp_path / "mean.npy"]
    for path in old[:2]:
        path.mkdir()
        (path / "data.mdb").write_text(f"old {path.name}")
    old[2].write_text("old mean")
    with pytest.raises(RuntimeError), atomic_paths(old) as partials:
        for partial in partials[:2]:
            partial.mkdir()
            (partial / "data.mdb").write_text("new")
        raise RuntimeError("no room for the mean")
    assert [(p / "data.mdb").read_text() for p in old[:2]] == ["old a_lmdb", "old b_lmdb"]
    assert old[2].read_text() == "old mean" and sorted(p.name for p in tmp_path.iterdir()) == ["a_lmdb", "b_lmdb",
                                                                                              "mean.npy"]
    with atomic_paths(old) as partials:
        for partial in partials[:2]:
            partial.mkdir()
            (partial / "data.mdb").write_text(f"new {partial.name}")
        partials[2].write_text("new mean")
    assert [(p / "data.mdb").read_text() for p in old[:2]] == ["new a_lmdb.partial", "new b_lmdb.partial"]
    assert old[2].read_text() == "new mean" and sorted(p.name for p in tmp_path.iterdir()) == ["a_lmdb", "b_lmdb",
                                                                                              "mean.npy"]
