"""The report beside accuracy: SRCC and PLCC of p_high in each run's evaluation.json and in the report's tables,
AVA's official split in a section of its own, and test images in a model's training list flagged with their count.
With real Caffe on the CPU: one toy run of googlenet-bn-third on a synthetic AVA split by `ilgnet split official`
with lists that share 4 ids."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.data.synthetic import generate
from ilgnet.evaluation.metrics import correlations
from ilgnet.paper.integrity import EVALUATION_JSON, SCORES_CSV

SHARED = 4              # ids of the test list that are in the training list too


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """DIR/ava1: `ilgnet split official` + `ilgnet lmdb` of a 40-photo synthetic AVA, 24 ids to train on and 16 to
    test on, 4 of those then added to the training list by hand."""
    root = tmp_path_factory.mktemp("official")
    rows = generate(root / "AVA", n_images=40, seed=3, long_sides=(64, 96), jobs=1)
    ids = [int(i) for i in rows["image_id"]]
    lists = root / "AVA" / "aesthetics_image_lists"
    lists.mkdir()
    (lists / "generic_ls_train.jpgl").write_text("".join(f"{i}\n" for i in ids[:24]))
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in ids[24:40]))
    data = root / "data"
    assert ilgnet(["split", "official", "--ava-txt", str(root / "AVA" / "AVA.txt"), "--out",
                   str(data / "ava1")]) == 0
    train_list = data / "ava1" / "train.txt"
    val_lines = (data / "ava1" / "val.txt").read_text().splitlines(keepends=True)
    train_list.write_text(train_list.read_text() + "".join(val_lines[:SHARED]))
    assert ilgnet(["lmdb", "--split", str(data / "ava1"), "--images", str(root / "AVA" / "images"), "--jobs",
                   "1"]) == 0
    return data


def test_the_report_shows_srcc_plcc_and_flags_test_images_trained_on(caffe, official, tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'runs = "{tmp_path / "runs"}"\ndata = "{official}"\nmodels = "{tmp_path / "models"}"\n'
                    f'snapshots = "none"\n[train]\nmax_iter = 2\ntrain_batch = 2\ndisplay = 1\ntest_interval = 2\n'
                    f'snapshot = 0\n[[run]]\nvariant = "{SMALL}"\nprofile = "ava1-delta0"\nseeds = [1]\n'
                    f'tables = ["table2"]\n')
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    run = tmp_path / "runs" / f"{SMALL}-ava1-delta0-seed1"
    evaluation = json.loads((run / EVALUATION_JSON).read_text())
    # evaluate_run adds what `ilgnet test` adds: SRCC and PLCC of p_high against the val means, by hand here
    scores = pd.read_csv(run / SCORES_CSV)
    means = pd.read_csv(official / "ava1" / "val_means.csv").set_index("filename")["mean"]
    by_hand = correlations(scores["p_1"], [means[key.split("_", 1)[1]] for key in scores["key"]])
    assert evaluation["correlations"]["images"] == 16 == by_hand["images"]
    assert np.isclose(evaluation["correlations"]["srcc"], by_hand["srcc"])
    assert np.isclose(evaluation["correlations"]["plcc"], by_hand["plcc"])
    assert evaluation["train_overlap"]["val_list"] == {"path": str(official / "ava1" / "val.txt"), "images": 16,
                                                      "in_training": SHARED}

    out = tmp_path / "report"
    assert ilgnet(["report", str(tmp_path / "runs"), "--out", str(out), "--time-iterations", "1",
                   "--time-batch", "1"]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    cell = next(c for c in report["tables"]["table2"] if c["variant"] == SMALL and c["n"])
    assert cell["srcc"][0] == evaluation["correlations"]["srcc"] and cell["srcc"][1] is None
    assert cell["plcc"][0] == evaluation["correlations"]["plcc"]
    assert (cell["in_training"], cell["test_images"]) == (SHARED, 16)
    text = (out / "REPORT.md").read_text()
    shown = f"{evaluation['correlations']['srcc']:.4f} / {evaluation['correlations']['plcc']:.4f}"
    row = next(line for line in text.splitlines() if line.startswith("| 1/3 GoogLeNetV1-BN | AVA1, delta 0"))
    assert f"| {shown} |" in row and f"**trained on {SHARED} of the 16 test images**" in row
    assert "ILGNet predicts a class (high or low), not a score distribution" in text
    section = text[text.index("## AVA's official benchmark"):]
    official_row = next(line for line in section.splitlines() if line.startswith(f"| [{run.name}]"))
    assert f"| {shown} |" in official_row and f"**{SHARED} of 16**" in official_row
    assert f"| {100 * evaluation['accuracy']:.2f} % |" in official_row
