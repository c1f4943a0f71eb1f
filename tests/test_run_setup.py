"""What `ilgnet train` checks and writes before Caffe starts, without Caffe: bad counts, a val batch larger than the
val set and a run name that leaves the runs folder stop it before the run folder exists, a run that fails before
Caffe starts leaves nothing it made, and a shortened run's solver tests and snapshots within it."""
from __future__ import annotations

import re

import pytest
from caffe_data import data_folder
from google.protobuf import text_format

from ilgnet.bvlc.proto import SolverParameter
from ilgnet.cli import main
from ilgnet.errors import CaffeNotFoundError, UserError
from ilgnet.training import runs as training
from ilgnet.training.plan import TrainOptions, plan, run_folder
from ilgnet.training.runs import write_run_files

pytest_plugins = ["docker_stand_in"]


@pytest.fixture(autouse=True)
def docker(stand_in_docker, monkeypatch):
    """The runs are in Docker: a stand-in client answers that the image is there (tests/docker_stand_in.py)."""
    monkeypatch.setenv("PATH", stand_in_docker.env()["PATH"])


@pytest.fixture
def data(tmp_path):
    """A data folder as `ilgnet lmdb` leaves it: 4 training and 3 val photos, 227 x 227 (the ilgnet net's crop)."""
    return data_folder(tmp_path, 4, 3, size=227)


def written_solver(path) -> SolverParameter:
    return text_format.Parse(path.read_text(), SolverParameter())


def options(data, run_dir, **given) -> TrainOptions:
    """A run in Docker (so the checks need no Caffe on this machine, only the stand-in docker) of the ilgnet net with
    the ava2 profile."""
    return TrainOptions("ilgnet", "ava2", data, name=run_dir.name, runs_dir=run_dir.parent, docker=True, **given)


@pytest.mark.parametrize("options_, message", [
    ({"train_batch": 0}, r"expected positive counts and a non-negative snapshot period, at most 2147483647 "
                         r"\(Caffe's int32\), got train_batch 0"),
    ({"max_iter": 0, "display": -1}, "got max_iter 0, display -1"),
    ({"snapshot": -2}, "got snapshot -2"),
    ({"max_iter": 3_000_000_000, "display": 2**31}, r"at most 2147483647 \(Caffe's int32\), got max_iter 3000000000, "
                                                    r"display 2147483648"),
    ({"val_batch": 4}, "val batch 4 is larger than the 3 records of .*val_lmdb: a test pass would read most of them "
                       "more than once"),
])
def test_bad_counts_stop_before_the_run_folder_is_made(data, tmp_path, options_, message):
    with pytest.raises(UserError, match=message):
        plan(options(data, tmp_path / "run", **options_))
    assert not (tmp_path / "run").exists()


def test_a_shortened_run_tests_and_snapshots_within_its_length(data, tmp_path):
    solver_path, _ = write_run_files(plan(options(data, tmp_path / "run", train_batch=2, max_iter=2_000)))
    solver = written_solver(solver_path)
    assert (solver.max_iter, solver.test_interval, solver.snapshot, solver.test_iter) == (2_000, 20, 20, [1])
    solver_path, _ = write_run_files(plan(options(data, tmp_path / "run", train_batch=2, max_iter=2_000,
                                                  test_interval=500, snapshot=0)))
    solver = written_solver(solver_path)
    assert (solver.test_interval, solver.snapshot) == (500, 0)
    full = written_solver(write_run_files(plan(options(data, tmp_path / "full")))[0])
    assert (full.max_iter, full.test_interval, full.snapshot) == (533_000, 5_330, 5_330)
    train_val = (tmp_path / "full" / "train_val.prototxt").read_text()
    assert "batch_size: 48" in train_val and "batch_size: 3" in train_val       # the defaults, when not given


def test_a_val_batch_larger_than_the_val_set_is_refused_before_anything_starts(data, tmp_path, capsys):
    """Caffe would read every val record many times a test pass (and 1000 of 87 ran out of memory)."""
    assert main(["train", "--profile", "ava2", "--data", str(data), "--runs", str(tmp_path / "runs"), "--cpu",
                 "--val-batch", "4"]) == 2
    assert capsys.readouterr().err == (f"ilgnet train: error: argument --val-batch: val batch 4 is larger than the 3 "
                                       f"records of {data / 'val_lmdb'}: a test pass would read most of them more "
                                       f"than once\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".", "a\\b"])
def test_a_run_stays_in_its_runs_folder(tmp_path, name):
    with pytest.raises(UserError, match=f"run name {re.escape(repr(name))}: expected one folder name"):
        training.train(TrainOptions("ilgnet", "ava2", tmp_path, name=name, runs_dir=tmp_path / "runs"))
    assert run_folder(tmp_path, "ilgnet-ava2") == (tmp_path / "ilgnet-ava2").resolve()


def test_a_run_that_fails_before_caffe_leaves_no_folder_but_keeps_an_earlier_runs(data, tmp_path, monkeypatch):
    """Everything checked (plan) but Caffe cannot be started: the folders this call made go, earlier files stay."""
    def no_docker(*args, **kwargs):
        raise CaffeNotFoundError("docker-caffe.sh is missing")

    monkeypatch.setattr(training, "caffe_command", no_docker)
    runs = tmp_path / "runs"
    with pytest.raises(CaffeNotFoundError):
        training.train(options(data, runs / "new", train_batch=2))
    assert not runs.exists()
    (runs / "old").mkdir(parents=True)
    (runs / "old" / "notes.txt").write_text("mine\n")
    with pytest.raises(CaffeNotFoundError):
        training.train(options(data, runs / "old", train_batch=2))
    assert (runs / "old" / "notes.txt").read_text() == "mine\n"
    with pytest.raises(CaffeNotFoundError):
        training.train(options(data, runs / "new", train_batch=2))
    assert sorted(p.name for p in runs.iterdir()) == ["old"]
