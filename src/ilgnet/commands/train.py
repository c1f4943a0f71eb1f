"""`ilgnet train` (`make train`, `make train-ava1`, `make train-ava2`): `caffe train` on a net variant and a solver
profile, locally or in the Docker image, into runs/NAME (ilgnet.training.runs)."""
from __future__ import annotations

import sys
from pathlib import Path

from ilgnet import defaults
from ilgnet.commands.arguments import (INPUT, OUTPUT, VALUE, Arg, existing_file, existing_folder, gpus, integer,
                                       output_folder, real, refuse_overwrites, run_name)
from ilgnet.errors import BadInput, UsageError

ARGS = (Arg("--data", "data", INPUT, "the data folder"), Arg("--weights", "weights", INPUT, "the initial weights"),
        Arg("--runs", "runs", OUTPUT, "runs/"), Arg("--name", "name", OUTPUT, "VARIANT-PROFILE"),
        Arg("--gpu", "gpu", VALUE), Arg("--resume", "resume", VALUE), Arg("--val-batch", "val_batch", VALUE))


def _weights(text: str) -> Path | str:
    """--weights: a caffemodel of the weight registry by name (kept as the name, found in --models by `run`), else
    an existing file."""
    from ilgnet.zoo.registry import load_registry

    entry = load_registry().get(text)
    if entry is not None and entry.file.endswith(".caffemodel"):
        return text
    return existing_file(text)


def register(subparsers) -> None:
    from ilgnet.nets import VARIANTS
    from ilgnet.nets.recipes import RECIPES
    from ilgnet.nets.solvers import PROFILES

    parser = subparsers.add_parser(
        "train", help="fine-tune a net variant with a solver profile (caffe train)",
        description="Trains a net variant (see `ilgnet nets`) on a data folder made by `ilgnet lmdb`, with a solver "
                    "profile: the paper's Table 1 (ava1-delta0, ava1-delta1, ava2) or the authors' published "
                    "solvers. Everything is checked before anything is written; then RUNS/NAME gets the net, the "
                    "solver, model.json (the variant, and copies of the mean image and training list), the log of "
                    "`caffe train` with train_log.csv and curves.png, and snapshots/. Training fine-tunes the "
                    "variant's ImageNet model when it is in models/ (`ilgnet weights fetch bvlc_googlenet`, or "
                    "inception-v3 / inception-v4 for ilgnet-inc3 / ilgnet-inc4), else starts from random weights "
                    "with a warning. Ctrl-C stops with a snapshot that --resume continues from. A run that goes "
                    "wrong stops with one line naming the iteration, its bad snapshots renamed *.diverged: a loss or "
                    "test output that is not finite, the training loss at Caffe's clamp (87.3365 per image) for 3 "
                    "displays in a row, a snapshot whose weights or outputs on a val batch are not finite. --resume "
                    "checks first that the variant, profile and data are the run's own (model.json) and that the "
                    ".solverstate is whole; one process at a time per run folder.",
        epilog="examples:\n"
               "  ilgnet train --profile ava2 --data data/ava2 --gpu 0\n"
               "  ilgnet train --variant ilgnet-bn --profile ava1-delta1 --data data/ava1 --name bn-delta1 --gpu all\n"
               "  ilgnet train --profile ava2 --data data/ava2 --gpu 0 --resume\n"
               "  ilgnet train --profile ava2 --data data/ava2-fixed --gpu 0 --resume --accept-data-change\n"
               "  ilgnet train --variant googlenet-bn-third --profile ava2 --data data/ava2 --cpu --max-iter 100\n"
               "  make train-ava2 GPU=0                 # the paper's AVA2 run")
    parser.add_argument("--variant", default="ilgnet", choices=list(VARIANTS), metavar="VARIANT",
                        help="net variant (see `ilgnet nets`; default: ilgnet)")
    parser.add_argument("--profile", required=True, choices=list(PROFILES), metavar="PROFILE",
                        help=f"solver profile: {', '.join(PROFILES)}")
    parser.add_argument("--data", type=existing_folder, required=True,
                        help="folder with train_lmdb, val_lmdb and mean.binaryproto (from `ilgnet lmdb`)")
    parser.add_argument("--name", type=run_name,
                        help="run name, one folder name: outputs go to RUNS/NAME (default: VARIANT-PROFILE)")
    parser.add_argument("--runs", type=output_folder, default=defaults.RUNS_DIR, help="runs folder (default: runs/)")
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("--gpu", type=gpus, help="GPU mode on these devices: 0, 0,1 or all (caffe -gpu)")
    device.add_argument("--cpu", action="store_true", help="CPU mode")
    parser.add_argument("--docker", action="store_true",
                        help="run caffe inside the ilgnet-caffe Docker image (tools/docker-caffe.sh)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's newest .solverstate")
    parser.add_argument("--accept-data-change", action="store_true",
                        help="with --resume: go on although --data (its folder, mean, train.txt or val.txt, or the "
                             "LMDBs' resize) differs from what the run was trained on; the change is recorded in "
                             "model.json, whose mean and training list become the new ones (the old ones are kept "
                             "for the earlier snapshots)")
    parser.add_argument("--weights", type=_weights,
                        help="initial caffemodel, or a model of the registry by name (ilgnet-ava2: fine-tune the "
                             "published model, from --models) (default: models/bvlc_googlenet.caffemodel when "
                             "present)")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR, help="models folder (default: models/)")
    parser.add_argument("--max-iter", type=integer(1), help="override the profile's max_iter")
    parser.add_argument("--base-lr", type=real(0, above=True), help="override the profile's base_lr")
    parser.add_argument("--train-batch", type=integer(1),
                        help=f"training batch size (default: {defaults.TRAIN_BATCH}, the published one)")
    parser.add_argument("--val-batch", type=integer(1), help="validation batch size (default: the largest up to "
                                                              f"{defaults.VAL_BATCH} that divides the val set, so a "
                                                              "test pass reads each image once)")
    parser.add_argument("--display", type=integer(1),
                        help="log the training loss every N iterations (default: profile's)")
    parser.add_argument("--test-interval", type=integer(1),
                        help="test on the whole val set every N iterations (default: the profile's, scaled to "
                             "--max-iter: 1/100 of the run for the Table 1 profiles)")
    parser.add_argument("--snapshot", type=integer(0),
                        help="snapshot every N iterations, 0 for only the final one (default: the profile's, "
                             "scaled to --max-iter like the test interval)")
    parser.add_argument("--seed", type=integer(0),
                        help="Caffe's random_seed: fillers, random crops and mirroring (default: Caffe draws one)")
    parser.add_argument("--recipe", default="released", choices=list(RECIPES), metavar="RECIPE",
                        help="fine-tuning recipe: released (the authors' train.prototxt: every layer trains, new ones "
                             "at 10x; the default), paper (Sec. 1: stem and inception modules fixed at lr_mult 0, "
                             "the connected layers fine-tuned) or paper-sec5 (Sec. 5: the last two inception modules "
                             "fine-tuned too); docs/NETS.md lists the fixed layers")
    parser.set_defaults(func=run)


