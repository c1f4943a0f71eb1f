"""`ilgnet predict`: aesthetic scores for photos, files and folders, from a published or a trained ILGNet model.

Photos are preprocessed as in training and `caffe test` and scored in batches by ilgnet.scoring.scorer, in several
processes on a CPU (ilgnet.scoring.pool), or by Ray actors with --ray (ilgnet.scoring.cluster); --html adds a gallery
(ilgnet.scoring.gallery).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ilgnet import defaults
from ilgnet.commands import arguments
from ilgnet.commands.arguments import (HTML, INPUT, OUTPUT, TABLE, VALUE, Arg, existing_file, integer, model,
                                       output_of, ray_address, real)
from ilgnet.errors import BadInput, UsageError
from ilgnet.fileio import atomic_path, atomic_write_text, spreadsheet_csv
from ilgnet.pools import PROCESSES_PER_CPU

ARGS = (Arg("--model", "model", VALUE), Arg("--variant", "variant", VALUE),
        Arg("--deploy", "deploy", INPUT, "the deploy prototxt"),
        Arg("--mean", "mean", INPUT, "the mean image"), Arg("--out", "out", OUTPUT), Arg("--html", "html", OUTPUT),
        Arg("--ray", "ray", VALUE, about="address"), Arg("--gpu", "gpu", VALUE))


def _ray_address(text: str) -> str:
    """--ray's address (arguments.ray_address); a photo taken for one says where --ray goes."""
    try:
        return ray_address(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err}; with a local Ray runtime, put --ray after the photos") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="score photos (files and folders) with an ILGNet model: p_high and a high/low label",
        description="Scores photos with an ILGNet model. Output columns: path, p_high (probability of high aesthetic "
                    "quality), label (1 when p_high > 0.5). In folders (symbolic links to folders followed, as `find "
                    "-L` does), whatever OpenCV can decode is scored, whatever its name; every file not scored is "
                    "reported on stderr, except known non-photos (AppleDouble ._* files, folder metadata, text files), "
                    "which are counted. A photo named twice (a folder and a file in it, ./a and a, a hard link) is "
                    "scored once. In CSV, a name starting with = + - or @ gets a leading ' so that spreadsheets show "
                    "it as text; JSON lines and Parquet keep exact names. An output may not overwrite an input.",
        epilog="examples:\n"
               "  ilgnet predict ~/Pictures --model ilgnet-ava2 --top 10\n"
               "  ilgnet predict photos/ --model runs/ilgnet-ava2 --out scores.csv --html gallery.html\n"
               "  ilgnet predict a.jpg b.jpg --model net.caffemodel --variant ilgnet "
               "--mean data/ava2/mean.binaryproto\n"
               "  ilgnet predict @photos.txt --model ilgnet-ava1 --backend opencv --out scores.jsonl\n"
               "  ilgnet predict /shared/photos --model ilgnet-ava2 --out scores.parquet --ray auto --workers 16")
    parser.add_argument("paths", nargs="+", help="image files and folders (searched recursively); @LIST: the files "
                                                 "and folders named in the file LIST, one a line, unless a file named "
                                                 "@LIST exists (./@NAME always names a file)")
    parser.add_argument("--model", required=True, type=model,
                        help="a run folder of `ilgnet train` or a snapshot in it, ilgnet-ava1 or ilgnet-ava2 (the "
                             "published models), an .onnx file `ilgnet export` wrote, or a .caffemodel file; all but "
                             "the last carry their variant and mean")
    parser.add_argument("--deploy", type=existing_file, help="deploy prototxt (default: the deploy net of --variant)")
    parser.add_argument("--mean", type=existing_file,
                        help="mean image the model was trained with (.binaryproto or .npy); required with a plain "
                             ".caffemodel, e.g. DATA/mean.binaryproto from `ilgnet lmdb`")
    parser.add_argument("--variant", help="net variant of the deploy net (default: the model's own, else ilgnet)")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR,
                        help="where ilgnet-ava1/2 are kept (`ilgnet weights fetch` puts them there; default: models/)")
    parser.add_argument("--top", type=integer(1), metavar="K", help="output only the K best photos, best first")
    parser.add_argument("--format", choices=["csv", "jsonl", "parquet"],
                        help="output format (default: from --out's suffix: .csv, .txt or none csv, .jsonl or .json "
                             "jsonl, .parquet parquet; another suffix needs --format; parquet needs --out and "
                             "pyarrow)")
    parser.add_argument("--out", type=output_of(TABLE, closed=False), help="write the table here instead of stdout")
    parser.add_argument("--oversample", action="store_true",
                        help="average 10 crops (4 corners + centre, and their mirrors) instead of the centre crop")
    parser.add_argument("--batch", type=integer(1), default=defaults.SCORE_BATCH,
                        help=f"net inputs per forward pass: photos, or crops with --oversample (default: "
                             f"{defaults.SCORE_BATCH})")
    parser.add_argument("--workers", type=integer(1),
                        help="processes, each with its own copy of the net and its share of the cores (default: 1 "
                             f"for onnxruntime, which fills the cores by itself; else the number of CPUs, at most "
                             f"{defaults.MAX_SCORE_WORKERS}; up to 1.7 GB of memory each); never more "
                             f"than one per batch of photos nor {PROCESSES_PER_CPU} per CPU. With --ray: actors, never "
                             f"more than one per batch")
    parser.add_argument("--gpu", type=integer(0), metavar="ID",
                        help="run the net on this GPU, in one process (default: CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--backend", choices=defaults.BACKENDS, default=defaults.BACKENDS[0],
                        help="what runs the net: caffe (pycaffe, CPU or GPU), onnxruntime (the net exported to ONNX, "
                             "once, kept beside the caffemodel; CPU, or GPU with onnxruntime-gpu), opencv (OpenCV's "
                             "dnn module, CPU); auto (the default): the first of them this machine has, said on "
                             "stderr. The last two need no Caffe build; an ONNX --model runs in onnxruntime")
    parser.add_argument("--precision", choices=defaults.PRECISIONS,
                        help="the net's arithmetic (default: an ONNX --model's own, else fp32, the net as Caffe runs "
                             "it): int8 (convolutions and fully connected layers in 8-bit integers, calibrated on "
                             "the model's val LMDB where known, else on generated photos) or fp16, both approximations "
                             "exported once with `ilgnet export` and kept, run by onnxruntime; said on stderr, in the "
                             "gallery and, in JSON lines and Parquet, as a column")
    parser.add_argument("--html", type=output_of(HTML), metavar="FILE",
                        help="also write a gallery: one self-contained HTML file with the photos ranked by p_high "
                             "(the best --top K when given), a histogram of the scores, the model and mean used and "
                             "the skipped files")
    ray = parser.add_argument_group("scoring with Ray Data, on a cluster or a local Ray runtime (needs "
                                    f"`{defaults.RAY_INSTALL}`)")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", type=_ray_address,
                     help="score with a pool of --workers Ray actors, each holding one model, batches streamed "
                          "through them; ADDRESS of a running cluster (auto, HOST:PORT, ray://HOST:10001), else "
                          "a local Ray runtime. Every node must see the photos and the model at the same paths. "
                          "Put it after the photos")
    ray.add_argument("--actor-cpus", type=real(0, above=True), default=1, help="CPUs each actor takes (default: 1)")
    ray.add_argument("--actor-gpus", type=real(0), default=0,
                     help="GPUs each actor takes (default: 0; 1 runs each actor's net on a GPU of its own; caffe "
                          "or onnxruntime backend)")
    parser.set_defaults(func=run)


