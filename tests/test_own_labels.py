"""`ilgnet split labels`: your own photos from a CSV, checked row by row and photo by photo; then, on 60 labelled
photos, `ilgnet lmdb`, `ilgnet train --max-iter 20` from a model's weights, `ilgnet test` (with SRCC and PLCC of
the scores) and `ilgnet predict`, end to end on the real Caffe."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from caffe_data import SMALL
from ilgnet.cli import main
from ilgnet.data.ava import read_list_file
from ilgnet.data.synthetic import generate

pytest_plugins = ["caffe_data"]


@pytest.fixture
def album(tmp_path):
    """60 synthetic photos whose quality follows their mean vote, a CSV of path,score, one photo cut short and one
    missing one listed too."""
    folder = tmp_path / "album"
    rows = generate(folder, n_images=60, seed=4, long_sides=(240, 300))
    whole = (folder / "images" / f"{rows.image_id[0]}.jpg").read_bytes()
    (folder / "images" / "broken.jpg").write_bytes(whole[:len(whole) // 2])
    lines = ["path,score", *(f"images/{i}.jpg,{m:.4f}" for i, m in zip(rows.image_id, rows["mean"])),
             "images/broken.jpg,4.5", "images/gone.jpg,6.0"]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("rows, message", [
    ("path,label\na.jpg,2\n", "ratings.csv:2: label is 0 (low) or 1 (high), not '2'"),
    ("path,score\na.jpg,high\n", "ratings.csv:2: score is not a finite number: 'high'"),
    ("path,label\na.jpg,1\n\n./a.jpg,0\n", "ratings.csv:4: ./a.jpg is listed already on line 2"),
    ("file,label\na.jpg,1\n", "ratings.csv:1: expected a header with the columns path and label"),
])
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, capsys, rows, message):
    (tmp_path / "ratings.csv").write_text(rows)
    assert main(["split", "labels", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_scores_need_a_rule_and_the_top_bottom_rule_keeps_the_ends(album, tmp_path, capsys):
    csv = album / "ratings.csv"
    with pytest.raises(SystemExit):
        main(["split", "labels", str(csv), "--out", str(tmp_path / "none")])
    assert "give --threshold T" in capsys.readouterr().err
    assert main(["split", "labels", str(csv), "--top-bottom", "10", "--out", str(tmp_path / "ends")]) == 0
    train, val = (read_list_file(tmp_path / "ends" / f"{name}.txt") for name in ("train", "val"))
    assert len(train) + len(val) == 12                      # 6 from each end of the 60 usable photos
    scores = pd.read_csv(csv).set_index("path")["score"]
    kept = pd.concat([train, val])
    low = scores[kept.loc[kept["label"] == 0, "filename"]]
    high = scores[kept.loc[kept["label"] == 1, "filename"]]
    usable = scores.drop(["images/broken.jpg", "images/gone.jpg"]).sort_values()
    assert sorted(low) == sorted(usable[:6]) and sorted(high) == sorted(usable[-6:])


def test_labels_lmdb_train_test_predict_end_to_end(album, tmp_path, small_caffemodel, capsys):
    data = tmp_path / "mine"
    assert main(["split", "labels", str(album / "ratings.csv"), "--threshold", "5", "--out", str(data)]) == 0
    out, err = capsys.readouterr()
    assert "2 of the 62 photos" in err and f"next: ilgnet lmdb --split {data} --images {album}" in out
    unusable = (data / "unusable.txt").read_text().splitlines()
    assert [line.split("\t")[2] for line in unusable] == ["truncated JPEG (no end-of-image marker)", "missing file"]
    assert unusable[0].startswith(f"{album / 'ratings.csv'}:62\t")
    assert json.loads((data / "split.json").read_text())["usable_photos"] == 60
    assert len(read_list_file(data / "val.txt")) == 12 and len(read_list_file(data / "train.txt")) == 48

    assert main(["lmdb", "--split", str(data), "--images", str(album), "--jobs", "2"]) == 0
    runs = tmp_path / "runs"
    assert main(["train", "--variant", SMALL, "--profile", "ava2", "--data", str(data), "--runs", str(runs),
                 "--name", "mine", "--cpu", "--max-iter", "20", "--train-batch", "4", "--val-batch", "4",
                 "--display", "5", "--weights", str(small_caffemodel)]) == 0
    capsys.readouterr()
    assert main(["test", "--weights", str(runs / "mine"), "--data", str(data), "--batch", "4",
                 "--json", str(tmp_path / "test.json")]) == 0
    report = capsys.readouterr().out
    result = json.loads((tmp_path / "test.json").read_text())
    assert result["images"] == 12 and result["correlations"]["images"] == 12
    assert -1 <= result["correlations"]["srcc"] <= 1 and "| SRCC of p_high against the mean score (12 images)" in report
    photos = [str(album / name) for name in read_list_file(data / "val.txt")["filename"][:3]]
    assert main(["predict", *photos, "--model", str(runs / "mine"), "--out", str(tmp_path / "scores.csv"),
                 "--quiet"]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 3 and scores["p_high"].between(0, 1).all()


def test_train_takes_a_registry_model_by_name_from_the_models_folder(tmp_path, capsys):
    assert main(["train", "--profile", "ava2", "--data", str(tmp_path), "--weights", "ilgnet-ava2", "--models",
                 str(tmp_path / "models"), "--cpu"]) == 1
    missing = tmp_path / "models" / "ILGnet-AVA2.caffemodel"
    assert capsys.readouterr().err == (f"ilgnet train: error: {missing} does not exist; run `ilgnet weights fetch "
                                       f"ilgnet-ava2 --dest {tmp_path / 'models'}` first\n")
