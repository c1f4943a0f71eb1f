"""`ilgnet lmdb`: a split's list files + the photos -> train_lmdb, val_lmdb and the training mean, in one pass.

The records are the ones Caffe's convert_imageset writes (uncompressed Datum: BGR, channels x height x width
uint8, label, encoded=false; keys `%08d_<filename>` numbered by list position), with the same decoding and
resize (cv::imread colour, then cv::resize with bilinear interpolation). The differences are on purpose:
the record order is shuffled with a seed, decoding runs on every core, the mean (what compute_image_mean
would write) comes out of the same pass, and images that cannot be decoded completely -- missing, empty,
truncated, corrupt, not images -- are skipped and listed in skipped.txt instead of stored half grey.

Each decoding process writes its own images to the LMDB, a few hundred per transaction (LMDB lets one
process write at a time), so pixels never travel between processes. The Datum and BlobProto bytes are
serialized here: the two messages are a handful of fields, and importing pycaffe for caffe_pb2 costs about
1.4 s of CPU (it imports scikit-image), as much as decoding 300 photos. tests/test_lmdb.py checks the
bytes against convert_imageset's and the mean against compute_image_mean's.

Each LMDB is written under `<name>.partial` and renamed when complete, so an interrupted build never leaves
an LMDB that looks finished. Running again rebuilds what is missing and reuses a finished LMDB whose list,
resize and seed are unchanged (recorded in lmdb.json).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

SETS = ("train", "val")
MAX_IMAGES_PER_TASK = 512  # one LMDB transaction each: about 100 MB of 256x256 records


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lmdb", help="build train_lmdb, val_lmdb and the mean files of a split",
        description="Builds DIR/train_lmdb and DIR/val_lmdb from DIR/train.txt and DIR/val.txt (as convert_imageset "
                    "does, records shuffled), and DIR/mean.binaryproto + DIR/mean.npy from the training images. "
                    "Writes DIR/lmdb.json (summary) and DIR/skipped.txt (images that could not be read).")
    parser.add_argument("--split", type=Path, required=True, help="split folder holding train.txt and val.txt")
    parser.add_argument("--images", type=Path, required=True, help="folder the list's file names are relative to")
    parser.add_argument("--resize", type=int, default=256, help="records are RESIZE x RESIZE (default: 256)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the record order (default: 1)")
    parser.add_argument("--jobs", type=int, help="decoding processes (default: one per core)")
    parser.set_defaults(func=run)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def datum_bytes(chw, label: int) -> bytes:
    """A serialized caffe.Datum as convert_imageset writes it: channels (field 1), height (2), width (3),
    data (4: the CxHxW uint8 pixels), label (5), encoded=false (7). `label` is non-negative."""
    channels, height, width = chw.shape
    return b"".join((b"\x08", _varint(channels), b"\x10", _varint(height), b"\x18", _varint(width),
                     b"\x22", _varint(chw.size), chw.tobytes(), b"\x28", _varint(label), b"\x38\x00"))


def blobproto_bytes(mean) -> bytes:
    """A serialized caffe.BlobProto laid out as compute_image_mean writes it: num=1 (field 1), channels (2),
    height (3), width (4), data (5, packed float32)."""
    import numpy as np

    channels, height, width = mean.shape
    data = np.ascontiguousarray(mean, dtype="<f4").tobytes()
    return b"".join((b"\x08\x01", b"\x10", _varint(channels), b"\x18", _varint(height), b"\x20", _varint(width),
                     b"\x2a", _varint(len(data)), data))


class BadImage(Exception):
    """An image that cannot be stored; the message says why."""


def _jpeg_is_cut_short(data: bytes) -> bool:
    """Whether a JPEG ends before its end-of-image marker.

    Walks the header segments to the first start-of-scan marker. From there an FF D9 can only be the
    end-of-image marker (in entropy-coded data an FF is always followed by 00 or a restart marker), so a file
    without one after that point was cut short. Decoders differ here: OpenCV 4 fills the rest with grey.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a well-formed header: left to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
        elif marker == 0xDA:
            return data.rfind(b"\xff\xd9", pos) < 0
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True


