"""`ilgnet split`: the paper's AVA partitions as Caffe list files (train.txt, val.txt) plus split.json.

* ava1: label 1 iff mean score > 5 (5.0 exactly is 0), a random test set (val.txt) of a given size or of given
  class counts; `--delta D` drops training images with |mean - 5| < D while the test set keeps every image.
* ava2: the 10 % of images with the highest mean are 1, the 10 % with the lowest 0, split 50/50 at random.
* official: AVA's own generic_ls_train / generic_test lists, labelled like ava1.
* published: the list files of the original ILGNet repository, counts checked.

Every partition is a pure function of its inputs and the seed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PUBLISHED_COUNTS = {"AVA1": {"train": 235_529, "val": 20_000}, "AVA2": {"train": 25_553, "val": 25_553}}


def register(subparsers) -> None:
    parser = subparsers.add_parser("split", help="write an AVA partition as Caffe list files (train.txt, val.txt)",
                                   description=__doc__.split("\n\n")[0])
    kinds = parser.add_subparsers(dest="partition", required=True, metavar="PARTITION")

    def add(name: str, help_text: str, *, ava_txt: bool = True) -> argparse.ArgumentParser:
        sub = kinds.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--out", type=Path, required=True, help="folder for train.txt, val.txt and split.json")
        if ava_txt:
            sub.add_argument("--ava-txt", type=Path, required=True, help="AVA.txt of the AVA dataset")
            sub.add_argument("--drop-invalid", action="store_true",
                             help="drop repeated image ids and images without votes instead of stopping")
        sub.set_defaults(func=run)
        return sub

    ava1 = add("ava1", "AVA1: mean > 5 is high, random test set (the paper's 20,000)")
    ava1.add_argument("--test-size", type=int, default=20_000, help="test images (default: 20000)")
    ava1.add_argument("--test-counts", type=int, nargs=2, metavar=("LOW", "HIGH"),
                      help="fix the test set's class counts instead (the published list has 4000 16000)")
    ava1.add_argument("--delta", type=float, default=0.0,
                      help="drop training images with |mean - 5| < DELTA (default: 0, keep all)")
    ava1.add_argument("--seed", type=int, default=1, help="seed of the test set draw (default: 1)")

    ava2 = add("ava2", "AVA2: top 10 %% by mean is high, bottom 10 %% low, random 50/50 split")
    ava2.add_argument("--fraction", type=float, default=0.1, help="share taken from each end (default: 0.1)")
    ava2.add_argument("--seed", type=int, default=1, help="seed of the train/val draw (default: 1)")

    official = add("official", "AVA's own generic_ls_train / generic_test lists with threshold-5 labels")
    official.add_argument("--lists", type=Path,
                          help="aesthetics_image_lists folder (default: beside AVA.txt)")
    official.add_argument("--train-list", default="generic_ls_train", help="list name (default: generic_ls_train)")
    official.add_argument("--test-list", default="generic_test", help="list name (default: generic_test)")
    official.add_argument("--delta", type=float, default=0.0,
                          help="drop training images with |mean - 5| < DELTA (default: 0)")

    published = add("published", "import the list files of a clone of the original ILGNet repository",
                    ava_txt=False)
    published.add_argument("repo", type=Path, help="the clone (holding data/AVA1/train.txt etc.)")
    published.add_argument("--set", dest="dataset", type=str.upper, choices=sorted(PUBLISHED_COUNTS), default="AVA1",
                           help="which partition (default: AVA1)")


def _label_counts(frame) -> dict[str, int]:
    counts = frame["label"].value_counts().sort_index()
    return {str(label): int(n) for label, n in counts.items()}


def _delta_filter(train, delta: float):
    """Drops training images whose mean is within `delta` of 5 (the AVA paper's ambiguity margin)."""
    from ilgnet.ava import AVA1_THRESHOLD

    if delta < 0:
        raise ValueError(f"--delta must be >= 0, got {delta}")
    keep = (train["mean"] - AVA1_THRESHOLD).abs() >= delta
    return train[keep], int((~keep).sum())


def ava1_split(meta, *, test_size: int = 20_000, test_counts: tuple[int, int] | None = None, delta: float = 0.0,
               seed: int = 1):
    """AVA1 train/test frames (image_id, mean, label) and facts for split.json."""
    import numpy as np

    from ilgnet.ava import ava1_labels

    frame = meta[["image_id", "mean"]].assign(label=ava1_labels(meta["mean"]))
    rng = np.random.default_rng(seed)
    if test_counts is None:
        if not 0 < test_size < len(frame):
            raise ValueError(f"--test-size must be between 1 and {len(frame) - 1} (AVA.txt has {len(frame)} images)")
        test_rows = rng.choice(len(frame), size=test_size, replace=False)
    else:
        test_rows = []
        for label, wanted in enumerate(test_counts):
            rows = np.flatnonzero(frame["label"].to_numpy() == label)
            if not 0 <= wanted <= len(rows):
                raise ValueError(f"--test-counts asks for {wanted} images of label {label}; there are {len(rows)}")
            test_rows.append(rng.choice(rows, size=wanted, replace=False))
        test_rows = np.concatenate(test_rows)
    is_test = np.zeros(len(frame), bool)
    is_test[test_rows] = True
    train, dropped = _delta_filter(frame[~is_test], delta)
    facts = {"seed": seed, "test_counts": list(test_counts) if test_counts else None, "delta": delta,
             "dropped_by_delta": dropped}
    return train, frame[is_test], facts


def ava2_split(meta, *, fraction: float = 0.1, seed: int = 1):
    """AVA2: bottom and top `fraction` by mean (ties kept in AVA.txt order), then a random 50/50 split."""
    import numpy as np

    n = int(round(fraction * len(meta)))
    if not 0 < 2 * n <= len(meta):
        raise ValueError(f"--fraction {fraction} selects {n} images from each end of {len(meta)}")
    order = np.argsort(meta["mean"].to_numpy(), kind="stable")
    frame = meta[["image_id", "mean"]]
    chosen = frame.iloc[np.concatenate([order[:n], order[-n:]])].assign(label=np.repeat([0, 1], n))
    in_train = np.zeros(2 * n, bool)
    in_train[np.random.default_rng(seed).permutation(2 * n)[:n]] = True
    train, val = chosen[in_train].sort_index(), chosen[~in_train].sort_index()
    facts = {"fraction": fraction, "seed": seed, "per_end": n,
             "low_mean_max": float(chosen["mean"].iloc[n - 1]), "high_mean_min": float(chosen["mean"].iloc[n])}
    return train, val, facts


def official_split(meta, train_ids, test_ids, *, delta: float = 0.0):
    """Labels AVA's official lists by the AVA1 rule. Ids absent from AVA.txt are left out and reported."""
    from ilgnet.ava import ava1_labels

    frame = meta[["image_id", "mean"]].assign(label=ava1_labels(meta["mean"])).set_index("image_id", drop=False)
    parts, missing = {}, {}
    for name, ids in (("train", train_ids), ("val", test_ids)):
        present = ids.isin(frame.index)
        parts[name] = frame.loc[ids[present]]
        missing[name] = [int(i) for i in ids[~present]]
    train, dropped = _delta_filter(parts["train"], delta)
    return train, parts["val"], {"delta": delta, "dropped_by_delta": dropped, "missing_from_ava_txt": missing}


def published_split(repo: Path, dataset: str):
    """The ILGNet list files of `repo`/data/<dataset>/{train,val}.txt, with the published counts checked."""
    from ilgnet.ava import read_list_file

    parts = {}
    for name, expected in PUBLISHED_COUNTS[dataset].items():
        path = Path(repo) / "data" / dataset / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: expected a clone of the ILGNet repository with "
                                    f"data/{dataset}/{name}.txt")
        frame = read_list_file(path)
        if len(frame) != expected:
            raise ValueError(f"{path}: expected {expected:,} images (the published {dataset} {name} list), "
                             f"found {len(frame):,}")
        bad = frame.index[~frame["label"].isin([0, 1]) | frame["image_id"].isna()]
        if len(bad):
            raise ValueError(f"{path}:{bad[0]}: expected `<image id>.jpg <0 or 1>`, found "
                             f"{frame['filename'][bad[0]]} {frame['label'][bad[0]]}")
        repeated = frame.index[frame["image_id"].duplicated()]
        if len(repeated):
            raise ValueError(f"{path}:{repeated[0]}: image {frame['filename'][repeated[0]]} listed twice")
        parts[name] = frame
    overlap = set(parts["train"]["image_id"]) & set(parts["val"]["image_id"])
    if overlap:
        raise ValueError(f"{Path(repo) / 'data' / dataset}: {len(overlap)} images are in both train.txt and val.txt, "
                         f"e.g. {min(overlap)}")
    return parts["train"], parts["val"], {"dataset": dataset, "repo": str(Path(repo).resolve())}


