"""`ilgnet split` (`make ava1-lmdb` / `make ava2-lmdb`, first step): an AVA partition as Caffe list files
(train.txt, val.txt) plus split.json. The partitions are ilgnet.data.partitions'."""
from __future__ import annotations

import argparse
import math
import sys

from ilgnet import defaults
from ilgnet.commands.arguments import (INPUT, OUTPUT, Arg, existing_file, existing_folder, integer, output_folder,
                                       real, refuse_overwrites)
from ilgnet.errors import BadInput, UsageError

ARGS = (Arg("--out", "out", OUTPUT, "the split folder"), Arg("--ava-txt", "ava_txt", INPUT, "AVA.txt"),
        Arg("FILE.csv", "csv", INPUT, "the labels file"), Arg("--val-list", "val_list", INPUT, "the val list"),
        Arg("repo", "repo", INPUT, "the clone of the ILGNet repository"),
        Arg("--lists", "lists", INPUT, "the folder of AVA's lists"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "split", help="write an AVA partition as Caffe list files (train.txt, val.txt)",
        description="Decides which AVA images train and which are held out for testing, with their labels (1: high "
                    "aesthetic quality, 0: low), and writes them as Caffe list files: OUT/train.txt and OUT/val.txt "
                    "(`NAME LABEL` a line, as convert_imageset reads them) and OUT/split.json (the partition, its "
                    "arguments and the counts of each label). ava1 and ava2 are the paper's partitions, official "
                    "is AVA's own lists, published imports the authors' list files. Where AVA.txt has an "
                    "ava-manifest.csv beside it (`ilgnet ava verify`), the images it marks missing or undecodable "
                    "are left out and counted. The val images' mean scores go to OUT/val_means.csv, which `ilgnet "
                    "test` reads for SRCC and PLCC. `ilgnet lmdb --split OUT` builds the LMDBs next.",
        epilog="examples:\n"
               "  ilgnet split ava2 --ava-txt ~/data/AVA/AVA.txt --out data/ava2\n"
               "  ilgnet split ava1 --ava-txt ~/data/AVA/AVA.txt --delta 1 --out data/ava1-delta1\n"
               "  ilgnet split published ~/src/ILGNet --set AVA1 --out data/ava1\n"
               "  ilgnet split labels ~/photos/ratings.csv --threshold 5 --out data/mine\n"
               "  make ava2-lmdb AVA_ROOT=~/data/AVA        # split ava2, then its LMDBs")
    kinds = parser.add_subparsers(dest="partition", required=True, metavar="PARTITION")

    def add(name: str, help_text: str, description: str, example: str, *,
            ava_txt: bool = True) -> argparse.ArgumentParser:
        sub = kinds.add_parser(name, help=help_text.replace("%", "%%"), description=description,
                               epilog=f"example:\n  {example}")
        sub.add_argument("--out", type=output_folder, required=True,
                         help="folder for train.txt, val.txt and split.json")
        if ava_txt:
            sub.add_argument("--ava-txt", type=existing_file, required=True, help="AVA.txt of the AVA dataset")
            sub.add_argument("--drop-invalid", action="store_true",
                             help="drop repeated image ids and images without votes instead of stopping")
        sub.set_defaults(func=run)
        return sub

    ava1 = add("ava1", "AVA1: mean > 5 is high, random test set (the paper's 20,000)",
               "The paper's AVA1 partition: an image is high (1) when its mean score in AVA.txt is above 5, low (0) "
               "otherwise (5.0 itself is low); a random test set of 20,000 images (the paper's) goes to val.txt, "
               "every other image trains. --delta D drops the training images whose mean is within D of 5 (the "
               "paper trains with D = 0 and D = 1); the test set keeps every image.",
               "ilgnet split ava1 --ava-txt ~/data/AVA/AVA.txt --delta 1 --seed 1 --out data/ava1-delta1")
    ava1.add_argument("--test-size", type=integer(1), default=20_000, help="test images (default: 20000)")
    ava1.add_argument("--test-counts", type=integer(0), nargs=2, metavar=("LOW", "HIGH"),
                      help="fix the test set's class counts instead (the published list has 4000 16000)")
    ava1.add_argument("--delta", type=real(0), default=0.0,
                      help="drop training images with |mean - 5| < DELTA (default: 0, keep all)")
    ava1.add_argument("--seed", type=integer(0), default=defaults.SEED, help="seed of the test set draw (default: 1)")

    ava2 = add("ava2", "AVA2: top 10 % by mean is high, bottom 10 % low, random 50/50 split",
               "The paper's AVA2 partition: the 10 % of AVA.txt's images with the highest mean score are high (1), "
               "the 10 % with the lowest are low (0), ties kept in AVA.txt's order; the images in between are left "
               "out. Of the images kept, half, drawn at random, train (train.txt); the other half are held out "
               "(val.txt).",
               "ilgnet split ava2 --ava-txt ~/data/AVA/AVA.txt --out data/ava2")
    ava2.add_argument("--fraction", type=real(0, 0.5, above=True), default=0.1,
                      help="share taken from each end (default: 0.1)")
    ava2.add_argument("--seed", type=integer(0), default=defaults.SEED,
                      help="seed of the train/val draw (default: 1)")

    official = add("official", "AVA's own generic_ls_train / generic_test lists with threshold-5 labels",
                   "AVA's own training and test lists (the .jpgl files of aesthetics_image_lists, by default "
                   "generic_ls_train and generic_test) labelled as AVA1 labels (high when the mean score is above "
                   "5). Ids a list names that AVA.txt lacks are left out, counted on stderr and listed in "
                   "split.json.",
                   "ilgnet split official --ava-txt ~/data/AVA/AVA.txt --out data/official")
    official.add_argument("--lists", type=existing_folder,
                          help="aesthetics_image_lists folder (default: beside AVA.txt)")
    official.add_argument("--train-list", default="generic_ls_train", help="list name (default: generic_ls_train)")
    official.add_argument("--test-list", default="generic_test", help="list name (default: generic_test)")
    official.add_argument("--delta", type=real(0), default=0.0,
                          help="drop training images with |mean - 5| < DELTA (default: 0)")

    published = add("published", "import the list files of a clone of the original ILGNet repository",
                    "The authors' own partition: data/AVA1 or data/AVA2's train.txt and val.txt from a clone of the "
                    "original ILGNet repository, checked (the published image counts, 0/1 labels, no image listed "
                    "twice or in both sets) and copied with a split.json. Training on them uses the images "
                    "the published models were trained on.",
                    "ilgnet split published ~/src/ILGNet --set AVA2 --out data/ava2", ava_txt=False)
    published.add_argument("repo", type=existing_folder, help="the clone (holding data/AVA1/train.txt etc.)")
    published.add_argument("--set", dest="dataset", type=str.upper, choices=["AVA1", "AVA2"], default="AVA1",
                           help="which partition (default: AVA1)")


    labels = add("labels", "your own photos: a CSV of path,label or path,score",
                 "Your own labelled photos: FILE.csv with a header and a row per photo, `path,label` (1 high, 0 "
                 "low) or `path,score` (any number, then --threshold T: above T is high, or --top-bottom P: the top "
                 "P % by score high, the bottom P % low, the others left out, the paper's AVA2 rule). Paths are "
                 "taken from the CSV's folder, which `ilgnet lmdb --images` is given next. Every photo is decoded "
                 "as `ilgnet lmdb` decodes it: the missing and undecodable ones are left out and listed in "
                 "OUT/unusable.txt (CSV line, path, why). --val-fraction of the photos, drawn at random, or those "
                 "of --val-list are held out (val.txt). docs/OWN-LABELS.md walks through training on them.",
                 "ilgnet split labels ~/photos/ratings.csv --threshold 5 --out data/mine", ava_txt=False)
    labels.add_argument("csv", type=existing_file, metavar="FILE.csv", help="the labels (path,label or path,score)")
    rule = labels.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=real(-math.inf), help="with scores: above this is high (1), else low (0)")
    rule.add_argument("--top-bottom", type=real(0, 50, above=True), metavar="P",
                      help="with scores: the top P %% high, the bottom P %% low, the rest left out (AVA2: 10)")
    held = labels.add_mutually_exclusive_group()
    held.add_argument("--val-fraction", type=real(0, 1, above=True), default=0.2,
                      help="share held out at random (default: 0.2)")
    held.add_argument("--val-list", type=existing_file, help="a file of the paths to hold out, one a line")
    labels.add_argument("--seed", type=integer(0), default=defaults.SEED, help="seed of the draw (default: 1)")