def refuse_overwrites(args, model, found) -> None:
    """--out and --html may overwrite no input (a photo, a file found in the folders, an @LIST file, the model's
    files) and not each other (arguments.refuse_overwrites)."""
    from ilgnet.data.images import list_files
    from ilgnet.zoo.models import model_files

    arguments.refuse_overwrites(ARGS, args, inputs=[
        *((path, "one of the photos to score") for path in found.photos),
        *((path, "a file in the folders to score") for path, _ in found.not_photos),
        *((path, "a list of photos to score") for path in list_files(args.paths)), *model_files(model)])


def output_format(out: Path | None, fmt: str | None) -> str:
    """csv, jsonl or parquet: `fmt`, else from `out`'s suffix (.csv, .txt or none: csv; .jsonl, .json; .parquet),
    else csv. UsageError for another suffix without `fmt` (x.xlsx would be CSV under a spreadsheet's name). Parquet
    needs a file and pyarrow, which are checked here, before any photo is scored."""
    import importlib.util

    from ilgnet.errors import MissingPackage

    by_suffix = {"": "csv", ".csv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
    if fmt is None and out is not None and out.suffix.lower() not in by_suffix:
        raise UsageError(f"argument --out: {out} does not end in .csv or .txt (CSV), .jsonl or .json (JSON "
                                   f"lines) or .parquet; rename it, or give --format to write one of them under "
                                   f"this name")
    fmt = fmt or by_suffix[out.suffix.lower() if out else ""]
    if fmt == "parquet" and out is None:
        raise UsageError("Parquet is written to a file: give --out FILE.parquet")
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise MissingPackage(f"Parquet output needs pyarrow: pip install pyarrow (or `{defaults.RAY_INSTALL}`)")
    return fmt


def check_names(photos: list[Path], fmt: str) -> None:
    """JSON lines and Parquet hold UTF-8 text only: a photo whose name is not UTF-8 (Linux names are any bytes) is
    BadInput here, before anything is scored, rather than written as an escape strict readers refuse. CSV keeps
    such a name's own bytes."""
    if fmt == "csv":
        return
    for path in photos:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            raise BadInput(f"{shown}: this name is not UTF-8, which {'JSON lines' if fmt == 'jsonl' else 'Parquet'} "
                           f"cannot hold; write CSV (which keeps the name's own bytes) or rename the file") from None


def write_table(table, out: Path | None, fmt: str) -> None:
    """CSV or JSON lines (one object per photo) to `out` or stdout, or Parquet to `out` (see output_format). In CSV,
    a name a spreadsheet would read as a formula gets a leading `'` (ilgnet.fileio.spreadsheet_csv); JSON lines and
    Parquet keep the exact names."""
    import json

    if fmt == "parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as partial:
            table.to_parquet(partial, index=False)
        return
    if fmt == "jsonl":
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in table.to_dict("records"))
    else:
        text = spreadsheet_csv(table, float_format="%.6f")
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)


