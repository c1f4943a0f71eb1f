"""`ilgnet train` with real Caffe on CPU: the small variant (3.2 M parameters) for a handful of iterations at
batch 2, interrupted like a Ctrl-C, resumed from its snapshot, and logged into CSV and curves."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL
from google.protobuf import text_format

from ilgnet.cli import main
from ilgnet.training.plan import TrainOptions, plan
from ilgnet.training.runs import caffe_command, write_run_files

MAX_ITER = 10                        # the small net trains fast: room for the Ctrl-C to land before the end

pytest_plugins = ["caffe_data"]     # small_dataset, shared across test files


def ilgnet_train(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """`ilgnet train` in its own process group, so a SIGINT to the group is what a terminal's Ctrl-C sends."""
    return subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "train", *args], cwd=cwd, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"ilgnet train exited ({proc.returncode}) before {pattern!r} appeared in {path}")
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout} s")


def iterations(run: Path) -> list[int]:
    return sorted(int(re.search(r"_iter_(\d+)\.", p.name)[1]) for p in (run / "snapshots").glob("*.caffemodel"))


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "tiny"
    yield run
    for snapshot in (run / "snapshots").glob("*"):       # do not keep snapshots around
        snapshot.unlink()


def test_interrupt_snapshots_and_resume_continues(small_dataset, tmp_path, run_dir):
    args = ["--variant", SMALL, "--profile", "ava2", "--data", str(small_dataset), "--runs", "runs", "--name", "tiny",
            "--cpu", "--max-iter", str(MAX_ITER), "--train-batch", "2", "--display", "1", "--models", "no-models"]
    first = ilgnet_train(*args, cwd=tmp_path, log=tmp_path / "first.out")
    wait_for(run_dir / "train.log", r"\] Iteration 1 \(", first)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=240) == 130, (tmp_path / "first.out").read_text()[-3000:]

    out = (tmp_path / "first.out").read_text()
    assert "training starts FROM SCRATCH" in out and "no-models/bvlc_googlenet.caffemodel not found" in out
    assert "stopped early; snapshot" in out and "continue with --resume" in out
    assert "Optimization stopped early." in (run_dir / "train.log").read_text()
    assert "solver_mode: CPU" in (run_dir / "solver.prototxt").read_text()
    [stopped_at] = iterations(run_dir)
    assert 1 <= stopped_at < MAX_ITER
    assert (run_dir / "snapshots" / f"{SMALL}_iter_{stopped_at}.solverstate").is_file()

    restart = subprocess.run([sys.executable, "-m", "ilgnet.cli", "train", *args], cwd=tmp_path, capture_output=True,
                             text=True)
    assert restart.returncode == 1 and "already has snapshots" in restart.stderr   # never mixed with an old run

    second = ilgnet_train(*args, "--resume", cwd=tmp_path, log=tmp_path / "second.out")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.out").read_text()[-3000:]
    assert (tmp_path / "second.out").read_text().splitlines()[-1] == \
        str(run_dir.resolve() / "snapshots" / f"{SMALL}_iter_{MAX_ITER}.caffemodel")
    assert iterations(run_dir) == [stopped_at, MAX_ITER]

    # The resumed run's own log section starts where the first stopped.
    resumed = (run_dir / "train.log").read_text().split("# ilgnet train:")[-1]
    assert f"-snapshot {run_dir.resolve()}/snapshots/{SMALL}_iter_{stopped_at}.solverstate" in resumed
    assert [int(i) for i in re.findall(r"\] Iteration (\d+) \(", resumed)] == list(range(stopped_at, MAX_ITER))

    # train_log.csv covers both runs: every displayed iteration once, their test passes (none before training: a
    # BatchNorm net), the final loss.
    frame = pd.read_csv(run_dir / "train_log.csv")
    assert frame["iteration"].tolist() == list(range(MAX_ITER + 1))
    assert frame["loss"].notna().all() and frame["test_accuracy"].iloc[1:].between(0, 1).all()
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_needs_a_snapshot(small_dataset, tmp_path, capsys):
    assert main(["train", "--profile", "ava2", "--data", str(small_dataset), "--runs", str(tmp_path), "--name",
                 "empty", "--cpu", "--resume"]) == 2
    assert capsys.readouterr().err == (f"ilgnet train: error: argument --resume: no .solverstate in "
                                       f"{tmp_path / 'empty' / 'snapshots'} to resume from\n")


