"""`ilgnet log`: a Caffe training log as train_log.csv and curves.png beside it (ilgnet.curves)."""
from __future__ import annotations

import sys
from pathlib import Path

from ilgnet.errors import MissingFile


def register(subparsers) -> None:
    parser = subparsers.add_parser("log", help="a Caffe training log as CSV (train_log.csv) and curves (curves.png)")
    parser.add_argument("log", type=Path, help="the log of `caffe train` (runs/NAME/train.log)")
    parser.add_argument("--accuracy-blob", help="test output holding the accuracy (default: first non-loss output)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.curves import write_train_summary

    if not args.log.is_file():
        raise MissingFile(f"{args.log} does not exist")
    frame = write_train_summary(args.log, accuracy_blob=args.accuracy_blob)
    print(f"{args.log.with_name('train_log.csv')}: {len(frame)} rows; {args.log.with_name('curves.png')}")
    if frame.attrs.get("diverged_at") is not None:
        print(f"ilgnet log: this run DIVERGED: its training loss is not finite from iteration "
              f"{frame.attrs['diverged_at']} on", file=sys.stderr)
    return 0