def _why_empty(args, name: str, more: dict) -> str:
    """The arguments that left a set of partition ava1 or official without images (ava2's and the published
    partitions' sets never are)."""
    if name == "train" and more.get("dropped_by_delta"):
        return f"--delta {args.delta:g} drops all {more['dropped_by_delta']:,} training images; give a smaller --delta"
    if args.partition == "labels":
        return (f"{name}.txt would hold none of the {more.get('usable_photos', 0):,} usable photos of {args.csv}: "
                f"change --val-fraction or --val-list")
    if args.partition == "official":
        flag, listed = ("--train-list", args.train_list) if name == "train" else ("--test-list", args.test_list)
        return f"no image of {flag} {listed} is in {args.ava_txt}"
    if name == "train":
        counts = " ".join(map(str, args.test_counts))
        return f"--test-counts {counts} takes every image of {args.ava_txt} for the test set"
    return "--test-counts 0 0 asks for no test image"


def _refuse_overwrites(args) -> None:
    """train.txt, val.txt and split.json in --out may overwrite none of the files the partition reads."""
    from ilgnet.data.folder import DataFolder

    inputs = []
    if args.partition == "published":
        inputs = [(args.repo / "data" / args.dataset / f"{name}.txt", f"the published {args.dataset} {name} list")
                  for name in ("train", "val")]
    if args.partition == "official":
        lists = args.lists or args.ava_txt.parent / "aesthetics_image_lists"
        inputs = [(lists / f"{name}.jpgl", f"AVA's {name} list") for name in (args.train_list, args.test_list)]
    out = DataFolder(args.out)
    refuse_overwrites(ARGS, args, inputs=inputs, paths={"out": [out.list_file("train"), out.list_file("val"),
                                                               out.split_json, out.val_means]})