def test_weights_that_do_not_fit_are_refused_before_caffe_runs(caffe, small_dataset, tmp_path, capsys):
    """Weights whose conv1 does not fit would make Caffe abort: they are refused first, naming the layer, and no
    run folder is made."""
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[1, 3, 8, 8]))
    n["conv1/7x7_s2"] = caffe.layers.Convolution(n.data, num_output=5, kernel_size=3)
    (tmp_path / "wrong.prototxt").write_text(str(n.to_proto()))
    caffe.Net(str(tmp_path / "wrong.prototxt"), caffe.TEST).save(str(tmp_path / "wrong.caffemodel"))
    assert main(["train", "--profile", "ava2", "--data", str(small_dataset), "--runs", str(tmp_path), "--name",
                 "bad", "--cpu", "--max-iter", "1", "--train-batch", "2",
                 "--weights", str(tmp_path / "wrong.caffemodel")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ilgnet train: error: {tmp_path / 'wrong.caffemodel'}: does not "
                                                   f"fit the ilgnet net: layer 'conv1/7x7_s2' has blobs "
                                                   f"[(5, 3, 3, 3), (5,)], the net expects [(64, 3, 7, 7), (64,)]")
    assert "no weights for the pretrained layers 'conv2/3x3_reduce'" in err
    assert not (tmp_path / "bad").exists()


def test_docker_command_mounts_the_data_and_keeps_the_caffe_arguments(tmp_path):
    command = caffe_command(tmp_path / "solver.prototxt", gpu=None, weights=None, resume_from=None, docker=True,
                            mounts=[tmp_path / "data"])
    assert command[:2] == ["bash", str(Path(__file__).resolve().parents[1] / "tools" / "docker-caffe.sh")]
    assert command[2:6] == ["--cpu", "--mount", str((tmp_path / "data").resolve()), "--"]
    assert command[6:] == ["caffe", "train", "-solver", str(tmp_path / "solver.prototxt"), "-sigint_effect", "stop",
                           "-sighup_effect", "snapshot"]
    gpu = caffe_command(tmp_path / "s.prototxt", gpu="all", weights=None, resume_from=None, docker=True, mounts=[])
    assert "--cpu" not in gpu and gpu[-2:] == ["-gpu", "all"]
    help_text = subprocess.run(["bash", command[1], "--help"], capture_output=True, text=True, check=True).stdout
    assert "Usage: tools/docker-caffe.sh" in help_text


@pytest.mark.parametrize("variant, tests_at_start", [("ilgnet", True), ("ilgnet-bn", False)])
def test_batchnorm_variants_skip_the_untrained_test_pass(caffe, small_dataset, tmp_path, variant, tests_at_start):
    solver_path, _ = write_run_files(plan(TrainOptions(variant, "ava2", small_dataset, name=variant, runs_dir=tmp_path,
                                                       train_batch=2)))
    written = caffe.proto.caffe_pb2.SolverParameter()
    text_format.Merge(solver_path.read_text(), written)
    assert written.test_initialization is tests_at_start


def test_the_paper_recipe_trains_the_head_and_leaves_the_fixed_layers_as_they_were(caffe, small_dataset,
                                                                                   small_caffemodel, tmp_path):
    """`--recipe paper`: the paper's Sec. 1, "the inception modules are fixed and the connected local and global
    features layers are fine tuned". The train_val has lr_mult 0 on every pretrained trunk layer, model.json names
    them, and after Caffe's own training steps their weights are those the run started from."""
    import json

    import numpy as np

    from ilgnet.bvlc.io import load_net
    from ilgnet.nets import deploy, fixed_layers

    assert main(["train", "--variant", SMALL, "--profile", "ava2", "--data", str(small_dataset), "--runs",
                 str(tmp_path), "--name", "frozen", "--cpu", "--max-iter", "3", "--train-batch", "2", "--seed", "1",
                 "--base-lr", "0.01", "--recipe", "paper", "--weights", str(small_caffemodel)]) == 0
    run = tmp_path / "frozen"
    written = caffe.proto.caffe_pb2.NetParameter()
    text_format.Merge((run / "train_val.prototxt").read_text(), written)
    rates = {layer.name: [p.lr_mult for p in layer.param] for layer in written.layer if layer.param}
    fixed = fixed_layers(SMALL, "paper")
    assert {name.split("/")[0] for name in fixed} == {"conv1", "conv2", "inception_3a", "inception_3b",
                                                      "inception_4a"}
    assert all(rates[name] == [0, 0] for name in fixed) and rates["loss1/classifier_ava"] == [10, 20]
    assert rates["loss1/conv"] == [1, 2]                 # the classifier branch fine-tunes, pretrained or not
    record = json.loads((run / "model.json").read_text())
    assert record["recipe"] == "paper" and record["recipe_detail"]["fixed_layers"] == fixed
    before = load_net(deploy(SMALL), weights=small_caffemodel)
    after = load_net(deploy(SMALL), weights=run / "snapshots" / f"{SMALL}_iter_3.caffemodel")
    for name in ("conv1/7x7_s2", "inception_3b/3x3", "inception_4a/pool_proj"):
        assert np.array_equal(before.params[name][0].data, after.params[name][0].data), name
    assert not np.array_equal(before.params["loss1/classifier_ava"][0].data,
                              after.params["loss1/classifier_ava"][0].data)
