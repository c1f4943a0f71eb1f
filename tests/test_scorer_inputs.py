"""The Python API's inputs (bug case 18's kind): each call a notebook makes is scored right or refused with a
TypeError/ValueError naming the argument, never scored silently wrong; and two processes making the same cached
ONNX export at once (case 16's kind) both get the one file. The net runs in OpenCV and onnxruntime with a stand-in
caffemodel of random weights (no Caffe is the subject here)."""
from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SMALL
from PIL import Image

from ilgnet import nets
from ilgnet.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def scorer(stand_in) -> Scorer:
    return Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv", jobs=0)


@pytest.fixture(scope="module")
def photo(stand_in) -> Path:
    return sorted(p for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")[0]


def test_grey_bgra_and_pillow_images_are_scored_as_their_bgr_photo(scorer, photo):
    bgr = cv2.imread(str(photo))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    [reference] = scorer.score_images([bgr])
    from_file, _ = scorer.score_files([photo])
    assert from_file.p_high[0] == pytest.approx(reference, abs=1e-6)
    assert scorer.score_images([cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)])[0] == pytest.approx(reference, abs=1e-6)
    as_bgr = scorer.score_images([cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)])[0]
    assert scorer.score_images([grey])[0] == pytest.approx(as_bgr, abs=1e-6)
    assert scorer.score_images([grey[:, :, None]])[0] == pytest.approx(as_bgr, abs=1e-6)
    with Image.open(photo) as pil:
        assert scorer.score_images([pil])[0] == pytest.approx(reference, abs=0.02)   # Pillow's JPEG decoder
        assert scorer.score_images([pil.convert("RGBA")])[0] == pytest.approx(scorer.score_images([pil])[0],
                                                                                abs=1e-6)
    assert scorer.score_images(np.stack([bgr, bgr]))[1] == pytest.approx(reference, abs=1e-6)   # N x H x W x 3


@pytest.mark.parametrize("call, error, message", [
    (lambda s, bgr, path: s.score_images([bgr.astype(np.float32) / 255]), TypeError,
     "images[0] is a float32 array: give BGR uint8 (0..255) as cv2.imread returns it (for values in 0..1: "),
    (lambda s, bgr, path: s.score_images([bgr.astype(np.float64)]), TypeError, "images[0] is a float64 array"),
    (lambda s, bgr, path: s.score_images([bgr, bgr.astype(np.uint16)]), TypeError, "images[1] is a uint16 array"),
    (lambda s, bgr, path: s.score_images(bgr), TypeError, "images is one image of shape"),
    (lambda s, bgr, path: s.score_images([str(path)]), TypeError, "images[0] is a path"),
    (lambda s, bgr, path: s.score_images([bgr[:, :, :2]]), ValueError, "images[0] has shape"),
    (lambda s, bgr, path: s.score_images([bgr[:0]]), ValueError, "images[0] is empty"),
    (lambda s, bgr, path: s.score_files(str(path)), TypeError, "paths is one path ("),
    (lambda s, bgr, path: s.score_files(path), TypeError, "paths is one path ("),
    (lambda s, bgr, path: s.score_files([path, 3]), TypeError, "paths[1] is a int, not a path"),
])
def test_what_cannot_be_scored_is_refused_naming_the_argument(scorer, photo, call, error, message):
    with pytest.raises(error) as raised:
        call(scorer, cv2.imread(str(photo)), photo)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_path_among_good_ones_is_skipped_and_the_rest_scored(scorer, photo, tmp_path):
    table, skipped = scorer.score_files([photo, tmp_path / "missing.jpg"])
    assert list(table.path) == [str(photo)] and [s.reason for s in skipped] == ["missing file"]


def _export(weights: str, variant: str, queue, barrier) -> None:
    from ilgnet.export.cache import cached_export

    net = nets.deploy(variant)
    barrier.wait(timeout=120)                           # both start exporting at the same moment
    queue.put(str(cached_export(net, Path(weights), variant=variant)))


@pytest.mark.slow
def test_two_processes_making_the_same_export_both_get_it(stand_in, tmp_path):
    weights = tmp_path / "model.caffemodel"
    shutil.copy(stand_in["other"], weights)             # googlenet-bn-two-thirds: an export long enough to overlap
    context = multiprocessing.get_context("spawn")
    queue, barrier = context.Queue(), context.Barrier(2)
    workers = [context.Process(target=_export, args=(str(weights), "googlenet-bn-two-thirds", queue, barrier))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0]
    paths = {queue.get(timeout=5) for _ in workers}
    [exported] = paths
    assert Path(exported).parent == tmp_path and Path(exported).suffix == ".onnx"
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
    scored = Scorer(exported, mean=stand_in["mean"], variant="googlenet-bn-two-thirds", backend="onnxruntime", jobs=0)
    assert np.isfinite(scored.score_images([cv2.imread(str(next(stand_in["photos"].glob("*.jpg"))))])).all()


