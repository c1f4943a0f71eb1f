"""A split's list files + the photos -> train_lmdb, val_lmdb and the training mean, in one pass.

The records are the ones Caffe's convert_imageset writes (uncompressed Datum: BGR, channels x height x width
uint8, label, encoded=false; keys `%08d_<filename>` numbered by list position), with the same decoding and
resize (ilgnet.data.images). With an encoding (png or jpg) they are what `convert_imageset --encoded --encode_type`
writes instead: the resized image encoded by OpenCV, label, encoded=true. The differences are on purpose: the
record order is shuffled with a seed, decoding runs on every core, the mean (what compute_image_mean would write,
from the pixels a reader decodes) comes out of the same pass, and images that cannot be decoded completely --
missing, empty, truncated, corrupt, not images -- are skipped and listed in skipped.txt instead of stored half grey.

Each decoding process writes its own images to the LMDB, a few hundred per transaction (LMDB lets one process
write at a time), so pixels never travel between processes. tests/test_lmdb.py checks the bytes against
convert_imageset's and the mean against compute_image_mean's.

Each LMDB is written under `<name>.partial` and renamed when complete, so an interrupted build never leaves an
LMDB that looks finished, and a set none of whose photos could be read is an error that leaves no LMDB. Whether a
finished LMDB can be kept is ilgnet.data.lmdb_inputs' decision; one that cannot is removed before its set is rebuilt,
with the mean files for train, so that the LMDBs, the means and skipped.txt on disk always belong together.
"""
from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet import defaults
from ilgnet.bvlc.io import datum_bytes, encoded_datum_bytes, write_mean
from ilgnet.data.ava import image_path, read_list_file
from ilgnet.data.folder import ENCODINGS, SETS, DataFolder
from ilgnet.data.images import BadImage, decode_image, encode_image
from ilgnet.data.lmdb_inputs import file_stats, inputs_of, reasons_to_rebuild, write_file_stats
from ilgnet.errors import BadInput
from ilgnet.fileio import atomic_path, atomic_write_json, atomic_write_text, remove, require
from ilgnet.pools import pool_size, process_pool, shutdown

MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records


def _ignore(message: str) -> None:
    pass


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


WORKER_MODULES = ["numpy", "cv2", "lmdb", __name__]  # imported once, in the forkserver, for every worker


def _store_task(task) -> tuple[dict[int, int], list[tuple[str, str]], np.ndarray, float]:
    """Decodes some images and writes them to the LMDB in one transaction.

    Returns the number stored per label, (file name, reason) per skipped image, the stored pixels' sum (H x W x C)
    and the CPU seconds taken.
    """
    import lmdb

    cpu_started = time.process_time()
    lmdb_path, map_size, resize, encoding, items = task
    records, labels, skipped = [], {}, []
    pixel_sum = np.zeros((resize, resize, 3), np.uint32)
    for position, filename, path, label in items:
        try:
            image = decode_image(path, resize)
        except BadImage as err:
            skipped.append((filename, str(err)))
            continue
        if encoding:
            data, image = encode_image(image, encoding)
            value = encoded_datum_bytes(data, label)
        else:
            value = datum_bytes(image.transpose(2, 0, 1), label)
        pixel_sum += image
        records.append((f"{position:08d}_{filename}".encode(), value))
        labels[label] = labels.get(label, 0) + 1
    env = lmdb.open(str(lmdb_path), map_size=map_size, sync=False, meminit=False)
    try:
        with env.begin(write=True) as txn:
            for key, value in records:
                txn.put(key, value)
    finally:
        env.close()
    return labels, skipped, pixel_sum, time.process_time() - cpu_started


def _nothing_readable(list_path: Path, image_root: Path, skipped: list[tuple[str, str]]) -> BadInput:
    reasons = ", ".join(f"{reason} x{n:,}" for reason, n in Counter(r for _, r in skipped).most_common(3))
    return BadInput(f"{list_path}: none of its {len(skipped):,} images could be read ({reasons}; the first is "
                    f"{image_path(image_root, skipped[0][0])}); nothing was written as finished")


