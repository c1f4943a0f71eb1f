"""`ilgnet lmdb` (`make ava1-lmdb` / `make ava2-lmdb`, second step): a split's train_lmdb, val_lmdb and mean files,
built as convert_imageset and compute_image_mean would (ilgnet.data.lmdb_build)."""
from __future__ import annotations

import sys

from ilgnet import defaults
from ilgnet.commands.arguments import INPUT, REPLACED, Arg, existing_folder, integer, refuse_overwrites
from ilgnet.data.folder import ENCODINGS, SETS
from ilgnet.pools import PROCESSES_PER_CPU

MAX_RESIZE = 4096
ARGS = (Arg("--split", "split", REPLACED, "the split folder, whose train_lmdb and val_lmdb are rebuilt"),
        Arg("--images", "images", INPUT, "the folder of the photos (--images)"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lmdb", help="build train_lmdb, val_lmdb and the mean files of a split",
        description="Builds DIR/train_lmdb and DIR/val_lmdb from DIR/train.txt and DIR/val.txt (as convert_imageset "
                    "does, records shuffled), and DIR/mean.binaryproto + DIR/mean.npy from the training images. "
                    "Writes DIR/lmdb.json (summary) and DIR/skipped.txt (images that could not be read); where "
                    "ava-manifest.csv (`ilgnet ava verify`) is beside the photo folder, first says how many listed "
                    "photos it marks unreadable. A finished "
                    "LMDB is kept when its list, every listed photo's size and modification time, the image folder, "
                    "resize, seed and encoding are unchanged.",
        epilog="examples:\n"
               "  ilgnet lmdb --split data/ava2 --images ~/data/AVA/images\n"
               "  ilgnet lmdb --split data/ava1-320 --images ~/data/AVA/images --resize 320   # Inception-v3/v4 nets\n"
               "  ilgnet lmdb --split data/ava2 --images ~/data/AVA/images --encoded png --jobs 8")
    parser.add_argument("--split", type=existing_folder, required=True,
                        help="split folder holding train.txt and val.txt")
    parser.add_argument("--images", type=existing_folder, required=True,
                        help="folder the list's file names are relative to (IMAGES + NAME, as convert_imageset "
                             "joins them)")
    parser.add_argument("--resize", type=integer(1, MAX_RESIZE), default=defaults.RESIZE,
                        help=f"records are RESIZE x RESIZE (default: {defaults.RESIZE})")
    parser.add_argument("--seed", type=integer(0), default=defaults.SEED, help="seed of the record order (default: 1)")
    parser.add_argument("--encoded", choices=ENCODINGS,
                        help="store each resized image encoded, as `convert_imageset --encoded --encode_type` does "
                             "(png: lossless; jpg: quality 95), instead of raw pixels (default: raw)")
    parser.add_argument("--jobs", type=integer(1),
                        help=f"decoding processes (default: one per CPU); never more than the images to encode nor "
                             f"{PROCESSES_PER_CPU} per CPU")
    parser.add_argument("--force", action="store_true", help="rebuild the LMDBs even when nothing changed")
    parser.set_defaults(func=run)


def _notify(message: str) -> None:
    print(f"ilgnet lmdb: {message}", file=sys.stderr, flush=True)


def _losses(part: dict, list_file) -> None:
    """The skipped images of one set on stderr: a count with the commonest reasons, loud above the threshold."""
    if not part["skipped"]:
        return
    share = part["skipped"] / part["listed"]
    reasons = ", ".join(f"{reason} x{n:,}" for reason, n in list(part["skipped_reasons"].items())[:3])
    loud = share > defaults.SKIPPED_WARNING
    hint = loud and next(iter(part["skipped_reasons"])) == "missing file"
    _notify(f"{'WARNING: ' if loud else ''}{part['skipped']:,} of the {part['listed']:,} images of {list_file} "
            f"({share:.1%}) were skipped ({reasons}); each is listed with its reason in skipped.txt"
            f"{'; is --images the folder the list names are relative to?' if hint else ''}")


def run(args) -> int:
    from ilgnet.data.lmdb_decode import WORKER_MODULES
    from ilgnet.pools import start_forkserver

    start_forkserver(WORKER_MODULES)   # the decoding processes' imports, alongside this process's (pandas) below
    from ilgnet.data.folder import DataFolder
    from ilgnet.data.make import make_lmdbs

    data = DataFolder(args.split)
    refuse_overwrites(ARGS, args, paths={"split": [data.lmdb(name) for name in SETS]},
                      inputs=[(data.list_file(name), f"the list {name}.txt") for name in SETS])
    summary = make_lmdbs(args.split, args.images, resize=args.resize, seed=args.seed, encoding=args.encoded,
                         jobs=args.jobs, force=args.force, notify=_notify)
    for name in SETS:
        part = summary[name]
        labels = ", ".join(f"label {label}: {n:,}" for label, n in part["labels"].items())
        kept = " (kept: list, photos, image folder, resize, seed and encoding unchanged)" if part.get("reused") else ""
        print(f"{part['lmdb']}: {part['records']:,} records of {part['listed']:,} listed ({labels}), "
              f"{part['skipped']:,} skipped{kept}")
        _losses(part, args.split / f"{name}.txt")
    print(f"{args.split / 'mean.binaryproto'}: per-channel mean (B, G, R) = {summary['mean_bgr']}")
    if summary["skipped"]:
        print(f"{summary['skipped']:,} images skipped, listed in {args.split / 'skipped.txt'}")
    if summary["stored"]:
        print(f"{summary['stored']:,} images stored in {summary['seconds']:.1f} s, {summary['images_per_second']:.1f} "
              f"images/s")
    return 0