def _notify(args, message: str) -> None:
    print(f"ilgnet split {args.partition}: {message}", file=sys.stderr)


def _own_labels(args):
    """train, val and facts of `ilgnet split labels`, the unusable photos written to OUT/unusable.txt."""
    from ilgnet.data import own_labels
    from ilgnet.fileio import atomic_write_text

    frame = own_labels.read_labels_csv(args.csv)
    if "score" in frame and args.threshold is None and args.top_bottom is None:
        raise UsageError(f"{args.csv} has scores: give --threshold T (above T is high) or --top-bottom P")
    if "label" in frame and (args.threshold is not None or args.top_bottom is not None):
        raise UsageError(f"{args.csv} has labels already: --threshold and --top-bottom go with a score column")
    usable, problems = own_labels.check_photos(frame)
    unusable = args.out / "unusable.txt"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(unusable, "".join(f"{args.csv}:{line}\t{path}\t{why}\n" for line, path, why in problems))
    if problems:
        _notify(args, f"{len(problems):,} of the {len(frame):,} photos of {args.csv} are missing or do not decode; "
                      f"left out, listed in {unusable}")
    if usable.empty:
        raise BadInput(f"{args.csv}: none of its {len(frame):,} photos can be read (listed in {unusable})")
    labelled, facts = own_labels.label(usable, threshold=args.threshold, top_bottom=args.top_bottom)
    train, val, held = own_labels.hold_out(labelled, fraction=args.val_fraction, val_list=args.val_list,
                                           seed=args.seed)
    facts.update(held, labels_csv=str(args.csv.resolve()), images_root=str(args.csv.resolve().parent),
                 listed_photos=len(frame), usable_photos=len(usable), unusable=len(problems))
    return train, val, facts


def run(args) -> int:
    from ilgnet.data import manifest, partitions
    from ilgnet.data.ava import read_ava_txt, read_id_list

    _refuse_overwrites(args)
    facts = {"partition": args.partition}
    if args.partition == "labels":
        train, val, more = _own_labels(args)
    elif args.partition == "published":
        train, val, more = partitions.published_split(args.repo, args.dataset)
    else:
        meta = read_ava_txt(args.ava_txt, drop_invalid=args.drop_invalid)
        facts.update(ava_txt=str(args.ava_txt.resolve()), ava_txt_images=len(meta),
                     invalid_rows_dropped=[{"line": line, "image_id": image_id, "reason": reason}
                                           for line, image_id, reason in meta.attrs["dropped"]])
        if (listing := manifest.manifest_beside(args.ava_txt)) is not None:
            meta, left_out = manifest.usable(meta, listing)
            facts["manifest"] = left_out
            if left_out["missing"] or left_out["undecodable"]:
                _notify(args, f"{left_out['missing'] + left_out['undecodable']:,} images of {args.ava_txt} left out "
                              f"as {listing} marks them ({left_out['missing']:,} without a photo, "
                              f"{left_out['undecodable']:,} that do not decode)")
        if args.partition == "ava1":
            train, val, more = partitions.ava1_split(meta, test_size=args.test_size, test_counts=args.test_counts,
                                                     delta=args.delta, seed=args.seed)
        elif args.partition == "ava2":
            train, val, more = partitions.ava2_split(meta, fraction=args.fraction, seed=args.seed)
        else:
            lists = args.lists or args.ava_txt.parent / "aesthetics_image_lists"
            train_ids, test_ids = (read_id_list(lists / f"{name}.jpgl") for name in (args.train_list, args.test_list))
            train, val, more = partitions.official_split(meta, train_ids, test_ids, delta=args.delta)
            more.update(train_list=str(lists / f"{args.train_list}.jpgl"),
                        test_list=str(lists / f"{args.test_list}.jpgl"))
            for name, ids in more["missing_from_ava_txt"].items():
                if ids:
                    why = " or have no usable photo" if "manifest" in facts else ""
                    _notify(args, f"{len(ids)} ids of the {name} list are not in {args.ava_txt}{why} and were left "
                                  f"out (listed in split.json)")
    for name, frame in (("train", train), ("val", val)):
        if frame.empty:
            raise BadInput(f"{args.out / (name + '.txt')} would list no images: {_why_empty(args, name, more)}")
    summary = partitions.write_split(args.out, train, val, {**facts, **more})
    for name in ("train", "val"):
        labels = ", ".join(f"label {label}: {n:,}" for label, n in summary[name]["labels"].items())
        print(f"{args.out / (name + '.txt')}: {summary[name]['images']:,} images ({labels})")
    if args.partition == "labels":
        print(f"next: ilgnet lmdb --split {args.out} --images {summary['images_root']}")
    if summary.get("dropped_by_delta"):
        print(f"--delta {summary['delta']}: {summary['dropped_by_delta']:,} training images dropped")
    return 0
