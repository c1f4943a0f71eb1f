"""One LMDB of Caffe Datum records written from a list of photos: the photos decoded and resized (ilgnet.data.images)
in worker processes, a few hundred per task, and every record written by one writer in this process, in list
order, one LMDB transaction per task, while the workers decode the next tasks; the pixels' sum (for the mean image)
is added up in the same pass. ilgnet.data.lmdb_build plans the builds and swaps the finished LMDBs in.

A task's records travel from its worker as bytes (about 200 KB a photo at 256 x 256), IN_FLIGHT_PER_PROCESS tasks
ahead per worker at most, so memory stays bounded whatever the list's length, and the workers never wait for
LMDB's one write lock (each wrote its own transactions before, and waited for the others' there).
"""
from __future__ import annotations

import math
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.bvlc.io import datum_bytes, encoded_datum_bytes
from ilgnet.data.ava import image_path
from ilgnet.data.images import BadImage, decode_image, encode_image
from ilgnet.data.lmdb_inputs import write_file_stats
from ilgnet.errors import BadInput

MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records
IN_FLIGHT_PER_PROCESS = 2  # tasks submitted ahead per decoding process: the writer never waits, memory stays bounded


def init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


WORKER_MODULES = ["numpy", "cv2", "lmdb", __name__]  # imported once, in the forkserver, for every worker


def _decode_task(task) -> tuple[list[tuple[bytes, bytes]], dict[int, int], list[tuple[str, str]], np.ndarray, float]:
    """Decodes some images into their records, for the writer in the main process.

    Returns the (key, value) records in list order, the number per label, (file name, reason) per skipped image,
    the stored pixels' sum (H x W x C) and the CPU seconds taken.
    """
    cpu_started = time.process_time()
    resize, encoding, items = task
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
    return records, labels, skipped, pixel_sum, time.process_time() - cpu_started


def _nothing_readable(list_path: Path, image_root: Path, skipped: list[tuple[str, str]], kept: str) -> BadInput:
    reasons = ", ".join(f"{reason} x{n:,}" for reason, n in Counter(r for _, r in skipped).most_common(3))
    return BadInput(f"{list_path}: none of its {len(skipped):,} images could be read ({reasons}; the first is "
                    f"{image_path(image_root, skipped[0][0])}); {kept}")


def write_lmdb(frame: pd.DataFrame, order: np.ndarray, image_root: Path, partial: Path, *, resize: int,
                encoding: str | None, stats: list[str], list_path: Path, pool, jobs: int, progress: bool,
                kept: str) -> dict:
    """Writes one LMDB (record i is list row order[i]) at `partial`, the temporary name it is built under; with no
    record stored, raises BadInput ending with `kept` (what is left as it was).

    Returns the record count per label, the skipped files, the stored pixels' sum (C x H x W) and the CPU seconds
    the decoding processes took.
    """
    import lmdb
    from tqdm import tqdm

    # Room for every record with its key and LMDB page overhead; the file grows only as far as it is written.
    map_size = max(1 << 30, int(len(order) * (3 * resize * resize + 8192) * 1.25))
    filenames, labels = frame["filename"].tolist(), frame["label"].tolist()
    # At least 8 tasks per process, so that the processes finish at about the same time.
    per_task = min(MAX_IMAGES_PER_TASK, max(16, math.ceil(len(order) / (8 * jobs))))
    counts, skipped, cpu_seconds = {}, [], 0.0
    pixel_sum = np.zeros((resize, resize, 3), np.uint64)
    tasks = [[(start + i, filenames[row], image_path(image_root, filenames[row]), labels[row])
              for i, row in enumerate(order[start:start + per_task])] for start in range(0, len(order), per_task)]
    pending: deque = deque()
    env = lmdb.open(str(partial), map_size=map_size, sync=False, meminit=False)
    try:
        with tqdm(total=len(order), desc=partial.name.removesuffix(".partial"), unit="img", file=sys.stderr,
                  disable=None if progress else True) as bar:
            while tasks or pending:
                while tasks and len(pending) < IN_FLIGHT_PER_PROCESS * jobs:   # decoded records wait in memory
                    pending.append(pool.submit(_decode_task, (resize, encoding, tasks.pop(0))))
                records, task_labels, task_skipped, task_sum, task_cpu = pending.popleft().result()
                with env.begin(write=True) as txn:                  # the one writer, in list order
                    for key, value in records:
                        txn.put(key, value)
                for label, n in task_labels.items():
                    counts[label] = counts.get(label, 0) + n
                skipped += task_skipped
                pixel_sum += task_sum
                cpu_seconds += task_cpu
                bar.update(len(records) + len(task_skipped))
        env.sync(True)
    finally:
        for future in pending:
            future.cancel()
        env.close()
    if not counts:
        raise _nothing_readable(list_path, image_root, sorted(skipped), kept)
    write_file_stats(partial, stats)
    return {"labels": {str(k): counts[k] for k in sorted(counts)}, "skipped": sorted(skipped),
            "pixel_sum": pixel_sum.transpose(2, 0, 1), "cpu_seconds": cpu_seconds}


