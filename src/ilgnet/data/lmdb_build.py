"""A split's list files + the photos -> train_lmdb, val_lmdb and the training mean, in one pass.

The records are the ones Caffe's convert_imageset writes (uncompressed Datum: BGR, channels x height x width
uint8, label, encoded=false; keys `%08d_<filename>` numbered by list position), with the same decoding and
resize (ilgnet.data.images). With an encoding (png or jpg) they are what `convert_imageset --encoded --encode_type`
writes instead: the resized image encoded by OpenCV, label, encoded=true. The differences are on purpose: the
record order is shuffled with a seed, decoding runs on every core, the mean (what compute_image_mean would write,
from the pixels a reader decodes) comes out of the same pass, and images that cannot be decoded completely --
missing, empty, truncated, corrupt, not images -- are skipped and listed in skipped.txt instead of stored half grey.

Decoding processes decode up to a few hundred images per task (ilgnet.data.lmdb_decode), and one writer in this
process stores each task's records in list order, one transaction per task, while they decode the next; the LMDBs to
build share one stream of tasks (ilgnet.data.lmdb_writer). tests/test_lmdb.py checks the bytes against
convert_imageset's and the mean against compute_image_mean's.

Nothing finished is removed before its replacement is complete: whether a finished LMDB can be kept is
ilgnet.data.lmdb_inputs' decision, and the ones that cannot are built again beside it, under `<name>.partial` (with
the mean files when train is rebuilt), and all of them replace the old ones together once every one is complete,
before lmdb.json and skipped.txt say so; so the LMDBs, the means, lmdb.json and skipped.txt on disk always belong
together, and an interrupted or failed build leaves the finished data folder as it was. Before anything is decoded:
a set none of whose listed photos exists (a mistyped image folder) and a file name too long for an LMDB key are
refused, and raw records that would not fit on the filesystem beside the old ones are refused with what they need
and what is free. A filesystem that fills up all the same is reported in one line too, the partial output removed.
One build at a time per data folder (ilgnet.fileio.folder_lock): a second waits for the first and keeps what it
built; none while `ilgnet train` reads it.
"""
from __future__ import annotations

import errno
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet import defaults
from ilgnet.bvlc.io import write_mean
from ilgnet.data.ava import image_path, read_list_file
from ilgnet.data.folder import ENCODINGS, SETS, DataFolder
from ilgnet.data.lmdb_inputs import file_stats, inputs_of, reasons_to_rebuild
from ilgnet.data.lmdb_decode import WORKER_MODULES, init_worker
from ilgnet.data.lmdb_writer import LmdbJob, release, shared_buffers, write_lmdbs
from ilgnet.errors import BadInput, NoSpace, UserError
from ilgnet.fileio import (atomic_paths, atomic_write_json, atomic_write_text, filesystem, folder_lock, require,
                           size_of, size_text)
from ilgnet.pools import ctrl_c_point, pool_size, process_pool, shutdown

# LMDB's largest key, MDB_MAXKEYSIZE as the lmdb library (Caffe's and py-lmdb's) is built by default: 511 bytes
# (py-lmdb's Environment.max_key_size()). A record's key is `%08d_<file name>`, as convert_imageset writes it.
LMDB_MAX_KEY = 511
PAGE = 4096                # an LMDB page
LMDB_OVERHEAD = 16 * PAGE  # per LMDB besides its records: meta and branch pages, lock.mdb, ilgnet-files.tsv


def ignore(message: str) -> None:
    """The default `notify` of the data folder's builders: says nothing."""


def record_bytes(resize: int, key_length: int = 24) -> int:
    """Bytes a raw record of resize x resize takes in an LMDB, at most: a Datum of 3 x resize^2 pixels on overflow
    pages of its own (4 KB each, a 16-byte header) with its node (key and 16 bytes) in a leaf page; a small record
    in a leaf page, which LMDB splits in two when full (so it holds half as many records as fit, at worst)."""
    value = 3 * resize * resize + 32             # the pixels and the Datum's other fields
    node = key_length + 16 + 2                   # node header and its offset in the page
    if value + node > PAGE // 2:
        return math.ceil((value + 16) / PAGE) * PAGE + 2 * node
    return PAGE // max(1, (PAGE - 16) // (value + node) // 2)


