"""A split's list files + the photos -> train_lmdb, val_lmdb and the training mean, in one pass.

The records are the ones Caffe's convert_imageset writes (uncompressed Datum: BGR, channels x height x width
uint8, label, encoded=false; keys `%08d_<filename>` numbered by list position), with the same decoding and
resize (ilgnet.images). The differences are on purpose: the record order is shuffled with a seed, decoding runs
on every core, the mean (what compute_image_mean would write) comes out of the same pass, and images that cannot
be decoded completely -- missing, empty, truncated, corrupt, not images -- are skipped and listed in skipped.txt
instead of stored half grey.

Each decoding process writes its own images to the LMDB, a few hundred per transaction (LMDB lets one process
write at a time), so pixels never travel between processes. tests/test_lmdb.py checks the bytes against
convert_imageset's and the mean against compute_image_mean's.

Each LMDB is written under `<name>.partial` and renamed when complete, so an interrupted build never leaves an
LMDB that looks finished. Running again rebuilds what is missing and reuses a finished LMDB whose list, resize
and seed are unchanged (recorded in lmdb.json).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.ava import read_list_file
from ilgnet.caffe_io import datum_bytes, write_mean
from ilgnet.datafolder import SETS, DataFolder
from ilgnet.errors import BadInput, MissingFile
from ilgnet.fileio import atomic_path, atomic_write_json, atomic_write_text
from ilgnet.images import BadImage, decode_image

MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records


MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _store_task(task) -> tuple[dict[int, int], list[tuple[str, str]], np.ndarray, float]:
    """Decodes some images and writes them to the LMDB in one transaction.

    Returns the number stored per label, (file name, reason) per skipped image, the stored pixels' sum (H x W x C)
    and the CPU seconds taken.
    """
    import lmdb

    cpu_started = time.process_time()
    lmdb_path, map_size, image_root, resize, items = task
    records, labels, skipped = [], {}, []
    pixel_sum = np.zeros((resize, resize, 3), np.uint32)
    for position, filename, label in items:
        try:
            image = decode_image(image_root / filename, resize)
        except BadImage as err:
            skipped.append((filename, str(err)))
            continue
        pixel_sum += image
        records.append((f"{position:08d}_{filename}".encode(), datum_bytes(image.transpose(2, 0, 1), label)))
        labels[label] = labels.get(label, 0) + 1
    env = lmdb.open(str(lmdb_path), map_size=map_size, sync=False, meminit=False)
    try:
        with env.begin(write=True) as txn:
            for key, value in records:
                txn.put(key, value)
    finally:
        env.close()
    return labels, skipped, pixel_sum, time.process_time() - cpu_started


def _process_pool(jobs: int):
    """Decoding processes forked from a clean server (not from this process, which may hold threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "cv2", "lmdb", __name__])
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker)


