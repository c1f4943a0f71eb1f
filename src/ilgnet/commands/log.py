"""`ilgnet log`: a Caffe training log as train_log.csv and curves.png (ilgnet.bvlc.logs, ilgnet.training.curves)."""
from __future__ import annotations

import sys

from ilgnet.commands.arguments import (CSV, INPUT, OUTPUT, PNG, Arg, existing_file, integer, output_of,
                                       refuse_overwrites)
from ilgnet.errors import BadInput

ARGS = (Arg("LOG", "log", INPUT, "the log to read"), Arg("--csv", "csv", OUTPUT, "train_log.csv beside LOG"),
        Arg("--png", "png", OUTPUT, "curves.png beside LOG"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "log", help="a Caffe training log as CSV (train_log.csv) and curves (curves.png)",
        description="Reads the log `caffe train` writes (glog lines, as in runs/NAME/train.log) and writes one row "
                    "per logged iteration to train_log.csv (iteration, seconds since the log began, training loss, "
                    "learning rate, test accuracy and test loss where a test pass ran, and health) and the curves "
                    "of loss and accuracy to curves.png, beside the log unless told otherwise. Where a loss or test "
                    "output stopped being finite (diverged), or the training loss sat at Caffe's clamp 87.3365 per "
                    "image for 3 displays in a row (saturated), a line says so, the health column marks the rows "
                    "and the curves mark the iteration. `ilgnet train` does this by itself for its runs; this "
                    "command reads any `caffe train` log, with other options.",
        epilog="examples:\n"
               "  ilgnet log runs/ilgnet-ava2/train.log\n"
               "  ilgnet log old/train.log --csv old.csv --png old.png --smooth 20")
    parser.add_argument("log", type=existing_file, metavar="LOG", help="the log of `caffe train` (runs/NAME/train.log)")
    parser.add_argument("--accuracy-blob", help="test output holding the accuracy (default: first non-loss output)")
    parser.add_argument("--csv", type=output_of(CSV), help="the table to write (default: train_log.csv beside LOG)")
    parser.add_argument("--png", type=output_of(PNG), help="the curves to write (default: curves.png beside LOG)")
    parser.add_argument("--smooth", type=integer(2), metavar="N",
                        help="also draw the rolling mean of N displayed training losses (default: none)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.bvlc.logs import parse_train_log
    from ilgnet.training.curves import summary_files, write_curves

    beside = summary_files(args.log)
    csv, png = args.csv or beside[0], args.png or beside[1]
    refuse_overwrites(ARGS, args, paths={"csv": csv, "png": png}, images={"--png": ".png"})
    frame = parse_train_log(args.log, accuracy_blob=args.accuracy_blob)
    if frame["loss"].dropna().empty:
        raise BadInput(f"{args.log}: no training iteration logged (no `Iteration N (...), loss = X` line): not a "
                       f"`caffe train` log, or training stopped before it displayed a loss")
    for path in (csv, png):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_curves(frame, csv, png, title=args.log.parent.name, smooth=args.smooth)
    print(f"{csv}: {len(frame)} rows, iterations {frame['iteration'].min()} to {frame['iteration'].max()}; {png}")
    if frame.attrs.get("diverged_at") is not None:
        print(f"ilgnet log: this run DIVERGED: {frame.attrs['diverged']} at iteration {frame.attrs['diverged_at']} "
              f"(health column: diverged)", file=sys.stderr)
    if frame.attrs.get("saturated_at") is not None:
        print(f"ilgnet log: this run SATURATED: {frame.attrs['saturated']} (health column: saturated)",
              file=sys.stderr)
    return 0
