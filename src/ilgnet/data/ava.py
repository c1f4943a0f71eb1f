"""AVA metadata: AVA.txt, the official image lists (*.jpgl) and Caffe list files (`<id>.jpg <label>`).

AVA.txt has one image per line and 15 integer columns: row index, image id (the dpchallenge id; the photo is
`<id>.jpg`), the number of votes for each score 1..10, two semantic tag ids and the challenge id. Every reader
here validates its input and raises BadInput (a ValueError) naming the file and the 1-based line of the first problem.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.errors import BadInput
from ilgnet.fileio import atomic_write_text, read_text

SCORES = np.arange(1, 11)
COUNT_COLUMNS = [f"count_{k}" for k in SCORES]
AVA_COLUMNS = ["index", "image_id", *COUNT_COLUMNS, "tag1", "tag2", "challenge"]

# AVA1 (Jin et al. 2016, following Murray et al. 2012): an image is high quality (1) iff its mean score is
# above 5; a mean of exactly 5.0 is low (0). This reproduces the paper's 74,673 low / 180,856 high.
AVA1_THRESHOLD = 5.0


def _first_bad_line(path: Path, lines: list[str], names: list[str], what: str) -> str | None:
    """The error message for the first line that is not len(names) non-negative integers, if any."""
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if fields and len(fields) != len(names):
            return f"{path}:{number}: expected {len(names)} columns ({what}), found {len(fields)}"
        for position, field in enumerate(fields):
            if not re.fullmatch(r"[0-9]+", field):
                return (f"{path}:{number}: column {position + 1} ({names[position]}) is not a non-negative "
                        f"integer: {field!r}")
    return None


def _read_integer_table(path: Path, names: list[str], what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A whitespace-separated table of non-negative integers (blank lines skipped) and each row's line number.

    Every field must be decimal digits (pandas alone would read `1e3` as 1000); pandas' C parser then reads the
    table. When a check fails, a line-by-line scan names the first bad line.
    """
    text = read_text(path)
    lines = text.splitlines()
    if re.search(r"[^0-9 \t\r\n]", text):
        raise BadInput(_first_bad_line(path, lines, names, what) or f"{path}: not a table of integers")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, dtype=np.int64)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(np.zeros((0, len(names)), np.int64))
    except (ValueError, OverflowError) as err:  # includes pandas' ParserError
        raise BadInput(_first_bad_line(path, lines, names, what) or f"{path}: {err}") from None
    if frame.shape[1] != len(names):
        raise BadInput(_first_bad_line(path, lines, names, what) or f"{path}: expected {len(names)} columns")
    frame.columns = names
    line_numbers = np.array([number for number, line in enumerate(lines, 1) if line.strip()], dtype=np.int64)
    return frame, line_numbers