def test_bug_case_18_each_notebook_call_is_scored_or_refused(bugcase, stand_in, tmp_path):
    case = bugcase("18-scorer-api-misuse")
    exported = tmp_path / "g3.onnx"
    from ilgnet.cli import main as ilgnet

    assert ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                   "--out", str(exported)]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next(stand_in["photos"].glob("*.jpg")), photos / "107446.jpg")
    result = subprocess.run([sys.executable, str(case / "scorer_api.py"), str(exported), str(photos)],
                            capture_output=True, text=True, timeout=300, check=False)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line and line[0] == "s")
    assert result.returncode == 0, result.stderr[-2000:]
    scored = float(lines["score_images([bgr])"].split("[")[1].split("]")[0])
    for call in ("score_images([PIL.Image])", "score_images([gray 2-D])", "score_images([BGRA])"):
        assert lines[call].startswith("returned array(["), lines[call]
    assert float(lines["score_images([BGRA])"].split("[")[1].split("]")[0]) == pytest.approx(scored, abs=1e-6)
    assert lines["score_images([float 0..1])"].startswith("TypeError: images[0] is a float32 array")
    assert lines["score_images(bgr) (one array, not a list)"].startswith("TypeError: images is one image")
    assert lines["score_files(path string, not a list)"].startswith("TypeError: paths is one path")
    assert "missing.jpg', reason='missing file')]" in result.stdout         # the multi-line table's last line


def test_weights_given_another_variant_name_the_variant_they_are_of(stand_in, tmp_path, capsys):
    """A run's snapshot scored with a --variant its model.json contradicts: the fit's refusal says which variant
    the run records and what to give; a caffemodel of unknown origin keeps the plain refusal."""
    from caffe_data import run_folder

    from ilgnet.cli import main as ilgnet
    from ilgnet.errors import BadInput

    run = run_folder(tmp_path, stand_in["weights"], stand_in["mean"], SMALL)
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(run), "--variant", "googlenet-bn-two-thirds",
                   "--backend", "opencv", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit the googlenet-bn-two-thirds" in err, err
    assert err.startswith("ilgnet predict: error: argument --variant: ")
    assert err.endswith(f". These weights are of the {SMALL} net ({run / 'model.json'} says so): give variant "
                        f"{SMALL}, or none\n")
    with pytest.raises(BadInput) as refused:                  # nothing records what the copy was trained as
        Scorer(shutil.copy(stand_in["weights"], tmp_path / "copy.caffemodel"), mean=stand_in["mean"],
               variant="googlenet-bn-two-thirds", backend="opencv", jobs=0)
    assert "does not fit" in str(refused.value) and "These weights are of" not in str(refused.value)


def test_a_published_models_file_names_its_variant_from_the_registry(stand_in, tmp_path, monkeypatch):
    """A caffemodel with no run around it, of a registry entry's name and exact size: the registry's `fits_variant`
    is named (a registry entry standing for ilgnet-ava2, whose 604 MB file cannot be fetched here)."""
    from ilgnet.errors import BadInput
    from ilgnet.zoo import models
    from ilgnet.zoo.registry import Weights

    weights = Path(shutil.copy(stand_in["weights"], tmp_path / "ILGnet-AVA2.caffemodel"))
    entry = Weights(name="ilgnet-ava2", file=weights.name, url="http://unused.invalid/", size=weights.stat().st_size,
                    fits_variant=SMALL)
    monkeypatch.setattr(models, "load_registry", lambda: {entry.name: entry})
    assert models.known_variant(weights) == (SMALL, "the registry's ilgnet-ava2")
    with pytest.raises(BadInput, match=f"These weights are of the {SMALL} net \\(the registry's ilgnet-ava2 says so"):
        Scorer(weights, mean=stand_in["mean"], variant="googlenet-bn-two-thirds", backend="opencv", jobs=0)
    weights.write_bytes(weights.read_bytes() + b"\0")                 # another size: not that file
    assert models.known_variant(weights) is None
