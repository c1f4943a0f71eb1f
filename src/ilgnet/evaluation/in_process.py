"""`caffe test` done honestly, in this process: every record of a val LMDB scored exactly once by any of the
scoring backends (pycaffe, onnxruntime, OpenCV's dnn: `ilgnet test --engine pycaffe`).

The records are read from the LMDB in Caffe's order, transformed as the Data layer's TEST phase does (centre crop,
minus the mean image at the same offset, via ilgnet.scoring.scorer.Scorer) and forwarded through the deploy net in
batches whose last one is simply shorter, so every record counts once (`caffe test -iterations N` reads batch x N
records, wrapping around or stopping short), into the results table of ilgnet.evaluation.results.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ilgnet import defaults
from ilgnet.bvlc.io import lmdb_records, lmdb_size
from ilgnet.errors import BadInput
from ilgnet.fileio import reading
from ilgnet.pools import ctrl_c_point
from ilgnet.evaluation.results import results_table
from ilgnet.scoring.scorer import Scorer, batched
from ilgnet.zoo.models import Model


def score_lmdb(model: Model, lmdb_path: Path, batch: int = defaults.VAL_BATCH, *, gpu: int | None = None,
               progress: bool = True, check: bool = True,
               on_batch: Callable[[Scorer, tuple, tuple], None] | None = None, backend: str = "caffe") -> pd.DataFrame:
    """Per-record results of a resolved `model` (ilgnet.zoo.models.Model, its mean the one to subtract):
    ilgnet.evaluation.results.results_table, one row per LMDB record, in LMDB order, the net run by `backend`
    (ilgnet.scoring.backends; pycaffe by default, auto picked once by the Scorer), which frame.attrs["backend"] names.
    on_batch(scorer, keys, labels) is called after each forward pass, while the net's blobs hold that batch (a caller
    reads inner layers there; caffe backend). check: compare the weights with the net first (ilgnet.bvlc.fit); off
    only for a snapshot Caffe wrote of this very net. Raises BadInput when a record's size differs from the mean
    image's (Caffe's Data layer would abort)."""
    total = lmdb_size(lmdb_path)
    if total == 0:
        raise BadInput(f"{lmdb_path} holds no records; build it again with `ilgnet lmdb`")
    with reading(model.weights, progress=progress):
        scorer = Scorer.from_model(model, batch_size=batch, jobs=0, gpu=gpu, check=check, backend=backend)

    def inputs():
        for key, image, label in tqdm(lmdb_records(lmdb_path), total=total, unit="img", desc="ilgnet test",
                                      disable=not progress, file=sys.stderr):
            if image.shape[:2] != tuple(scorer.image_size):
                named = "" if isinstance(model.mean, np.ndarray) else f" {model.mean}"
                height, width = scorer.image_size
                raise BadInput(f"{lmdb_path}: record {key} is {image.shape[1]}x{image.shape[0]}, the mean image"
                               f"{named} is {width}x{height}: Caffe needs them equal")
            yield key, label, scorer.preprocess(image)[0]

    keys, labels, probs = [], [], []
    for chunk in batched(inputs(), batch):
        chunk_keys, chunk_labels, crops = zip(*chunk)
        keys += chunk_keys
        labels += chunk_labels
        probs.append(scorer.forward(np.stack(crops)))
        if on_batch is not None:
            on_batch(scorer, chunk_keys, chunk_labels)
        ctrl_c_point("scoring")
    if len(keys) != total:
        raise BadInput(f"{lmdb_path}: read {len(keys)} records, the LMDB says it holds {total}")
    frame = results_table(keys, labels, np.concatenate(probs), batch=batch)
    frame.attrs["backend"] = scorer.backend
    return frame

