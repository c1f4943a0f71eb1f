"""A run resumed is the same run: real `caffe train` runs of a small variant, resumed on other data (handed case
../shared/bugcases/08-resume-other-data), with another variant or profile, a max_iter it has reached, a damaged
.solverstate, and while another process holds the run or rebuilds its data. Each is refused in one line before
Caffe starts, or, for other data asked for explicitly, recorded so that every snapshot is scored with its mean."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ilgnet.data.lmdb_build import build_split
from ilgnet.fileio import file_digest
from ilgnet.zoo.models import resolve_model

SMALL = "googlenet-bn-third"


def command(data, runs, *args, name="run", variant=SMALL, profile="ava2") -> list[str]:
    return [sys.executable, "-m", "ilgnet.cli", "train", "--variant", variant, "--profile", profile, "--data",
            str(data), "--runs", str(runs), "--name", name, "--cpu", "--train-batch", "4", "--models",
            str(runs / "no-models"), *args]


def train(data, runs, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(data, runs, *args, **kwargs), capture_output=True, text=True)


def refused(result) -> str:
    """The one error line of a command refused before Caffe started."""
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ilgnet train: error: "), result.stderr
    return result.stderr.removeprefix("ilgnet train: error: ").rstrip("\n")


def state(run) -> dict:
    """What a refused resume must leave as it was: every file of the run folder and its bytes."""
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.fixture
def case08(bugcase):
    """The handed case with both data folders built by `ilgnet lmdb` (its photos are 320 x 240, resized to 256)."""
    case = bugcase("08-resume-other-data")
    for name in ("dataA", "dataB"):
        build_split(case / name, case / name / "images", jobs=1, progress=False)
    return case


def predicted(photo, *model_args) -> float:
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "predict", str(photo), *model_args, "--workers", "1",
                             "--quiet"], capture_output=True, text=True, check=True)
    return float(result.stdout.splitlines()[-1].split(",")[1])


def test_case_08_resume_on_other_data_is_refused_or_recorded(caffe, case08, tmp_path):
    a, b, runs = case08 / "dataA", case08 / "dataB", tmp_path / "runs"
    run = runs / "run"
    first = train(a, runs, "--max-iter", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    before = state(run)
    error = refused(train(b, runs, "--max-iter", "6", "--resume"))
    assert error == (f"{run / 'model.json'}: the run was trained on other data: the data folder was {a}, now {b}; "
                     f"mean.binaryproto differs (sha256 {file_digest(a / 'mean.binaryproto')[:12]} -> "
                     f"{file_digest(b / 'mean.binaryproto')[:12]}); --accept-data-change goes on and records the "
                     f"change in model.json, or resume with the run's own --data")
    assert state(run) == before                                   # not a byte written, Caffe never started

    accepted = train(b, runs, "--max-iter", "6", "--resume", "--accept-data-change")
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert f"ilgnet train: resuming on changed data, recorded in {run / 'model.json'}: the data folder was {a}" in \
        accepted.stderr
    record = json.loads((run / "model.json").read_text())
    assert record["data"] == str(b) and record["mean"]["sha256"] == file_digest(b / "mean.binaryproto")
    [change] = record["history"]
    assert (change["until_iteration"], change["data"], change["mean"]["file"]) == (2, str(a),
                                                                                   "mean.until_iter_2.binaryproto")
    assert file_digest(run / "mean.binaryproto") == file_digest(b / "mean.binaryproto")
    assert file_digest(run / "mean.until_iter_2.binaryproto") == file_digest(a / "mean.binaryproto")

    # The run scores with dataB's mean, its snapshot from before the change with dataA's.
    snapshots = run / "snapshots"
    assert resolve_model(run).mean == run / "mean.binaryproto"
    assert resolve_model(snapshots / f"{SMALL}_iter_2.caffemodel").mean == run / "mean.until_iter_2.binaryproto"
    photo = b / "images" / "8.jpg"
    for snapshot, data in ((f"{SMALL}_iter_6.caffemodel", b), (f"{SMALL}_iter_2.caffemodel", a)):
        own = predicted(photo, "--model", str(run if data == b else snapshots / snapshot))
        assert own == predicted(photo, "--model", str(snapshots / snapshot), "--variant", SMALL, "--mean",
                                str(data / "mean.binaryproto"))

    # A rebuild of the data folder in place (another resize) changes it as much.
    build_split(b, b / "images", resize=240, jobs=1, progress=False)
    error = refused(train(b, runs, "--max-iter", "8", "--resume"))
    assert "mean.binaryproto differs (sha256" in error and "the LMDBs' resize was 256, now 240" in error


def test_a_resume_keeps_its_variant_and_profile_and_goes_beyond_its_snapshot(caffe, case08, tmp_path):
    a, runs = case08 / "dataA", tmp_path / "runs"
    assert train(a, runs, "--max-iter", "2").returncode == 0
    before = state(runs / "run")
    model_json = runs / "run" / "model.json"
    assert refused(train(a, runs, "--max-iter", "4", "--resume", variant="googlenet-bn-two-thirds")) == (
        f"{model_json}: the run trains variant {SMALL}, not googlenet-bn-two-thirds; a resumed run keeps its variant "
        f"(start another run under another name for googlenet-bn-two-thirds)")
    assert refused(train(a, runs, "--max-iter", "4", "--resume", profile="ava1-delta0")) == (
        f"{model_json}: the run trains profile ava2, not ava1-delta0; a resumed run keeps its profile (start another "
        f"run under another name for ava1-delta0)")
    for max_iter in ("2", "1"):
        assert refused(train(a, runs, "--max-iter", max_iter, "--resume")) == (
            f"{runs / 'run' / 'snapshots' / f'{SMALL}_iter_2.solverstate'} is at iteration 2: max_iter {max_iter} "
            f"would train nothing (give a larger one)")
    usage = train(a, runs, "--max-iter", "4", "--accept-data-change")
    assert (usage.returncode, usage.stderr) == (2, "ilgnet train: error: --accept-data-change applies to --resume "
                                                   "only (see `ilgnet train --help`)\n")
    assert state(runs / "run") == before


def test_a_damaged_solverstate_is_named_with_the_previous_good_one(caffe, case08, tmp_path):
    a, runs = case08 / "dataA", tmp_path / "runs"
    assert train(a, runs, "--max-iter", "4", "--snapshot", "2").returncode == 0
    snapshots = runs / "run" / "snapshots"
    newest, previous = snapshots / f"{SMALL}_iter_4.solverstate", snapshots / f"{SMALL}_iter_2.solverstate"
    whole = newest.read_bytes()
    offer = f"; the previous good one is {previous} (iteration 2): rename the newer snapshots (e.g. to *.bad) to " \
            f"resume from it"
    for damaged, problem in [(whole[:len(whole) // 2], "not a Caffe solver state (cut short, or not a SolverState: "),
                             (b"", "holds iteration 0, its name says 4 (an empty or damaged file?)")]:
        newest.write_bytes(damaged)
        error = refused(train(a, runs, "--max-iter", "6", "--resume"))
        assert error.startswith(f"{newest}: {problem}") and error.endswith(offer), error
    newest.write_bytes(whole)
    caffemodel = snapshots / f"{SMALL}_iter_4.caffemodel"
    caffemodel.rename(tmp_path / "elsewhere.caffemodel")                # what a moved run folder does to it
    assert refused(train(a, runs, "--max-iter", "6", "--resume")) == (
        f"{newest}: names its weights {caffemodel}, which does not exist (was the run folder moved?){offer}")
    for path in (newest, snapshots / f"{SMALL}_iter_4.caffemodel"):
        if path.exists():
            path.rename(path.with_name(path.name + ".bad"))
    resumed = train(a, runs, "--max-iter", "6", "--resume")
    assert resumed.returncode == 0 and f"resuming from {previous} (iteration 2)" in resumed.stderr


def wait_for(path, pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return
        assert proc.poll() is None, f"the first process exited ({proc.returncode}) before {pattern!r} appeared"
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout} s")


def test_a_run_and_its_data_are_one_process_s_while_it_trains(caffe, case08, tmp_path):
    """A second `ilgnet train` on the same run folder, and `ilgnet lmdb` rebuilding the data folder it reads, are
    refused in one line naming the training process; once it is gone, both may go on."""
    a, runs = case08 / "dataA", tmp_path / "runs"
    first = subprocess.Popen(command(a, runs, "--max-iter", "2000", "--display", "1"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(runs / "run" / "train.log", r"\] Iteration 1 \(", first)
        busy = f"is in use by process {first.pid} ({sys.executable} -m ilgnet.cli train --variant {SMALL}"
        second = refused(train(a, runs, "--max-iter", "2000"))
        assert second.startswith(f"{runs / 'run'} {busy}") and second.endswith(
            "; wait for it to end (or stop it) and try again"), second
        rebuild = subprocess.run([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(a), "--images",
                                  str(a / "images"), "--force"], capture_output=True, text=True)
        assert rebuild.returncode == 1 and rebuild.stderr.startswith(f"ilgnet lmdb: error: {a} {busy}")
        os.killpg(first.pid, signal.SIGINT)                 # Caffe snapshots and stops
        assert first.wait(timeout=240) == 130
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    stopped = max(int(re.search(r"_iter_(\d+)\.", p.name)[1]) for p in (runs / "run" / "snapshots").iterdir())
    resumed = train(a, runs, "--max-iter", str(stopped + 1), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rebuilt = subprocess.run([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(a), "--images",
                              str(a / "images"), "--force"], capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr


@pytest.fixture(scope="module")
def small_net():
    """The small variant's train_val (no Caffe needed) and the shapes of its learnable parameter blobs."""
    from ilgnet import nets
    from ilgnet.bvlc.proto import TRAIN
    from ilgnet.bvlc.shapes import param_shapes

    net = nets.train_val(SMALL, train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=1, val_batch=1)
    return net, [shape for shapes in param_shapes(net, TRAIN).values() for shape in shapes]


