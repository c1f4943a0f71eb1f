"""The LMDBs of a build written from their lists in one stream of tasks: the photos decoded in worker processes
(ilgnet.data.lmdb_decode), and every record written by one writer in this process, each LMDB in list order, one
LMDB transaction per task, while the workers decode the next tasks; the pixels' sum (for the mean image) is added up
in the same pass. ilgnet.data.lmdb_build plans the builds and swaps the finished LMDBs in.

The LMDBs share the stream: the next one's photos are decoded while the last records of the one before are stored
and it is flushed to disk, so no core waits between them. Tasks shrink as the stream nears its end (a share of
what is left per worker, guided self-scheduling), so that the workers finish at about the same time.

Raw records (about 200 KB a photo at 256 x 256) come back in shared memory: one buffer per task in flight, and one
spare, so the next task is on its way while a task's records are stored; encoded ones, and raw ones where the system
has no shared memory to spare, travel back as bytes. At most IN_FLIGHT_PER_PROCESS tasks per worker are ahead of
the writer, so memory stays bounded whatever the lists' length, and the workers never wait for LMDB's one write
lock.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.data.ava import image_path
from ilgnet.data.lmdb_decode import decode_task, raw_record_bytes
from ilgnet.data.lmdb_inputs import write_file_stats
from ilgnet.errors import BadInput
from ilgnet.pools import sigint_deferred

MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records
SHARED_MEMORY = "/dev/shm"       # where Linux keeps POSIX shared memory (a tmpfs)
SHARED_BYTES_PER_TASK = 8 << 20  # a task's shared buffer of raw records: 42 records of 256 x 256
MIN_IMAGES_PER_TASK = 8    # the last tasks: a transaction and a round trip each are worth that many photos
TASKS_PER_WORKER = 4       # a task is the images left / (this x workers): large first, small near the end
IN_FLIGHT_PER_PROCESS = 2  # tasks submitted ahead per decoding process: the writer never waits, memory stays bounded


@dataclass
class LmdbJob:
    """One LMDB to write at `partial` (the temporary name it is built under): record i is row order[i] of `frame`
    (the list file `list_path`, columns filename and label); `stats` are its photos' file stats, stored beside it."""
    frame: pd.DataFrame
    order: np.ndarray
    partial: Path
    stats: list[str]
    list_path: Path


def _nothing_readable(list_path: Path, image_root: Path, skipped: list[tuple[str, str]], kept: str) -> BadInput:
    reasons = ", ".join(f"{reason} x{n:,}" for reason, n in Counter(r for _, r in skipped).most_common(3))
    return BadInput(f"{list_path}: none of its {len(skipped):,} images could be read ({reasons}; the first is "
                    f"{image_path(image_root, skipped[0][0])}); {kept}")