def _entry(folder: DataFolder, name: str, step: dict, built: dict) -> dict:
    """One built set's lmdb.json entry, from what ilgnet.data.lmdb_writer returns for it."""
    skipped = built["skipped"]
    entry = {"lmdb": str(folder.lmdb(name)), "listed": len(step["frame"]), "records": sum(built["labels"].values()),
             "labels": built["labels"], "skipped": len(skipped),
             "skipped_reasons": dict(Counter(reason for _, reason in skipped).most_common()),
             "skipped_files": [{"file": f, "reason": r} for f, r in skipped], "seconds": round(built["seconds"], 3),
             "decoding_cpu_seconds": round(built["cpu_seconds"], 3), "inputs": step["inputs"]}
    if step["replaces"]:
        entry["rebuilt_because"] = step["reasons"]
    return entry


def _write_skipped(path: Path, summary: dict) -> None:
    """skipped.txt: the skipped photos of the LMDBs `summary` describes, `<set>\\t<file>\\t<reason>` per line."""
    atomic_write_text(path, "".join(f"{name}\t{s['file']}\t{s['reason']}\n" for name in SETS
                                                  if name in summary for s in summary[name]["skipped_files"]))


def _check_keys(list_path: Path, frame: pd.DataFrame) -> None:
    """Every record key (`%08d_<file name>`, the number growing past 8 digits for 10^8 records or more) must fit
    in LMDB_MAX_KEY bytes; BadInput names the list file and line of the first that would not."""
    prefix = max(8, len(str(len(frame) - 1))) + 1
    lengths = frame["filename"].map(lambda name: prefix + len(name.encode())).to_numpy()
    if (lengths > LMDB_MAX_KEY).any():
        at = int(np.argmax(lengths > LMDB_MAX_KEY))
        raise BadInput(f"{list_path}:{frame.index[at]}: a file name of {lengths[at] - prefix} bytes: its LMDB key "
                       f"(`%08d_<name>`, as convert_imageset writes it) would be {lengths[at]} bytes, more than "
                       f"LMDB's {LMDB_MAX_KEY}")


def _kept(folder: DataFolder) -> str:
    """What a failed build leaves: the finished LMDBs and mean untouched, or nothing at all."""
    finished = [p.name for p in (*map(folder.lmdb, SETS), folder.mean_binaryproto) if p.exists()]
    return (f"the finished {', '.join(finished)} in {folder.root} are untouched" if finished else
            "nothing was written as finished")


def _plan(folder: DataFolder, image_root: Path, previous: dict, *, resize: int, seed: int, encoding: str | None,
          force: bool) -> dict:
    """Per set: its list, inputs and file stats, and why it must be built (empty: its finished LMDB is kept). A set
    to build whose listed photos all are missing (a mistyped image folder), or one with a name too long for an LMDB
    key, is BadInput before anything is written."""
    plan = {}
    for name in SETS:
        list_path = folder.list_file(name)
        frame = read_list_file(list_path)
        if frame.empty:
            raise BadInput(f"{list_path}: no images listed")
        inputs = inputs_of(list_path, image_root, resize=resize, seed=seed, encoding=encoding)
        stats = file_stats(frame["filename"], image_root)
        reasons = ["a rebuild was forced"] if force else reasons_to_rebuild(folder, name, previous, inputs, stats)
        if reasons:
            _check_keys(list_path, frame)
            if all(line.startswith("-\t") for line in stats):
                raise BadInput(f"{list_path}: none of its {len(stats):,} photos exists under {image_root} (the "
                               f"first would be {image_path(image_root, frame['filename'].iat[0])}: is it the folder "
                               f"the list's names are relative to?); {_kept(folder)}")
        plan[name] = {"frame": frame, "inputs": inputs, "stats": stats, "reasons": reasons,
                      "replaces": bool(reasons) and folder.lmdb(name).exists()}
    return plan


