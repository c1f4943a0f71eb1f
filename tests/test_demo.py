"""`ilgnet demo` with real Caffe, in a reduced configuration: every stage runs and its outputs agree with each other.

The full `make demo` (3,000 rows, 60 iterations at batch 16) trains long enough to beat the majority baseline
clearly; a few iterations here do not, so this test checks the pipeline, not the accuracy. The synthetic data's
learnability is checked on its own, without a net: the signal the photos carry separates AVA2's two classes.
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import onnxruntime
import pandas as pd
import pytest

from ilgnet.cli import main as ilgnet
from ilgnet.commands import demo
from ilgnet.commands.demo import MARKER, run_demo
from ilgnet.data.ava import read_ava_txt
from ilgnet import nets
from ilgnet.data.images import decode_image
from ilgnet.data.synthetic import generate
from ilgnet.scoring.scorer import Scorer
from ilgnet.export.converter import net_to_onnx

TRAINED_RELATIVE = 1e-5     # largest logit difference, ONNX against Caffe, relative to the largest logit


def sharpness(path) -> float:
    """Variance of the Laplacian of the 256x256 greyscale photo, a blur measure, taken after a light blur that
    removes the pixel noise low-quality photos also carry."""
    grey = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (256, 256)), cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 1.5), cv2.CV_64F).var())


@pytest.mark.slow
def test_synthetic_ava_is_valid_ava_and_learnable(tmp_path):
    rows = generate(tmp_path, n_images=300, seed=2)
    meta = read_ava_txt(tmp_path / "AVA.txt")                   # the toolkit's own AVA.txt validation
    assert len(meta) == 300 and meta["image_id"].is_unique
    np.testing.assert_allclose(meta["mean"], rows["mean"])
    assert meta["votes"].between(80, 300).all() and 4.6 < meta["mean"].mean() < 6.2
    assert all((tmp_path / "images" / f"{i}.jpg").is_file() for i in meta["image_id"])
    # AVA2's ends: the bottom and top 10 % by mean. One hand-made feature, sharpness, already separates them.
    order = meta.sort_values("mean")
    low, high = order.head(30), order.tail(30)
    low_sharp = [sharpness(tmp_path / "images" / f"{i}.jpg") for i in low["image_id"]]
    high_sharp = [sharpness(tmp_path / "images" / f"{i}.jpg") for i in high["image_id"]]
    threshold = np.median(low_sharp + high_sharp)
    accuracy = (np.sum(np.array(low_sharp) < threshold) + np.sum(np.array(high_sharp) >= threshold)) / 60
    assert accuracy >= 0.9
    # Same seed, same dataset.
    again = generate(tmp_path / "again", n_images=300, seed=2)
    assert again[["image_id", "mean"]].equals(rows[["image_id", "mean"]])
    first = sorted((tmp_path / "images").iterdir())[0]
    assert (tmp_path / "again" / "images" / first.name).read_bytes() == first.read_bytes()


def test_reduced_demo_runs_every_stage(caffe, tmp_path, monkeypatch):
    work = tmp_path / "demo"
    summary = run_demo(work, images=400, iterations=4, batch=8, held_out=6, seed=3, progress=False)
    assert json.loads((work / "demo.json").read_text()) == summary
    split = json.loads((work / "data" / "split.json").read_text())
    # AVA2 rule on 400 rows: 40 from each end, halved into train and val.
    assert split["per_end"] == 40 and split["train"]["images"] == split["val"]["images"] == 40
    assert summary["lmdb_records"] == {"train": 40, "val": 40}
    test = json.loads((work / "test.json").read_text())
    assert test["images"] == 40 and test["class_counts"] == split["val"]["labels"]
    assert summary["majority_baseline"] == max(split["val"]["labels"].values()) / 40
    assert test["correct"] == sum(test["confusion_matrix"]["counts"][k][k] for k in range(2))
    assert summary["accuracy"] == test["correct"] / 40
    log = pd.read_csv(summary["train_log"])
    assert log["iteration"].max() == 4 and log["loss"].notna().any()
    assert (work / "runs" / "ilgnet-demo" / "curves.png").stat().st_size > 10_000
    predictions = pd.read_csv(work / "predictions.csv")
    val_ids = set(pd.read_csv(work / "data" / "val.txt", sep=" ", header=None)[0])
    assert len(predictions) == 6 and {p.split("/")[-1] for p in predictions.path} <= val_ids
    assert predictions.p_high.between(0, 1).all() and summary["skipped"] == 0
    gallery = (work / "report.html").read_text()
    assert summary["gallery"] == str(work / "report.html") and gallery.count('class="card ') == 6
    assert set(summary["seconds"]) == {"generate", "split", "lmdb", "train", "test", "predict", "total"}
    # The command the demo ends with scores one's own photos with the run it trained, as given.
    command = summary["score_your_photos"].replace("YOUR_PHOTOS", str(work / "held_out")).split()
    assert command[:2] == ["ilgnet", "predict"] and f"--model {work / 'runs' / 'ilgnet-demo'}" in " ".join(command)
    monkeypatch.chdir(tmp_path)
    assert ilgnet([*command[1:], "--quiet"]) == 0
    assert len(pd.read_csv(tmp_path / "my-photos.csv")) == 6 and (tmp_path / "my-photos.html").is_file()

    # Trained weights, where small random ones would hide summation-order differences: the run's net in Caffe and
    # exported to ONNX, on the held-out photos. Four iterations from scratch saturate the softmax, so the logits
    # (the softmax's input) are compared, relative to their size (tolerances in docs/SCORING.md).
    run = Scorer.from_model(work / "runs" / "ilgnet-demo", backend="caffe", jobs=0)
    batch = np.concatenate([run.preprocess(decode_image(path, 256)) for path in predictions.path])
    deploy = nets.deploy("ilgnet")
    logits = next(layer.bottom[0] for layer in deploy.layer if layer.type == "Softmax")
    caffe_net = run.net.caffe_net
    caffe_net.blobs["data"].reshape(*batch.shape)
    caffe_net.reshape()
    caffe_net.blobs["data"].data[...] = batch
    caffe_net.forward()
    expected = caffe_net.blobs[logits].data.copy()
    exported = net_to_onnx(deploy, run.weights, output=logits)
    session = onnxruntime.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"data": batch})[0]
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert np.abs(expected).max() > 1 and error < TRAINED_RELATIVE, (error, expected)


def test_demo_leaves_foreign_folders_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("someone's files\n")
    with pytest.raises(SystemExit) as exit_:
        ilgnet(["demo", "--work", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"ilgnet demo: error: argument --work: {tmp_path} exists and was not made by `ilgnet demo`" in \
        capsys.readouterr().err
    assert (tmp_path / "notes.txt").exists() and not (tmp_path / MARKER).exists()


def test_the_closing_command_names_ilgnet_as_the_shell_can_type_it(tmp_path, monkeypatch):
    """`make demo` runs .venv/bin/ilgnet; a shell without the venv activated finds no `ilgnet` on PATH."""
    script = tmp_path / ".venv" / "bin" / "ilgnet"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo.typed_ilgnet() == ".venv/bin/ilgnet"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert demo.typed_ilgnet() == "ilgnet"

