"""Your own labelled photos as a partition (`ilgnet split labels`): a CSV of `path,label` (0 low, 1 high) or
`path,score` (any number; labelled by a threshold, or the AVA2 rule: the top and bottom P % by score), every photo
checked as `ilgnet lmdb` decodes it, and a held-out set drawn at random or read from a list.

Paths are taken from the CSV's folder (an absolute path as it is): the list files name them relative to that folder,
which `ilgnet lmdb --images` is then given. Errors name the CSV and the 1-based line (the header is line 1).
"""
from __future__ import annotations

import csv
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.data.images import BadImage, read_image
from ilgnet.errors import BadInput
from ilgnet.fileio import read_text
from ilgnet.pools import pool_size


def read_labels_csv(path: Path) -> pd.DataFrame:
    """Columns filename (relative to the CSV's folder), path (absolute), line, and label (0/1) or score (a finite
    number), from a CSV whose header is `path,label` or `path,score` (other columns ignored). BadInput naming the
    file and line of the first bad row, or a path given twice."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path))))
    if not rows:
        raise BadInput(f"{path}: empty; expected a header `path,label` or `path,score` and a row per photo")
    header = [name.strip().lower() for name in rows[0]]
    kind = "label" if "label" in header else "score" if "score" in header else None
    if "path" not in header or kind is None:
        raise BadInput(f"{path}:1: expected a header with the columns path and label (0 or 1) or path and score, "
                       f"found {','.join(rows[0])}")
    at_path, at_value = header.index("path"), header.index(kind)
    base = path.resolve().parent
    records, seen = [], {}
    for number, row in enumerate(rows[1:], 2):
        if not any(field.strip() for field in row):
            continue
        if len(row) <= max(at_path, at_value):
            raise BadInput(f"{path}:{number}: expected {len(header)} columns, found {len(row)}")
        name, value = row[at_path].strip(), row[at_value].strip()
        if not name:
            raise BadInput(f"{path}:{number}: the path is empty")
        if kind == "label":
            if value not in ("0", "1"):
                raise BadInput(f"{path}:{number}: label is 0 (low) or 1 (high), not {value!r}")
            number_value = int(value)
        else:
            try:
                number_value = float(value)
            except ValueError:
                number_value = math.nan
            if not math.isfinite(number_value):
                raise BadInput(f"{path}:{number}: score is not a finite number: {value!r}")
        full = Path(os.path.normpath(base / name))
        if full in seen:
            raise BadInput(f"{path}:{number}: {name} is listed already on line {seen[full]}")
        seen[full] = number
        records.append({"filename": os.path.relpath(full, base), "path": str(full), "line": number,
                        kind: number_value})
    if not records:
        raise BadInput(f"{path}: no photo listed below the header")
    return pd.DataFrame(records)


def _problem(path: str) -> str:
    try:
        read_image(path)
    except BadImage as err:
        return str(err)
    return ""


def check_photos(frame: pd.DataFrame, *, workers: int | None = None) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """The rows whose photo decodes as `ilgnet lmdb` decodes it, and (line, path, why) for each of the others
    (missing, empty, cut short, not an image)."""
    with ThreadPoolExecutor(pool_size(workers, len(frame))) as pool:
        problems = list(pool.map(_problem, frame["path"]))
    bad = np.array([bool(p) for p in problems])
    listed = [(int(line), path, why) for line, path, why in zip(frame["line"], frame["path"], problems) if why]
    return frame[~bad], listed


class RuleMismatch(BadInput):
    """A labels CSV and its labelling rule that do not go together; `column` is the one the CSV has: "score" (and
    no rule was given) or "label" (and a rule was)."""

    def __init__(self, message: str, column: str):
        super().__init__(message)
        self.column = column


def check_rule(frame: pd.DataFrame, *, threshold: float | None, top_bottom: float | None,
               source: str = "the CSV") -> None:
    """RuleMismatch, naming `source`, when read_labels_csv's `frame` has scores and neither a threshold nor a
    top/bottom percentage is given, or has labels and one of them is."""
    ruled = threshold is not None or top_bottom is not None
    if "label" in frame and ruled:
        raise RuleMismatch(f"{source} has labels already; a threshold or top/bottom rule is for a score column",
                           "label")
    if "score" in frame and not ruled:
        raise RuleMismatch(f"{source} has scores: give a threshold (above it is high) or a top/bottom percentage",
                           "score")


def label(frame: pd.DataFrame, *, threshold: float | None = None, top_bottom: float | None = None) -> tuple[
        pd.DataFrame, dict]:
    """`frame` with a label column: as given, or from the score (above `threshold` is high; or the top and bottom
    `top_bottom` % by score, ties kept in file order, the others left out). The score stays as `mean` for SRCC and
    PLCC. RuleMismatch (check_rule) when the rule does not fit the CSV, BadInput when a rule selects no photo."""
    check_rule(frame, threshold=threshold, top_bottom=top_bottom)
    if "label" in frame:
        return frame, {"rule": "labels as given"}
    frame = frame.assign(mean=frame["score"])
    if threshold is not None:
        return frame.assign(label=(frame["score"] > threshold).astype(int)), {"rule": f"score > {threshold:g}"}
    n = int(round(top_bottom / 100 * len(frame)))
    if not 0 < 2 * n <= len(frame):
        raise BadInput(f"the top and bottom {top_bottom:g} % of {len(frame)} photos select {n} from each end")
    order = np.argsort(frame["score"].to_numpy(), kind="stable")
    chosen = frame.iloc[np.concatenate([order[:n], order[-n:]])].assign(label=np.repeat([0, 1], n))
    return chosen.sort_index(), {"rule": f"top and bottom {top_bottom:g} % by score", "per_end": n}


def hold_out(frame: pd.DataFrame, *, fraction: float = 0.2, val_list: Path | None = None,
             seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(train, val, facts): the photos named in `val_list` (one path a line, from its own folder) held out, or else a
    random `fraction` drawn with `seed`. BadInput naming val_list's line for a photo the CSV does not keep."""
    if val_list is not None:
        base = Path(val_list).resolve().parent
        wanted = {}
        for number, line in enumerate(read_text(val_list).splitlines(), 1):
            if line.strip():
                wanted[os.path.normpath(base / line.strip())] = number
        kept = set(frame["path"])
        for path, number in wanted.items():
            if path not in kept:
                raise BadInput(f"{val_list}:{number}: {path} is not among the usable photos of the labels file")
        is_val = frame["path"].isin(wanted).to_numpy()
        facts = {"val_list": str(val_list)}
    else:
        count = int(round(fraction * len(frame)))
        is_val = np.zeros(len(frame), bool)
        is_val[np.random.default_rng(seed).permutation(len(frame))[:count]] = True
        facts = {"val_fraction": fraction, "seed": seed}
    return frame[~is_val], frame[is_val], facts
