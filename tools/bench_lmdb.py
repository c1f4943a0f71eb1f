"""Benchmark: `ilgnet lmdb` against Caffe's convert_imageset + compute_image_mean on the same images.

Makes a split of about --count images in a temporary folder by repeating the sample photos under new names
(90 % train, 10 % val), then times, as whole commands, both ways of building train_lmdb, val_lmdb and the
training mean:
  Caffe:  convert_imageset (train) + convert_imageset (val) + compute_image_mean (train)
  ilgnet: ilgnet lmdb --split ... (shuffled records, mean in the same pass, one decoding process per core, one
          writer)
and checks that both hold the same records byte for byte (every serialized Datum; the keys differ, as ilgnet
numbers the shuffled order).
Each is run --repeat times, alternating; the best time of each counts. The photos are read once beforehand
so both find them in the page cache.

The machine's other work takes CPU time from both, and Linux shares the CPU between sessions, not processes: with
a busy core next door, the decoding processes share what is left and the ratio tends to the ratio of CPU time.
So CPU seconds are printed too, of every process each way ran: this script is their subreaper (Linux's
PR_SET_CHILD_SUBREAPER, through tools/cpu_time.py), so ilgnet's forkserver, decoding processes and resource tracker,
which outlive its main process for a moment, are waited for here and counted with it, start-up and imports included.

Usage: python tools/bench_lmdb.py [--images DIR] [--count 1000] [--repeat 3] [--jobs N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_time import become_subreaper, children_cpu, reap_all

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO.parent / "shared" / "data" / "ava-sample" / "images"


def make_split(photos: list[Path], count: int, work: Path) -> tuple[Path, Path]:
    """Copies the photos round-robin to work/images/<n>_<name> until `count`; writes work/split/{train,val}.txt."""
    images, split = work / "images", work / "split"
    images.mkdir()
    split.mkdir()
    names = []
    for n in range(count):
        photo = photos[n % len(photos)]
        name = f"{n:05d}_{photo.name}"
        shutil.copyfile(photo, images / name)
        names.append(f"{name} {n % 2}\n")
    n_train = round(count * 0.9)
    (split / "train.txt").write_text("".join(names[:n_train]))
    (split / "val.txt").write_text("".join(names[n_train:]))
    return images, split


def timed(commands: list[list[str]]) -> tuple[float, float]:
    """Wall-clock seconds of running the commands one after the other, and the CPU seconds of every process they
    started (waited for once the commands have ended: a forkserver ends when its command's process has)."""
    started, cpu = time.perf_counter(), children_cpu()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    reap_all()
    return seconds, children_cpu() - cpu


def record_digests(path: Path) -> list[str]:
    """The sha256 of every record's value (the serialized Datum: label, shape, pixels) of an LMDB, sorted."""
    import hashlib

    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return sorted(hashlib.sha256(value).hexdigest() for _, value in txn.cursor())
    finally:
        env.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SAMPLE_IMAGES,
                        help=f"photos to repeat (default: {SAMPLE_IMAGES})")
    parser.add_argument("--count", type=int, default=1000, help="images in the benchmark split (default: 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way; the best counts (default: 3)")
    parser.add_argument("--jobs", type=int, help="decoding processes for ilgnet lmdb (default: one per core)")
    parser.add_argument("--resize", type=int, default=256)
    args = parser.parse_args()

    from ilgnet.bvlc.tools import tool_path
    from ilgnet.pools import cpu_count
    from ilgnet.export.precision import cpu_kernels

    photos = sorted(p for p in args.images.iterdir() if p.is_file()) if args.images.is_dir() else []
    if not photos:
        parser.error(f"no photos in {args.images}")
    try:
        become_subreaper()
    except OSError as error:
        parser.error(f"cannot count the decoding processes' CPU time: {error.strerror}")
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_lmdb_") as tmp:
        work = Path(tmp)
        images, split = make_split(photos, args.count, work)
        for path in images.iterdir():
            path.read_bytes()
        resize = [f"--resize_height={args.resize}", f"--resize_width={args.resize}"]
        caffe_out = work / "caffe"
        caffe = [
            [str(tool_path("convert_imageset")), *resize, f"{images}/", str(split / "train.txt"),
             str(caffe_out / "train_lmdb")],
            [str(tool_path("convert_imageset")), *resize, f"{images}/", str(split / "val.txt"),
             str(caffe_out / "val_lmdb")],
            [str(tool_path("compute_image_mean")), str(caffe_out / "train_lmdb"), str(caffe_out / "mean.binaryproto")],
        ]
        ours = [[sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images", str(images),
                 "--resize", str(args.resize), *(["--jobs", str(args.jobs)] if args.jobs else [])]]
        best = {"caffe": float("inf"), "ilgnet": float("inf")}
        cpu = {"caffe": float("inf"), "ilgnet": float("inf")}
        for run in range(args.repeat):
            shutil.rmtree(caffe_out, ignore_errors=True)
            caffe_out.mkdir()
            for path in split.glob("*_lmdb"):
                shutil.rmtree(path)
            (split / "lmdb.json").unlink(missing_ok=True)
            (seconds, caffe_cpu), (our_seconds, our_cpu) = timed(caffe), timed(ours)
            print(f"run {run + 1}: convert_imageset + compute_image_mean {seconds:.2f} s ({caffe_cpu:.2f} s CPU), "
                  f"ilgnet lmdb {our_seconds:.2f} s ({our_cpu:.2f} s CPU)", flush=True)
            best = {"caffe": min(best["caffe"], seconds), "ilgnet": min(best["ilgnet"], our_seconds)}
            same = all(record_digests(caffe_out / f"{name}_lmdb") == record_digests(split / f"{name}_lmdb")
                       for name in ("train", "val"))
            cpu = {"caffe": min(cpu["caffe"], caffe_cpu), "ilgnet": min(cpu["ilgnet"], our_cpu)}
    rate = {k: args.count / best[k] for k in best}
    print(f"\n{args.count} images ({len(photos)} photos repeated), {args.resize}x{args.resize}, {cores} cores "
          f"({cpu_count()} usable; integer kernels: {', '.join(cpu_kernels()) or 'none known'}), load average "
          f"{load:.2f} before the runs and {os.getloadavg()[0]:.2f} after (other processes take CPU time from both)")
    for name, label in (("caffe", "convert_imageset + compute_image_mean"), ("ilgnet", "ilgnet lmdb")):
        print(f"  {label:38s} {best[name]:6.2f} s  {rate[name]:7.1f} images/s   "
              f"{1000 * cpu[name] / args.count:5.2f} ms CPU per image")
    print(f"  ratio: {rate['ilgnet'] / rate['caffe']:.2f}x images/s, {cpu['caffe'] / cpu['ilgnet']:.2f}x less CPU; "
          f"records {'byte-identical' if same else 'DIFFERENT'} (every Datum of both LMDBs, keys aside: ilgnet "
          f"numbers the shuffled order)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
