"""`ilgnet test`: every val record scored exactly once, checked record by record against Caffe's own
`caffe test` (its Data layer's TEST transform, its Accuracy layer), plus the metrics and the report."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from caffe_data import SMALL_VAL_LABELS as VAL_LABELS
from caffe_data import published_stand_in
from conftest import SMALL

from ilgnet.bvlc.tools import run_tool
from ilgnet.cli import main
from ilgnet.evaluation.metrics import metrics, roc_auc
from ilgnet.data.folder import DataFolder
from ilgnet.evaluation import evaluate
from ilgnet.evaluation.in_process import score_lmdb
from ilgnet.evaluation.reports import markdown_report
from ilgnet.nets import train_val
from ilgnet.zoo.models import Model

pytest_plugins = ["caffe_data"]     # small_dataset and the stand-in models, shared across test files


def caffe_test_per_record(data, model, tmp_path):
    """`caffe test` at batch 1 for exactly len(VAL_LABELS) iterations, on the SMALL variant's train_val with a
    Softmax output added: per record, Caffe's own probabilities and top-1 hit."""
    net = train_val(SMALL, train_lmdb=data / "train_lmdb", val_lmdb=data / "val_lmdb",
                    mean_file=data / "mean.binaryproto", train_batch=1, val_batch=1)
    classifier = next(layer for layer in net.layer if layer.type == "Accuracy").bottom[0]
    net.layer.add(name="prob", type="Softmax", bottom=[classifier], top=["prob"])
    (tmp_path / "test.prototxt").write_text(str(net))
    out = run_tool("caffe", ["test", "-model", tmp_path / "test.prototxt", "-weights", model,
                             "-iterations", len(VAL_LABELS)]).stdout
    probs = [float(v) for v in re.findall(r"\] Batch \d+, prob = (\S+)", out)]
    hits = [float(v) for v in re.findall(r"\] Batch \d+, loss1/top-1 = (\S+)", out)]
    final = float(re.search(r"caffe\.cpp:\d+\] loss1/top-1 = (\S+)", out)[1])
    return np.array(probs).reshape(-1, 2), np.array(hits), final


def test_every_record_once_matching_caffe_test(small_dataset, small_caffemodel, tmp_path):
    val, mean = small_dataset / "val_lmdb", small_dataset / "mean.binaryproto"
    frame = score_lmdb(Model(small_caffemodel, SMALL, mean), val, batch=2, progress=False)
    assert frame["key"].tolist() == [f"{i:08d}_{i}" for i in range(len(VAL_LABELS))]
    assert frame["label"].tolist() == VAL_LABELS

    assert set(frame["predicted"]) == {0, 1}       # a model that tells the records apart (see the fixture)
    caffe_probs, caffe_hits, caffe_accuracy = caffe_test_per_record(small_dataset, small_caffemodel, tmp_path)
    np.testing.assert_allclose(frame[["p_0", "p_1"]].to_numpy(), caffe_probs, rtol=1e-4, atol=1e-6)
    assert (frame["predicted"] == frame["label"]).astype(float).tolist() == caffe_hits.tolist()

    result = evaluate(Model(small_caffemodel, SMALL, None), DataFolder(small_dataset), batch=2, progress=False)
    assert (result.images, result.summary["forward_passes"]) == (5, 3)
    assert result.summary["correct"] == int(caffe_hits.sum())
    assert result.accuracy == pytest.approx(caffe_accuracy)
    pd.testing.assert_frame_equal(result.frame, frame)


def test_cli_writes_json_markdown_and_per_image_csv(small_dataset, small_caffemodel, tmp_path, capsys):
    out = {name: tmp_path / name for name in ("m.json", "m.md", "per_image.csv")}
    assert main(["test", "--weights", str(small_caffemodel), "--variant", SMALL, "--data", str(small_dataset),
                 "--batch", "3",
                 "--json", str(out["m.json"]), "--markdown", str(out["m.md"]),
                 "--per-image", str(out["per_image.csv"])]) == 0
    result = json.loads(out["m.json"].read_text())
    per_image = pd.read_csv(out["per_image.csv"])
    assert len(per_image) == result["images"] == 5 and result["forward_passes"] == 2
    assert result["correct"] == int((per_image["predicted"] == per_image["label"]).sum())
    assert result["paper"]["protocol"] == "ava2"                      # from split.json
    table = out["m.md"].read_text()
    assert table == capsys.readouterr().out
    assert "| metric | this run | paper, Table 3 (AVA2, ILGNet-Inc.V1) |" in table
    assert "| accuracy | " in table and "| 85.50 % |" in table
    assert "50 caffe-test iterations x batch 48" in table