def _notify(message: str) -> None:
    print(f"ilgnet train: {message}", file=sys.stderr)


def run(args) -> int:
    from ilgnet.data.folder import DataFolder
    from ilgnet.training.plan import DataChanged, TrainOptions
    from ilgnet.training.runs import TrainingDiverged, TrainingStopped, train
    from ilgnet.zoo.runfolder import RunFolder
    from ilgnet.zoo.models import fetched_file

    if isinstance(args.weights, str):                  # a registry name: its file in --models
        args.weights = fetched_file(args.weights, args.models)

    options = TrainOptions(args.variant, args.profile, args.data, name=args.name, runs_dir=args.runs,
                           models_dir=args.models, gpu=args.gpu, docker=args.docker, resume=args.resume,
                           accept_data_change=args.accept_data_change,
                           weights=args.weights, max_iter=args.max_iter, train_batch=args.train_batch,
                           val_batch=args.val_batch, display=args.display, test_interval=args.test_interval,
                           snapshot=args.snapshot, base_lr=args.base_lr, seed=args.seed,
                           recipe=args.recipe)
    if args.accept_data_change and not args.resume:
        raise UsageError("--accept-data-change applies to --resume only")
    data = DataFolder(args.data)
    # The run folder gets copies of the data folder's mean and training list (RunFolder.write_record).
    copies = [options.run_dir / name for name in ("mean.binaryproto", "train.txt")]
    refuse_overwrites(ARGS, args, paths={"name": copies, "runs": []} if args.name else {"runs": copies},
                      inputs=[(data.mean_binaryproto, "the mean image of --data"),
                              (data.list_file("train"), "the training list of --data")])
    try:
        model = train(options, notify=_notify)
    except TrainingStopped as stop:
        _notify(f"stopped early; snapshot {stop.snapshot}; continue with --resume")
        raise
    except TrainingDiverged as diverged:
        if diverged.last_good:
            _notify("--resume continues from the last good snapshot (with --base-lr to change the rate)")
        raise
    except DataChanged as changed:
        raise BadInput(f"{changed.what}; --accept-data-change goes on and records the change in "
                       f"{RunFolder(options.run_dir).model_json.name}, or resume with the run's own --data") from None
    print(model)
    return 0
