"""What a finished LMDB was built from, and whether it can be kept.

A set's LMDB is kept only when everything that went into it is unchanged: its list file (by content), the image
folder, the resize, the record-order seed, the encoding, and every listed file's size and modification time
(a photo fetched after the build, or repaired, or replaced, changes them). The first five are recorded in
lmdb.json; the listed files' sizes and times in a table inside the LMDB folder itself (DataFolder's LMDB_FILES,
written before the folder is renamed into place), so the record can never belong to another LMDB.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ilgnet.data.ava import image_path
from ilgnet.data.folder import LMDB_FILES, DataFolder
from ilgnet.fileio import file_digest

# How each recorded input is named when it changed.
INPUT_NAMES = {"image_root": "image folder", "resize": "resize", "seed": "seed", "encoding": "encoding"}
SHOWN_FILES = 5


def inputs_of(list_path: Path, image_root: Path, *, resize: int, seed: int, encoding: str | None) -> dict:
    """The inputs of a set's LMDB besides its photos, as lmdb.json records them."""
    return {"list_sha256": file_digest(list_path), "image_root": str(Path(image_root).resolve()), "resize": resize,
            "seed": seed, "encoding": encoding or "raw"}


def file_stats(filenames: Iterable[str], image_root: Path) -> list[str]:
    """Per listed file, in list order: `size<TAB>mtime_ns<TAB>name`, with `-` for both when it cannot be read."""
    lines = []
    for name in filenames:
        try:
            stat = os.stat(image_path(image_root, name))
            lines.append(f"{stat.st_size}\t{stat.st_mtime_ns}\t{name}")
        except OSError:
            lines.append(f"-\t-\t{name}")
    return lines


def write_file_stats(lmdb_dir: Path, stats: list[str]) -> None:
    """The table of the listed files' sizes and times, inside the (not yet renamed) LMDB folder."""
    (Path(lmdb_dir) / LMDB_FILES).write_text("".join(line + "\n" for line in stats))


def _changed_files(lmdb_dir: Path, stats: list[str]) -> str | None:
    """What changed among the listed files since the LMDB was built, or None."""
    table = lmdb_dir / LMDB_FILES
    if not table.is_file():
        return f"{table} is missing"
    before = table.read_text().splitlines()
    if len(before) != len(stats):
        return f"{table} lists {len(before):,} files, the list {len(stats):,}"
    changed = [now.split("\t", 2)[2] for old, now in zip(before, stats) if old != now]
    if not changed:
        return None
    shown = ", ".join(changed[:SHOWN_FILES]) + (", ..." if len(changed) > SHOWN_FILES else "")
    return (f"{len(changed):,} of the {len(stats):,} listed photos changed since it was built (size or "
            f"modification time, or they appeared or went missing): {shown}")


def reasons_to_rebuild(folder: DataFolder, name: str, previous: dict, inputs: dict, stats: list[str]) -> list[str]:
    """Why set `name`'s LMDB must be built (again), given the previous lmdb.json, the set's inputs now and its
    files' stats now; an empty list when the finished LMDB (and, for train, both mean files) can be kept."""
    lmdb_dir = folder.lmdb(name)
    entry = previous.get(name) or {}
    if not (lmdb_dir / "data.mdb").is_file():
        return [f"there is no finished {lmdb_dir.name}"]
    if "inputs" not in entry:
        return [f"{folder.lmdb_json.name} does not say what {lmdb_dir.name} was built from"]
    old = entry["inputs"]
    reasons = [f"{folder.list_file(name).name} changed"] if old.get("list_sha256") != inputs["list_sha256"] else []
    reasons += [f"the {label} changed from {old.get(key)} to {inputs[key]}" for key, label in INPUT_NAMES.items()
                if old.get(key) != inputs[key]]
    if name == "train":
        reasons += [f"{path.name} is missing" for path in (folder.mean_binaryproto, folder.mean_npy)
                    if not path.is_file()]
        reasons += [] if "mean_bgr" in previous else [f"{folder.lmdb_json.name} does not give the mean"]
    if not reasons and (changed := _changed_files(lmdb_dir, stats)):
        reasons.append(changed)
    return reasons
