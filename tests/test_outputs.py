"""Outputs a user can trust: no command's output overwrites one of its inputs or another of its outputs (refused in
one line, exit 2, before anything is written), an output folder that cannot be written is refused before any work,
and the filesystem's refusals met while working (permission denied, a full disk) are one line naming the file, the
device and what the step needed, with no partial file left behind.

The refusals a process running as root never meets are made real: an immutable folder (chattr +i, which stops root
too), a user namespace in which the files' owner has no privileges (so that mode bits apply), and a small tmpfs in a
mount namespace for a full disk; each test skips with the reason where the system refuses the tool.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from caffe_data import run_folder
from conftest import SMALL

from ilgnet.cli import main as ilgnet


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the sha256 of its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, root: Path) -> str:
    """Runs `ilgnet ARGV`, which must be refused in one line with exit 2 and change nothing under `root`; returns
    the message after `error: `, without argparse's `(see ... --help)`."""
    before = snapshot(root)
    with pytest.raises(SystemExit) as exit_:
        ilgnet(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert snapshot(root) == before
    return err.split(": error: ", 1)[1].rsplit(" (see `", 1)[0]


def scoring(stand_in, *more) -> list[str]:
    return ["--model", str(stand_in["weights"]), "--variant", SMALL, "--backend", "opencv", "--quiet", *more]


# ------------------------------------------------------------------------------ outputs that would overwrite inputs

def test_case_09_outputs_that_name_inputs_are_refused_before_anything_is_written(bugcase, stand_in, capsys,
                                                                                   monkeypatch):
    """The four commands of case 09, each of which used to exit 0 and overwrite a photo, the mean, the score table
    or the 9,512-line training log."""
    case = bugcase("09-output-clobbers-input")
    monkeypatch.chdir(case)
    shutil.copy(stand_in["mean"], "mymean.binaryproto")
    photos = sorted(str(p.name) for p in case.glob("*.jpg"))
    model = scoring(stand_in, "--mean", "mymean.binaryproto")
    # `--out *.jpg`: the shell gives --out the first photo and scores the others.
    assert refused(["predict", *model, "--out", *photos], capsys, case) == (
        "argument --out: IMG_0.jpg is a photo, not a table (CSV, JSON lines or Parquet) (did the shell expand a "
        "pattern?)")
    assert refused(["predict", *photos, *model, "--html", "mymean.binaryproto"], capsys, case) == (
        "argument --html: mymean.binaryproto is the name of a mean image; this writes an HTML page (.html, .htm)")
    assert refused(["predict", *photos, *model, "--out", "s.csv", "--html", "s.csv"], capsys, case) == (
        "argument --html: s.csv is the name of a CSV table; this writes an HTML page (.html, .htm)")
    assert refused(["log", "train.log", "--csv", "train.log"], capsys, case) == (
        "argument --csv: train.log is the name of a log; this writes a CSV table (.csv)")
    assert len(Path("train.log").read_text().splitlines()) == 9512


@pytest.fixture
def album(stand_in, tmp_path, monkeypatch) -> Path:
    """tmp_path as the working folder, holding photos/ (the stand-in photos, renamed 1.jpg to 6.jpg, and
    broken.jpg), mean.binaryproto and model.caffemodel."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(stand_in["photos"], "photos")
    for number, photo in enumerate(sorted(p for p in Path("photos").glob("*.jpg") if p.name != "broken.jpg"), 1):
        photo.rename(photo.with_name(f"{number}.jpg"))
    shutil.copy(stand_in["mean"], "mean.binaryproto")
    shutil.copy(stand_in["weights"], "model.caffemodel")
    return tmp_path


PREDICT = ["--model", "model.caffemodel", "--variant", SMALL, "--mean", "mean.binaryproto", "--backend", "opencv"]


@pytest.mark.parametrize("setup, arguments, message", [
    ("", "photos --out photos/1.jpg", "argument --out: photos/1.jpg is a photo, not a table (CSV, JSON lines or "
                                      "Parquet) (did the shell expand a pattern?)"),
    ("ln -s 2.jpg photos/2.csv", "photos --out ./photos/../photos/2.csv",
     "argument --out: photos/../photos/2.csv is one of the photos to score"),
    ("", "photos --html photos/broken.jpg",
     "argument --html: photos/broken.jpg is a photo, not an HTML page (did the shell expand a pattern?)"),
    ("", "photos --out model.caffemodel", "argument --out: model.caffemodel is the name of a caffemodel; this writes "
                                          "a table (CSV, JSON lines or Parquet) (.csv, .txt, .jsonl, .json, .parquet)"),
    ("ln -s model.caffemodel model.txt", "photos --out model.txt",
     "argument --out: model.txt is the model's caffemodel"),
    ("", "photos --out mean.binaryproto", "argument --out: mean.binaryproto is the name of a mean image; this writes"),
    ("ln -s mean.binaryproto link.csv", "photos --out link.csv", "argument --out: link.csv is the mean image"),
    ("ln photos/3.jpg copy.csv", "photos --out copy.csv",
     "argument --out: copy.csv is a hard link to @/photos/3.jpg, one of the photos to score"),
    ("cp photos/1.jpg p.csv.partial", "p.csv.partial --out p.csv",
     "argument --out: p.csv (its temporary file p.csv.partial) is one of the photos to score"),
    ("echo photos/1.jpg > list.txt", "@list.txt --out list.txt",
     "argument --out: list.txt is a list of photos to score"),
    ("", "photos --out o.csv --html ./o.csv", "argument --html: o.csv is the name of a CSV table"),
    ("ln -s o.html o.csv", "photos --out o.csv --html o.html", "argument --html: o.html is written as --out already"),
    ("head -c 100 /dev/urandom > photos/clip.mp4", "photos --out photos/clip.mp4",
     "argument --out: photos/clip.mp4 is a file in the folders to score"),
    ("echo old > notes.txt", "photos --html notes.txt",
     "argument --html: notes.txt does not end in .html or .htm; this writes an HTML page"),
    ("", "photos --out s.png", "argument --out: s.png is the name of a PNG image; this writes a table (CSV, JSON lines "
                               "or Parquet) (.csv, .txt, .jsonl, .json, .parquet)"),
    ("", "photos --out s.xlsx", "argument --out: s.xlsx does not end in .csv or .txt (CSV), .jsonl or .json (JSON "
                                "lines) or .parquet; rename it, or give --format to write one of them under this name"),
    ("cp photos/1.jpg elsewhere.png", "photos --html elsewhere.png",
     "argument --html: elsewhere.png is a photo, not an HTML page (did the shell expand a pattern?)"),
])
def test_predict_outputs_may_overwrite_no_input(album, capsys, setup, arguments, message):
    """Compared as resolved paths (`./a`, `a`, symbolic links and `..` are one file) and by inode (a hard link),
    each output with its temporary `.partial` name; the photo found in a folder, the file in the folder that is not a
    photo, the @LIST file, the model's files and the other output all count."""
    if setup:
        subprocess.run(setup, shell=True, check=True)
    assert refused(["predict", *shlex.split(arguments), *PREDICT], capsys, album).startswith(
        message.replace("@", str(album)))


def test_an_output_of_the_same_command_may_be_replaced(album, capsys):
    """Scoring again over the table of the previous run is what a rerun does, and it is allowed: a table is not a
    photo, and text files in the folder are passed over."""
    for _ in range(2):
        assert ilgnet(["predict", "photos", *PREDICT, "--quiet", "--out", "photos/scores.csv"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("ilgnet predict: scored 6 photos, not scored 1 (listed above), 1 known "
                                           "non-photos passed over")


@pytest.fixture
def data_folder(tmp_path, monkeypatch) -> Path:
    """A data folder as `ilgnet test` and `ilgnet train` check it before any work: lists, split.json, a val LMDB's
    files, a mean; and a model file. The contents never matter: the command is refused first."""
    monkeypatch.chdir(tmp_path)
    data = Path("data")
    for name in ("train.txt", "val.txt", "split.json", "lmdb.json", "mean.binaryproto", "train_lmdb/data.mdb",
                 "val_lmdb/data.mdb", "val_lmdb/lock.mdb"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(f"{name}\n")
    (data / "val_lmdb" / "photos").mkdir()
    for name in ("repo/data/AVA1/train.txt", "repo/data/AVA1/val.txt", "models/AVA2_mean.binaryproto.partial"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("listed\n")
    Path("model.caffemodel").write_text("a model\n")
    Path("train.log").write_text("a log\n")
    Path("train_log.csv").write_text("a log named as a table\n")
    for link, target in [("r.json", "r.md"), ("mean.csv", "data/mean.binaryproto"), ("log.csv", "train.log")]:
        Path(link).symlink_to(target)           # outputs of the right format that are inputs or each other
    return tmp_path


@pytest.mark.parametrize("arguments, message", [
    ("test --weights model.caffemodel --data data --json data/split.json",
     "argument --json: data/split.json is the data folder's split.json"),
    ("test --weights model.caffemodel --data data --json data/mean.binaryproto",
     "argument --json: data/mean.binaryproto is the name of a mean image; this writes JSON (.json)"),
    ("test --weights model.caffemodel --data data --per-image data/val.txt",
     "argument --per-image: data/val.txt does not end in .csv; this writes a CSV table"),
    ("test --weights model.caffemodel --data data --per-image mean.csv",
     "argument --per-image: mean.csv is the mean image"),
    ("test --weights model.caffemodel --data data --markdown data/val_lmdb/data.mdb",
     "argument --markdown: data/val_lmdb/data.mdb is the name of an LMDB file; this writes a markdown table"),
    ("test --weights model.caffemodel --data data --json model.caffemodel",
     "argument --json: model.caffemodel is the name of a caffemodel; this writes JSON"),
    ("test --weights model.caffemodel --data data --json r.json --markdown r.md",
     "argument --markdown: r.md is written as --json already"),
    ("log train.log --png train.log", "argument --png: train.log is the name of a log; this writes a PNG image"),
    ("log train.log --csv c.csv --png c.csv", "argument --png: c.csv is the name of a CSV table"),
    ("log train.log --csv log.csv", "argument --csv: log.csv is the log to read"),
    ("log train_log.csv", "argument --csv (default: train_log.csv beside LOG): train_log.csv is the log to read"),
    ("split ava2 --ava-txt data/train.txt --out data", "argument --out: data/train.txt is AVA.txt"),
    ("split ava1 --ava-txt data/split.json --out data", "argument --out: data/split.json is AVA.txt"),
    ("split published repo --out repo/data/AVA1",
     "argument --out: repo/data/AVA1/train.txt is the published AVA1 train list"),
    ("split official --ava-txt data/train.txt --lists data --train-list val --out data",
     "argument --out: data/train.txt is AVA.txt"),
    ("lmdb --split data --images data/train_lmdb", "argument --split: data/train_lmdb is the folder of the photos"),
    ("lmdb --split data --images data/val_lmdb/photos",
     "argument --split: data/val_lmdb is a folder holding @/data/val_lmdb/photos, the folder of the photos"),
    ("weights install ilgnet-ava2-mean models/AVA2_mean.binaryproto.partial --dest models",
     "argument --dest: models/AVA2_mean.binaryproto (its temporary file AVA2_mean.binaryproto.partial) is the file "
     "to install"),
    ("train --profile ava2 --cpu --data data --runs . --name data",
     "argument --name: @/data/mean.binaryproto is the mean image of --data"),
    ("train --profile ava2 --cpu --data data --runs data/..",
     "argument --runs: @/data/mean.binaryproto is the mean image of --data"),
])
def test_every_command_refuses_an_output_that_is_one_of_its_inputs(data_folder, capsys, arguments, message):
    if "--runs data/.." in arguments:
        Path("data").rename("ilgnet-ava2")
        arguments = arguments.replace("--data data", "--data ilgnet-ava2")
        message = message.replace("/data/", "/ilgnet-ava2/")
    assert refused(shlex.split(arguments), capsys, data_folder).startswith(message.replace("@", str(data_folder)))


# ------------------------------------------------------------------------------ folders that cannot be written

@pytest.fixture
def read_only():
    """Makes a file or folder unwritable for this process, as root too: `chattr +i` (immutable; root ignores mode
    bits) as root, else mode bits; undone at the end. Skips where chattr is refused (a filesystem without it)."""
    made = []

    def make(path: Path) -> Path:
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
        else:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"chattr +i is refused here ({result.stderr.strip()}), and root ignores mode bits")
        made.append(path)
        return path
    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_case_10_an_existing_read_only_output_folder_is_refused_before_any_work(bugcase, read_only, capsys,
                                                                                 monkeypatch):
    case = bugcase("10-readonly-output-folder")
    monkeypatch.chdir(case)
    read_only(Path("ro").resolve() if Path("ro").mkdir() is None else None)
    for argv, flag in [(["weights", "install", "ilgnet-ava2-mean", "AVA2_mean.binaryproto", "--dest", "ro"], "--dest"),
                       (["split", "ava2", "--ava-txt", "AVA.txt", "--out", "ro"], "--out")]:
        assert refused(argv, capsys, case) == f"argument {flag}: cannot write in ro (permission denied)"
    # What a missing folder below it already got.
    assert refused(["split", "ava2", "--ava-txt", "AVA.txt", "--out", "ro/sub"], capsys, case) == (
        "argument --out: ro/sub: cannot write in ro (permission denied)")


@pytest.mark.parametrize("arguments, message", [
    ("predict photos --out ro/s.csv", "argument --out: ro/s.csv: cannot write in ro (permission denied)"),
    ("predict photos --html ro/deeper/g.html", "argument --html: ro/deeper/g.html: cannot write in ro"),
    ("predict photos --out locked.csv", "argument --out: cannot write locked.csv (permission denied)"),
    ("gen --out ro", "argument --out: cannot write in ro (permission denied)"),
    ("demo --work ro", "argument --work: cannot write in ro (permission denied)"),
    ("log train.log --csv ro/t.csv", "argument --csv: ro/t.csv: cannot write in ro"),
    ("train --profile ava2 --cpu --data photos --runs ro", "argument --runs: cannot write in ro"),
    ("weights fetch ilgnet-ava2-mean --dest ro", "argument --dest: cannot write in ro"),
    ("split ava2 --ava-txt train.log --out ro", "argument --out: cannot write in ro"),
])
def test_every_output_that_cannot_be_written_is_refused_before_any_work(album, read_only, capsys, arguments,
                                                                        message):
    """An existing folder or file, as the missing ones below an unwritable folder already were."""
    Path("ro").mkdir()
    Path("locked.csv").write_text("a table kept read-only\n")
    Path("train.log").write_text("not read: refused first\n")
    read_only(album / "ro")
    read_only(album / "locked.csv")
    argv = [*shlex.split(arguments), *(PREDICT if arguments.startswith("predict") else [])]
    assert refused(argv, capsys, album).startswith(message)


# ------------------------------------------------------------------------------ refusals met while working

def ilgnet_process(argv: list[str], **where) -> tuple[int, str, str]:
    """`ilgnet ARGV` run by `isolated`."""
    return isolated([sys.executable, "-m", "ilgnet.cli", *argv], **where)


def isolated(argv: list, *, unprivileged: bool = False, full: Path | None = None) -> tuple[int, str, str]:
    """Runs ARGV in a child process; returns (exit status, stdout, stderr).

    unprivileged: as the owner of the files without root's privileges (a user namespace mapping this user to an
    ordinary one), so that mode bits apply even when the tests run as root. full: a 1 MB tmpfs is mounted there
    (a mount namespace) and filled before the command runs; what is left in it afterwards is listed on stdout
    after a `--- left:` line. Skips where the system refuses the namespace."""
    command = shlex.join(map(str, argv))
    if full is not None:
        full.mkdir(exist_ok=True)
        command = (f"mount -t tmpfs -o size=1m ilgnet-full {shlex.quote(str(full))} && "
                   f"(cat /dev/zero > {shlex.quote(str(full / 'filler'))}) 2>/dev/null; "
                   f"{command}; status=$?; echo '--- left:'; ls -A {shlex.quote(str(full))}; exit $status")
        prefix = ["unshare", "--user", "--map-root-user", "--mount"]
    elif unprivileged and os.geteuid() == 0:
        prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    else:
        prefix = []
    result = subprocess.run([*prefix, "sh", "-c", command], capture_output=True, text=True)
    if result.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"this system refuses the namespace: {result.stderr.strip()}")
    return result.returncode, result.stdout, result.stderr


def test_unreadable_photos_and_folders_are_listed_and_the_rest_scored(album):
    Path("photos/locked").mkdir()
    shutil.copy("photos/1.jpg", "photos/locked/7.jpg")
    Path("photos/locked").chmod(0)
    Path("photos/2.jpg").chmod(0)
    status, out, err = ilgnet_process(["predict", "photos", *PREDICT, "--quiet"], unprivileged=True)
    assert status == 0, err
    assert "photos/2.jpg" not in out and len(out.splitlines()) == 1 + 5
    assert err.splitlines() == ["ilgnet predict: not scored: photos/2.jpg: unreadable: Permission denied",
                                "ilgnet predict: not scored: photos/broken.jpg: corrupt JPEG",
                                "ilgnet predict: not scored: photos/locked: unreadable folder: Permission denied",
                                "ilgnet predict: scored 5 photos, not scored 3 (listed above)"]


def test_an_unreadable_input_is_one_line(album):
    """Named on the command line: refused while it is read (exit 2); found through a model's files while working:
    one line naming the file (exit 1), never a traceback."""
    Path("mean.binaryproto").chmod(0)
    assert ilgnet_process(["predict", "photos", *PREDICT], unprivileged=True)[::2] == (
        2, "ilgnet predict: error: argument --mean: mean.binaryproto cannot be read (see `ilgnet predict --help`)\n")
    Path("photos").chmod(0)
    status, _, err = ilgnet_process(["lmdb", "--split", ".", "--images", "photos"], unprivileged=True)
    assert (status, err) == (2, "ilgnet lmdb: error: argument --images: folder photos cannot be read (see "
                                "`ilgnet lmdb --help`)\n")
    Path("mean.binaryproto").chmod(0o644)
    run = run_folder(album, album / "model.caffemodel", album / "mean.binaryproto", SMALL)
    (run / "mean.binaryproto").chmod(0)
    Path("photos").chmod(0o755)
    assert ilgnet_process(["predict", "photos", "--model", run, "--backend", "opencv"], unprivileged=True)[::2] == (
        1, f"ilgnet predict: error: {run / 'mean.binaryproto'}: Permission denied\n")


TINY_LOG = "".join(f"I0101 10:00:0{i}.000000  1001 solver.cpp:218] Iteration {i} (1 iter/s, 1s/1 iters), "
                   f"loss = 0.{9 - i}\n" for i in range(4))


@pytest.mark.parametrize("arguments, written", [
    pytest.param("predict photos --out @/s.csv", "@/s.csv, which needs ", marks=pytest.mark.slow),
    pytest.param("predict photos --html @/gallery.html --out scores.csv", "@/gallery.html, which needs ",
                 marks=pytest.mark.slow),
    ("log train.log --csv @/train_log.csv", "@/train_log.csv, which needs "),
    pytest.param("log train.log --png @/curves.png", "@/curves.png, which needs ", marks=pytest.mark.slow),
])
def test_a_full_disk_is_one_line_naming_the_device_and_what_was_needed(album, arguments, written):
    """No traceback, and no partial file left filling the disk."""
    Path("train.log").write_text(TINY_LOG)
    full = album / "full"
    argv = [arg.replace("@", str(full)) for arg in shlex.split(arguments)]
    status, out, err = ilgnet_process([*argv, *(PREDICT + ["--quiet"] if argv[0] == "predict" else [])], full=full)
    assert status == 1
    message = err.splitlines()[-1]
    assert message.startswith(f"ilgnet {argv[0]}: error: no space left on ilgnet-full (mounted at {full}, 0B free) "
                              f"writing {written.replace('@', str(full))}"), err
    assert "Traceback" not in err
    assert out.split("--- left:\n")[1].split() == ["filler"]


def test_installing_a_model_onto_a_full_disk_is_one_line(bugcase, tmp_path):
    case = bugcase("10-readonly-output-folder")
    full = tmp_path / "full"
    status, out, err = ilgnet_process(["weights", "install", "ilgnet-ava2-mean", case / "AVA2_mean.binaryproto",
                                       "--dest", full], full=full)
    assert (status, err) == (1, f"ilgnet weights install: error: no space left on ilgnet-full (mounted at {full}, "
                                f"0B free) writing {full / 'AVA2_mean.binaryproto'}, which needs 786kB\n")
    assert out.split("--- left:\n")[1].split() == ["filler"]


def test_a_download_onto_a_full_disk_is_one_line_and_removes_its_part(tmp_path):
    """The model's size is what the step needed; the .part and its record are removed (they would keep the disk
    full), not kept for a resume."""
    from test_weights import PAYLOAD, Server

    server = Server()
    try:
        script = ("from ilgnet.zoo.registry import Weights, download\n"
                  "from ilgnet.errors import UserError\n"
                  f"entry = Weights(name='m', file='m.caffemodel', url={server.url('/model')!r}, size={len(PAYLOAD)})\n"
                  "try:\n"
                  f"    download(entry, __import__('pathlib').Path({str(tmp_path / 'full' / 'm.caffemodel')!r}), "
                  "progress=False)\n"
                  "except UserError as err:\n"
                  "    print('refused:', err)\n")
        (tmp_path / "fetch.py").write_text(script)
        full = tmp_path / "full"
        status, out, err = isolated([sys.executable, tmp_path / "fetch.py"], full=full)
    finally:
        server.close()
    refusal, left = out.split("--- left:\n")
    assert refusal == (f"refused: no space left on ilgnet-full (mounted at {full}, 0B free) writing "
                       f"{full / 'm.caffemodel.part'}, which needs 1.05MB\n"), err
    assert left.split() == ["filler"]


def test_a_folder_refused_as_training_data_is_left_as_it_was(tmp_path, capsys, monkeypatch):
    """`train --data` naming a folder of photos, or a mistyped empty one: refused, and no lock file left in it (a
    lock is taken only on a data folder with its LMDBs), nor a run folder."""
    monkeypatch.chdir(tmp_path)
    Path("photos").mkdir()
    (Path("photos") / "1.jpg").write_bytes(b"\xff\xd8")
    Path("typo").mkdir()
    for data in ("photos", "typo"):
        before = snapshot(tmp_path)
        assert ilgnet(["train", "--cpu", "--variant", SMALL, "--profile", "ava2", "--data", data, "--runs", "runs",
                       "--max-iter", "2"]) == 1
        assert capsys.readouterr().err == (f"ilgnet train: error: {data}/train_lmdb does not exist; "
                                           f"`ilgnet lmdb` makes it\n")
        assert snapshot(tmp_path) == before
