"""`caffe test` done honestly: every record of a val LMDB scored exactly once.

The records are read from the LMDB in Caffe's order, transformed as the Data layer's TEST phase does (centre crop,
minus the mean image at the same offset, via ilgnet.scorer.Scorer) and forwarded through the deploy net in
batches whose last one is simply shorter, so every record counts once (`caffe test -iterations N` reads batch x N
records, wrapping around or stopping short). ilgnet.metrics then says what the scores mean.
"""
from __future__ import annotations

import sys
from pathlib import Path, PurePath

import numpy as np
import pandas as pd
from tqdm import tqdm

from ilgnet import defaults
from ilgnet.ava import read_list_file
from ilgnet.caffe_io import lmdb_records, lmdb_size
from ilgnet.errors import BadInput
from ilgnet.metrics import metrics
from ilgnet.scorer import Scorer, batched


def score_lmdb(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, batch: int = defaults.VAL_BATCH, *,
               gpu: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Per-record results: DataFrame(key, label, predicted, p_0 .. p_k), one row per LMDB record, in LMDB order.
    Raises BadInput when a record's size differs from the mean image's (Caffe's Data layer would abort)."""
    total = lmdb_size(lmdb_path)
    if total == 0:
        raise BadInput(f"{lmdb_path} holds no records; build it again with `ilgnet lmdb`")
    scorer = Scorer(weights, mean=mean_file, variant=variant, batch_size=batch, jobs=0, gpu=gpu)

    def inputs():
        for key, image, label in tqdm(lmdb_records(lmdb_path), total=total, unit="img", desc="ilgnet test",
                                      disable=not progress, file=sys.stderr):
            if image.shape[:2] != tuple(scorer.image_size):
                raise BadInput(f"{lmdb_path}: record {key} is {image.shape[1]}x{image.shape[0]}, the mean image "
                               f"{mean_file} is {scorer.image_size[1]}x{scorer.image_size[0]}: Caffe needs them equal")
            yield key, label, scorer.preprocess(image)[0]

    keys, labels, probs = [], [], []
    for chunk in batched(inputs(), batch):
        chunk_keys, chunk_labels, crops = zip(*chunk)
        keys += chunk_keys
        labels += chunk_labels
        probs.append(scorer.forward(np.stack(crops)))
    if len(keys) != total:
        raise BadInput(f"{lmdb_path}: read {len(keys)} records, the LMDB says it holds {total}")
    p = np.concatenate(probs)
    frame = pd.DataFrame({"key": keys, "label": labels, "predicted": p.argmax(axis=1)})
    for k in range(p.shape[1]):
        frame[f"p_{k}"] = p[:, k]
    return frame


def summarize(frame: pd.DataFrame, *, variant: str, weights: Path, lmdb_path: Path, mean_file: Path,
              batch: int) -> dict:
    """ilgnet.metrics.metrics of score_lmdb's frame plus what was scored and how."""
    return {"variant": variant, "weights": str(weights), "lmdb": str(lmdb_path), "mean_file": str(mean_file),
            "batch": batch, "forward_passes": -(-len(frame) // batch), **metrics(frame)}


def evaluate(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, batch: int = defaults.VAL_BATCH, *,
             gpu: int | None = None, progress: bool = True) -> dict:
    """Scores every record of `lmdb_path` once; returns summarize()'s dict."""
    frame = score_lmdb(variant, weights, lmdb_path, mean_file, batch, gpu=gpu, progress=progress)
    return summarize(frame, variant=variant, weights=weights, lmdb_path=lmdb_path, mean_file=mean_file, batch=batch)


def _names(filenames) -> set[str]:
    return {PurePath(str(name)).name for name in filenames}


def train_overlap(frame: pd.DataFrame, train_list: Path, val_list: Path | None = None) -> dict:
    """Which scored records (score_lmdb's frame, keys `%08d_<file>`) and which images of the split's val list are in
    the model's training list, by file name (photos are `<AVA id>.jpg`), and the metrics on the unseen records
    (None when none is left). A model scored on images it was trained on measures memory, not generalisation."""
    trained = _names(read_list_file(train_list)["filename"])
    seen = np.array([PurePath(key.split("_", 1)[-1]).name in trained for key in frame["key"]], bool)
    report = {"train_list": str(train_list), "scored": {"images": len(frame), "in_training": int(seen.sum())},
              "unseen_metrics": metrics(frame[~seen]) if (~seen).any() else None}
    if val_list is not None and Path(val_list).is_file():
        listed = _names(read_list_file(val_list)["filename"])
        report["val_list"] = {"path": str(val_list), "images": len(listed), "in_training": len(listed & trained)}
    return report