def _room(folder: DataFolder, plan: dict, to_build: list[str], resize: int, encoding: str | None) -> tuple[int, int]:
    """(bytes the LMDBs to build need at most, bytes free on the data folder's filesystem). Raw records that would
    not fit beside the finished LMDBs are NoSpace before anything is written; encoded ones are smaller than raw
    ones by an amount known only once encoded, so they are not refused here."""
    needed = sum(len(plan[name]["frame"]) * record_bytes(resize) + LMDB_OVERHEAD for name in to_build)
    free = shutil.disk_usage(folder.root).free
    if encoding is None and needed > free:
        beside = " beside the finished ones, which they replace only once complete" if any(
            plan[name]["replaces"] for name in to_build) else ""
        raise NoSpace(f"{filesystem(folder.root)} has {size_text(free)} free; the LMDBs to build in "
                      f"{folder.root} ({', '.join(folder.lmdb(name).name for name in to_build)}: "
                      f"{sum(len(plan[name]['frame']) for name in to_build):,} records of {record_bytes(resize):,} "
                      f"bytes) need up to {size_text(needed)}{beside}; free some space and run it again")
    return needed, free


def _write_error(err: Exception, folder: DataFolder, partials: list[Path], *, needed: int, free: int,
                 encoding: str | None, kept: str) -> UserError | None:
    """The one-line error for a failed write, or None when `err` is not one: NoSpace for ENOSPC or EDQUOT, LMDB's
    MapFullError, or LMDB's commit failing with an input/output error (what it reports when the filesystem is full)
    while less than the build needs is free, saying which filesystem, what the build needed, what was free and what
    had been written; any other OSError or LMDB error as it is."""
    import lmdb

    lmdb_full = isinstance(err, lmdb.Error) and any(text in str(err) for text in ("Input/output error", "No space"))
    if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or isinstance(err, lmdb.MapFullError) \
            or (lmdb_full and shutil.disk_usage(folder.root).free < needed):
        names = ", ".join(p.name.removesuffix(".partial") for p in partials if p.name.endswith("_lmdb.partial"))
        return NoSpace(f"{filesystem(folder.root)} is full: building {names} in {folder.root} needed up to "
                       f"{size_text(needed)}{' (as raw records; encoded ones take less)' if encoding else ''}, "
                       f"{size_text(free)} was free when it began and {size_text(sum(map(size_of, partials)))} "
                       f"had been written; the partial output is removed and {kept}")
    if isinstance(err, (OSError, lmdb.Error)):
        return UserError(f"writing in {folder.root}: {err}; the partial output is removed and {kept}")
    return None


def build_split(split_dir: Path, image_root: Path, *, resize: int = defaults.RESIZE, seed: int = defaults.SEED,
                encoding: str | None = None, jobs: int | None = None, force: bool = False, progress: bool = True,
                notify: Callable[[str], None] = ignore) -> dict:
    """Builds split_dir/{train_lmdb,val_lmdb,mean.binaryproto,mean.npy,lmdb.json,skipped.txt} from its train.txt and
    val.txt with photos under `image_root`; returns what it writes to lmdb.json (per set: records, labels, skipped
    files and their reasons, and `reused` when a finished LMDB was kept, else `rebuilt_because` when one was there;
    `stored` and `images_per_second`: the records this call wrote, and how fast).

    encoding: None for raw records, "png" or "jpg" for encoded ones. force: rebuild even what could be kept.
    notify: receives, before a set is built again, what changed since it was built. Raises MissingFile, BadInput
    (a malformed or empty list, no listed photo of a set there, a name too long for a key, no image of a set
    readable), NoSpace (the filesystem too small, or full), InUse (another process reads the folder);
    after any of them, or an interrupt, the folder is as it was. Another build of the folder running is waited for
    (notify says so), and what it built is then kept where it can be."""
    folder, image_root = DataFolder(split_dir), Path(image_root)
    if resize <= 0 or seed < 0 or (jobs is not None and jobs < 1) or encoding not in (None, *ENCODINGS):
        raise BadInput(f"resize must be positive, seed non-negative, jobs positive and the encoding one of "
                       f"{', '.join(ENCODINGS)} (got {resize}, {seed}, {jobs}, {encoding})")
    folder.require_lists()
    require(image_root, folder=True, what="image folder")
    # A second build of the same folder waits for the first, then keeps what it built (or builds what it left).
    def waiting(who: str) -> None:
        notify(f"{folder.root} is being built by process {who}; waiting for it, then keeping what it built if the "
               f"settings match")

    with folder_lock(folder.root, on_wait=waiting):
        return _build(folder, image_root, resize=resize, seed=seed, encoding=encoding, jobs=jobs, force=force,
                      progress=progress, notify=notify)


