"""A run that goes wrong never ends well in silence: real `caffe train` runs of a small variant on a tiny data
folder, made to diverge with a learning rate far too high, stop with one line naming the iteration and exit 1,
however the run displays, tests and snapshots, and no snapshot that is not good stays under its own name."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from caffe_data import data_folder
from google.protobuf import text_format

from ilgnet import nets
from ilgnet.bvlc.io import lmdb_size
from ilgnet.bvlc.proto import NetParameter, SolverParameter
from ilgnet.data.folder import DataFolder
from ilgnet.data.synthetic import random_caffemodel
from ilgnet.training.snapshots import check_net, set_aside, snapshot_problem

SMALL = "googlenet-bn-third"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data folder as `ilgnet lmdb` leaves it: 4 training and 3 val photos of 227 x 227."""
    return data_folder(tmp_path_factory.mktemp("health"), 4, 3, size=227)


def train(data, runs, name, *args):
    """`ilgnet train` of the small variant from random weights, at batch 4 on the CPU."""
    return subprocess.run([sys.executable, "-m", "ilgnet.cli", "train", "--variant", SMALL, "--profile", "ava1-delta0",
                           "--data", str(data), "--runs", str(runs), "--name", name, "--cpu", "--train-batch", "4",
                           "--models", str(runs / "no-models"), *args], capture_output=True, text=True)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if "ilgnet train: error: " in line]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0].split("ilgnet train: error: ", 1)[1]


def names(run) -> list[str]:
    return sorted(p.name for p in (run / "snapshots").iterdir())


def test_a_short_run_displays_every_iteration_and_a_nan_test_pass_stops_it(caffe, data, tmp_path):
    """The profile's display of 20 is not reached in 6 iterations: the run displays as often as it tests (every
    iteration), its progress bar moves, and the first test pass after the weights blow up stops it."""
    result = train(data, tmp_path, "nan", "--max-iter", "6", "--base-lr", "1000")
    error = error_line(result)
    found = re.fullmatch(r"training diverged: the (test output loss1/loss|training loss|training output loss1/loss) "
                         r"became (nan|inf) at iteration (\d+); no good snapshot was written before it \(try a lower "
                         r"base_lr\)", error)
    assert found and 1 <= int(found[3]) < 6, error
    solver = text_format.Parse((tmp_path / "nan" / "solver.prototxt").read_text(), SolverParameter())
    assert (solver.display, solver.test_interval, solver.max_iter) == (1, 1, 6)
    assert re.search(r"nan:\s+\d+%\|[^|]*\| [1-5]/6 ", result.stderr)           # the bar moved
    assert f"Iteration {int(found[3]) + 1} (" not in (tmp_path / "nan" / "train.log").read_text()   # stopped at once
    assert not list((tmp_path / "nan" / "snapshots").glob("*.caffemodel"))


def test_the_final_snapshot_is_checked_when_nothing_is_displayed_or_tested(caffe, data, tmp_path):
    """No loss displayed, no test pass before the end: the snapshot at the end holds NaN, and the run stops on it
    instead of exiting 0 and naming it; it is set aside with its .solverstate."""
    result = train(data, tmp_path, "quiet", "--max-iter", "4", "--base-lr", "1000", "--display", "100",
                   "--test-interval", "100", "--snapshot", "0")
    error = error_line(result)
    assert error.startswith(f"training diverged: the snapshot of iteration 4, {SMALL}_iter_4.caffemodel, holds NaN or "
                            f"infinite weights (layers ")
    assert error.endswith("); no good snapshot was written before it (try a lower base_lr)")
    assert names(tmp_path / "quiet") == [f"{SMALL}_iter_4.caffemodel.diverged", f"{SMALL}_iter_4.solverstate.diverged"]
    assert not result.stdout                                                    # no snapshot path printed


