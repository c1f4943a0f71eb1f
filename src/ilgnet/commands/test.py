"""`ilgnet test` (`make evaluate`): a caffemodel scored on every record of a val LMDB exactly once, with honest
metrics beside the paper's figure (ilgnet.evaluation, ilgnet.reports); or, with --replay, what a published
`caffe test` log really measured."""
from __future__ import annotations

import json
from pathlib import Path

from ilgnet import defaults
from ilgnet.commands.arguments import existing_file, existing_folder, integer, model, output_file
from ilgnet.errors import BadInput, MissingFile


def register(subparsers) -> None:
    from ilgnet.datafolder import PROTOCOLS

    parser = subparsers.add_parser("test", help="score a caffemodel on every record of a val LMDB exactly once")
    parser.add_argument("--variant", default="ilgnet", help="net variant of the weights (default: ilgnet)")
    parser.add_argument("--weights", type=model,
                        help="a .caffemodel, or ilgnet-ava1 / ilgnet-ava2 (the published models)")
    parser.add_argument("--data", type=existing_folder,
                        help="folder with val_lmdb and mean.binaryproto (from `ilgnet lmdb`)")
    parser.add_argument("--mean", type=existing_file, help="mean image (default: DATA/mean.binaryproto, or the "
                                                           "published model's own mean for ilgnet-ava1/2)")
    parser.add_argument("--batch", type=integer(1), default=defaults.VAL_BATCH,
                        help=f"forward batch size (default: {defaults.VAL_BATCH})")
    parser.add_argument("--gpu", type=integer(0), help="GPU id (default: CPU)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="paper figure to compare with (default: from "
                                                              "DATA/split.json)")
    parser.add_argument("--json", type=output_file, help="write the metrics as JSON here")
    parser.add_argument("--markdown", type=output_file, help="write the markdown table here")
    parser.add_argument("--per-image", type=output_file,
                        help="write per-record results (key, label, predicted, p_k) as CSV")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR, help="models folder for ilgnet-ava1/2")
    parser.add_argument("--replay", type=existing_file, metavar="LOG",
                        help="instead: read a published caffe test log and state its accuracy and the images it "
                             "covered")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.datafolder import DataFolder
    from ilgnet.evaluation import score_lmdb, summarize
    from ilgnet.models import resolve_model
    from ilgnet.reports import PAPER, markdown_report, replay_report

    if args.replay:
        print(replay_report(args.replay), end="")
        return 0
    if not (args.weights and args.data):
        raise BadInput("--weights and --data are required (or --replay LOG)")
    data = DataFolder(args.data)
    model = resolve_model(args.weights, mean=args.mean, models=args.models)
    mean = model.mean or data.mean_binaryproto
    for path in (data.lmdb("val"), mean):
        if not path.exists():
            raise MissingFile(f"{path} does not exist")
    unreached, protocol = data.unreached("val"), args.protocol or data.protocol()
    frame = score_lmdb(args.variant, model.caffemodel, data.lmdb("val"), mean, args.batch, gpu=args.gpu)
    result = summarize(frame, variant=args.variant, weights=model.caffemodel, lmdb_path=data.lmdb("val"),
                       mean_file=mean, batch=args.batch)
    if unreached:
        result["val_list"] = {"file": str(data.list_file("val")), "listed": unreached[0], "not_in_lmdb": unreached[1]}
    if protocol:
        result["paper"] = {"protocol": protocol, **PAPER[protocol]}
    table = markdown_report(result, protocol)
    print(table, end="")
    for path in (args.json, args.markdown, args.per_image):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)     # checked writable before the scoring
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.per_image:
        frame.to_csv(args.per_image, index=False)
    return 0