def check_ray_args(args) -> None:
    """The flags --ray goes with, before anything starts (its address and the actors' resources are checked by
    their argument types)."""
    if args.gpu is not None:
        raise UsageError("--gpu picks one GPU of this machine; with --ray, --actor-gpus 1 gives each actor a GPU")
    if args.actor_gpus and args.backend == "opencv":
        raise UsageError("--actor-gpus needs the caffe or onnxruntime backend: the opencv backend runs on the CPU")


def score(paths: list[Path], model, args):
    """(table, skipped) of `model` (resolved) on `paths`, table.attrs["backend"] the backend the library picked: with
    Ray actors under --ray, else with a ScorerPool on this machine."""
    options = {"deploy": args.deploy, "oversample": args.oversample, "batch_size": args.batch,
               "backend": args.backend}
    if args.ray is not None:
        from ilgnet.scoring.cluster import score_with_ray
        from ilgnet.scoring.pool import default_workers

        return score_with_ray(paths, address=args.ray or None, weights=model,
                              actors=min(args.workers or default_workers(args.backend, ray=True),
                                         -(-len(paths) // args.batch)),
                              actor_cpus=args.actor_cpus, actor_gpus=args.actor_gpus, progress=not args.quiet,
                              **options)
    from ilgnet.errors import CaffeNotFoundError
    from ilgnet.scoring.pool import ScorerPool

    try:
        with ScorerPool.from_model(model, args.workers, photos=len(paths), gpu=args.gpu, **options) as pool:
            return pool.score_files(paths, progress=not args.quiet)
    except CaffeNotFoundError as err:
        raise CaffeNotFoundError(f"{err}; or score without Caffe: --backend onnxruntime (or opencv)") from None


def with_precision(model, args) -> tuple:
    """(model to score with, its precision, one line saying what that precision is): an ONNX model as it is
    (--precision, when given, must be its own), a caffemodel at fp32 as it is, else its fp16 or int8 export
    (ilgnet.scoring.precision.smaller_export, made once and kept), which onnxruntime runs."""
    import dataclasses

    import numpy as np

    from ilgnet.bvlc.io import load_mean
    from ilgnet.scoring.precision import describe_precision, smaller_export
    from ilgnet.zoo.onnx_metadata import is_onnx, read_metadata

    if is_onnx(model.weights):
        facts = read_metadata(model.weights)
        own = facts.get("precision", "fp32")
        if args.precision not in (None, own):
            raise UsageError(f"--precision {args.precision}: {model.weights} is an {own} file: export the model at "
                             f"{args.precision} with `ilgnet export`, or leave out --precision")
        return model, own, describe_precision(own, model.weights, facts)
    if (args.precision or "fp32") == "fp32":
        return model, "fp32", describe_precision("fp32", model.weights, {})
    if args.backend not in ("auto", "onnxruntime") or args.deploy or args.gpu is not None:
        raise UsageError(f"--precision {args.precision} runs the variant's own net in onnxruntime on the "
                                   f"CPU: leave out --backend {args.backend}, --deploy and --gpu")
    mean = model.mean if isinstance(model.mean, np.ndarray) else load_mean(model.mean)
    path, facts = smaller_export(model, mean, args.precision)
    return dataclasses.replace(model, weights=path), args.precision, describe_precision(args.precision, path, facts)


def gallery_facts(model, backend: str, args) -> dict[str, str]:
    """What the gallery says about how the photos were scored."""
    from ilgnet.zoo.models import mean_name

    return {"model": f"{model.name} ({model.weights})" if model.name != str(model.weights) else model.name,
            "variant": model.variant, "deploy net": str(args.deploy or f"{model.variant} (generated)"),
            "mean": mean_name(model), "backend": backend,
            "crops": "10 (--oversample)" if args.oversample else "centre crop"}


def run(args) -> int:
    from ilgnet.data.images import collect_images
    from ilgnet.scoring.backends import why_picked
    from ilgnet.scoring.gallery import write_gallery
    from ilgnet.scoring.scorer import Skipped
    from ilgnet.zoo.models import check_mean_size, require_mean, resolve_model
    from ilgnet.zoo.registry import PUBLISHED_MODELS

    if args.ray is not None:
        check_ray_args(args)
    model = resolve_model(args.model, variant=args.variant, mean=args.mean, models=args.models)
    require_mean(model)
    found = collect_images(args.paths)
    refuse_overwrites(args, model, found)
    fmt = output_format(args.out, args.format)
    check_names(found.photos, fmt)
    check_mean_size(model)
    if not found.photos:
        raise BadInput(f"no photos in {' '.join(args.paths)} ({len(found.not_photos)} other files, "
                       f"{found.known_non_photos} known non-photos)")
    if model.name in PUBLISHED_MODELS:
        print(f"{model.name}: {model.weights} is present and checks out", file=sys.stderr)
    model, precision, about_precision = with_precision(model, args)
    table, skipped = score(found.photos, model, args)
    backend = table.attrs["backend"]
    if args.backend == "auto":                          # said once scored: an error stays one line
        print(f"ilgnet predict: backend {backend} ({why_picked(backend, model.weights)})", file=sys.stderr)
    not_scored = sorted([*found.not_photos, *((Path(item.path), item.reason) for item in skipped)])
    for path, reason in not_scored:
        print(f"ilgnet predict: not scored: {path}: {reason}", file=sys.stderr)
    scored = len(table)
    shown = table if args.top is None else table.sort_values("p_high", ascending=False, kind="stable").head(args.top)
    if precision != "fp32":
        print(f"ilgnet predict: {about_precision}", file=sys.stderr)
        if fmt != "csv":
            shown = shown.assign(precision=precision)
    write_table(shown, args.out, fmt)
    if args.html is not None:
        write_gallery(args.html, table, [Skipped(str(path), reason) for path, reason in not_scored], top=args.top,
                      about={**gallery_facts(model, backend, args), "precision": about_precision})
        print(f"ilgnet predict: gallery in {args.html}", file=sys.stderr)
    passed_over = (f", {found.known_non_photos} known non-photos passed over (AppleDouble ._* files, folder "
                   f"metadata, text files)" if found.known_non_photos else "")
    if found.repeated:
        passed_over += (f", {found.repeated} repeated name{'s' if found.repeated > 1 else ''} of a file or folder "
                        f"found already passed over (each photo is scored once)")
    print(f"ilgnet predict: scored {scored} photos, not scored {len(not_scored)}"
          f"{' (listed above)' if not_scored else ''}{passed_over}", file=sys.stderr)
    return 0 if scored else 1