def test_a_loss_at_the_clamp_for_three_displays_stops_the_run(caffe, data, tmp_path, capsys):
    """At base_lr 0.5 the net collapses onto one class within an iteration or two: the loss of the batch's
    other-class images sits at -log(FLT_MIN) = 87.3365 each (43.6683 for two of four), finite, so no NaN check would
    stop it. (No snapshot before the end: its val outputs may turn NaN first, which stops the run as well;
    snapshots from where a run went wrong are set aside: test_a_snapshot_whose_outputs_are_not_finite_is_not_good.)"""
    from ilgnet.cli import main

    result = train(data, tmp_path, "flat", "--max-iter", "12", "--base-lr", "0.5", "--display", "1",
                   "--test-interval", "100", "--snapshot", "0")
    error = error_line(result)
    found = re.fullmatch(r"training diverged: the training loss sat at SoftmaxWithLoss's clamp, -log\(FLT_MIN\) = "
                         r"87\.3365 per image, from iteration (\d+) to (\d+) \(3 displays in a row; at the last, "
                         r"([1-4]) of the batch's 4 images there and the others at 0\); no good snapshot was written "
                         r"before it \(try a lower base_lr\)", error)
    assert found, error
    first, last = int(found[1]), int(found[2])
    log = (tmp_path / "flat" / "train.log").read_text()
    losses = {int(i): float(v) for i, v in re.findall(r"\] Iteration (\d+) \(.*\), loss = (\S+)", log)}
    assert last == first + 2 and max(losses) == last                         # stopped at the third
    assert [round(losses[i] * 4 / 87.33654, 3) % 1 for i in range(first, last + 1)] == [0.0] * 3
    assert not list((tmp_path / "flat" / "snapshots").iterdir())
    # ilgnet log marks it too: a printed line, the CSV's health column, the title of the curves.
    assert main(["log", str(tmp_path / "flat" / "train.log")]) == 0
    assert f"ilgnet log: this run SATURATED: the training loss sat at SoftmaxWithLoss's clamp, -log(FLT_MIN) = " \
           f"87.3365 per image, from iteration {first} to {last}" in capsys.readouterr().err
    frame = pd.read_csv(tmp_path / "flat" / "train_log.csv", keep_default_na=False)
    assert set(frame.loc[frame["iteration"].between(first, last), "health"]) == {"saturated"}


@pytest.fixture
def run_with_snapshots(caffe, data, tmp_path):
    """A run folder with three snapshots of random finite weights at iterations 10, 20 and 30, the one at 20 with
    a first convolution so large that its outputs overflow (finite weights, infinite and NaN outputs), with the net
    their outputs are checked on."""
    snapshots = tmp_path / "run" / "snapshots"
    snapshots.mkdir(parents=True)
    folder = DataFolder(data)
    net = check_net(nets.get_variant(SMALL), folder, lmdb_size(folder.lmdb("val")))
    for at in (10, 20, 30):
        path = random_caffemodel(nets.deploy(SMALL), snapshots / f"{SMALL}_iter_{at}.caffemodel", seed=at)
        (snapshots / f"{SMALL}_iter_{at}.solverstate").write_bytes(b"state")
        if at == 20:
            model = NetParameter.FromString(path.read_bytes())
            conv = next(layer for layer in model.layer if layer.name == "conv1/7x7_s2")
            conv.blobs[0].data[:] = [1e38] * len(conv.blobs[0].data)     # finite in float32, not its sums
            path.write_bytes(model.SerializeToString())
    return tmp_path / "run", net


def test_a_snapshot_whose_outputs_are_not_finite_is_not_good(run_with_snapshots):
    run, net = run_with_snapshots
    snapshots = run / "snapshots"
    assert snapshot_problem(snapshots / f"{SMALL}_iter_10.caffemodel", net) is None
    problem = snapshot_problem(snapshots / f"{SMALL}_iter_20.caffemodel", net)
    assert problem.startswith("gives NaN or infinite outputs on a val batch of 3 (blobs conv1/7x7_s2")
    # Where the run went wrong at 30: 30 goes whatever it holds, 20 for its outputs, 10 is the last good one.
    assert set_aside(run, net, from_iteration=30) == snapshots / f"{SMALL}_iter_10.caffemodel"
    assert names(run) == [f"{SMALL}_iter_10.caffemodel", f"{SMALL}_iter_10.solverstate",
                          f"{SMALL}_iter_20.caffemodel.diverged", f"{SMALL}_iter_20.solverstate.diverged",
                          f"{SMALL}_iter_30.caffemodel.diverged", f"{SMALL}_iter_30.solverstate.diverged"]


def test_weights_that_are_not_finite_or_not_whole_are_not_good(run_with_snapshots):
    run, net = run_with_snapshots
    path = run / "snapshots" / f"{SMALL}_iter_30.caffemodel"
    model = NetParameter.FromString(path.read_bytes())
    next(layer for layer in model.layer if layer.blobs).blobs[0].data[0] = np.inf
    path.write_bytes(model.SerializeToString())
    assert snapshot_problem(path, net).startswith("holds NaN or infinite weights (layers conv1/7x7_s2)")
    path.write_bytes(path.read_bytes()[:1000])
    assert snapshot_problem(path, net).startswith(f"cannot be read back ({path}: not a Caffe model (cut short")
