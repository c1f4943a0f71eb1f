"""`ilgnet lmdb` (`make ava1-lmdb` / `make ava2-lmdb`, second step): a split's train_lmdb, val_lmdb and mean files,
built as convert_imageset and compute_image_mean would (ilgnet.lmdb_builder)."""
from __future__ import annotations

from pathlib import Path

from ilgnet import defaults
from ilgnet.datafolder import SETS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lmdb", help="build train_lmdb, val_lmdb and the mean files of a split",
        description="Builds DIR/train_lmdb and DIR/val_lmdb from DIR/train.txt and DIR/val.txt (as convert_imageset "
                    "does, records shuffled), and DIR/mean.binaryproto + DIR/mean.npy from the training images. "
                    "Writes DIR/lmdb.json (summary) and DIR/skipped.txt (images that could not be read).")
    parser.add_argument("--split", type=Path, required=True, help="split folder holding train.txt and val.txt")
    parser.add_argument("--images", type=Path, required=True, help="folder the list's file names are relative to")
    parser.add_argument("--resize", type=int, default=defaults.RESIZE,
                        help=f"records are RESIZE x RESIZE (default: {defaults.RESIZE})")
    parser.add_argument("--seed", type=int, default=defaults.SEED, help="seed of the record order (default: 1)")
    parser.add_argument("--jobs", type=int, help="decoding processes (default: one per core)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.lmdb_builder import build_split

    summary = build_split(args.split, args.images, resize=args.resize, seed=args.seed, jobs=args.jobs)
    for name in SETS:
        part = summary[name]
        labels = ", ".join(f"label {label}: {n:,}" for label, n in part["labels"].items())
        reused = " (reused: same list, images, resize and seed)" if part.get("reused") else ""
        print(f"{part['lmdb']}: {part['records']:,} records ({labels}), {part['skipped']} skipped{reused}")
    print(f"{args.split / 'mean.binaryproto'}: per-channel mean (B, G, R) = {summary['mean_bgr']}")
    if summary["skipped"]:
        print(f"{summary['skipped']} images skipped, listed in {args.split / 'skipped.txt'}")
    if summary["images_per_second"]:
        print(f"{summary['seconds']:.1f} s, {summary['images_per_second']:.1f} images/s")
    return 0
