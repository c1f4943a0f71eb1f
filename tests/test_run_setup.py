"""What `ilgnet train` checks and writes before Caffe starts, without Caffe: bad counts stop it before the run
folder exists, and a shortened run's solver tests and snapshots within it."""
from __future__ import annotations

import pytest
from caffe_data import photo_files
from google.protobuf import text_format

from ilgnet.caffe_proto import SolverParameter
from ilgnet.errors import UserError
from ilgnet.lmdb_builder import build_split
from ilgnet.training import write_run_files


@pytest.fixture
def data(tmp_path):
    """A data folder as `ilgnet lmdb` leaves it: 4 training and 3 val photos, 16 x 16."""
    names = photo_files(tmp_path / "images", 7, size=16)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[:4])))
    (folder / "val.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[4:])))
    build_split(folder, tmp_path / "images", resize=16, jobs=1, progress=False)
    return folder


def written_solver(path) -> SolverParameter:
    return text_format.Parse(path.read_text(), SolverParameter())


@pytest.mark.parametrize("options, message", [
    ({"train_batch": 0}, "expected positive counts and a non-negative snapshot period, got train_batch 0"),
    ({"max_iter": 0, "display": -1}, "got max_iter 0, display -1"),
    ({"snapshot": -2}, "got snapshot -2"),
])
def test_bad_counts_stop_before_the_run_folder_is_made(data, tmp_path, options, message):
    arguments = {"train_batch": None, "val_batch": None, "max_iter": None, "display": None, **options}
    with pytest.raises(UserError, match=message):
        write_run_files(tmp_path / "run", "ilgnet", "ava2", data, mode="CPU", **arguments)
    assert not (tmp_path / "run").exists()


def test_a_shortened_run_tests_and_snapshots_within_its_length(data, tmp_path):
    solver_path, _ = write_run_files(tmp_path / "run", "ilgnet", "ava2", data, mode="CPU", train_batch=2,
                                     val_batch=None, max_iter=2_000, display=None)
    solver = written_solver(solver_path)
    assert (solver.max_iter, solver.test_interval, solver.snapshot, solver.test_iter) == (2_000, 20, 20, [1])
    solver_path, _ = write_run_files(tmp_path / "run", "ilgnet", "ava2", data, mode="CPU", train_batch=2,
                                     val_batch=None, max_iter=2_000, display=None, test_interval=500, snapshot=0)
    solver = written_solver(solver_path)
    assert (solver.test_interval, solver.snapshot) == (500, 0)
    full = written_solver(write_run_files(tmp_path / "full", "ilgnet", "ava2", data, mode="CPU", train_batch=None,
                                          val_batch=None, max_iter=None, display=None)[0])
    assert (full.max_iter, full.test_interval, full.snapshot) == (533_000, 5_330, 5_330)
    train_val = (tmp_path / "full" / "train_val.prototxt").read_text()
    assert "batch_size: 48" in train_val and "batch_size: 3" in train_val       # the defaults, when not given