def _write_lmdb(frame: pd.DataFrame, order: np.ndarray, image_root: Path, lmdb_path: Path, *, resize: int, pool,
                jobs: int, progress: bool) -> dict:
    """Writes one LMDB (record i is list row order[i]) under a temporary name, then renames it.

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
            items = [(start + i, filenames[row], labels[row]) for i, row in enumerate(order[start:start + per_task])]
            futures.append(pool.submit(_store_task, (partial, map_size, image_root, resize, items)))
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
        env = lmdb.open(str(partial), map_size=map_size)
        env.sync(True)
        env.close()
    return {"labels": {str(k): counts[k] for k in sorted(counts)}, "skipped": sorted(skipped),
            "pixel_sum": pixel_sum.transpose(2, 0, 1), "cpu_seconds": cpu_seconds}


def _fingerprint(list_path: Path, image_root: Path, resize: int, seed: int) -> str:
    digest = hashlib.sha256(list_path.read_bytes())
    digest.update(f"{image_root.resolve()}|{resize}|{seed}".encode())
    return digest.hexdigest()


def _build_set(name: str, folder: DataFolder, image_root: Path, *, resize: int, seed: int, pool, jobs: int,
               previous: dict, progress: bool) -> tuple[dict, np.ndarray | None]:
    """Builds (or reuses) one LMDB; returns its lmdb.json entry and, when built, the mean of its images."""
    list_path, lmdb_path = folder.list_file(name), folder.lmdb(name)
    frame = read_list_file(list_path)
    fingerprint = _fingerprint(list_path, image_root, resize, seed)
    if lmdb_path.is_dir() and previous.get("fingerprint") == fingerprint:
        return {**previous, "reused": True}, None
    started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(frame))
    built = _write_lmdb(frame, order, image_root, lmdb_path, resize=resize, pool=pool, jobs=jobs, progress=progress)
    records = sum(built["labels"].values())
    entry = {"lmdb": str(lmdb_path), "listed": len(frame), "records": records, "labels": built["labels"],
             "skipped": len(built["skipped"]), "skipped_files": [{"file": f, "reason": r} for f, r in built["skipped"]],
             "seconds": round(time.perf_counter() - started, 3),
             "decoding_cpu_seconds": round(built["cpu_seconds"], 3), "fingerprint": fingerprint}
    return entry, (built["pixel_sum"] / records if records else None)


def build_split(split_dir: Path, image_root: Path, *, resize: int = 256, seed: int = 1, jobs: int | None = None,
                progress: bool = True) -> dict:
    """Builds split_dir/{train_lmdb,val_lmdb,mean.binaryproto,mean.npy,lmdb.json,skipped.txt} from its train.txt and
    val.txt with photos under `image_root`; returns what it writes to lmdb.json (per set: records, labels, skipped
    files, and `reused` when a finished LMDB was kept). Raises MissingFile, BadInput (no training image readable)."""
    folder, image_root = DataFolder(split_dir), Path(image_root)
    if resize <= 0:
        raise BadInput(f"the resize must be positive, got {resize}")
    folder.require(*(folder.list_file(name) for name in SETS), made_by="ilgnet split")
    if not image_root.is_dir():
        raise MissingFile(f"image folder {image_root} not found")
    jobs = jobs or len(os.sched_getaffinity(0))
    previous = json.loads(folder.lmdb_json.read_text()) if folder.lmdb_json.is_file() else {}
    if not folder.mean_npy.is_file():
        previous.pop("train", None)
    summary = {"split": str(folder.root.resolve()), "image_root": str(image_root.resolve()), "resize": resize,
               "seed": seed, "jobs": jobs, "complete": False}
    started = time.perf_counter()
    pool = _process_pool(jobs)
    try:
        for _ in range(jobs):
            pool.submit(_init_worker)  # starts the workers while this process imports and reads the lists
        for name in SETS:
            atomic_write_json(folder.lmdb_json, summary)  # drops this set's old entry: reused only once rebuilt
            summary[name], mean = _build_set(name, folder, image_root, resize=resize, seed=seed, pool=pool,
                                             jobs=jobs, previous=previous.get(name, {}), progress=progress)
            if name == "train" and summary[name].get("reused"):
                summary["mean_bgr"] = previous["mean_bgr"]
            elif name == "train":
                if mean is None:
                    raise BadInput(f"{folder.list_file(name)}: none of its {summary[name]['listed']} images "
                                   f"could be read from {image_root}")
                write_mean(mean, folder.mean_binaryproto, folder.mean_npy)
                summary["mean_bgr"] = [round(float(v), 4) for v in mean.mean(axis=(1, 2))]
            atomic_write_json(folder.lmdb_json, summary)  # a finished set is reused should a later one be interrupted
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, queued images are not decoded for nothing
    skipped = [(name, s["file"], s["reason"]) for name in SETS for s in summary[name]["skipped_files"]]
    atomic_write_text(folder.skipped_txt, "".join(f"{name}\t{file}\t{reason}\n" for name, file, reason in skipped))
    built = sum(summary[name]["listed"] for name in SETS if not summary[name].get("reused"))
    seconds = time.perf_counter() - started
    summary.update(skipped=len(skipped), seconds=round(seconds, 3), images_per_second=round(built / seconds, 1),
                   complete=True)
    atomic_write_json(folder.lmdb_json, summary)
    return summary