def _write_lmdb(frame: pd.DataFrame, order: np.ndarray, image_root: Path, lmdb_path: Path, *, resize: int,
                encoding: str | None, stats: list[str], list_path: Path, pool, jobs: int, progress: bool) -> dict:
    """Writes one LMDB (record i is list row order[i]) under a temporary name, then renames it; with no record
    stored, raises BadInput and renames nothing.

    Returns the record count per label, the skipped files, the stored pixels' sum (C x H x W) and the CPU seconds
    the decoding processes took.
    """
    from concurrent.futures import as_completed

    import lmdb
    from tqdm import tqdm

    # Room for every record with its key and LMDB page overhead; the file grows only as far as it is written.
    map_size = max(1 << 30, int(len(order) * (3 * resize * resize + 8192) * 1.25))
    filenames, labels = frame["filename"].tolist(), frame["label"].tolist()
    # At least 8 tasks per process, so that the processes finish at about the same time.
    per_task = min(MAX_IMAGES_PER_TASK, max(16, math.ceil(len(order) / (8 * jobs))))
    counts, skipped, cpu_seconds = {}, [], 0.0
    pixel_sum = np.zeros((resize, resize, 3), np.uint64)
    with atomic_path(lmdb_path, keep_partial=True) as partial:
        lmdb.open(str(partial), map_size=map_size).close()
        futures = []
        for start in range(0, len(order), per_task):
            items = [(start + i, filenames[row], image_path(image_root, filenames[row]), labels[row])
                     for i, row in enumerate(order[start:start + per_task])]
            futures.append(pool.submit(_store_task, (partial, map_size, resize, encoding, items)))
        with tqdm(total=len(order), desc=lmdb_path.name, unit="img", file=sys.stderr,
                  disable=None if progress else True) as bar:
            for future in as_completed(futures):
                task_labels, task_skipped, task_sum, task_cpu = future.result()
                for label, n in task_labels.items():
                    counts[label] = counts.get(label, 0) + n
                skipped += task_skipped
                pixel_sum += task_sum
                cpu_seconds += task_cpu
                bar.update(sum(task_labels.values()) + len(task_skipped))
        if not counts:
            remove(partial)
            raise _nothing_readable(list_path, image_root, sorted(skipped))
        env = lmdb.open(str(partial), map_size=map_size)
        env.sync(True)
        env.close()
        write_file_stats(partial, stats)
    return {"labels": {str(k): counts[k] for k in sorted(counts)}, "skipped": sorted(skipped),
            "pixel_sum": pixel_sum.transpose(2, 0, 1), "cpu_seconds": cpu_seconds}


def _build_set(name: str, folder: DataFolder, frame: pd.DataFrame, image_root: Path, inputs: dict,
               stats: list[str], *, resize: int, seed: int, encoding: str | None, pool, jobs: int,
               progress: bool) -> tuple[dict, np.ndarray]:
    """Builds one LMDB; returns its lmdb.json entry and the mean of its images."""
    started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(frame))
    built = _write_lmdb(frame, order, image_root, folder.lmdb(name), resize=resize, encoding=encoding, stats=stats,
                        list_path=folder.list_file(name), pool=pool, jobs=jobs, progress=progress)
    records = sum(built["labels"].values())
    skipped = built["skipped"]
    entry = {"lmdb": str(folder.lmdb(name)), "listed": len(frame), "records": records, "labels": built["labels"],
             "skipped": len(skipped), "skipped_reasons": dict(Counter(reason for _, reason in skipped).most_common()),
             "skipped_files": [{"file": f, "reason": r} for f, r in skipped],
             "seconds": round(time.perf_counter() - started, 3),
             "decoding_cpu_seconds": round(built["cpu_seconds"], 3), "inputs": inputs}
    return entry, built["pixel_sum"] / records


def _write_skipped(folder: DataFolder, summary: dict) -> None:
    """skipped.txt: the skipped photos of the LMDBs on disk, `<set>\\t<file>\\t<reason>` per line."""
    atomic_write_text(folder.skipped_txt, "".join(f"{name}\t{s['file']}\t{s['reason']}\n" for name in SETS
                                                  if name in summary for s in summary[name]["skipped_files"]))


def _plan(folder: DataFolder, image_root: Path, previous: dict, *, resize: int, seed: int, encoding: str | None,
          force: bool) -> dict:
    """Per set: its list, inputs and file stats, and why it must be built (empty: its finished LMDB is kept)."""
    plan = {}
    for name in SETS:
        frame = read_list_file(folder.list_file(name))
        if frame.empty:
            raise BadInput(f"{folder.list_file(name)}: no images listed")
        inputs = inputs_of(folder.list_file(name), image_root, resize=resize, seed=seed, encoding=encoding)
        stats = file_stats(frame["filename"], image_root)
        reasons = ["a rebuild was forced"] if force else reasons_to_rebuild(folder, name, previous, inputs, stats)
        plan[name] = {"frame": frame, "inputs": inputs, "stats": stats, "reasons": reasons}
    return plan


