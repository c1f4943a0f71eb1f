"""A copy of AVA checked photo by photo, whatever its source (a mirror, a Kaggle or MEGA download):

    AVA_ROOT/ava-manifest.csv   id, bytes, sha256, decodes (1/0), width, height: one row per photo in images/
    AVA_ROOT/ava-missing.txt    the ids of AVA.txt without a photo, one a line
    AVA_ROOT/ava-corrupt.txt    `id<TAB>why` for each photo that does not decode as convert_imageset decodes it
    AVA_ROOT/ava-summary.json   the counts

A photo decodes when ilgnet.data.images.read_image reads it (the checks `ilgnet lmdb` makes: cut-short JPEGs and
undecodable files refused). Rows of an earlier manifest are reused for photos of the same size not modified since
it was written. The split commands read the manifest and leave out what it marks unreadable (`usable`); `ilgnet
lmdb` counts the listed photos it marks so (`unreadable_in`), which its own check of each photo then skips.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ilgnet.data.ava import read_ava_txt
from ilgnet.data.images import BadImage, read_image
from ilgnet.errors import BadInput
from ilgnet.fileio import atomic_write_json, atomic_write_text, read_json, require
from ilgnet.pools import pool_size

MANIFEST = "ava-manifest.csv"
MISSING = "ava-missing.txt"
CORRUPT = "ava-corrupt.txt"
SUMMARY = "ava-summary.json"
COLUMNS = ["id", "bytes", "sha256", "decodes", "width", "height"]


def _check(path: Path) -> tuple[dict, str]:
    """One manifest row for the photo at `path`, and why it does not decode ('' when it does)."""
    data = path.read_bytes()
    row = {"id": int(path.stem), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "decodes": 0, "width": 0, "height": 0}
    try:
        image = read_image(path)
    except BadImage as err:
        return row, str(err)
    row.update(decodes=1, width=int(image.shape[1]), height=int(image.shape[0]))
    return row, ""


def photos(images: Path) -> dict[int, Path]:
    """The photos of an images folder by AVA id: the files named `<digits>.jpg`."""
    found = {}
    for entry in os.scandir(images):
        stem, dot, suffix = entry.name.partition(".")
        if dot and suffix.lower() == "jpg" and stem.isdigit() and entry.is_file():
            found[int(stem)] = Path(entry.path)
    return found


def read_manifest(path: Path) -> pd.DataFrame:
    """An ava-manifest.csv (BadInput naming the file when its columns are not the manifest's)."""
    frame = pd.read_csv(require(path), dtype={"sha256": str})
    if list(frame.columns) != COLUMNS:
        raise BadInput(f"{path}: expected the columns {','.join(COLUMNS)}, found {','.join(map(str, frame.columns))}")
    return frame


def _reusable(root: Path, found: dict[int, Path]) -> dict[int, dict]:
    """Rows of the manifest already in `root` for photos of the same size not modified since it was written."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        old = read_manifest(path)
    except (BadInput, ValueError):
        return {}
    written = path.stat().st_mtime_ns
    rows = {}
    for row in old.to_dict("records"):
        photo = found.get(int(row["id"]))
        if photo is not None and int(row["decodes"]) == 1:
            stat = photo.stat()
            if stat.st_size == row["bytes"] and stat.st_mtime_ns < written:
                rows[int(row["id"])] = row
    return rows


def verify(root: Path, *, images: Path | None = None, ava_txt: Path | None = None, workers: int | None = None,
           progress: bool = True) -> dict:
    """Checks every photo of `images` (default ROOT/images) against `ava_txt` (default ROOT/AVA.txt) and writes the
    manifest, the missing and corrupt lists and the summary into `root`; returns the summary: ava_txt_rows,
    photos_present, photos_decode, missing, corrupt (counts), not_in_ava_txt, reused, and the files' paths (the
    photo folder's resolved: what `check_current` compares the manifest with)."""
    from tqdm import tqdm

    root = Path(root)
    images = require(images or root / "images", folder=True, what="the photo folder")
    ava_txt = require(ava_txt or root / "AVA.txt", what="AVA.txt")
    meta = read_ava_txt(ava_txt, drop_invalid=True)
    found = photos(images)
    rows = _reusable(root, found)
    reused = len(rows)
    reasons: dict[int, str] = {}
    todo = [found[i] for i in sorted(found) if i not in rows]
    with ThreadPoolExecutor(pool_size(workers, len(todo) or 1)) as pool, \
            tqdm(total=len(todo), unit="photo", disable=not progress, desc="verify") as bar:
        for row, why in pool.map(_check, todo):
            rows[row["id"]] = row
            if why:
                reasons[row["id"]] = why
            bar.update()
    manifest = pd.DataFrame([rows[i] for i in sorted(rows)], columns=COLUMNS)
    listed = set(meta["image_id"].astype(int))
    missing = sorted(listed - set(found))
    corrupt = sorted(reasons)
    atomic_write_text(root / MANIFEST, manifest.to_csv(index=False))
    atomic_write_text(root / MISSING, "".join(f"{i}\n" for i in missing))
    atomic_write_text(root / CORRUPT, "".join(f"{i}\t{reasons[i]}\n" for i in corrupt))
    summary = {"ava_txt": str(ava_txt), "images": str(images.resolve()), "ava_txt_rows": len(meta),
               "photos_present": len(found), "photos_decode": int(manifest["decodes"].sum()),
               "missing": len(missing), "corrupt": len(corrupt), "not_in_ava_txt": len(set(found) - listed),
               "reused": reused, "manifest": str(root / MANIFEST), "missing_list": str(root / MISSING),
               "corrupt_list": str(root / CORRUPT)}
    atomic_write_json(root / SUMMARY, summary)
    return summary


def manifest_beside(ava_txt: Path) -> Path | None:
    """The ava-manifest.csv beside an AVA.txt, when there is one."""
    path = Path(ava_txt).parent / MANIFEST
    return path if path.is_file() else None


def check_current(manifest: Path, ava_txt: Path) -> None:
    """BadInput, saying to verify again, when `manifest` (an ava-manifest.csv) is older than what it describes:
    `ava_txt` (the AVA.txt read with it), or the photo folder it was made from (the one ava-summary.json names,
    else images/ beside it). Photos added, removed or renamed change their folder's modification time; a photo
    rewritten in place does not, which `ilgnet lmdb` catches as it decodes each photo. A folder that is the
    manifest's own is not compared (writing the manifest changes it)."""
    manifest = Path(manifest)
    root = manifest.parent
    try:
        recorded = read_json(root / SUMMARY) if (root / SUMMARY).is_file() else {}
    except ValueError:
        recorded = {}
    named = Path(str(recorded.get("images") or "")) if isinstance(recorded, dict) else Path()
    images = named if named.is_absolute() else root / "images"
    written = manifest.stat().st_mtime_ns
    for path, what in ((Path(ava_txt), "AVA.txt"), (images, "its photo folder")):
        if path.exists() and path.resolve() != root.resolve() and path.stat().st_mtime_ns > written:
            again = "" if images.resolve() == (root / "images").resolve() else f" --images {images}"
            raise BadInput(f"{manifest} is older than {what} {path}, so it may not describe the photos there now; "
                           f"run `ilgnet ava verify {root}{again}` to check them again")


def usable(meta: pd.DataFrame, manifest: Path) -> tuple[pd.DataFrame, dict]:
    """The rows of AVA.txt (read_ava_txt's frame) whose photo the manifest lists as decoding, and the counts left
    out: {"manifest", "missing", "undecodable"}."""
    frame = read_manifest(manifest)
    decodes = set(frame.loc[frame["decodes"] == 1, "id"].astype(int))
    present = set(frame["id"].astype(int))
    ids = meta["image_id"].astype(int)
    keep = ids.isin(decodes)
    return meta[keep], {"manifest": str(manifest), "missing": int((~ids.isin(present)).sum()),
                        "undecodable": int((ids.isin(present) & ~keep).sum())}


def unreadable_in(names, manifest: Path) -> dict:
    """Of the photos a list file names (`<AVA id>.jpg`, in any folder), how many `manifest` marks unreadable, as
    `usable` counts them: {"manifest", "missing", "undecodable"}; names that are not AVA ids are not counted."""
    stems = (Path(str(name)).stem for name in names)
    return usable(pd.DataFrame({"image_id": [int(stem) for stem in stems if stem.isdigit()]}), manifest)[1]