def _build(folder: DataFolder, image_root: Path, *, resize: int, seed: int, encoding: str | None, jobs: int | None,
           force: bool, progress: bool, notify: Callable[[str], None]) -> dict:
    """build_split, once its arguments are checked and the folder is locked."""
    try:
        previous = folder.read_json(folder.lmdb_json)
    except BadInput:
        previous = {}                    # an unreadable record keeps nothing
    plan = _plan(folder, image_root, previous, resize=resize, seed=seed, encoding=encoding, force=force)
    to_build = [name for name in SETS if plan[name]["reasons"]]
    needed, free = _room(folder, plan, to_build, resize, encoding)
    jobs = pool_size(jobs, sum(len(plan[name]["frame"]) for name in to_build))
    summary = {"split": str(folder.root.resolve()), "image_root": str(image_root.resolve()), "resize": resize,
               "seed": seed, "encoding": encoding or "raw", "jobs": jobs}
    for name in SETS:
        if not plan[name]["reasons"]:
            summary[name] = {**{k: v for k, v in previous[name].items() if k != "rebuilt_because"}, "reused": True}
        elif plan[name]["replaces"]:
            notify(f"{folder.lmdb(name)}: rebuilding: {'; '.join(plan[name]['reasons'])} (beside the finished one, "
                   f"which stays until the new one is complete)")
    if "train" not in to_build:
        summary["mean_bgr"] = previous["mean_bgr"]
    # Everything a build changes, swapped in together; lmdb.json and skipped.txt last, once the rest is in place.
    outputs = [folder.lmdb(name) for name in to_build] + \
        ([folder.mean_binaryproto, folder.mean_npy] if "train" in to_build else []) + \
        [folder.lmdb_json, folder.skipped_txt]
    kept = _kept(folder)
    started = time.perf_counter()
    with atomic_paths(outputs) as partials:
        staged = dict(zip(outputs, partials))
        pool = process_pool(jobs, preload=WORKER_MODULES, initializer=init_worker) if to_build else None
        buffers = []
        try:
            buffers = shared_buffers(jobs, resize, encoding) if to_build else []
            lmdb_jobs = [LmdbJob(plan[name]["frame"], np.random.default_rng(seed).permutation(len(plan[name]["frame"])),
                                 staged[folder.lmdb(name)], plan[name]["stats"], folder.list_file(name))
                         for name in to_build]
            built = write_lmdbs(lmdb_jobs, image_root, resize=resize, encoding=encoding, pool=pool, workers=jobs,
                                buffers=buffers, progress=progress, kept=kept) if to_build else []
            for name, part in zip(to_build, built):
                summary[name] = _entry(folder, name, plan[name], part)
                if name == "train":
                    mean = part["pixel_sum"] / summary[name]["records"]
                    write_mean(mean, staged[folder.mean_binaryproto], staged[folder.mean_npy])
                    summary["mean_bgr"] = [round(float(v), 4) for v in mean.mean(axis=(1, 2))]
                ctrl_c_point("LMDBs")
            stored = sum(summary[name]["records"] for name in to_build)
            seconds = time.perf_counter() - started
            summary.update(skipped=sum(summary[name]["skipped"] for name in SETS), seconds=round(seconds, 3),
                           stored=stored, images_per_second=round(stored / seconds, 1) if stored else 0.0,
                           complete=True)
            atomic_write_json(staged[folder.lmdb_json], summary)
            _write_skipped(staged[folder.skipped_txt], summary)
        except Exception as err:
            if failure := _write_error(err, folder, partials, needed=needed, free=free, encoding=encoding, kept=kept):
                raise failure from None
            raise
        finally:
            # Before the partial output is removed, so that no worker writes into it after that; on an error or
            # Ctrl-C, no image is decoded for nothing.
            try:
                if pool is not None:
                    shutdown(pool)           # a Ctrl-C during it is raised at its end: the buffers go all the same
            finally:
                release(buffers)             # once no worker can attach to them
    return summary
