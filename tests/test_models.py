"""What a model is (ilgnet.zoo.models): a run folder's model.json resolved to its caffemodel, variant, mean and
training list; a damaged model.json is one line naming it; and Scorer.from_model scoring a run with the opencv
backend. No Caffe: the run folder is made as `ilgnet train` leaves it, with a random caffemodel of the small variant."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile
from ilgnet.scoring.scorer import Scorer
from ilgnet.zoo.models import resolve_model, run_model
from ilgnet.zoo.runfolder import RunFolder


@pytest.fixture
def run(stand_in, tmp_path) -> Path:
    """runs/small as `ilgnet train` leaves it: model.json with the mean and training list copied beside it, and two
    snapshots (iterations 10 and 20, the newer one the stand-in's weights)."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(stand_in["mean"], data / "mean.binaryproto")
    (data / "train.txt").write_text("1.jpg 0\n2.jpg 1\n")
    (data / "split.json").write_text('{"partition": "ava2", "seed": 1, "train": {"images": 2}}\n')
    run_dir = tmp_path / "runs" / "small"
    (run_dir / "snapshots").mkdir(parents=True)
    RunFolder(run_dir).write_record(variant=SMALL, profile="ava2", data=DataFolder(data), crop=227, input_scale=1)
    (run_dir / "snapshots" / "small_iter_10.caffemodel").write_bytes(b"older")
    shutil.copy(stand_in["weights"], run_dir / "snapshots" / "small_iter_20.caffemodel")
    return run_dir


def test_a_run_folder_and_a_snapshot_in_it_resolve_to_its_identity(run):
    model = resolve_model(run)
    assert model == run_model(run)
    assert (model.weights, model.variant, model.mean, model.train_list, model.name) == (
        run / "snapshots" / "small_iter_20.caffemodel", SMALL, run / "mean.binaryproto", run / "train.txt", str(run))
    older = resolve_model(run / "snapshots" / "small_iter_10.caffemodel")
    assert older.weights.name == "small_iter_10.caffemodel" and older.mean == model.mean
    assert resolve_model(run, variant="ilgnet").variant == "ilgnet"
    assert resolve_model(run / "model.json") == model                     # the run's record stands for the run
    assert json.loads((run / "model.json").read_text())["partition"] == {"partition": "ava2", "seed": 1}


def damage(run: Path, change) -> Path:
    """Writes `change` (a text) as the run's model.json, or applies it (a function) to the record there."""
    path = run / "model.json"
    if isinstance(change, str):
        path.write_text(change, encoding="latin-1")
    else:
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("change, message", [
    ('{"variant": "ilgnet", "mean": ', "@:1: not JSON (Expecting value at column 31)"),
    ("", "@:1: not JSON (Expecting value at column 1)"),
    ('{"variant": "ilgnet", "mean": "m', "@:1: not JSON (Unterminated string starting at column 31)"),
    ('{"variant": "ilgnet",\n "profile": "\xe9"}', "@:2: not UTF-8 text (byte 0xe9)"),
    ('["ilgnet"]', "@: not a JSON object, so not the model record `ilgnet train` writes"),
    (lambda r: r.pop("variant"), '@ names no net variant (a "variant" string, e.g. "ilgnet")'),
    (lambda r: r.update(variant=3), '@ names no net variant (a "variant" string, e.g. "ilgnet")'),
    (lambda r: r.update(variant="ilgnet-v9"), "@: unknown net variant 'ilgnet-v9'; known: ilgnet, ilgnet-bn"),
    (lambda r: r.update(mean="mean.binaryproto"), '@: "mean" must be null or name a file in # and its sha256'),
    (lambda r: r["train_list"].pop("sha256"), '@: "train_list" must be null or name a file in # and its sha256'),
])
def test_a_damaged_model_json_is_one_line_naming_it(run, change, message):
    path = damage(run, change)
    expected = message.replace("@", str(path)).replace("#", str(run))
    for spec in (run, run / "snapshots" / "small_iter_20.caffemodel"):
        with pytest.raises(BadInput) as raised:
            resolve_model(spec)
        assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)


def test_a_missing_or_changed_mean_is_named_with_model_json(run):
    (run / "mean.binaryproto").write_bytes(b"changed")
    with pytest.raises(BadInput, match=f"^{run / 'mean.binaryproto'} changed after the run began: its sha256 is not "
                                       f"the one model.json records$"):
        run_model(run)
    (run / "mean.binaryproto").unlink()
    with pytest.raises(MissingFile) as raised:
        run_model(run)
    assert str(raised.value) == f"{run / 'mean.binaryproto'} does not exist ({run / 'model.json'} names it)"


def test_a_run_without_snapshots_or_model_json(run, tmp_path):
    for snapshot in (run / "snapshots").iterdir():
        snapshot.unlink()
    with pytest.raises(MissingFile, match=r"has no snapshot yet \(.*snapshots is empty\)$"):
        resolve_model(run)
    (run / "model.json").unlink()
    with pytest.raises(BadInput, match="is a folder without model.json: neither a run of `ilgnet train` nor a "):
        resolve_model(run)


@pytest.mark.parametrize("command", ["predict", "test"])
def test_the_commands_print_a_damaged_model_json_in_one_line(run, stand_in, command, capsys):
    path = damage(run, '{"variant": "ilgnet",')
    where = ([str(stand_in["photos"]), "--model"] if command == "predict" else
             ["--data", str(run.parent), "--weights"])
    assert ilgnet([command, *where, str(run)]) == 1
    assert capsys.readouterr().err == (f"ilgnet {command}: error: {path}:1: not JSON (Expecting property name "
                                       f"enclosed in double quotes at column 22)\n")
    damage(run, '{"profile": "ava2"}')
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(run)]) == 1
    assert capsys.readouterr().err == f'ilgnet predict: error: {path} names no net variant (a "variant" string, ' \
                                      f'e.g. "ilgnet")\n'


def test_scorer_from_a_run_with_the_opencv_backend(run, stand_in):
    photos = sorted(p for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")
    scorer = Scorer.from_model(run, backend="opencv", batch_size=4)
    assert (scorer.weights, scorer.crop) == (run / "snapshots" / "small_iter_20.caffemodel", 227)
    table, skipped = scorer.score_files(photos)
    assert not skipped and list(table.path) == [str(p) for p in photos]
    assert table.p_high.between(0, 1).all() and np.ptp(table.p_high) > 0.01
    direct, _ = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv",
                       batch_size=4).score_files(photos)
    np.testing.assert_allclose(table.p_high, direct.p_high, atol=1e-6)


def test_scorer_from_a_plain_caffemodel_needs_its_mean(stand_in):
    with pytest.raises(BadInput, match=f"^{stand_in['weights']}: the mean image it was trained with is needed "):
        Scorer.from_model(stand_in["weights"], variant=SMALL, backend="opencv")
    scorer = Scorer.from_model(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv")
    assert scorer.crop == 227