def decode_image(path, resize: int):
    """The image at `path` as convert_imageset reads it: 3-channel BGR uint8, resized to resize x resize.

    Decoding goes by content, not by name (a PNG named .jpg is a PNG); grayscale and CMYK become BGR.
    Raises BadImage for a file that is missing, empty, cut short or not a decodable image.
    """
    import cv2
    import numpy as np

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage("missing file") from None
    except OSError as err:
        raise BadImage(f"unreadable: {err.strerror}") from None
    if not data:
        raise BadImage("empty file")
    is_jpeg = data[:2] == b"\xff\xd8"
    if is_jpeg and _jpeg_is_cut_short(data):
        raise BadImage("truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. dimensions over OpenCV's limits
        raise BadImage(f"not decodable: {err.err}") from None
    if image is None:
        raise BadImage("corrupt JPEG" if is_jpeg else f"not a decodable image (starts with {data[:12]!r})")
    # cv::resize's default interpolation, bilinear, as in Caffe's ReadImageToCVMat.
    return cv2.resize(image, (resize, resize), interpolation=cv2.INTER_LINEAR)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _store_task(task):
    """Decodes some images and writes them to the LMDB in one transaction.

    Returns the number stored per label, (file name, reason) per skipped image, the stored pixels' sum (HxWxC)
    and the CPU seconds taken.
    """
    import lmdb
    import numpy as np

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


def _write_lmdb(frame, order, image_root: Path, lmdb_path: Path, *, resize: int, pool, jobs: int, desc: str) -> dict:
    """Writes one LMDB (record i is list row order[i]) under a temporary name, then renames it.

    Returns the record count per label, the skipped files, the stored pixels' sum (CxHxW) and the CPU seconds
    the decoding processes took.
    """
    from concurrent.futures import as_completed

    import lmdb
    import numpy as np
    from tqdm import tqdm

    partial = lmdb_path.with_name(lmdb_path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # Room for every record with its key and LMDB page overhead; the file grows only as far as it is written.
    map_size = max(1 << 30, int(len(order) * (3 * resize * resize + 8192) * 1.25))
    lmdb.open(str(partial), map_size=map_size).close()
    filenames, labels = frame["filename"].tolist(), frame["label"].tolist()
    # At least 8 tasks per process, so that the processes finish at about the same time.
    per_task = min(MAX_IMAGES_PER_TASK, max(16, math.ceil(len(order) / (8 * jobs))))
    futures = []
    for start in range(0, len(order), per_task):
        items = [(start + i, filenames[row], labels[row]) for i, row in enumerate(order[start:start + per_task])]
        futures.append(pool.submit(_store_task, (partial, map_size, image_root, resize, items)))
    counts, skipped, cpu_seconds = {}, [], 0.0
    pixel_sum = np.zeros((resize, resize, 3), np.uint64)
    with tqdm(total=len(order), desc=desc, unit="img", file=sys.stderr, disable=None) as bar:
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
    shutil.rmtree(lmdb_path, ignore_errors=True)
    partial.rename(lmdb_path)
    return {"labels": {str(k): counts[k] for k in sorted(counts)}, "skipped": sorted(skipped),
            "pixel_sum": pixel_sum.transpose(2, 0, 1), "cpu_seconds": cpu_seconds}


def _write_mean(mean, split_dir: Path) -> None:
    """mean.binaryproto in compute_image_mean's layout and mean.npy (the same float32 CxHxW array)."""
    import numpy as np

    mean = mean.astype(np.float32)
    tmp = split_dir / "mean.binaryproto.partial"
    tmp.write_bytes(blobproto_bytes(mean))
    tmp.rename(split_dir / "mean.binaryproto")
    with open(split_dir / "mean.npy.partial", "wb") as f:
        np.save(f, mean)
    (split_dir / "mean.npy.partial").rename(split_dir / "mean.npy")


def _fingerprint(list_path: Path, image_root: Path, resize: int, seed: int) -> str:
    digest = hashlib.sha256(list_path.read_bytes())
    digest.update(f"{image_root.resolve()}|{resize}|{seed}".encode())
    return digest.hexdigest()


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.rename(path)


def _build_set(name: str, split_dir: Path, image_root: Path, *, resize: int, seed: int, pool, jobs: int,
               previous: dict) -> tuple[dict, object]:
    """Builds (or reuses) one LMDB; returns its lmdb.json entry and, when built, the mean of its images."""
    import numpy as np

    from ilgnet.ava import read_list_file

    list_path, lmdb_path = split_dir / f"{name}.txt", split_dir / f"{name}_lmdb"
    frame = read_list_file(list_path)
    fingerprint = _fingerprint(list_path, image_root, resize, seed)
    if lmdb_path.is_dir() and previous.get("fingerprint") == fingerprint:
        print(f"ilgnet lmdb: reusing {lmdb_path} (same list, images, resize and seed)", file=sys.stderr)
        return {**previous, "reused": True}, None
    started = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(frame))
    built = _write_lmdb(frame, order, image_root, lmdb_path, resize=resize, pool=pool, jobs=jobs, desc=lmdb_path.name)
    records = sum(built["labels"].values())
    entry = {"lmdb": str(lmdb_path), "listed": len(frame), "records": records, "labels": built["labels"],
             "skipped": len(built["skipped"]), "skipped_files": [{"file": f, "reason": r} for f, r in built["skipped"]],
             "seconds": round(time.perf_counter() - started, 3),
             "decoding_cpu_seconds": round(built["cpu_seconds"], 3), "fingerprint": fingerprint}
    return entry, (built["pixel_sum"] / records if records else None)


def build_split(split_dir, image_root, *, resize: int = 256, seed: int = 1, jobs: int | None = None) -> dict:
    """Builds split_dir/{train_lmdb,val_lmdb,mean.binaryproto,mean.npy,lmdb.json,skipped.txt}; returns lmdb.json."""
    split_dir, image_root = Path(split_dir), Path(image_root)
    if resize <= 0:
        raise ValueError(f"--resize must be positive, got {resize}")
    for path in (split_dir / f"{name}.txt" for name in SETS):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (make it with `ilgnet split`)")
    if not image_root.is_dir():
        raise FileNotFoundError(f"image folder {image_root} not found")
    jobs = jobs or len(os.sched_getaffinity(0))
    summary_path = split_dir / "lmdb.json"
    previous = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if not (split_dir / "mean.npy").is_file():
        previous.pop("train", None)
    summary = {"split": str(split_dir.resolve()), "image_root": str(image_root.resolve()), "resize": resize,
               "seed": seed, "jobs": jobs, "complete": False}
    started = time.perf_counter()
    pool = _process_pool(jobs)
    try:
        for _ in range(jobs):
            pool.submit(_init_worker)  # starts the workers while this process imports and reads the lists
        for name in SETS:
            _write_json(summary_path, summary)  # drops this set's old entry: reused only once it is rebuilt
            summary[name], mean = _build_set(name, split_dir, image_root, resize=resize, seed=seed, pool=pool,
                                             jobs=jobs, previous=previous.get(name, {}))
            if name == "train" and summary[name].get("reused"):
                summary["mean_bgr"] = previous["mean_bgr"]
            elif name == "train":
                if mean is None:
                    raise ValueError(f"{split_dir / 'train.txt'}: none of its {summary[name]['listed']} images "
                                     f"could be read from {image_root}")
                _write_mean(mean, split_dir)
                summary["mean_bgr"] = [round(float(v), 4) for v in mean.mean(axis=(1, 2))]
            _write_json(summary_path, summary)  # a finished set is reused should a later one be interrupted
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, queued images are not decoded for nothing
    skipped = [(name, s["file"], s["reason"]) for name in SETS for s in summary[name]["skipped_files"]]
    (split_dir / "skipped.txt").write_text("".join(f"{name}\t{file}\t{reason}\n" for name, file, reason in skipped))
    built = sum(summary[name]["listed"] for name in SETS if not summary[name].get("reused"))
    seconds = time.perf_counter() - started
    summary.update(skipped=len(skipped), seconds=round(seconds, 3), images_per_second=round(built / seconds, 1),
                   complete=True)
    _write_json(summary_path, summary)
    return summary


def run(args) -> int:
    summary = build_split(args.split, args.images, resize=args.resize, seed=args.seed, jobs=args.jobs)
    for name in SETS:
        part = summary[name]
        labels = ", ".join(f"label {label}: {n:,}" for label, n in part["labels"].items())
        print(f"{part['lmdb']}: {part['records']:,} records ({labels}), {part['skipped']} skipped")
    print(f"{args.split / 'mean.binaryproto'}: per-channel mean (B, G, R) = {summary['mean_bgr']}")
    if summary["skipped"]:
        print(f"{summary['skipped']} images skipped, listed in {args.split / 'skipped.txt'}")
    if summary["images_per_second"]:
        print(f"{summary['seconds']:.1f} s, {summary['images_per_second']:.1f} images/s")
    return 0
