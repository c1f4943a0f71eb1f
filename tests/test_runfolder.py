"""RunFolder: the paths of a run folder, its snapshots in iteration order, and a snapshot traced back to its run.
Only files on disk: nothing of Caffe is needed to name them."""
from __future__ import annotations

import pytest

from ilgnet.errors import BadInput, MissingFile
from ilgnet.bvlc.io import is_snapshot_name, snapshot_iteration
from ilgnet.zoo.runfolder import RunFolder


def test_paths_and_snapshot_names(tmp_path):
    run = RunFolder(tmp_path / "runs" / "a")
    assert run.model_json == tmp_path / "runs" / "a" / "model.json"
    assert run.train_log == tmp_path / "runs" / "a" / "train.log"
    assert run.snapshot("ilgnet", 300) == tmp_path / "runs" / "a" / "snapshots" / "ilgnet_iter_300.caffemodel"
    assert run.snapshot("ilgnet", 300, "solverstate").name == "ilgnet_iter_300.solverstate"
    assert str(run.snapshot_prefix("ilgnet")) + "_iter_300.caffemodel" == str(run.snapshot("ilgnet", 300))
    assert snapshot_iteration(run.snapshot("ilgnet", 300)) == 300 and is_snapshot_name(run.snapshot("x", 1))
    assert not is_snapshot_name(tmp_path / "model.caffemodel")


def test_snapshots_in_iteration_order_and_traced_to_their_run(tmp_path):
    run = RunFolder(tmp_path / "a")
    assert run.snapshots("caffemodel") == [] and not run.is_run()
    run.snapshot_dir.mkdir(parents=True)
    for iteration in (100, 20, 3):                  # 100 sorts before 20 and 3 as text
        run.snapshot("v", iteration).write_bytes(b"")
        run.snapshot("v", iteration, "solverstate").write_bytes(b"")
    (run.snapshot_dir / "notes.txt").write_text("not a snapshot")
    assert [snapshot_iteration(p) for p in run.snapshots("caffemodel")] == [3, 20, 100]
    assert all(p.suffix == ".solverstate" for p in run.snapshots("solverstate"))
    assert RunFolder.of_snapshot(run.snapshot("v", 3)) is None         # no model record: not a run of `ilgnet train`
    run.model_json.write_text("{}")
    assert run.is_run() and RunFolder.of_snapshot(run.snapshot("v", 3)) == run


def test_a_record_that_is_not_a_run_record_is_refused(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(MissingFile):
        run.read_record()
    run.model_json.write_text("[1, 2]")
    with pytest.raises(BadInput, match="not a JSON object"):
        run.read_record()
    run.model_json.write_text('{"variant": "no-such-net"}')
    with pytest.raises(BadInput, match="model.json"):
        run.read_record()
