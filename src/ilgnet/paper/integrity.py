"""Whether a finished campaign run can be trusted: its files whole, and its data still the data it was trained and
evaluated on. `campaign`, `campaign --status` and `report` ask `check_finished` and act on its Verdict:

    finished   evaluation.json, val_scores.csv, run record, Caffe log (and fig5_maps.npz where the run kept one)
               read back whole, and the data folder run record names still holds the mean and lists whose sha256
               run record records
    stale      the files are whole, but the data folder now holds other data (deleted and remade, another split or
               mean): the run's numbers are its own, measured on the data it recorded, and never stand for today's
    damaged    one of the files is missing, cut short or not what the campaign writes: `file` names it, `reason` says
               what is wrong with it

A run's data is named by `data_key`: the sha256 of the mean, training list and val list run record records, so two
runs of the same data folder at different times, or of different folders, are compared by what they read.
"""
from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ilgnet.data.folder import DataFolder
from ilgnet.errors import UserError
from ilgnet.fileio import read_json
from ilgnet.zoo.runfolder import RunFolder

EVALUATION_JSON = "evaluation.json"
SCORES_CSV = "val_scores.csv"
MAPS = "fig5_maps.npz"
SCORE_COLUMNS = ("key", "label", "predicted", "p_0", "p_1")
EVALUATION_NUMBERS = ("accuracy", "balanced_accuracy")


@dataclass(frozen=True)
class Verdict:
    """What `check_finished` found: state is finished, stale or damaged; `file` the file at fault (damaged) and
    `reason` what is wrong, in words (empty for finished); `evaluation` the evaluation.json read back (None when
    damaged)."""
    state: str
    reason: str = ""
    file: Path | None = None
    evaluation: dict | None = None


class Damaged(UserError, ValueError):
    """A file of a finished run that cannot be read back as the campaign wrote it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def _reason(err: Exception, path: Path) -> str:
    """An error's message about `path` without the path: `PATH:7: not JSON (...)` -> `line 7: not JSON (...)`."""
    rest = str(err).removeprefix(str(path))
    return re.sub(r"^:(\d+): ", r"line \1: ", rest).lstrip(": ").strip() or "unreadable"


def read_evaluation(run_dir: Path) -> dict:
    """run_dir/evaluation.json as `ilgnet.paper.execute.evaluate_run` writes it: a JSON object with accuracy and
    balanced_accuracy in [0, 1], images (a positive count), majority_baseline and paper_protocol (each with an
    accuracy). Damaged naming the file and what is wrong."""
    path = Path(run_dir) / EVALUATION_JSON
    if not path.is_file():
        raise Damaged(path, "missing")
    try:
        value = read_json(path)
    except UserError as err:
        raise Damaged(path, _reason(err, path)) from None
    if not isinstance(value, dict):
        raise Damaged(path, "not a JSON object")
    numbers = {key: value.get(key) for key in EVALUATION_NUMBERS}
    numbers.update({f"{key}.accuracy": (value.get(key) or {}).get("accuracy") if isinstance(value.get(key), dict)
                    else None for key in ("majority_baseline", "paper_protocol")})
    for key, number in numbers.items():
        if not (isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
                and 0 <= number <= 1):
            raise Damaged(path, f"{key} is {number!r}, not a fraction from 0 to 1")
    images = value.get("images")
    if not (isinstance(images, int) and not isinstance(images, bool) and images > 0):
        raise Damaged(path, f"images is {images!r}, not a positive count")
    return value


def check_scores(run_dir: Path, images: int) -> None:
    """run_dir/val_scores.csv: the columns SCORE_COLUMNS and one row per evaluated record (`images`); Damaged
    otherwise."""
    import pandas as pd

    path = Path(run_dir) / SCORES_CSV
    if not path.is_file():
        raise Damaged(path, "missing")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise Damaged(path, f"not a table of scores ({str(err).strip().splitlines()[0]})") from None
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise Damaged(path, f"no column {missing[0]}")
    if len(frame) != images:
        raise Damaged(path, f"{len(frame)} complete rows of the {images} records evaluation.json counts")
    if frame["p_1"].isna().any():           # empty, or a value read as NaN ("nan", "NA", ...)
        line = int(frame.index[frame["p_1"].isna()][0]) + 2
        raise Damaged(path, f"line {line}: p_1 is empty or not a number")


def check_maps(run_dir: Path) -> None:
    """run_dir/fig5_maps.npz, where there is one: a whole NumPy archive with keys, labels and layers; Damaged
    otherwise."""
    import numpy as np

    path = Path(run_dir) / MAPS
    if not path.exists():
        return
    try:
        with np.load(path) as saved:
            names = set(saved.files)
            if not {"keys", "labels", "layer0"} <= names:
                raise Damaged(path, "not the feature maps a campaign keeps (no keys, labels, layer0)")
            for name in names:
                saved[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise Damaged(path, f"cut short or not an .npz archive ({str(err).strip().splitlines()[0]})") from None


def data_key(record: dict) -> tuple[str | None, str | None, str | None]:
    """(sha256 of the mean, of the training list, of the val list) a run record record names: what the run read."""
    return tuple((record.get(key) or {}).get("sha256") for key in ("mean", "train_list", "val_list"))


def check_finished(run_dir: Path, data: Path | None = None) -> Verdict:
    """The Verdict on a run whose campaign.json says finished (see the module docstring), its data compared with
    `data` (a data folder; default: the one run record names). Reads every file once; never raises for a damaged
    file."""
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    try:
        evaluation = read_evaluation(run_dir)
        check_scores(run_dir, evaluation["images"])
        check_maps(run_dir)
        if not run.train_log.is_file():
            raise Damaged(run.train_log, "missing")
        try:
            record = run.read_record()
        except UserError as err:
            raise Damaged(run.model_json, _reason(err, run.model_json)) from None
    except Damaged as damaged:
        return Verdict("damaged", damaged.reason, damaged.path)
    folder = DataFolder(Path(data if data is not None else record.get("data") or run_dir / "no-data-folder"))
    if not folder.root.is_dir():
        return Verdict("stale", f"its data folder {folder.root} is gone", evaluation=evaluation)
    try:
        changes = [c for c in run.data_changes(folder) if not c.startswith("the data folder was")]
    except UserError as err:
        return Verdict("stale", f"its data folder cannot be compared with {run.model_json.name}: {err}",
                       evaluation=evaluation)
    if changes:
        return Verdict("stale", f"trained and evaluated on other data than {folder.root} holds now: "
                       + "; ".join(changes), evaluation=evaluation)
    return Verdict("finished", evaluation=evaluation)