def add_vote_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `votes`, `mean` and `std` (population standard deviation) from the count_1..count_10 columns."""
    counts = frame[COUNT_COLUMNS].to_numpy(np.float64)
    votes = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts @ SCORES / votes
        variance = counts @ (SCORES ** 2) / votes - mean ** 2
    frame = frame.copy()
    frame["votes"] = votes.astype(np.int64)
    frame["mean"] = mean
    frame["std"] = np.sqrt(np.clip(variance, 0, None))
    return frame


def read_ava_txt(path, *, drop_invalid: bool = False) -> pd.DataFrame:
    """Reads AVA.txt into columns index, image_id, count_1..count_10, tag1, tag2, challenge, votes, mean, std.

    A wrong column count or a field that is not an integer is always an error. A repeated image id or an image
    without votes is an error too, unless `drop_invalid`: then the later duplicates and the zero-vote rows are
    dropped, and listed in `frame.attrs["dropped"]` as (line, image_id, reason).
    """
    path = Path(path)
    frame, line_numbers = _read_integer_table(path, AVA_COLUMNS,
                                              "index, image id, 10 vote counts, tag 1, tag 2, challenge")
    if frame.empty:
        raise BadInput(f"{path}: no rows")
    frame = add_vote_stats(frame)
    problems = []
    first_row = pd.Series(np.arange(len(frame)), index=frame["image_id"]).groupby(level=0).first()
    for i in np.flatnonzero(frame["image_id"].duplicated().to_numpy()):
        image_id = int(frame["image_id"].iat[i])
        problems.append((int(line_numbers[i]), image_id,
                         f"image id {image_id} already on line {line_numbers[first_row[image_id]]}"))
    for i in np.flatnonzero((frame["votes"] == 0).to_numpy()):
        problems.append((int(line_numbers[i]), int(frame["image_id"].iat[i]),
                         f"image {frame['image_id'].iat[i]} has no votes"))
    problems.sort()
    if problems and not drop_invalid:
        line, _, reason = problems[0]
        more = f" (and {len(problems) - 1} more such rows; drop_invalid drops them)" if len(problems) > 1 else ""
        raise BadInput(f"{path}:{line}: {reason}{more}")
    if problems:
        bad_lines = {line for line, _, _ in problems}
        frame = frame[[line not in bad_lines for line in line_numbers]].reset_index(drop=True)
    frame.attrs["dropped"] = problems
    return frame


def ava1_labels(mean: pd.Series) -> pd.Series:
    """The AVA1 binary label: 1 iff the mean score is above 5 (exactly 5.0 is 0)."""
    return (mean > AVA1_THRESHOLD).astype(np.int64)


def read_id_list(path) -> pd.Series:
    """Reads an official AVA image list (aesthetics_image_lists/*.jpgl: one image id per line) in file order."""
    path = Path(path)
    frame, line_numbers = _read_integer_table(path, ["image_id"], "one image id")
    ids = frame["image_id"]
    repeated = np.flatnonzero(ids.duplicated().to_numpy())
    if len(repeated):
        raise BadInput(f"{path}:{line_numbers[repeated[0]]}: image id {ids.iat[repeated[0]]} is listed twice")
    return ids


# A list entry as Caffe's convert_imageset reads it: the label is the last field, after the last run of blanks
# (spaces or tabs; convert_imageset itself splits at the last single space), and the file name is everything
# before it, so names may hold spaces.
LIST_ENTRY = re.compile(r"^[ \t]*(\S.*?)[ \t]+(\S+)[ \t]*$")


def _list_entry_problem(line: str) -> str:
    """Why a non-blank list line is not `<filename> <label>`."""
    match = LIST_ENTRY.match(line)
    if match is None:
        return f"expected `<filename> <label>`, found only {line.strip()!r}: no label after the file name"
    return f"expected `<filename> <label>` with a non-negative integer label, found label {match[2]!r}"


def read_list_file(path) -> pd.DataFrame:
    """Reads a Caffe image list (`<filename> <label>` per line) into columns filename, image_id, label, indexed by
    the 1-based line number.

    The label is the last field, after the last run of spaces or tabs, so file names may contain spaces (as in
    convert_imageset); blanks around the entry, CRLF line ends, a UTF-8 byte-order mark and blank lines are
    ignored. Anything else (no label, a label that is not a non-negative integer) is BadInput naming the file and
    line. `image_id` is the file name's stem as an integer where it is one (AVA photos are `<id>.jpg`), else
    missing.
    """
    path = Path(path)
    lines = pd.Series(read_text(path).split("\n")).str.removesuffix("\r")
    line_numbers = np.arange(1, len(lines) + 1)
    keep = (lines.str.strip(" \t") != "").to_numpy()
    lines, line_numbers = lines[keep].reset_index(drop=True), line_numbers[keep]
    parts = lines.str.extract(LIST_ENTRY)
    filename, label = parts[0], parts[1]
    well_formed = label.str.fullmatch(r"[0-9]{1,9}").fillna(False).astype(bool).to_numpy()
    if not well_formed.all():
        i = np.flatnonzero(~well_formed)[0]
        raise BadInput(f"{path}:{line_numbers[i]}: {_list_entry_problem(lines.iat[i])}")
    numeric_stem = filename.str.extract(r"(?:^|/)([0-9]{1,18})(?:\.[^./]*)?$")[0]
    return pd.DataFrame({
        "filename": filename.astype(str),
        "image_id": pd.to_numeric(numeric_stem).astype("Int64"),
        "label": label.astype(np.int64),
    }).set_index(pd.Index(line_numbers, name="line"))


def image_path(root: Path | str, filename: str) -> Path:
    """Where a list entry's photo is: ROOT + NAME, as convert_imageset concatenates them (a name starting with
    "/" is still under ROOT, not at the filesystem's root)."""
    return Path(root) / filename.lstrip("/")


def write_list_file(frame: pd.DataFrame, path) -> None:
    """Writes a Caffe image list: `<filename> <label>` per line (filename defaults to `<image_id>.jpg`)."""
    filenames = frame["filename"] if "filename" in frame else frame["image_id"].astype(str) + ".jpg"
    text = "".join(f"{name} {label}\n" for name, label in zip(filenames, frame["label"].astype(int)))
    atomic_write_text(Path(path), text)