def test_metrics_on_a_skewed_set():
    """8 high, 2 low; the net calls everything high except one low and one high image."""
    labels = [1] * 8 + [0] * 2
    predicted = [1] * 7 + [0] + [0, 1]
    p_1 = [0.9, 0.8, 0.8, 0.7, 0.95, 0.6, 0.55, 0.3, 0.2, 0.65]
    frame = pd.DataFrame({"key": map(str, range(10)), "label": labels, "predicted": predicted,
                          "p_0": [1 - p for p in p_1], "p_1": p_1})
    m = metrics(frame)
    assert (m["images"], m["correct"], m["accuracy"]) == (10, 8, 0.8)
    assert m["majority_baseline"] == {"class": 1, "accuracy": 0.8}    # as good as this net, by guessing "high"
    assert m["per_class_accuracy"] == {"0": 0.5, "1": 7 / 8}
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 7 / 8) / 2)
    assert m["confusion_matrix"]["counts"] == [[1, 1], [1, 7]]
    pairs = [(p, n) for p, label_p in zip(p_1, labels) if label_p == 1 for n, label_n in zip(p_1, labels)
             if label_n == 0]
    assert m["roc_auc"] == pytest.approx(sum((p > n) + 0.5 * (p == n) for p, n in pairs) / len(pairs))
    assert "| majority-class baseline | 80.00 % (always class 1) |" in markdown_report(m)


def test_roc_auc_counts_ties_half_and_needs_both_classes():
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([1, 1], [0.1, 0.9]) is None


def test_published_logs_replayed(shared_data, capsys):
    results = shared_data / "ilgnet-published" / "results"
    assert main(["test", "--replay", str(results / "AVA1_result.txt")]) == 0
    assert main(["test", "--replay", str(results / "AVA2_result.txt")]) == 0
    out = capsys.readouterr().out
    assert "50 iterations x batch 50 (Data layer batch_size) = 2,500 images" in out
    assert "loss1/top-1 = 0.8168 (81.68 %)" in out
    assert "50 iterations x batch 48 (Data layer batch_size) = 2,400 images" in out
    assert "loss1/top-1 = 0.8550 (85.50 %)" in out


def test_published_model_names_resolve_to_their_files_and_mean(small_dataset, ilgnet_caffemodel, shared_data,
                                                                tmp_path, capsys):
    """`--weights ilgnet-ava1` means models/ILGnet-AVA1.caffemodel scored with the published AVA1 mean, whose
    256x256 the records must match, as Caffe's Data layer demands."""
    args = ["test", "--weights", "ilgnet-ava1", "--data", str(small_dataset), "--models", str(tmp_path)]
    assert main(args) == 1
    assert f"run `ilgnet weights fetch ilgnet-ava1 --dest {tmp_path}` first" in capsys.readouterr().err
    published_stand_in(ilgnet_caffemodel, "ilgnet-ava1", tmp_path, shared_data)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == (f"ilgnet test: error: the mean image {tmp_path / 'AVA1_mean.binaryproto'} is 256x256, the records "
                   f"of {small_dataset / 'val_lmdb'} are 240x240: Caffe subtracts one from the other and needs them "
                   f"equal\n")


@pytest.fixture
def tiny_data(tmp_path):
    """A data folder as `ilgnet lmdb` leaves it, made without Caffe: 2 training and 2 val photos, 16 x 16."""
    from caffe_data import data_folder

    return data_folder(tmp_path, 2, 2)


