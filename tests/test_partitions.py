"""`ilgnet split`: the AVA1, AVA2, official and published partitions, on the real AVA rows and lists."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ilgnet.cli import main
from ilgnet.data.ava import read_ava_txt, read_id_list, read_list_file


@pytest.fixture(scope="module")
def ava_txt(shared_data):
    """The first 1,212 rows of the real AVA.txt (2 of them average exactly 5.0)."""
    return shared_data / "ava" / "AVA_head_rows1-1212.txt"


@pytest.fixture(scope="module")
def meta(ava_txt):
    return read_ava_txt(ava_txt).set_index("image_id")


def split(out, *args):
    assert main(["split", *map(str, args), "--out", str(out)]) == 0
    lists = {name: read_list_file(out / f"{name}.txt") for name in ("train", "val")}
    return lists["train"], lists["val"], json.loads((out / "split.json").read_text())


def test_ava1_labels_sizes_and_summary(tmp_path, ava_txt, meta):
    train, val, summary = split(tmp_path, "ava1", "--ava-txt", ava_txt, "--test-size", 200, "--seed", 7)
    assert len(val) == 200 and len(train) == 1012
    ids = np.concatenate([train["image_id"], val["image_id"]])
    assert sorted(ids) == sorted(meta.index) and len(set(ids)) == 1212
    for part in (train, val):
        means = meta.loc[part["image_id"].astype(int), "mean"].to_numpy()
        assert (part["label"].to_numpy() == (means > 5)).all()
    tie_ids = meta.index[meta["mean"] == 5.0]
    labels = dict(zip(np.concatenate([train["image_id"], val["image_id"]]),
                      np.concatenate([train["label"], val["label"]])))
    assert len(tie_ids) == 2 and all(labels[i] == 0 for i in tie_ids)
    assert summary["val"] == {"images": 200, "labels": {str(k): int(v) for k, v in
                                                        val["label"].value_counts().sort_index().items()}}
    assert summary["train"]["images"] == 1012 and summary["seed"] == 7 and summary["ava_txt_images"] == 1212
    assert re.fullmatch(r"(\d+\.jpg [01]\n)+", (tmp_path / "train.txt").read_text())


def test_ava1_is_deterministic_for_a_seed(tmp_path, ava_txt):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        split(tmp_path / name, "ava1", "--ava-txt", ava_txt, "--test-size", 100, "--seed", seed)
    for file in ("train.txt", "val.txt", "split.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "val.txt").read_text() != (tmp_path / "c" / "val.txt").read_text()


def test_ava1_fixed_test_class_counts(tmp_path, ava_txt):
    _, val, summary = split(tmp_path, "ava1", "--ava-txt", ava_txt, "--test-counts", 40, 160)
    assert val["label"].value_counts().to_dict() == {0: 40, 1: 160}
    assert summary["val"]["labels"] == {"0": 40, "1": 160}


def test_ava1_delta_drops_ambiguous_training_images_only(tmp_path, ava_txt, meta):
    train, val, summary = split(tmp_path, "ava1", "--ava-txt", ava_txt, "--test-size", 200, "--delta", 0.5)
    near = lambda part: (meta.loc[part["image_id"].astype(int), "mean"] - 5).abs() < 0.5  # noqa: E731
    assert not near(train).any()
    assert near(val).sum() > 0 and len(val) == 200  # the test set keeps all
    assert summary["dropped_by_delta"] == ((meta["mean"] - 5).abs() < 0.5).sum() - near(val).sum()
    assert len(train) == 1012 - summary["dropped_by_delta"]


def test_ava2_top_and_bottom_tenth_split_in_half(tmp_path, ava_txt, meta):
    train, val, summary = split(tmp_path, "ava2", "--ava-txt", ava_txt, "--seed", 5)
    assert len(train) == len(val) == 121  # 10 % of 1,212 from each end, halved
    both = np.concatenate([train["image_id"], val["image_id"]]).astype(int)
    labels = np.concatenate([train["label"], val["label"]])
    means = meta.loc[both, "mean"].to_numpy()
    assert (labels == 1).sum() == (labels == 0).sum() == 121
    outside = meta.drop(index=both)["mean"]
    assert means[labels == 0].max() <= outside.min() and outside.max() <= means[labels == 1].min()
    assert summary["per_end"] == 121 and summary["low_mean_max"] == means[labels == 0].max()
    train_b, val_b, _ = split(tmp_path / "again", "ava2", "--ava-txt", ava_txt, "--seed", 5)
    assert train_b.equals(train) and val_b.equals(val)


def test_official_lists_label_by_threshold_and_report_missing_ids(tmp_path, ava_txt, meta, shared_data, capsys):
    lists = shared_data / "ava" / "aesthetics_image_lists"
    train, val, summary = split(tmp_path, "official", "--ava-txt", ava_txt, "--lists", lists)
    # Only the ids among the 1,212 known rows can be labelled; the others are reported, not fatal.
    train_ids, test_ids = read_id_list(lists / "generic_ls_train.jpgl"), read_id_list(lists / "generic_test.jpgl")
    assert train["image_id"].tolist() == [i for i in train_ids if i in meta.index] and len(train) == 100
    assert val["image_id"].tolist() == [i for i in test_ids if i in meta.index] and len(val) == 102
    assert (val["label"].to_numpy() == (meta.loc[val["image_id"].astype(int), "mean"] > 5).to_numpy()).all()
    assert len(summary["missing_from_ava_txt"]["train"]) == 19_900
    assert len(summary["missing_from_ava_txt"]["val"]) == 19_898
    assert "19898 ids of the val list are not in" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("dataset, counts", [
    ("ava1", {"train": (235_529, {"0": 70_673, "1": 164_856}), "val": (20_000, {"0": 4_000, "1": 16_000})}),
    ("ava2", {"train": (25_553, {"0": 12_722, "1": 12_831}), "val": (25_553, {"0": 12_831, "1": 12_722})}),
])
def test_published_lists_import_with_exact_counts(tmp_path, shared_data, dataset, counts):
    repo = shared_data / "ilgnet-published"
    train, val, summary = split(tmp_path, "published", repo, "--set", dataset)
    for name, part in (("train", train), ("val", val)):
        assert (summary[name]["images"], summary[name]["labels"]) == counts[name]
        original = read_list_file(repo / "data" / dataset.upper() / f"{name}.txt")
        assert part["filename"].tolist() == original["filename"].tolist()
        assert part["label"].tolist() == original["label"].tolist()
    assert summary["dataset"] == dataset.upper()


def test_published_lists_with_a_wrong_count_are_refused(tmp_path, shared_data, capsys):
    clone = tmp_path / "ILGnet"
    shutil.copytree(shared_data / "ilgnet-published" / "data" / "AVA2", clone / "data" / "AVA2")
    val = clone / "data" / "AVA2" / "val.txt"
    val.write_text("\n".join(val.read_text().splitlines()[:-1]))
    assert main(["split", "published", str(clone), "--set", "AVA2", "--out", str(tmp_path / "out")]) == 1
    assert (f"ilgnet split published: error: {val}: expected 25,553 images (the published AVA2 val list), found "
            f"25,552") in capsys.readouterr().err
    assert main(["split", "published", str(clone), "--out", str(tmp_path / "out")]) == 1  # no data/AVA1
    assert f"{clone / 'data' / 'AVA1' / 'train.txt'} does not exist: expected a clone" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_ava_txt_with_file_and_line(tmp_path, ava_txt):
    bad = tmp_path / "AVA.txt"
    lines = ava_txt.read_text().splitlines()[:3]
    bad.write_text("\n".join([lines[0], lines[1] + " 9", lines[2]]) + "\n")
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "split", "ava1", "--ava-txt", str(bad),
                             "--test-size", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"ilgnet split ava1: error: {bad}:2: expected 15 columns" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, empty, why", [
    (["ava1", "--delta", "100", "--test-size", "100"], "train.txt",
     "--delta 100 drops all 1,112 training images; give a smaller --delta"),
    (["ava1", "--test-counts", "0", "0"], "val.txt", "--test-counts 0 0 asks for no test image"),
    (["ava1", "--test-counts", "301", "911"], "train.txt",
     "--test-counts 301 911 takes every image of {ava_txt} for the test set"),
    (["official", "--train-list", "none"], "train.txt", "no image of --train-list none is in {ava_txt}"),
])
def test_a_partition_that_would_be_empty_is_refused_naming_the_arguments(tmp_path, ava_txt, capsys, args, empty,
                                                                          why):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "none.jpgl").write_text("1\n")
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in read_ava_txt(ava_txt).image_id[:5]))
    more = ["--lists", str(lists)] if args[0] == "official" else []
    assert main(["split", *args, "--ava-txt", str(ava_txt), *more, "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (f"ilgnet split {args[0]}: error: {tmp_path / 'out' / empty} "
                                                        f"would list no images: {why.format(ava_txt=ava_txt)}")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ no image in both sets

def test_an_official_split_whose_lists_share_images_is_refused(tmp_path, ava_txt, shared_data, capsys):
    """The same list given as both sets (an easy slip of --train-list): every shared image would be tested on
    after training on it. One line naming the lists, how many and an example; nothing written."""
    lists = shared_data / "ava" / "aesthetics_image_lists"
    out = tmp_path / "out"
    assert main(["split", "official", "--ava-txt", str(ava_txt), "--lists", str(lists), "--train-list",
                 "generic_test", "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    test_list = lists / "generic_test.jpgl"
    known = set(read_ava_txt(ava_txt)["image_id"])
    first = min(i for i in read_id_list(test_list) if i in known)
    assert err == (f"ilgnet split official: error: {test_list} and {test_list}: 102 images are in both the training "
                   f"and the test (val) set, e.g. image id {first}; a test set may hold no training image")
    assert not out.exists()


def test_published_lists_sharing_an_image_are_refused(tmp_path, shared_data, capsys):
    clone = tmp_path / "ILGNet"
    shutil.copytree(shared_data / "ilgnet-published" / "data" / "AVA2", clone / "data" / "AVA2")
    train, val = (clone / "data" / "AVA2" / f"{name}.txt" for name in ("train", "val"))
    lines = val.read_text().splitlines()
    shared = train.read_text().splitlines()[5]
    val.write_text("\n".join([shared, *lines[1:]]) + "\n")             # the count stays the published one
    assert main(["split", "published", str(clone), "--set", "AVA2", "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"ilgnet split published: error: {clone / 'data' / 'AVA2'}: 1 image is in both the training and the test (val) "
        f"set, e.g. image id {int(shared.split('.')[0])}; a test set may hold no training image\n")
    assert not (tmp_path / "out").exists()


def test_every_partition_is_checked_where_it_is_written(tmp_path):
    """write_split is the one door of every partition (split ava1/ava2/official/published/labels, the demo and the
    campaign's data): own photos compared by path, lists without ids by file name."""
    import pandas as pd

    from ilgnet.data.partitions import write_split
    from ilgnet.errors import BadInput

    photos = pd.DataFrame({"path": ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], "label": [0, 1, 1]})
    with pytest.raises(BadInput, match=r"^labels.csv: 2 images are in both .* e\.g\. /p/b\.jpg; "):
        write_split(tmp_path / "own", photos, photos.iloc[1:], {"partition": "labels", "labels_csv": "labels.csv"})
    named = pd.DataFrame({"filename": ["x.jpg", "y.jpg"], "label": [0, 1]})
    with pytest.raises(BadInput, match=r"^the ava2 partition: 1 image is in both .* e\.g\. y\.jpg; "):
        write_split(tmp_path / "named", named, named.iloc[1:], {"partition": "ava2"})
    assert not (tmp_path / "own").exists() and not (tmp_path / "named").exists()
    summary = write_split(tmp_path / "fine", named.iloc[:1], named.iloc[1:], {"partition": "ava2"})
    assert (summary["train"]["images"], summary["val"]["images"]) == (1, 1)


