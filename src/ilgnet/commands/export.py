"""`ilgnet export` (`make export`): a trained model as one ONNX file that onnxruntime (CPU, CUDA, mobile, the web)
or PyTorch (onnx2torch) can run without Caffe, carrying the model's identity and mean (ilgnet.export.converter);
fp16 and int8 files are smaller approximations, checked on photos given with --check."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ilgnet import defaults
from ilgnet.commands.arguments import (INPUT, ONNX, OUTPUT, VALUE, Arg, existing_file, existing_folder, model,
                                       output_of, refuse_overwrites)
from ilgnet.defaults import CALIBRATION_PHOTOS, CALIBRATION_STAND_IN, PRECISIONS

ARGS = (Arg("model", "model", VALUE), Arg("--variant", "variant", VALUE),
        Arg("--mean", "mean", INPUT, "the mean image"),
        Arg("--calibrate", "calibrate", INPUT, "the folder of calibration photos"), Arg("--out", "out", OUTPUT))
EXAMPLES = """examples:
  ilgnet export ilgnet-ava2 --out ilgnet-ava2.onnx
  ilgnet export runs/ilgnet-ava2 --out ava2-int8.onnx --precision int8 --check photos/
  ilgnet export ilgnet-ava2 --out ava2-int8.onnx --precision int8 --calibrate my-photos/ --check other-photos/
  ilgnet export my.caffemodel --variant ilgnet-bn --mean data/ava2/mean.binaryproto --out my.onnx"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a model as one ONNX file, to score without Caffe (onnxruntime, onnx2torch, ...)",
        description="Writes a trained model as one ONNX file (opset 17): the variant's deploy net with the model's "
                    "weights, checked to fit first. The graph takes Caffe's net input, (N, 3, crop, crop) float32: "
                    "the photo resized, BGR, minus the mean image at the crop's offset, times the variant's input "
                    "scale; it gives (p_low, p_high). Its metadata carry the variant, labels, crop, resize, input "
                    "scale, the mean image (.npy bytes, base64), the caffemodel's sha256 and the toolkit version; "
                    "`ilgnet predict --model FILE.onnx` scores with it alone. fp16 and int8 files are smaller "
                    "approximations: --check scores photos with both and reports how far they differ and how much "
                    "faster the file's forward passes run. int8 is calibrated on photos (--calibrate) and runs on "
                    "the CPU's integer kernels, which the output names.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=model,
                        help="a run folder of `ilgnet train` or a snapshot in it, ilgnet-ava1 or ilgnet-ava2 (the "
                             "published models), or a .caffemodel file (then --mean is needed)")
    parser.add_argument("--out", type=output_of(ONNX), required=True,
                        help="the ONNX file to write, FILE.onnx (written whole or not at all; never one of the "
                             "model's files)")
    parser.add_argument("--variant", help="net variant (default: the model's own, else ilgnet)")
    parser.add_argument("--mean", type=existing_file,
                        help="mean image the model was trained with (.binaryproto or .npy; default: the model's own)")
    parser.add_argument("--models", type=Path, default=defaults.MODELS_DIR,
                        help="where ilgnet-ava1/2 are kept (default: models/)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (the net as Caffe runs it; the default), fp16 (every weight and activation in "
                             "float16, half the size) or int8 (static quantization: every convolution's and fully "
                             "connected layer's weights in int8 per channel, activations in uint8 with ranges "
                             "calibrated on photos; a quarter of the size, and faster on CPUs with VNNI)")
    parser.add_argument("--calibrate", type=existing_folder, metavar="DIR",
                        help=f"int8: a folder of photos to calibrate on (the first {CALIBRATION_PHOTOS} readable, "
                             f"in name order). Default: the model's val LMDB where its data folder is "
                             f"known, else {CALIBRATION_STAND_IN} generated photos (fit for a stand-in, not a trained "
                             f"model). --check leaves these photos out")
    parser.add_argument("--check", nargs="+", metavar="PHOTO",
                        help="photos or folders to score with the file written and with a reference (fp32 ONNX for "
                             "fp16 and int8; for fp32, Caffe where pycaffe imports, else OpenCV's dnn module): "
                             "prints the largest and mean difference of p_high, how many labels agree and how much "
                             "faster the written file's forward passes run")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ilgnet.bvlc.io import load_mean
    from ilgnet.data.images import collect_images
    from ilgnet.errors import UsageError
    from ilgnet.fileio import file_digest
    from ilgnet.nets import deploy, get_variant
    from ilgnet.scoring.precision import CHECK_ROUNDS, calibration_set, checked_photos, compare
    from ilgnet.scoring.scorer import check_weights
    from ilgnet.zoo.models import mean_name, model_files, require_mean, resolve_model
    from ilgnet.zoo.onnx_metadata import identity, is_onnx
    from ilgnet.export.precision import QUANTIZATION, cpu_kernels, export_file

    if args.calibrate is not None and args.precision != "int8":
        raise UsageError("--calibrate goes with --precision int8 (fp32 and fp16 files are not calibrated)")
    if is_onnx(args.model):
        raise UsageError(f"{args.model} is an ONNX file already; export a caffemodel, a run or a published model")
    model = resolve_model(args.model, variant=args.variant, mean=args.mean, models=args.models)
    require_mean(model)
    refuse_overwrites(ARGS, args, inputs=model_files(model))
    variant = get_variant(model.variant)
    photos = collect_images(args.check).photos if args.check else []
    check_weights(model.weights, variant=variant.name)
    mean = load_mean(model.mean) if not isinstance(model.mean, np.ndarray) else model.mean
    metadata = identity(variant, model.weights, mean=mean, mean_source=mean_name(model))
    print(f"ilgnet export: {model.weights} ({variant.name}, sha256 {metadata['caffemodel_sha256'][:12]}...) "
          f"fits the net", file=sys.stderr)
    net = deploy(variant)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{args.out.name}.", dir=args.out.parent) as tmp:
        calibration = None
        if args.precision == "int8":
            calibration = calibration_set(model, mean, photos=args.calibrate, work=Path(tmp))
            metadata.update(calibration=calibration.source, quantization=QUANTIZATION)
            if photos and not checked_photos(photos, calibration.photos):
                raise UsageError(f"--check: its {len(photos)} photos are all calibration photos (--calibrate), which "
                                 f"the check leaves out; give photos not calibrated on (nothing was written)")
            print(f"ilgnet export: int8 calibrated on {calibration.source}; this CPU's integer kernels: "
                  f"{', '.join(cpu_kernels()) or 'none known'}", file=sys.stderr)
        fp32 = Path(tmp) / "fp32.onnx" if photos and args.precision != "fp32" else None
        export_file(net, model.weights, args.out, metadata=metadata, output=variant.prob_blob,
                    precision=args.precision, fp32=fp32, calibration=calibration and calibration.batches)
        print(f"ilgnet export: wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {args.precision}, sha256 "
              f"{file_digest(args.out)[:12]}...)")
        if photos:
            reference, backend = ((fp32, "onnxruntime") if fp32 else
                                  (model.weights, reference_backend(model.weights)))
            found = compare(photos, model, args.out, reference, backend,
                            leave_out=calibration.photos if calibration else set())
            print(f"ilgnet export: {args.precision} against {'fp32' if fp32 else backend} on {found['photos']} "
                  f"photos{left_out(found)}: max |dp_high| {found['max_difference']:.2e} (mean "
                  f"{found['mean_difference']:.2e}), labels agree on {found['agree']} of {found['photos']} photos "
                  f"({found['agree'] / found['photos']:.1%}); forward passes {found['speedup']:.2f}x as fast "
                  f"({found['written_seconds']:.2f} s against {found['reference_seconds']:.2f} s, best of "
                  f"{CHECK_ROUNDS}; this CPU: {', '.join(cpu_kernels()) or 'no integer kernels known'})")
    return 0


def left_out(found: dict) -> str:
    """How many check photos were left out as calibration photos, in a few words."""
    return f" (the {found['left_out']} calibrated on left out)" if found["left_out"] else ""


def reference_backend(caffemodel: Path) -> str:
    """What an fp32 export is checked against: Caffe where pycaffe imports, else OpenCV's dnn module."""
    from ilgnet.scoring.backends import pick_backend

    backend = pick_backend("auto", caffemodel)
    return "opencv" if backend == "onnxruntime" else backend