@pytest.mark.parametrize("engine", ["pycaffe", "caffe"])
@pytest.mark.parametrize("name", ["nan.npy", "inf.binaryproto", "empty.npy", "text.npy", "objects.npy", "cut.npy"])
def test_a_bad_mean_file_is_named_before_any_scoring(stand_in, tiny_data, bad_means, name, engine, capsys):
    """The mean is refused as it is read (not blamed on the model once the net's outputs come out NaN)."""
    path, message = bad_means[name]
    assert main(["test", "--weights", str(stand_in["weights"]), "--variant", SMALL, "--data", str(tiny_data),
                 "--mean", str(path), "--engine", engine]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ilgnet test: error: {message}"), err


def test_caffe_test_needs_a_binaryproto_mean(stand_in, tiny_data, tmp_path, capsys):
    np.save(tmp_path / "mean.npy", np.full((3, 16, 16), 100, np.float32))
    for options in (["--engine", "caffe"], ["--paper-protocol", "--protocol", "ava2"]):
        assert main(["test", "--weights", str(stand_in["weights"]), "--variant", SMALL, "--data", str(tiny_data),
                     "--mean", str(tmp_path / "mean.npy"), *options]) == 1
        assert capsys.readouterr().err == (f"ilgnet test: error: {tmp_path / 'mean.npy'}: `caffe test` reads a mean "
                                           f"from a .binaryproto only (the pycaffe engine reads .npy too)\n")


def test_val_images_that_never_reached_the_lmdb_are_stated(small_caffemodel, tmp_path, capsys):
    """3 of the 5 val photos listed reach the LMDB: the table says so beside the scores of those 3, and the JSON
    keeps the counts; the outputs' folders are made once the scores are in."""
    from caffe_data import photo_files

    from ilgnet.data.lmdb_build import build_split

    names = photo_files(tmp_path / "images", 9, size=256)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[:4])))
    (data / "val.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[4:])))
    (data / "split.json").write_text('{"partition": "ava2"}\n')
    for name in names[4:6]:
        (tmp_path / "images" / name).unlink()
    build_split(data, tmp_path / "images", jobs=1, progress=False)
    result_file = tmp_path / "runs" / "x" / "test.json"
    assert main(["test", "--weights", str(small_caffemodel), "--variant", SMALL, "--data", str(data), "--batch",
                 "2", "--json", str(result_file)]) == 0
    table = capsys.readouterr().out
    assert "| images scored | 3 (every val record once) |" in table
    assert "| listed val images not in the LMDB | 2 of the 5 in val.txt | not reported |" in table
    assert (f"2 of the 5 images listed in {data / 'val.txt'} never reached the val LMDB (skipped.txt beside it "
            f"says why): the scores above leave them out.") in table
    result = json.loads(result_file.read_text())
    assert result["val_list"] == {"file": str(data / "val.txt"), "listed": 5, "not_in_lmdb": 2}
    assert result["images"] == 3


@pytest.mark.parametrize("engine", ["pycaffe", "caffe"])
def test_a_mean_of_another_size_is_refused_before_any_scoring(stand_in, tiny_data, tmp_path, engine, capsys):
    """Against the val LMDB's records (Caffe's Data layer aborts on a mismatch), and against the size the model was
    trained at (model.json's resize) even where the records match the mean."""
    from caffe_data import run_folder

    from ilgnet.bvlc.io import blobproto_bytes

    mean = tmp_path / "m20.binaryproto"
    mean.write_bytes(blobproto_bytes(np.full((3, 20, 20), 100, np.float32)))
    base = ["test", "--weights", str(stand_in["weights"]), "--variant", SMALL, "--data", str(tiny_data),
            "--engine", engine]
    assert main([*base, "--mean", str(mean)]) == 1
    assert capsys.readouterr().err == (f"ilgnet test: error: the mean image {mean} is 20x20, the records of "
                                       f"{tiny_data / 'val_lmdb'} are 16x16: Caffe subtracts one from the other and "
                                       f"needs them equal\n")
    run = run_folder(tmp_path, stand_in["weights"], tiny_data / "mean.binaryproto", SMALL)
    assert main(["test", "--weights", str(run), "--data", str(tiny_data), "--engine", engine]) == 1
    assert capsys.readouterr().err == (f"ilgnet test: error: the mean image {run / 'mean.binaryproto'} is 16x16, but "
                                       f"{run} was trained on photos resized to 256x256: give the mean of its training "
                                       f"data\n")
