"""AVA's official benchmark: `ilgnet split official` reading the manifest beside AVA.txt and writing the val
images' means; SRCC and PLCC of p_high against them checked against values computed by hand; the released AVA1
model's overlap with the official test list counted. On ../shared/data/ava's real rows and lists."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ilgnet.cli import main
from ilgnet.data.ava import read_ava_txt, read_id_list, read_list_file
from ilgnet.data.manifest import COLUMNS
from ilgnet.evaluation.metrics import correlations
from ilgnet.evaluation.reports import markdown_report, overlap_report
from ilgnet.evaluation.results import mean_correlations, results_table, summarize, train_overlap


@pytest.fixture
def ava_root(shared_data, tmp_path):
    """An AVA_ROOT with the first 1,212 rows of the real AVA.txt and the official lists."""
    root = tmp_path / "AVA"
    root.mkdir()
    shutil.copy(shared_data / "ava" / "AVA_head_rows1-1212.txt", root / "AVA.txt")
    shutil.copytree(shared_data / "ava" / "aesthetics_image_lists", root / "aesthetics_image_lists")
    return root


def test_official_split_skips_what_the_manifest_marks_and_writes_the_means(ava_root, tmp_path, capsys):
    test_ids = read_id_list(ava_root / "aesthetics_image_lists" / "generic_test.jpgl")
    meta = read_ava_txt(ava_root / "AVA.txt").set_index("image_id")
    usable_test = [int(i) for i in test_ids if i in meta.index]
    assert len(usable_test) == 102
    # every AVA.txt row has a decoding photo, except: two test photos missing, one test photo corrupt
    rows = [{"id": int(i), "bytes": 10, "sha256": "0" * 64, "decodes": int(i != usable_test[2]), "width": 4,
             "height": 3} for i in meta.index if i not in usable_test[:2]]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(ava_root / "ava-manifest.csv", index=False)
    out = tmp_path / "official"
    assert main(["split", "official", "--ava-txt", str(ava_root / "AVA.txt"), "--out", str(out)]) == 0
    assert "3 images of" in capsys.readouterr().err
    val = read_list_file(out / "val.txt")
    assert val["image_id"].tolist() == usable_test[3:]
    summary = json.loads((out / "split.json").read_text())
    assert summary["manifest"]["missing"] == 2 and summary["manifest"]["undecodable"] == 1
    means = pd.read_csv(out / "val_means.csv")
    assert means["filename"].tolist() == [f"{i}.jpg" for i in usable_test[3:]]
    # the first one by hand from its AVA.txt row: sum(k * votes_k) / sum(votes_k)
    line = next(line.split() for line in (ava_root / "AVA.txt").read_text().splitlines()
                if line.split()[1] == str(usable_test[3]))
    votes = np.array(line[2:12], int)
    assert means["mean"][0] == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum(), abs=1e-6)


def test_srcc_and_plcc_against_hand_computed_values():
    scores, means = [0.1, 0.4, 0.35, 0.8], [4.0, 5.0, 6.0, 7.0]
    # Spearman: ranks 1 3 2 4 against 1 2 3 4, d^2 sums to 2: 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    # Pearson: x - 0.4125 = -.3125 -.0125 -.0625 .3875; y - 5.5 = -1.5 -.5 .5 1.5
    #   sum xy = .46875 + .00625 - .03125 + .58125 = 1.025; sum x^2 = .251875; sum y^2 = 5
    result = correlations(scores, means)
    assert result["images"] == 4
    assert result["srcc"] == pytest.approx(0.8)
    assert result["plcc"] == pytest.approx(1.025 / np.sqrt(0.251875 * 5))
    assert correlations([0.5, 0.5, 0.5], [4.0, 5.0, 6.0]) is None
    assert correlations([0.1, 0.2], [4.0, 5.0]) is None


def test_test_results_carry_srcc_and_plcc_where_the_means_are_known(tmp_path):
    means = pd.DataFrame({"filename": ["11.jpg", "12.jpg", "13.jpg", "14.jpg"], "mean": [4.0, 5.0, 6.0, 7.0]})
    means.to_csv(tmp_path / "val_means.csv", index=False)
    keys = ["00000000_11.jpg", "00000001_12.jpg", "00000002_13.jpg", "00000003_14.jpg", "00000004_99.jpg"]
    p_high = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    frame = results_table(keys, [0, 0, 1, 1, 1], np.stack([1 - p_high, p_high], axis=1), batch=5)
    result = summarize(frame, variant="ilgnet", weights=tmp_path / "w", lmdb_path=tmp_path / "l", mean_file=tmp_path)
    result["correlations"] = mean_correlations(frame, tmp_path / "val_means.csv")
    assert result["correlations"]["without_mean"] == 1
    assert result["correlations"]["srcc"] == pytest.approx(0.8)
    text = markdown_report(result)
    assert "| SRCC of p_high against the mean score (4 images) | 0.8000 |" in text
    assert "ILGNet predicts a class (high or low), not a score distribution" in text


@pytest.mark.slow
def test_the_released_ava1_model_overlaps_the_official_test_list(shared_data, tmp_path):
    test_ids = read_id_list(shared_data / "ava" / "aesthetics_image_lists" / "generic_test.jpgl")
    (tmp_path / "val.txt").write_text("".join(f"{i}.jpg 0\n" for i in test_ids))
    keys = [f"{n:08d}_{i}.jpg" for n, i in enumerate(test_ids[:100])]
    p_high = np.linspace(0.05, 0.95, 100)
    frame = results_table(keys, [0, 1] * 50, np.stack([1 - p_high, p_high], axis=1), batch=50)
    means = pd.DataFrame({"filename": [f"{i}.jpg" for i in test_ids[:100]], "mean": np.linspace(3, 7, 100)})
    means.to_csv(tmp_path / "val_means.csv", index=False)
    overlap = train_overlap(frame, shared_data / "ilgnet-published" / "data" / "AVA1" / "train.txt",
                            tmp_path / "val.txt", means_csv=tmp_path / "val_means.csv")
    assert overlap["val_list"]["images"] == 20_000 and overlap["val_list"]["in_training"] == 18_395
    text = overlap_report(overlap, "ilgnet-ava1")
    assert text.startswith(f"WARNING: ilgnet-ava1 was trained on 18,395 of the 20,000 images of {tmp_path / 'val.txt'}")
    trained = overlap["scored"]["in_training"]
    assert 0 < trained < 100 and overlap["unseen_correlations"]["images"] == 100 - trained
    # p_high and the means both rise with the record: on the unseen records too, both correlations are 1
    assert f"on the other {100 - trained:,}: accuracy" in text and "SRCC 1.0000, PLCC 1.0000 against the mean" in text


def test_the_official_plan_trains_ilgnet_bn_on_the_official_split_with_three_seeds(tmp_path, capsys, monkeypatch):
    from ilgnet.paper.plans import load_plan

    monkeypatch.chdir(tmp_path)
    plan = load_plan("official")
    assert [(run.variant, run.profile, run.seed) for run in plan.runs] == [("ilgnet-bn", "ava1-delta0", s)
                                                                             for s in (1, 2, 3)]
    # the data folder `make official-lmdb` writes; --data and --seeds replace the plan's
    assert {plan.data_folder(run) for run in plan.runs} == {tmp_path / "data" / "official" / "ava1"}
    other = load_plan("official", seeds=[4], data_dir=tmp_path / "elsewhere")
    assert [run.seed for run in other.runs] == [4] and other.data_dir == tmp_path / "elsewhere"
    # a campaign without the data names the missing folder and the command that makes it, before any run starts
    assert main(["campaign", "official", "--quiet"]) == 1
    err = capsys.readouterr().err
    folder = tmp_path / "data" / "official" / "ava1"
    assert err.count("ilgnet campaign: error:") == 1 and f"data folders missing: {folder}" in err
    assert "`make official-lmdb AVA_ROOT=DIR`" in err
    assert f"`ilgnet lmdb --split {folder} --images AVA_ROOT/images`" in err
    assert not (tmp_path / "runs").exists()