def write_split(out: Path, train, val, facts: dict) -> dict:
    """Writes out/train.txt, out/val.txt and out/split.json; returns the JSON summary."""
    from ilgnet.ava import write_list_file

    out.mkdir(parents=True, exist_ok=True)
    write_list_file(train, out / "train.txt")
    write_list_file(val, out / "val.txt")
    summary = {**facts,
               "train": {"images": len(train), "labels": _label_counts(train)},
               "val": {"images": len(val), "labels": _label_counts(val)}}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run(args) -> int:
    from ilgnet.ava import read_ava_txt, read_id_list

    facts = {"partition": args.partition}
    if args.partition == "published":
        train, val, more = published_split(args.repo, args.dataset)
    else:
        meta = read_ava_txt(args.ava_txt, drop_invalid=args.drop_invalid)
        facts.update(ava_txt=str(args.ava_txt.resolve()), ava_txt_images=len(meta),
                     invalid_rows_dropped=[{"line": line, "image_id": image_id, "reason": reason}
                                           for line, image_id, reason in meta.attrs["dropped"]])
        if args.partition == "ava1":
            train, val, more = ava1_split(meta, test_size=args.test_size, test_counts=args.test_counts,
                                          delta=args.delta, seed=args.seed)
        elif args.partition == "ava2":
            train, val, more = ava2_split(meta, fraction=args.fraction, seed=args.seed)
        else:
            lists = args.lists or args.ava_txt.parent / "aesthetics_image_lists"
            train_ids, test_ids = (read_id_list(lists / f"{name}.jpgl") for name in (args.train_list, args.test_list))
            train, val, more = official_split(meta, train_ids, test_ids, delta=args.delta)
            more.update(train_list=str(lists / f"{args.train_list}.jpgl"),
                        test_list=str(lists / f"{args.test_list}.jpgl"))
            for name, ids in more["missing_from_ava_txt"].items():
                if ids:
                    print(f"ilgnet split: {len(ids)} ids of the {name} list are not in {args.ava_txt} and were left "
                          f"out (listed in split.json)", file=sys.stderr)
    summary = write_split(args.out, train, val, {**facts, **more})
    for name in ("train", "val"):
        labels = ", ".join(f"label {label}: {n:,}" for label, n in summary[name]["labels"].items())
        print(f"{args.out / (name + '.txt')}: {summary[name]['images']:,} images ({labels})")
    if summary.get("dropped_by_delta"):
        print(f"--delta {summary['delta']}: {summary['dropped_by_delta']:,} training images dropped")
    return 0
