"""The decoding processes' side of an LMDB build: a task's photos decoded and resized (ilgnet.data.images) into
their records, for the one writer (ilgnet.data.lmdb_writer) to store in list order.

Raw records are written straight into a shared-memory buffer of the writer's (one copy of the pixels, the Datum
framed around them by ilgnet.bvlc.io.datum_frame), and only their places in it travel back; pickling 200 KB a
photo through a pipe took about 0.45 ms of CPU a photo, a seventh of the build. Encoded records, and raw ones when
no shared memory could be had, travel back as bytes.

Kept light on purpose: WORKER_MODULES is what the forkserver imports once for every decoding process, and no more
(no pandas), so the processes are ready while the command itself is still starting (ilgnet.pools.start_forkserver).
"""
from __future__ import annotations

import time
from multiprocessing import shared_memory

import numpy as np

from ilgnet.bvlc.io import datum_bytes, datum_frame, encoded_datum_bytes
from ilgnet.data.images import BadImage, decode_image, encode_image

WORKER_MODULES = ["numpy", "cv2", __name__]  # imported once, in the forkserver, for every decoding process

_attached: dict[str, shared_memory.SharedMemory] = {}  # in a decoding process: the writer's buffers, by name


def init_worker() -> None:
    """In each decoding process: OpenCV on one thread, as there is one process per core already."""
    import cv2

    cv2.setNumThreads(1)


def raw_record_bytes(resize: int) -> int:
    """The most bytes a raw record of resize x resize takes (its Datum's fields around the pixels: under 32)."""
    return 3 * resize * resize + 32


def _buffer(name: str) -> memoryview:
    """The writer's shared buffer `name`, attached once per process (the writer creates and removes it)."""
    if name not in _attached:
        _attached[name] = shared_memory.SharedMemory(name)
    return _attached[name].buf


def _store_raw(buffer: memoryview, at: int, image: np.ndarray, label: int) -> int:
    """Writes the raw record of `image` (H x W x C) at buffer[at:]; returns where it ends."""
    head, tail = datum_frame(image.shape[2], image.shape[0], image.shape[1], label)
    pixels = at + len(head)
    buffer[at:pixels] = head
    np.frombuffer(buffer, np.uint8, image.size, pixels).reshape(image.shape[2], *image.shape[:2])[...] = \
        image.transpose(2, 0, 1)
    buffer[pixels + image.size:pixels + image.size + len(tail)] = tail
    return pixels + image.size + len(tail)


def decode_task(task) -> tuple[list[tuple[bytes, bytes | tuple[int, int]]], dict[int, int], list[tuple[str, str]],
                               np.ndarray, float]:
    """Decodes one task, (resize, encoding, shared buffer name or None, items of (position, file name, path,
    label)), into its records.

    Returns the records in list order as (key, value): key `%08d_<file name>`, value a serialized Datum as
    convert_imageset writes it, or (start, end) of it in the shared buffer; the number per label; (file name, reason)
    per skipped image; the stored pixels' sum (H x W x C uint32: exact up to 2^24 images a task) and the CPU seconds
    taken.
    """
    cpu_started = time.process_time()
    resize, encoding, shared, items = task
    buffer = _buffer(shared) if shared else None
    records, labels, skipped, end = [], {}, [], 0
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
        elif buffer is not None:
            value = (end, _store_raw(buffer, end, image, label))
            end = value[1]
        else:
            value = datum_bytes(image.transpose(2, 0, 1), label)
        pixel_sum += image
        records.append((f"{position:08d}_{filename}".encode(), value))
        labels[label] = labels.get(label, 0) + 1
    return records, labels, skipped, pixel_sum, time.process_time() - cpu_started
