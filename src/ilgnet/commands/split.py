"""`ilgnet split` (`make ava1-lmdb` / `make ava2-lmdb`, first step): an AVA partition as Caffe list files
(train.txt, val.txt) plus split.json. The partitions are ilgnet.data.partitions'."""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields

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


def _why_empty(args, err) -> str:
    """The arguments that left a set without images (ilgnet.data.make.EmptySet's cause), in flags."""
    if err.cause == "delta":
        return (f"--delta {args.delta:g} drops all {err.facts['dropped_by_delta']:,} training images; give a smaller "
                f"--delta")
    if err.cause == "held_out":
        return (f"{err.name}.txt would hold none of the {err.facts.get('usable_photos', 0):,} usable photos of "
                f"{args.csv}: change --val-fraction or --val-list")
    if err.cause == "list":
        flag, listed = ("--train-list", args.train_list) if err.name == "train" else ("--test-list", args.test_list)
        return f"no image of {flag} {listed} is in {args.ava_txt}"
    if err.name == "train":
        counts = " ".join(map(str, args.test_counts))
        return f"--test-counts {counts} takes every image of {args.ava_txt} for the test set"
    return "--test-counts 0 0 asks for no test image"


def _partition(args):
    """The split asked for on the command line, as the library takes it."""
    from ilgnet.data.make import Partition

    return Partition(**{f.name: getattr(args, f.name) for f in fields(Partition) if hasattr(args, f.name)})


def _refuse_overwrites(args, partition) -> None:
    """train.txt, val.txt and split.json in --out may overwrite none of the files the partition reads."""
    from ilgnet.data.folder import DataFolder

    out = DataFolder(args.out)
    written = [out.list_file("train"), out.list_file("val"), out.split_json, out.val_means]
    refuse_overwrites(ARGS, args, inputs=partition.inputs(), paths={"out": written})


def _notify(args, message: str) -> None:
    print(f"ilgnet split {args.partition}: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ilgnet.data.make import EmptySet, make_split
    from ilgnet.data.own_labels import RuleMismatch

    partition = _partition(args)
    _refuse_overwrites(args, partition)
    try:
        summary = make_split(args.out, partition, notify=lambda message: _notify(args, message))
    except RuleMismatch as err:
        why = ("has scores: give --threshold T (above T is high) or --top-bottom P" if err.column == "score" else
               "has labels already: --threshold and --top-bottom go with a score column")
        raise UsageError(f"{args.csv} {why}") from None
    except EmptySet as err:
        raise BadInput(f"{err.path} would list no images: {_why_empty(args, err)}") from None
    for name in ("train", "val"):
        labels = ", ".join(f"label {label}: {n:,}" for label, n in summary[name]["labels"].items())
        print(f"{args.out / (name + '.txt')}: {summary[name]['images']:,} images ({labels})")
    if args.partition == "labels":
        print(f"next: ilgnet lmdb --split {args.out} --images {summary['images_root']}")
    if summary.get("dropped_by_delta"):
        print(f"--delta {summary['delta']}: {summary['dropped_by_delta']:,} training images dropped")
    return 0