def _images_per_buffer(resize: int) -> int:
    return max(1, SHARED_BYTES_PER_TASK // raw_record_bytes(resize))


def shared_buffers(workers: int, resize: int, encoding: str | None) -> list:
    """The shared-memory buffers raw records of resize x resize come back in from `workers` decoding processes: one
    per task in flight and a spare, their memory reserved up front (a tmpfs that filled up later would kill a
    worker writing into one); none for encoded records, or where they would take more than half of the shared
    memory free (SHARED_MEMORY), or more than there is. Remove them with `release` once the pool is shut down, so
    that no worker attaches to one removed."""
    from multiprocessing import shared_memory

    count, size = IN_FLIGHT_PER_PROCESS * workers + 1, _images_per_buffer(resize) * raw_record_bytes(resize)
    try:
        room = shutil.disk_usage(SHARED_MEMORY).free
    except OSError:                         # no such folder: shared memory lives elsewhere (macOS)
        room = None
    if encoding or (room is not None and count * size > room // 2):   # never more than half of what is free
        return []
    buffers = []
    try:
        for _ in range(count):
            buffers.append(shared_memory.SharedMemory(create=True, size=size))
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(buffers[-1]._fd, 0, size)   # ENOSPC now, not SIGBUS in a worker
    except OSError:
        release(buffers)
        return []
    except BaseException:                   # a Ctrl-C: none left behind
        release(buffers)
        raise
    return buffers


def release(buffers: list) -> None:
    """Removes the shared buffers (what a worker still maps of one is freed when it ends); a second Ctrl-C waits
    until all are removed, so that none is left for Python's resource tracker to warn about."""
    with sigint_deferred():
        for buffer in buffers:
            buffer.unlink()
            try:
                buffer.close()
            except BufferError:             # a view still held by a traceback: freed with it
                pass


def _tasks(jobs: list[LmdbJob], image_root: Path, workers: int, most: int) -> Iterator[tuple[int, list]]:
    """(job index, items of (position, file name, path, label)) for every task of the stream, in order, each of at
    most `most` images."""
    left = sum(len(job.order) for job in jobs)
    for index, job in enumerate(jobs):
        filenames, labels = job.frame["filename"].tolist(), job.frame["label"].tolist()
        start = 0
        while start < len(job.order):
            size = min(most, max(MIN_IMAGES_PER_TASK, math.ceil(left / (TASKS_PER_WORKER * workers))))
            rows = job.order[start:start + size]
            yield index, [(start + i, filenames[row], image_path(image_root, filenames[row]), labels[row])
                          for i, row in enumerate(rows)]
            start += len(rows)
            left -= len(rows)


def write_lmdbs(jobs: list[LmdbJob], image_root: Path, *, resize: int, encoding: str | None, pool, workers: int,
                buffers: list, progress: bool, kept: str) -> list[dict]:
    """Writes the jobs' LMDBs, one after the other in one stream, with the decoding processes of `pool` (`workers`
    of them) and their `buffers` (shared_buffers; none: records come back as bytes); a job with no record stored
    raises BadInput ending with `kept` (what is left as it was).

    Returns per job: the record count per label, the skipped files, the stored pixels' sum (C x H x W uint64), the
    CPU seconds the decoding processes took for it, and the seconds from the LMDB before's end (or the stream's
    start) to its own.
    """
    import lmdb
    from tqdm import tqdm

    last_end = time.perf_counter()
    built = [{"labels": {}, "skipped": [], "pixel_sum": np.zeros((resize, resize, 3), np.uint64), "cpu_seconds": 0.0}
             for _ in jobs]
    left = [len(job.order) for job in jobs]
    free = deque(buffers)
    tasks = _tasks(jobs, image_root, workers, _images_per_buffer(resize) if buffers else MAX_IMAGES_PER_TASK)
    pending: deque = deque()
    env = bar = None

    def submit() -> None:                                   # decoded records wait in memory: a bounded number
        while len(pending) < IN_FLIGHT_PER_PROCESS * workers and (free or not buffers) and \
                (task := next(tasks, None)) is not None:
            index, items = task
            buffer = free.popleft() if buffers else None
            pending.append((index, len(items), buffer, pool.submit(
                decode_task, (resize, encoding, buffer and buffer.name, items))))

    try:
        submit()
        while pending:
            index, size, buffer, future = pending.popleft()
            records, labels, skipped, pixel_sum, cpu_seconds = future.result()
            submit()                                        # into the spare buffer, while this task is stored
            job, part = jobs[index], built[index]
            if env is None:
                # Room for every record with its key and LMDB page overhead; the file grows only as far as written.
                map_size = max(1 << 30, int(len(job.order) * (3 * resize * resize + 8192) * 1.25))
                bar = tqdm(total=len(job.order), desc=job.partial.name.removesuffix(".partial"), unit="img",
                           file=sys.stderr, disable=None if progress else True)
                env = lmdb.open(str(job.partial), map_size=map_size, sync=False, meminit=False)
            with env.begin(write=True) as txn:                  # the one writer, in list order
                for key, value in records:
                    txn.put(key, value if isinstance(value, bytes) else buffer.buf[value[0]:value[1]])
            if buffer is not None:
                free.append(buffer)
            for label, n in labels.items():
                part["labels"][label] = part["labels"].get(label, 0) + n
            part["skipped"] += skipped
            part["pixel_sum"] += pixel_sum
            part["cpu_seconds"] += cpu_seconds
            bar.update(size)
            left[index] -= size
            if not left[index]:                                 # the job's last task: its LMDB is complete
                env.sync(True)
                env.close()
                bar.close()
                env = bar = None
                if not part["labels"]:
                    raise _nothing_readable(job.list_path, image_root, sorted(part["skipped"]), kept)
                write_file_stats(job.partial, job.stats)
                part["seconds"], last_end = time.perf_counter() - last_end, time.perf_counter()
    finally:
        for *_, future in pending:
            future.cancel()
        if env is not None:
            env.close()
        if bar is not None:
            bar.close()
    return [{"labels": {str(k): part["labels"][k] for k in sorted(part["labels"])}, "skipped": sorted(part["skipped"]),
             "pixel_sum": part["pixel_sum"].transpose(2, 0, 1), "cpu_seconds": part["cpu_seconds"],
             "seconds": part["seconds"]} for part in built]
