"""`ilgnet predict`: aesthetic scores for photos, files and folders, from a published or a trained ILGNet model.

Photos are preprocessed as in training and `caffe test` and scored in batches by ilgnet.scorer, in several
processes on a CPU (ilgnet.scorer_pool).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ilgnet import defaults
from ilgnet.errors import BadInput, MissingFile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2"}
MAX_DEFAULT_WORKERS = 4
DEFAULT_WORKERS = max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="score photos (files and folders) with an ILGNet model: p_high and a high/low label",
        description="Scores photos with an ILGNet model. Output columns: path, p_high (probability of high aesthetic "
                    "quality), label (1 when p_high > 0.5). Unreadable files are reported on stderr and skipped.")
    parser.add_argument("paths", nargs="+", help="image files and folders (searched recursively)")
    parser.add_argument("--model", required=True,
                        help="a run folder of `ilgnet train` or a snapshot in it, ilgnet-ava1 or ilgnet-ava2 (the "
                             "published models), or a .caffemodel file; the first two carry their variant and mean")
    parser.add_argument("--deploy", type=Path, help="deploy prototxt (default: the deploy net of --variant)")
    parser.add_argument("--mean", type=Path,
                        help="mean image the model was trained with (.binaryproto or .npy); required with a plain "
                             ".caffemodel, e.g. DATA/mean.binaryproto from `ilgnet lmdb`")
    parser.add_argument("--variant", help="net variant of the deploy net (default: the model's own, else ilgnet)")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR,
                        help="where ilgnet-ava1/2 are kept (`ilgnet weights fetch` puts them there; default: models/)")
    parser.add_argument("--top", type=int, metavar="K", help="output only the K best photos, best first")
    parser.add_argument("--format", choices=["csv", "jsonl"],
                        help="output format (default: from --out's suffix, else csv)")
    parser.add_argument("--out", type=Path, help="write the table here instead of stdout")
    parser.add_argument("--oversample", action="store_true",
                        help="average 10 crops (4 corners + centre, and their mirrors) instead of the centre crop")
    parser.add_argument("--batch", type=int, default=defaults.SCORE_BATCH,
                        help=f"net inputs per forward pass: photos, or crops with --oversample (default: "
                             f"{defaults.SCORE_BATCH})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="processes, each with its own copy of the net and its share of the cores (default: "
                             f"number of CPUs, at most {MAX_DEFAULT_WORKERS}; up to 1.7 GB of memory each)")
    parser.add_argument("--gpu", type=int, metavar="ID", help="run the net on this GPU, in one process (default: CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--backend", choices=defaults.BACKENDS, default=defaults.BACKENDS[0],
                        help="what runs the net: caffe (pycaffe, CPU or GPU; the default) or opencv (OpenCV's dnn "
                             "module on the CPU: no Caffe build needed)")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write a gallery: one self-contained HTML file with the photos ranked by p_high "
                             "(the best --top K when given), a histogram of the scores, the model and mean used and "
                             "the skipped files")
    parser.set_defaults(func=run)


def collect_images(paths: list[str | Path]) -> list[Path]:
    """Files as given (whatever their suffix, so an unreadable one is reported), and image files found recursively in
    folders, sorted. A path that does not exist is an error."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise MissingFile(f"{path} does not exist")
    return found


def write_table(table, out: Path | None, fmt: str | None) -> None:
    """CSV or JSON lines (one object per photo) to `out` or stdout."""
    import json

    fmt = fmt or ("jsonl" if out is not None and out.suffix in {".jsonl", ".json"} else "csv")
    if fmt == "jsonl":
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in table.to_dict("records"))
    else:
        text = table.to_csv(index=False, float_format="%.6f")
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def gallery_facts(model, args) -> dict[str, str]:
    """What the gallery says about how the photos were scored."""
    return {"model": f"{model.name} ({model.caffemodel})" if model.name != str(model.caffemodel) else model.name,
            "variant": model.variant, "deploy net": str(args.deploy or f"{model.variant} (generated)"),
            "mean": str(model.mean), "backend": args.backend,
            "crops": "10 (--oversample)" if args.oversample else "centre crop"}


def run(args) -> int:
    from ilgnet.gallery import write_gallery
    from ilgnet.models import resolve_model
    from ilgnet.scorer_pool import ScorerPool
    from ilgnet.weights import PUBLISHED_MODELS

    if args.top is not None and args.top < 1:
        raise BadInput(f"--top must be at least 1, got {args.top}")
    if args.batch < 1 or args.workers < 1:
        raise BadInput("--batch and --workers must be at least 1")
    paths = collect_images(args.paths)
    if not paths:
        raise BadInput(f"no image files in {' '.join(args.paths)}")
    model = resolve_model(args.model, variant=args.variant, mean=args.mean, models=args.models)
    if model.name in PUBLISHED_MODELS:
        print(f"{model.name}: {model.caffemodel} is present and checks out", file=sys.stderr)
    if model.mean is None:
        raise BadInput(f"--mean is needed with {args.model}: the mean image it was trained with "
                       f"(DATA/mean.binaryproto from `ilgnet lmdb`)")
    workers = min(args.workers, -(-len(paths) // args.batch))          # no process without a batch to score
    with ScorerPool(workers, weights=model.caffemodel, mean=model.mean, deploy=args.deploy, variant=model.variant,
                    batch_size=args.batch, oversample=args.oversample, gpu=args.gpu, backend=args.backend) as pool:
        table, skipped = pool.score_files(paths, progress=not args.quiet)
    for item in skipped:
        print(f"ilgnet predict: skipped {item.path}: {item.reason}", file=sys.stderr)
    scored = len(table)
    if args.html is not None:
        write_gallery(args.html, table, skipped, top=args.top, about=gallery_facts(model, args))
        print(f"ilgnet predict: gallery in {args.html}", file=sys.stderr)
    if args.top is not None:
        table = table.sort_values("p_high", ascending=False, kind="stable").head(args.top)
    write_table(table, args.out, args.format)
    print(f"ilgnet predict: scored {scored} photos, skipped {len(skipped)}", file=sys.stderr)
    return 0 if scored else 1
