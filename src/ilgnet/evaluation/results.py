"""The results table both engines produce, and what is read off it: one row per val record, in LMDB order.

`results_table` is the one place the table is built, so the in-process engine (ilgnet.evaluation.in_process) and
the `caffe test` engine (ilgnet.evaluation.caffe_engine) give frames that compare column for column. `summarize`
adds what was scored and how to ilgnet.evaluation.metrics; `train_overlap` says which scored records the model was
trained on; `against_means_and_training` is what ilgnet.evaluation.evaluate adds to a summary where it is known.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from ilgnet.data.ava import read_list_file
from ilgnet.data.folder import DataFolder
from ilgnet.evaluation.metrics import correlations, metrics


def results_table(keys: Sequence[str], labels: Sequence[int], probs: np.ndarray, *, batch: int) -> pd.DataFrame:
    """DataFrame(key, label, predicted, p_0 .. p_k), one row per record: `probs` is (records, classes), `predicted`
    its argmax. frame.attrs["batch"] is the forward batch the engine used."""
    probs = np.asarray(probs).reshape(len(keys), -1)
    frame = pd.DataFrame({"key": list(keys), "label": [int(label) for label in labels],
                          "predicted": probs.argmax(axis=1)})
    for k in range(probs.shape[1]):
        frame[f"p_{k}"] = probs[:, k]
    frame.attrs["batch"] = batch
    return frame


def summarize(frame: pd.DataFrame, *, variant: str, weights: Path, lmdb_path: Path, mean_file: Path) -> dict:
    """ilgnet.evaluation.metrics.metrics of a results table plus what was scored and how (the batch from
    frame.attrs)."""
    batch = frame.attrs["batch"]
    return {"variant": variant, "weights": str(weights), "lmdb": str(lmdb_path), "mean_file": str(mean_file),
            "batch": batch, "forward_passes": -(-len(frame) // batch), **metrics(frame)}


def _names(filenames) -> set[str]:
    return {PurePath(str(name)).name for name in filenames}


def train_overlap(frame: pd.DataFrame, train_list: Path, val_list: Path | None = None, *,
                  means_csv: Path | None = None) -> dict:
    """Which scored records (a results table, keys `%08d_<file>`) and which images of the split's val list are in
    the model's training list, by file name (photos are `<AVA id>.jpg`), and the metrics on the unseen records
    (None when none is left), with their SRCC and PLCC against `means_csv` when given (`unseen_correlations`). A
    model scored on images it was trained on measures memory, not generalisation."""
    trained = _names(read_list_file(train_list)["filename"])
    seen = np.array([PurePath(key.split("_", 1)[-1]).name in trained for key in frame["key"]], bool)
    report = {"train_list": str(train_list), "scored": {"images": len(frame), "in_training": int(seen.sum())},
              "unseen_metrics": metrics(frame[~seen]) if (~seen).any() else None}
    if means_csv is not None and seen.any() and (~seen).any():
        report["unseen_correlations"] = mean_correlations(frame[~seen], means_csv)
    if val_list is not None and Path(val_list).is_file():
        listed = _names(read_list_file(val_list)["filename"])
        report["val_list"] = {"path": str(val_list), "images": len(listed), "in_training": len(listed & trained)}
    return report


def mean_correlations(frame: pd.DataFrame, means_csv: Path) -> dict | None:
    """metrics.correlations of the results table's p_1 (p_high) against the mean scores of `means_csv` (columns
    filename, mean: the val_means.csv `ilgnet split` writes), matched by file name; the records without a mean are
    counted (`without_mean`). None where the mean of fewer than 3 records is known."""
    means = pd.read_csv(means_csv)
    by_name = dict(zip((PurePath(str(name)).name for name in means["filename"]), means["mean"]))
    known = [by_name.get(PurePath(key.split("_", 1)[-1]).name) for key in frame["key"]]
    mask = np.array([value is not None for value in known], bool)
    result = correlations(frame["p_1"].to_numpy()[mask], [value for value in known if value is not None])
    return None if result is None else {**result, "without_mean": int((~mask).sum()), "means": str(means_csv)}


def against_means_and_training(frame: pd.DataFrame, data: DataFolder, train_list: Path | None) -> dict:
    """What a summary gains where it is known: "correlations" (mean_correlations: SRCC and PLCC of p_high against
    the val images' means) where the data folder holds val_means.csv, and "train_overlap" (train_overlap, against
    the data folder's val list, with the unseen records' correlations) where the model's training list is known."""
    means = data.val_means if data.val_means.is_file() else None
    extra = {}
    if means is not None:
        extra["correlations"] = mean_correlations(frame, means)
    if train_list is not None:
        extra["train_overlap"] = train_overlap(frame, train_list, data.list_file("val"), means_csv=means)
    return extra


def prefix_protocol(frame: pd.DataFrame, *, batch: int, iterations: int) -> dict:
    """What `caffe test -iterations K` at batch B reports for the model of a results table (in LMDB order): the
    accuracy over the first B x K records, wrapping around to the first record past the end as Caffe's Data layer
    does (the mean of equal batches' accuracies is the mean over their records), read off the table instead of
    running Caffe again. The published ILGNet figures are such runs (ilgnet.evaluation.reports.PAPER)."""
    read = batch * iterations
    rows = np.arange(read) % len(frame)
    correct = (frame["label"].to_numpy() == frame["predicted"].to_numpy())[rows]
    return {"batch": batch, "iterations": iterations, "images": read, "records": len(frame),
            "distinct_records": int(min(read, len(frame))), "accuracy": float(correct.mean())}