def build_split(split_dir: Path, image_root: Path, *, resize: int = defaults.RESIZE, seed: int = defaults.SEED,
                encoding: str | None = None, jobs: int | None = None, force: bool = False, progress: bool = True,
                notify: Callable[[str], None] = _ignore) -> dict:
    """Builds split_dir/{train_lmdb,val_lmdb,mean.binaryproto,mean.npy,lmdb.json,skipped.txt} from its train.txt and
    val.txt with photos under `image_root`; returns what it writes to lmdb.json (per set: records, labels, skipped
    files and their reasons, and `reused` when a finished LMDB was kept, else `rebuilt_because` when one was there;
    `stored` and `images_per_second`: the records this call wrote, and how fast).

    encoding: None for raw records, "png" or "jpg" for encoded ones. force: rebuild even what could be kept.
    notify: receives, before a set is built again, what changed since it was built. Raises MissingFile, BadInput
    (a malformed or empty list, no image of a set readable: then no LMDB of that set is left)."""
    folder, image_root = DataFolder(split_dir), Path(image_root)
    if resize <= 0 or seed < 0 or (jobs is not None and jobs < 1) or encoding not in (None, *ENCODINGS):
        raise BadInput(f"resize must be positive, seed non-negative, jobs positive and the encoding one of "
                       f"{', '.join(ENCODINGS)} (got {resize}, {seed}, {jobs}, {encoding})")
    folder.require_lists()
    require(image_root, folder=True, what="image folder")
    try:
        previous = folder.read_json(folder.lmdb_json)
    except BadInput:
        previous = {}                    # an unreadable record keeps nothing
    plan = _plan(folder, image_root, previous, resize=resize, seed=seed, encoding=encoding, force=force)
    to_build = [name for name in SETS if plan[name]["reasons"]]
    jobs = pool_size(jobs, sum(len(plan[name]["frame"]) for name in to_build))
    summary = {"split": str(folder.root.resolve()), "image_root": str(image_root.resolve()), "resize": resize,
               "seed": seed, "encoding": encoding or "raw", "jobs": jobs, "complete": False}
    for name in SETS:
        plan[name]["replaces"] = bool(plan[name]["reasons"]) and folder.lmdb(name).exists()
        if not plan[name]["reasons"]:
            summary[name] = {**{k: v for k, v in previous[name].items() if k != "rebuilt_because"}, "reused": True}
        elif plan[name]["replaces"]:
            notify(f"{folder.lmdb(name)}: rebuilding: {'; '.join(plan[name]['reasons'])}")
            remove(folder.lmdb(name))
    if plan["train"]["reasons"]:
        for path in (folder.mean_binaryproto, folder.mean_npy):
            remove(path)
    else:
        summary["mean_bgr"] = previous["mean_bgr"]
    atomic_write_json(folder.lmdb_json, summary)
    _write_skipped(folder, summary)
    started = time.perf_counter()
    pool = process_pool(jobs, preload=WORKER_MODULES, initializer=_init_worker) if to_build else None
    try:
        for name in to_build:
            step = plan[name]
            summary[name], mean = _build_set(name, folder, step["frame"], image_root, step["inputs"], step["stats"],
                                             resize=resize, seed=seed, encoding=encoding, pool=pool, jobs=jobs,
                                             progress=progress)
            if step["replaces"]:
                summary[name]["rebuilt_because"] = step["reasons"]
            if name == "train":
                write_mean(mean, folder.mean_binaryproto, folder.mean_npy)
                summary["mean_bgr"] = [round(float(v), 4) for v in mean.mean(axis=(1, 2))]
            atomic_write_json(folder.lmdb_json, summary)  # a finished set is reused should a later one fail
            _write_skipped(folder, summary)
    finally:
        if pool is not None:
            shutdown(pool)  # on an error or Ctrl-C, no image is decoded for nothing
    stored = sum(summary[name]["records"] for name in to_build)
    seconds = time.perf_counter() - started
    summary.update(skipped=sum(summary[name]["skipped"] for name in SETS), seconds=round(seconds, 3),
                   stored=stored, images_per_second=round(stored / seconds, 1), complete=True)
    atomic_write_json(folder.lmdb_json, summary)
    return summary