def solverstate(path, shapes, *, iteration=4, fill=0.0, learned_net="", cut=0):
    """A SolverState as Caffe's SGD solver writes it: the iteration, the .caffemodel, one history blob per shape."""
    import numpy as np

    from ilgnet.bvlc.proto import BlobProto, BlobShape, SolverState

    history = [BlobProto(shape=BlobShape(dim=shape), data=np.full(int(np.prod(shape)) - cut * (i == 0), fill,
                                                                  np.float32))
               for i, shape in enumerate(shapes)]
    path.write_bytes(SolverState(iter=iteration, learned_net=learned_net, history=history).SerializeToString())
    return path


@pytest.mark.parametrize("change, problem", [
    (lambda shapes: {"shapes": shapes[:-3]}, "holds {n_less_3} history blobs, the {net} net has {n} learnable "
                                             "parameter blobs (cut short, or the state of another net)"),
    (lambda shapes: {"shapes": [(7, 7), *shapes[1:]]}, "history blob 0 has shape (7, 7), the net's parameter blob "
                                                       "{first}"),
    (lambda shapes: {"shapes": shapes, "cut": 5}, "history blob 0 holds {first_less_5} values for its shape {first} "
                                                  "(cut short?)"),
    (lambda shapes: {"shapes": shapes, "fill": float("nan")}, "its history holds NaN or infinite values (a diverged "
                                                              "training run?)"),
    (lambda shapes: {"shapes": shapes, "iteration": 3}, "holds iteration 3, its name says 4 (an empty or damaged "
                                                        "file?)"),
    (lambda shapes: {"shapes": shapes}, "names no .caffemodel (learned_net) to resume from"),
    (lambda shapes: {"shapes": shapes, "learned_net": "/nowhere/x_iter_4.caffemodel"},
     "names its weights /nowhere/x_iter_4.caffemodel, which does not exist (was the run folder moved?)"),
])
def test_a_solverstate_caffe_would_abort_on_is_named(small_net, tmp_path, change, problem):
    """What `caffe train -snapshot` aborts on (CHECK failures in Solver::Restore and Blob::FromProto), said first."""
    import numpy as np

    from ilgnet.errors import UserError
    from ilgnet.bvlc.fit import check_solverstate

    net, shapes = small_net
    path = solverstate(tmp_path / f"{SMALL}_iter_4.solverstate", **change(shapes))
    first = int(np.prod(shapes[0]))
    message = problem.format(n=len(shapes), n_less_3=len(shapes) - 3, net=net.name, first=tuple(shapes[0]),
                             first_less_5=first - 5)
    with pytest.raises(UserError) as raised:
        check_solverstate(path, net)
    assert str(raised.value) == f"{path}: {message}"