def test_an_interrupted_split_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """A Ctrl-C after the new train list is written (where the campaign test sends a real one) must not leave it
    beside the old val list: the four files are replaced together."""
    import pandas as pd

    from ilgnet.data import partitions

    old = pd.DataFrame({"filename": ["a.jpg", "b.jpg"], "label": [0, 1], "mean": [4.0, 6.0]})
    new = pd.DataFrame({"filename": ["c.jpg", "d.jpg"], "label": [1, 0], "mean": [7.0, 3.0]})
    partitions.write_split(tmp_path, old.iloc[:1], old.iloc[1:], {"partition": "ava2"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def ctrl_c(step):
        raise KeyboardInterrupt
    monkeypatch.setattr(partitions, "ctrl_c_point", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        partitions.write_split(tmp_path, new.iloc[:1], new.iloc[1:], {"partition": "ava2"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    partitions.write_split(tmp_path, new.iloc[:1], new.iloc[1:].drop(columns="mean"), {"partition": "ava2"})
    assert (tmp_path / "train.txt").read_text() == "c.jpg 1\n" and (tmp_path / "val.txt").read_text() == "d.jpg 0\n"
    assert not (tmp_path / "val_means.csv").exists() and json.loads((tmp_path / "split.json").read_text())["val"][
        "images"] == 1
