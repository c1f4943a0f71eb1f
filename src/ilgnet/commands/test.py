"""`ilgnet test` (`make evaluate`): a model scored on every record of a val LMDB exactly once, with honest metrics
beside the paper's figure (ilgnet.evaluation.evaluate, ilgnet.evaluation.reports), SRCC and PLCC where the
split wrote the val images' means, and the val images it was trained on counted; or, with --replay, what a
published `caffe test` log really measured."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ilgnet import defaults
from ilgnet.commands.arguments import (CSV, INPUT, JSON, MARKDOWN, OUTPUT, VALUE, Arg, existing_file, existing_folder,
                                       integer, model, output_of, refuse_overwrites)
from ilgnet.errors import UsageError
from ilgnet.fileio import atomic_write_text, spreadsheet_csv

ARGS = (Arg("--weights", "weights", VALUE, about="model"), Arg("--variant", "variant", VALUE),
        Arg("--data", "data", INPUT, "the data folder"),
        Arg("--mean", "mean", INPUT, "the mean image"), Arg("--replay", "replay", INPUT, "the log to replay"),
        Arg("--json", "json", OUTPUT), Arg("--markdown", "markdown", OUTPUT), Arg("--per-image", "per_image", OUTPUT),
        Arg("--gpu", "gpu", VALUE))


def register(subparsers) -> None:
    from ilgnet.data.folder import PROTOCOLS

    parser = subparsers.add_parser(
        "test", help="score a model on every record of a val LMDB exactly once",
        description="Scores a model (a run of `ilgnet train`, a snapshot, a published model or a .caffemodel) on "
                    "every record of DATA/val_lmdb exactly once, and prints its accuracy beside the majority-class "
                    "baseline, with balanced accuracy, ROC AUC and the paper's figure for the same partition; where "
                    "DATA/val_means.csv holds the val images' mean scores (`ilgnet split` writes it for AVA), SRCC "
                    "and PLCC of p_high against them (ILGNet predicts a class, not a score). The "
                    "pycaffe engine runs the net in this process; the caffe engine runs the `caffe test` tool. For a "
                    "model whose training list is known (runs, the published models) it also counts the val "
                    "images the model was trained on. --replay reads a published `caffe test` log instead and says "
                    "what it measured.",
        epilog="examples:\n"
               "  ilgnet test --weights runs/ilgnet-ava2 --data data/ava2\n"
               "  ilgnet test --weights ilgnet-ava1 --data data/ava1 --gpu 0 --json ava1.json "
               "--markdown ava1.md\n"
               "  ilgnet test --weights ilgnet-ava2 --data data/ava2 --engine caffe --paper-protocol\n"
               "  ilgnet test --replay ILGNet/results/AVA1_result.txt\n"
               "  make evaluate WEIGHTS=runs/ilgnet-ava2 DATA=data/ava2")
    parser.add_argument("--weights", type=model, help="a run folder of `ilgnet train` or a snapshot in it, "
                                                      "ilgnet-ava1 / ilgnet-ava2 (the published models), an .onnx "
                                                      "file `ilgnet export` wrote, or a .caffemodel")
    parser.add_argument("--data", type=existing_folder,
                        help="folder with val_lmdb and mean.binaryproto (from `ilgnet lmdb`)")
    parser.add_argument("--variant", help="net variant (default: the model's own, else ilgnet)")
    parser.add_argument("--mean", type=existing_file,
                        help="mean image (default: the model's own, else DATA/mean.binaryproto)")
    parser.add_argument("--batch", type=integer(1), default=defaults.VAL_BATCH,
                        help=f"forward batch size (default: {defaults.VAL_BATCH})")
    parser.add_argument("--gpu", type=integer(0), help="GPU id (default: CPU)")
    parser.add_argument("--engine", choices=["pycaffe", "caffe"],
                        help="pycaffe: the net in this process, run by --backend (pycaffe, onnxruntime or OpenCV), "
                             "batches of --batch with a shorter last one (default); caffe: the `caffe test` binary, "
                             "with a batch that divides the record count (at most --batch) and a second run for any "
                             "remainder")
    parser.add_argument("--backend", choices=defaults.BACKENDS, default=defaults.BACKENDS[0],
                        help="what runs the net with --engine pycaffe: caffe (pycaffe), onnxruntime (the net exported "
                             "to ONNX, kept beside the caffemodel), opencv; auto (the default): the first of them "
                             "this machine has. An ONNX --weights runs in onnxruntime")
    parser.add_argument("--docker", action="store_true", help="run `caffe test` in the Docker image (implies "
                                                               "--engine caffe; tools/docker-caffe.sh)")
    parser.add_argument("--paper-protocol", action="store_true",
                        help="also run the authors' measurement (`caffe test`, 50 iterations at their batch) and "
                             "print it beside the full-coverage figure")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="paper figure to compare with (default: from "
                                                              "DATA/split.json)")
    parser.add_argument("--json", type=output_of(JSON), help="write the metrics as JSON here")
    parser.add_argument("--markdown", type=output_of(MARKDOWN), help="write the markdown table here")
    parser.add_argument("--per-image", type=output_of(CSV),
                        help="write per-record results (key, label, predicted, p_k) as CSV")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR, help="models folder for ilgnet-ava1/2")
    parser.add_argument("--replay", type=existing_file, metavar="LOG",
                        help="instead: read a published caffe test log and state its accuracy and the images it "
                             "covered")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.data.folder import DataFolder
    from ilgnet.evaluation import evaluate
    from ilgnet.evaluation.evaluation import with_data_mean
    from ilgnet.evaluation.reports import markdown_report, overlap_report, replay_report
    from ilgnet.scoring.backends import why_picked
    from ilgnet.zoo.models import model_files, resolve_model

    if args.replay:
        print(replay_report(args.replay), end="")
        return 0
    if not (args.weights and args.data):
        missing = " and ".join(flag for flag, given in (("--weights", args.weights), ("--data", args.data))
                               if not given)
        raise UsageError(f"{missing} {'is' if ' and ' not in missing else 'are'} required (or --replay LOG)")
    if args.docker and args.engine == "pycaffe":
        raise UsageError("--docker runs the `caffe test` binary in the image (--engine caffe), not --engine pycaffe")
    engine = args.engine or ("caffe" if args.docker else "pycaffe")
    if (engine == "caffe" or args.paper_protocol) and args.backend not in ("auto", "caffe"):
        raise UsageError("--engine caffe, --docker and --paper-protocol run the `caffe test` binary on a caffemodel; "
                         "--backend goes with --engine pycaffe")
    data = DataFolder(args.data)
    model = with_data_mean(resolve_model(args.weights, variant=args.variant, mean=args.mean, models=args.models), data)
    mean = model.mean
    inputs = [*model_files(model),
              *((data.lmdb("val") / name, "a file of the val LMDB") for name in ("data.mdb", "lock.mdb")),
              *((path, f"the data folder's {path.name}") for path in (data.list_file("val"), data.list_file("train"),
                                                                      data.split_json, data.lmdb_json,
                                                                      data.val_means))]
    refuse_overwrites(ARGS, args, inputs=inputs)
    protocol = args.protocol or data.protocol()
    if args.paper_protocol and not protocol:
        raise UsageError(f"--paper-protocol: {data.split_json} names no paper protocol; give --protocol ava1 or ava2")
    if (engine == "caffe" or args.paper_protocol) and not isinstance(mean, Path):
        raise UsageError(f"--engine caffe, --docker and --paper-protocol run the `caffe test` binary on a caffemodel; "
                         f"the ONNX model {model.weights} goes with --engine pycaffe")
    evaluation = evaluate(model, data, batch=args.batch, engine=engine, backend=args.backend, gpu=args.gpu,
                          docker=args.docker, protocol=protocol,
                          paper_protocol="caffe" if args.paper_protocol else None)
    if engine == "pycaffe" and args.backend == "auto":     # said once scored: an error stays one line
        print(f"ilgnet test: backend {evaluation.backend} ({why_picked(evaluation.backend, model.weights)})",
              file=sys.stderr)
    result = evaluation.to_json()
    text = markdown_report(result, protocol)
    if evaluation.train_overlap is not None:
        text = overlap_report(evaluation.train_overlap, model.name) + "\n" + text
    print(text, end="")
    for path, content in ((args.json, lambda: json.dumps(result, indent=2, allow_nan=False) + "\n"),
                          (args.markdown, lambda: text), (args.per_image, lambda: spreadsheet_csv(evaluation.frame))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)     # checked writable before the scoring
            atomic_write_text(path, content())
    return 0
