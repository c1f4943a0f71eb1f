"""The paper's AVA partitions as Caffe list files (train.txt, val.txt) plus split.json.

* ava1: label 1 iff mean score > 5 (5.0 exactly is 0), a random test set (val.txt) of a given size or of given
  class counts; a delta D drops training images with |mean - 5| < D while the test set keeps every image.
* ava2: the 10 % of images with the highest mean are 1, the 10 % with the lowest 0, split 50/50 at random.
* official: AVA's own generic_ls_train / generic_test lists, labelled like ava1.
* published: the list files of the original ILGNet repository, counts checked.

Every partition is a pure function of its inputs and the seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.data.ava import AVA1_THRESHOLD, ava1_labels, read_list_file, write_list_file
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput
from ilgnet.fileio import atomic_paths, atomic_write_json, atomic_write_text, remove, require
from ilgnet.pools import ctrl_c_point

PARTITIONS = ("ava1", "ava2", "official", "published")
PUBLISHED_COUNTS = {"AVA1": {"train": 235_529, "val": 20_000}, "AVA2": {"train": 25_553, "val": 25_553}}


def _label_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["label"].value_counts().sort_index()
    return {str(label): int(n) for label, n in counts.items()}


def _delta_filter(train, delta: float):
    """Drops training images whose mean is within `delta` of 5 (the AVA paper's ambiguity margin)."""
    if delta < 0:
        raise BadInput(f"delta must be >= 0, got {delta}")
    keep = (train["mean"] - AVA1_THRESHOLD).abs() >= delta
    return train[keep], int((~keep).sum())


def ava1_split(meta, *, test_size: int = 20_000, test_counts: tuple[int, int] | None = None, delta: float = 0.0,
               seed: int = 1):
    """AVA1 train/test frames (image_id, mean, label) and facts for split.json."""
    frame = meta[["image_id", "mean"]].assign(label=ava1_labels(meta["mean"]))
    rng = np.random.default_rng(seed)
    if test_counts is None:
        if not 0 < test_size < len(frame):
            raise BadInput(f"a test set of {test_size} images: it must hold between 1 and {len(frame) - 1} (AVA.txt "
                           f"has {len(frame)} images)")
        test_rows = rng.choice(len(frame), size=test_size, replace=False)
    else:
        test_rows = []
        for label, wanted in enumerate(test_counts):
            rows = np.flatnonzero(frame["label"].to_numpy() == label)
            if not 0 <= wanted <= len(rows):
                raise BadInput(f"a test set of {wanted} images of label {label}: there are {len(rows)}")
            test_rows.append(rng.choice(rows, size=wanted, replace=False))
        test_rows = np.concatenate(test_rows)
    is_test = np.zeros(len(frame), bool)
    is_test[test_rows] = True
    train, dropped = _delta_filter(frame[~is_test], delta)
    facts = {"seed": seed, "test_counts": list(test_counts) if test_counts else None, "delta": delta,
             "dropped_by_delta": dropped}
    return train, frame[is_test], facts


def ava2_split(meta, *, fraction: float = 0.1, seed: int = 1):
    """AVA2: bottom and top `fraction` by mean (ties kept in AVA.txt order), then a random 50/50 split."""
    n = int(round(fraction * len(meta)))
    if not 0 < 2 * n <= len(meta):
        raise BadInput(f"a fraction of {fraction} selects {n} images from each end of {len(meta)}")
    order = np.argsort(meta["mean"].to_numpy(), kind="stable")
    frame = meta[["image_id", "mean"]]
    chosen = frame.iloc[np.concatenate([order[:n], order[-n:]])].assign(label=np.repeat([0, 1], n))
    in_train = np.zeros(2 * n, bool)
    in_train[np.random.default_rng(seed).permutation(2 * n)[:n]] = True
    train, val = chosen[in_train].sort_index(), chosen[~in_train].sort_index()
    facts = {"fraction": fraction, "seed": seed, "per_end": n,
             "low_mean_max": float(chosen["mean"].iloc[n - 1]), "high_mean_min": float(chosen["mean"].iloc[n])}
    return train, val, facts


def official_split(meta, train_ids, test_ids, *, delta: float = 0.0):
    """Labels AVA's official lists by the AVA1 rule. Ids absent from AVA.txt are left out and reported."""
    frame = meta[["image_id", "mean"]].assign(label=ava1_labels(meta["mean"])).set_index("image_id", drop=False)
    parts, missing = {}, {}
    for name, ids in (("train", train_ids), ("val", test_ids)):
        present = ids.isin(frame.index)
        parts[name] = frame.loc[ids[present]]
        missing[name] = [int(i) for i in ids[~present]]
    train, dropped = _delta_filter(parts["train"], delta)
    return train, parts["val"], {"delta": delta, "dropped_by_delta": dropped, "missing_from_ava_txt": missing}


def published_split(repo: Path, dataset: str):
    """The ILGNet list files of `repo`/data/<dataset>/{train,val}.txt, with the published counts checked."""
    parts = {}
    for name, expected in PUBLISHED_COUNTS[dataset].items():
        path = Path(repo) / "data" / dataset / f"{name}.txt"
        frame = read_list_file(require(path, hint=f": expected a clone of the ILGNet repository with "
                                                  f"data/{dataset}/{name}.txt"))
        if len(frame) != expected:
            raise BadInput(f"{path}: expected {expected:,} images (the published {dataset} {name} list), "
                             f"found {len(frame):,}")
        bad = frame.index[~frame["label"].isin([0, 1]) | frame["image_id"].isna()]
        if len(bad):
            raise BadInput(f"{path}:{bad[0]}: expected `<image id>.jpg <0 or 1>`, found "
                             f"{frame['filename'][bad[0]]} {frame['label'][bad[0]]}")
        repeated = frame.index[frame["image_id"].duplicated()]
        if len(repeated):
            raise BadInput(f"{path}:{repeated[0]}: image {frame['filename'][repeated[0]]} listed twice")
        parts[name] = frame
    return parts["train"], parts["val"], {"dataset": dataset, "repo": str(Path(repo).resolve())}


def _source(facts: dict) -> str:
    """Where a partition's images were chosen from, as its facts (split.json) record it."""
    if facts.get("train_list"):
        return f"{facts['train_list']} and {facts['test_list']}"
    if facts.get("repo"):
        return str(Path(facts["repo"]) / "data" / facts.get("dataset", ""))
    return str(facts.get("labels_csv") or facts.get("ava_txt") or f"the {facts.get('partition', 'new')} partition")


def refuse_shared_images(train: pd.DataFrame, val: pd.DataFrame, source: str) -> None:
    """BadInput, in one line naming `source`, how many and one example, when an image is in both `train` and `val`
    (a test set holding training images measures memory, not accuracy). Images are compared by AVA image id where
    both frames have one, else by photo path, else by list file name. Every partition passes this check in
    `write_split`, before anything is written."""
    key = next((c for c in ("image_id", "path", "filename") if c in train and c in val), None)
    if key is None:
        return
    shared = set(train[key].dropna()) & set(val[key].dropna())
    if shared:
        example = min(shared, key=str)
        what = f"image id {example}" if key == "image_id" else str(example)
        count = f"{len(shared):,} images are" if len(shared) > 1 else "1 image is"
        raise BadInput(f"{source}: {count} in both the training and the test (val) set, e.g. {what}; a test set "
                       f"may hold no training image")


def write_split(out: Path, train: pd.DataFrame, val: pd.DataFrame, facts: dict) -> dict:
    """Writes out/train.txt, out/val.txt, out/val_means.csv (where `val` has a mean column) and out/split.json,
    replacing the ones there together once all are written (an interrupted split leaves the previous one whole, never
    a new train list beside an old val list); returns the JSON summary. BadInput before anything is written when the
    two sets share an image (`refuse_shared_images`)."""
    refuse_shared_images(train, val, _source(facts))
    folder = DataFolder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    summary = {**facts,
               "train": {"images": len(train), "labels": _label_counts(train)},
               "val": {"images": len(val), "labels": _label_counts(val)}}
    with atomic_paths([folder.list_file("train"), folder.list_file("val"), folder.val_means, folder.split_json]) as (
            train_txt, val_txt, val_means, split_json):
        write_list_file(train, train_txt)
        ctrl_c_point("split")
        write_list_file(val, val_txt)
        if "mean" in val:
            names = val["filename"] if "filename" in val else val["image_id"].astype(str) + ".jpg"
            atomic_write_text(val_means, pd.DataFrame({"filename": names, "mean": val["mean"]}).to_csv(
                index=False, float_format="%.6f"))
        atomic_write_json(split_json, summary)
    if "mean" not in val:
        remove(folder.val_means)
    return summary
