"""The photos an int8 file is calibrated on, and how far a smaller file (fp16, int8) strays from fp32, measured.

Calibration (ilgnet.export.precision.quantize_int8) needs net inputs preprocessed exactly as the Scorer will feed
them: `calibration_set` takes them from a folder of photos (`ilgnet export --calibrate DIR`), else from the model's
own val LMDB where its data folder is known (the records `caffe test` reads), else from CALIBRATION_STAND_IN
generated photos (ilgnet.data.synthetic; a stated fallback, fit for a stand-in model, not for a trained one).

`compare` scores the same photos with two ONNX files (or any two weights the Scorer runs), after the photos were
decoded and preprocessed once, and times the forward passes alone, each file's best of CHECK_ROUNDS rounds taking
turns: label agreement, the largest and mean |p_high difference|, and the speed-up.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ilgnet import defaults
from ilgnet.bvlc.io import lmdb_records
from ilgnet.data.folder import DataFolder
from ilgnet.data.images import BadImage, collect_images, decode_image
from ilgnet.defaults import CALIBRATION_PHOTOS, CALIBRATION_STAND_IN
from ilgnet.errors import BadInput
from ilgnet.nets import VARIANTS
from ilgnet.scoring.scorer import Scorer, batched, crop_offsets, preprocess

CHECK_ROUNDS = 2             # timed forward passes over the check photos, per file; the best is kept


@dataclass
class Calibration:
    """Net inputs to calibrate on: `batches` (N, 3, crop, crop) float32, what they are (`source`, one line) and
    the photo files among them, resolved (`photos`), which a check leaves out."""
    batches: list[np.ndarray]
    source: str
    photos: set[Path] = field(default_factory=set)

    @property
    def count(self) -> int:
        return sum(len(batch) for batch in self.batches)


def _inputs(images, mean: np.ndarray, variant) -> list[np.ndarray]:
    """Centre crops of BGR uint8 images, preprocessed as the Scorer does, in batches of defaults.SCORE_BATCH."""
    size = tuple(mean.shape[1:]) if mean.ndim == 3 else (variant.resize, variant.resize)
    offsets = crop_offsets(*size, variant.input_size, False)
    crops = (preprocess(image, mean, image_size=size, crop=variant.input_size, offsets=offsets,
                        scale=variant.input_scale) for image in images)
    return [np.concatenate(chunk) for chunk in batched(crops, defaults.SCORE_BATCH)]


def val_lmdb(model) -> Path | None:
    """The val LMDB of the data folder the model was trained from (its training list's folder), where it exists."""
    if model.train_list is None:
        return None
    path = DataFolder(Path(model.train_list).parent).lmdb("val")
    return path if (path / "data.mdb").is_file() else None


def calibration_set(model, mean: np.ndarray, *, photos: Path | None = None, count: int = CALIBRATION_PHOTOS,
                    work: Path | None = None) -> Calibration:
    """Up to `count` net inputs of `model` (ilgnet.zoo.models.Model) with `mean` (the array) to calibrate on: the
    readable photos of `photos` (a folder or file, in name order), else the model's val LMDB (val_lmdb), else
    CALIBRATION_STAND_IN photos generated under `work`. BadInput when `photos` holds no readable photo."""
    variant = VARIANTS[model.variant]
    side = mean.shape[1] if mean.ndim == 3 else variant.resize
    if photos is None and (lmdb := val_lmdb(model)) is not None:
        images = (image for _, image, _ in itertools.islice(lmdb_records(lmdb), count))
        batches = _inputs(images, mean, variant)
        return Calibration(batches, f"{sum(map(len, batches))} records of {lmdb} (the model's val LMDB)")
    source = "photos"
    if photos is None:
        from ilgnet.data.synthetic import generate

        if work is None:
            raise BadInput("no photos to calibrate on, and no folder to generate them in")
        generate(work / "calibration", n_images=CALIBRATION_STAND_IN, seed=3, long_sides=(300, 500))
        photos, source = work / "calibration" / "images", "generated photos (ilgnet.data.synthetic, seed 3)"
    used, images = set(), []
    for path in sorted(collect_images([photos]).photos):
        try:
            images.append(decode_image(path, side))
        except BadImage:
            continue
        used.add(Path(path).resolve())
        if len(images) == count:
            break
    if not images:
        raise BadInput(f"{photos}: no readable photo to calibrate on")
    where = "" if source.startswith("generated") else f" of {photos}"
    return Calibration(_inputs(images, mean, variant), f"{len(images)} {source}{where}", used)


def _timed_forwards(scorers: list[Scorer], inputs: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """For each scorer, (p_high of every input, the best of CHECK_ROUNDS timings of forwarding them all, seconds),
    the scorers taking turns in each round so that the machine's load falls on them alike."""
    for scorer in scorers:
        scorer.forward(inputs[0][:1])                       # warm-up: onnxruntime allocates on its first run
    found = [(None, float("inf"))] * len(scorers)
    for _ in range(CHECK_ROUNDS):
        for i, scorer in enumerate(scorers):
            started = time.perf_counter()
            p_high = np.concatenate([scorer.forward(batch)[:, 1] for batch in inputs])
            found[i] = (p_high, min(found[i][1], time.perf_counter() - started))
    return found


def checked_photos(photos: list[Path], leave_out: set[Path] = frozenset()) -> list[Path]:
    """The photos `compare` checks on: `photos` less `leave_out` (resolved paths: the calibration photos)."""
    return [path for path in photos if Path(path).resolve() not in leave_out]


def compare(photos: list[Path], model, written: Path, reference: Path, reference_backend: str = "onnxruntime",
            *, leave_out: set[Path] = frozenset()) -> dict:
    """How the file `written` (run by onnxruntime) and `reference` (run by `reference_backend`) differ on
    `photos` less `leave_out` (resolved paths: the calibration photos), both with `model`'s mean and variant:
    {photos, left_out, agree (labels equal), max_difference, mean_difference (|p_high difference|),
    written_seconds, reference_seconds (forward passes only, best of CHECK_ROUNDS), speedup}. BadInput when no
    photo is left to compare on."""
    kept = checked_photos(photos, leave_out)
    scorers = [Scorer(weights, mean=model.mean, variant=model.variant, backend=backend, check=False)
               for weights, backend in ((written, "onnxruntime"), (reference, reference_backend))]
    images = [crops for _, crops in scorers[0].prepared(kept) if not isinstance(crops, str)]
    if not images:
        raise BadInput(f"no readable photo left to check on ({len(photos) - len(kept)} were used to calibrate)")
    inputs = [np.concatenate(chunk) for chunk in batched(images, defaults.SCORE_BATCH)]
    (ours, our_seconds), (theirs, their_seconds) = _timed_forwards(scorers, inputs)
    difference = np.abs(ours - theirs)
    return {"photos": len(images), "left_out": len(photos) - len(kept),
            "agree": int(((ours > 0.5) == (theirs > 0.5)).sum()), "max_difference": float(difference.max()),
            "mean_difference": float(difference.mean()), "written_seconds": our_seconds,
            "reference_seconds": their_seconds, "speedup": their_seconds / our_seconds}


def calibration_key(model, photos: Path | None = None) -> str:
    """What calibration_set of `model` (with `photos`, a folder, when given) would read, as text that changes when it
    does: the photos' names, sizes and modification times, its val LMDB's path, size and modification time, or the
    generated photos' count."""
    if photos is not None:
        found = sorted(collect_images([photos]).photos)
        return "\n".join(f"{Path(p).resolve()} {Path(p).stat().st_size} {Path(p).stat().st_mtime_ns}" for p in found)
    lmdb = val_lmdb(model)
    if lmdb is None:
        return f"generated {CALIBRATION_STAND_IN} photos, seed 3"
    stat = (lmdb / "data.mdb").stat()
    return f"{lmdb.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def smaller_export(model, mean: np.ndarray, precision: str, *, work: Path | None = None,
                   photos: Path | None = None) -> tuple[Path, dict]:
    """The `precision` (fp16 or int8) ONNX file of `model` (a Model with a caffemodel and a known variant) with
    `mean` (the array), exported once, calibrated for int8 on calibration_set (of `photos` when given), kept under
    `work`/onnx as NAME.PRECISION-KEY.onnx (KEY: the caffemodel's sha256, variant, precision, calibration and the
    toolkit's and converter's versions); and its metadata (ilgnet.zoo.onnx_metadata.identity, with `calibration`
    and `quantization` for int8). `work` defaults to defaults.CACHE_DIR. Written atomically under a lock: a process
    that finds it complete uses it, one that finds another exporting it waits and then uses its file."""
    import hashlib
    import tempfile

    import ilgnet
    from ilgnet.fileio import file_digest, waiting_lock
    from ilgnet.nets import deploy
    from ilgnet.zoo.onnx_metadata import FORMAT, identity, read_metadata
    from ilgnet.export.precision import QUANTIZATION, export_file

    variant = VARIANTS[model.variant]
    digest = file_digest(model.weights)
    calibrated = calibration_key(model, photos) if precision == "int8" else ""
    parts = [digest, variant.name, precision, calibrated, QUANTIZATION, ilgnet.__version__, FORMAT]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    out = Path(work or defaults.CACHE_DIR) / "onnx" / f"{Path(model.weights).stem}.{precision}-{key}.onnx"
    if out.is_file() and read_metadata(out).get("cache_key") == key:
        return out, read_metadata(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**identity(variant, model.weights, caffemodel_sha256=digest, mean=mean), "cache_key": key}
    # One export at a time per file: a second process waits for the first and uses its file.
    with waiting_lock(out.with_name(f".{out.name}.lock")), \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        if out.is_file() and read_metadata(out).get("cache_key") == key:
            return out, read_metadata(out)
        calibration = None
        if precision == "int8":
            calibration = calibration_set(model, mean, photos=photos, work=Path(tmp))
            metadata.update(calibration=calibration.source, quantization=QUANTIZATION)
        export_file(deploy(variant), model.weights, out, metadata=metadata, output=variant.prob_blob,
                    precision=precision, calibration=calibration and calibration.batches)
    return out, read_metadata(out)


def describe_precision(precision: str, path: Path, facts: dict[str, str]) -> str:
    """One line saying what `precision` means for the file `path` whose metadata are `facts`."""
    if precision == "fp32":
        return "fp32, the net as Caffe runs it"
    calibrated = f"; calibrated on {facts['calibration']}" if "calibration" in facts else ""
    return (f"{precision} ({path}): an approximation of the fp32 net{calibrated}; `ilgnet export --precision "
            f"{precision} --check PHOTOS` measures how far its p_high and labels differ on your photos")
