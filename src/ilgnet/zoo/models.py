"""What a model is: its caffemodel together with its identity -- the net variant, the mean image it was trained
with and the list of images it was trained on -- as timm's pretrained configs and nanoGPT's checkpoints carry theirs.

A trained model is one of:
  * a published model by registry name (ilgnet-ava1, ilgnet-ava2): variant, mean and training list from weights.json,
    fetched into models/ by `ilgnet weights fetch`;
  * a run folder of `ilgnet train` (or a snapshot in it): its run record (ilgnet.zoo.runfolder), written when the
    run started, with the mean and training list copied beside it. A resume on changed data, when accepted, keeps
    the data the run had until then in the record's `history`, so that a snapshot from before the change is
    scored with the mean it was trained with (RunFolder.record_data_change);
  * an ONNX file `ilgnet export` wrote, whose metadata give its variant and mean (ilgnet.zoo.onnx_metadata);
  * any other .caffemodel, whose variant and mean the caller must give.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilgnet import defaults
from ilgnet.bvlc.io import load_mean
from ilgnet.errors import BadInput, MissingFile
from ilgnet.fileio import file_digest, require
from ilgnet.zoo.onnx_metadata import exported, mean_of
from ilgnet.zoo.registry import PUBLISHED_MODELS, check_file, load_registry
from ilgnet.bvlc.io import is_snapshot_name, snapshot_iteration
from ilgnet.zoo.runfolder import RunFolder

@dataclass(frozen=True)
class Model:
    """A trained model ready to score: its weights (a .caffemodel, or an exported .onnx file), its net variant, the
    mean image it was trained with (a file, or for an ONNX file the array its metadata carry) and the list of its
    training images (None where not known)."""
    weights: Path
    variant: str | None
    mean: Path | np.ndarray | None
    train_list: Path | None = None
    name: str = ""
    """How the user named it: a registry name, a run folder or the caffemodel's path."""
    resize: int | None = None
    """The side of the square its training photos were resized to (run record's `resize`, the registry's), where
    known: a mean image of another size is refused (`check_mean_size`)."""


def fetched_file(item: str, models: Path, *, fetch: str | None = None) -> Path:
    """The weight registry's file `item` in the models folder, where `ilgnet weights fetch FETCH` (default: `item`,
    with --dest where the folder is not the default) puts it; MissingFile saying that command when it is not there."""
    dest = "" if Path(models) == defaults.MODELS_DIR else f" --dest {models}"
    return require(Path(models) / load_registry()[item].file,
                   hint=f"; run `ilgnet weights fetch {fetch or item}{dest}` first")


def published_model(name: str, models: Path = defaults.MODELS_DIR, *, mean: Path | str | None = None) -> Model:
    """The authors' model `name` (ilgnet-ava1 / ilgnet-ava2) in `models`, with `mean` or else its published mean
    image, and its training list when that was fetched too (else None). What is used must have been fetched
    (`ilgnet weights fetch NAME`; nothing is downloaded here); its size and checksums are checked."""
    registry = load_registry()
    entry = registry[name]

    def fetched(item: str | None, optional: bool) -> Path | None:
        if item is None or optional and not (Path(models) / registry[item].file).exists():
            return None
        path = fetched_file(item, models, fetch=name)
        check_file(registry[item], path)
        return path

    caffemodel = fetched(name, optional=False)
    published_mean = fetched(entry.mean, optional=mean is not None)
    return Model(caffemodel, entry.fits_variant, Path(mean) if mean else published_mean,
                 fetched(entry.train_list, optional=True), name=name, resize=entry.resize)


def _data_in_effect(record: dict, iteration: int | None) -> dict:
    """The part of a run's record (data, mean, train_list, ...) a snapshot of `iteration` was trained with: the
    first history entry that lasted until it, else the record itself."""
    if iteration is not None:
        for entry in record.get("history", []):
            if iteration <= entry["until_iteration"]:
                return entry
    return record


def run_model(run_dir: Path, caffemodel: Path | None = None) -> Model:
    """The model of an `ilgnet train` run: `caffemodel`, or the run's newest snapshot, with run record's identity
    (RunFolder.read_record). The mean and training list are the copies in the run folder that the snapshot was trained
    with (run record's history says which, when the run was resumed on changed data); their sha256 must be those
    recorded (BadInput), and they must exist (MissingFile naming run record too)."""
    run = RunFolder(run_dir)
    record = run.read_record()
    if caffemodel is None:
        found = run.snapshots("caffemodel")
        if not found:
            raise MissingFile(f"{run.root} has no snapshot yet ({run.snapshot_dir} is empty)")
        caffemodel = found[-1]
    in_effect = _data_in_effect(record, snapshot_iteration(caffemodel) if is_snapshot_name(caffemodel) else None)
    files = {"train_list": None}
    for key in ("mean", "train_list"):
        if in_effect.get(key) is None:              # a data folder made without `ilgnet split` has no train.txt
            continue
        path = run.root / in_effect[key]["file"]
        require(path, hint=f" ({run.model_json} names it)")
        if file_digest(path) != in_effect[key]["sha256"]:
            raise BadInput(f"{path} changed after the run began: its sha256 is not the one {run.model_json.name} "
                           f"records")
        files[key] = path
    return Model(Path(caffemodel), record["variant"], files["mean"], files["train_list"], name=str(run.root),
                 resize=record.get("resize"))


def known_variant(caffemodel: Path | str) -> tuple[str, str] | None:
    """(the net variant `caffemodel` was trained as, where that is recorded) or None: the record of its run (a
    snapshot of a run, or a caffemodel in a run folder; ilgnet.zoo.runfolder), else the registry entry of a
    published model of its name and exact size (weights.json's `fits_variant`). What a refusal of `--variant`
    names."""
    path = Path(caffemodel)
    snapshot_of = RunFolder.of_snapshot(path)
    for run in (snapshot_of, RunFolder(path.parent)) if snapshot_of else (RunFolder(path.parent),):
        if run.is_run():
            try:
                return run.read_record()["variant"], str(run.model_json)
            except (BadInput, OSError):
                return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    for entry in load_registry().values():
        if entry.fits_variant and entry.file == path.name and entry.size == size:
            return entry.fits_variant, f"the registry's {entry.name}"
    return None


def model_files(model: Model) -> list[tuple[Path, str]]:
    """The files `model` is read from, each with what it is: its caffemodel or ONNX file, its mean image, its
    training list, and a run's model.json (what a command's outputs may not overwrite)."""
    onnx = Path(model.weights).suffix.lower() == ".onnx"
    files = [(Path(model.weights), f"the model's {'ONNX file' if onnx else 'caffemodel'}"),
             *([(model.mean, "the mean image")] if isinstance(model.mean, Path) else []),
             *([(Path(model.train_list), "the model's training list")] if model.train_list else [])]
    if (run := RunFolder(Path(model.name))).is_run():
        files.append((run.model_json, f"the model's {run.model_json.name}"))
    return files


def require_mean(model: Model) -> None:
    """BadInput (about "mean") when `model` has no mean image: a bare .caffemodel given without one."""
    if model.mean is None:
        raise BadInput(f"{model.name}: the mean image it was trained with is needed (DATA/mean.binaryproto from "
                       f"`ilgnet lmdb`)", about="mean")


def check_model_spec(spec: str | Path) -> None:
    """MissingFile (about "model") unless `spec` is a published model's registry name or a path that exists."""
    if str(spec) not in PUBLISHED_MODELS and not Path(spec).exists():
        raise MissingFile(f"{spec}: not {' or '.join(PUBLISHED_MODELS)}, and no such file", about="model")


def resolve_model(spec: str | Path, *, variant: str | None = None, mean: Path | str | None = None,
                  models: Path = defaults.MODELS_DIR) -> Model:
    """`spec` as a Model: a published model's registry name, a run folder (or its model.json), a snapshot of a run,
    an ONNX file `ilgnet export` wrote, or a .caffemodel.
    `variant` and `mean`, when given, override what the model records (ilgnet.bvlc.fit catches a variant that
    contradicts the weights). A plain .caffemodel's variant defaults to ilgnet; its mean stays None unless given."""
    path = Path(spec)
    if str(spec) in PUBLISHED_MODELS:
        model = published_model(str(spec), models, mean=mean)
    elif RunFolder(path).is_run():
        model = run_model(path)
    elif path.name == RunFolder(path.parent).model_json.name and path.is_file():
        model = run_model(path.parent)          # a run's record given for its run
    elif path.is_dir():
        raise BadInput(f"model {spec} is a folder without {RunFolder(path).model_json.name}: neither a run of "
                       f"`ilgnet train` nor a .caffemodel", about="model")
    elif not path.is_file():
        check_model_spec(spec)
    elif (run := RunFolder.of_snapshot(path)) is not None:
        model = run_model(run.root, path)
    elif path.suffix.lower() == ".onnx":
        facts = exported(path)
        carried = mean_of(facts["mean_npy_base64"]) if "mean_npy_base64" in facts else None
        model = Model(path, facts["variant"], carried, name=str(path),
                      resize=int(facts["resize"]) if "resize" in facts else None)
    else:
        model = Model(path, None, None, name=str(path))
    return Model(model.weights, variant or model.variant or "ilgnet", Path(mean) if mean else model.mean,
                 model.train_list, name=model.name, resize=model.resize)


def check_mean_size(model: Model, *, records: tuple[int, int] | None = None, lmdb: Path | None = None) -> None:
    """A mean image of another size than the photos the model was trained on would resize every photo to that size
    and score something the net never saw: BadInput when the model records its training size (`Model.resize`: a
    run's record, the registry). A bare .caffemodel records none, so its mean is taken as it is. `records`:
    the (height, width) of the records of `lmdb` the mean is subtracted from, which Caffe's Data layer needs equal
    to the mean's (it aborts otherwise): BadInput when they differ. A per-channel mean (3 values) fits any size."""
    if model.mean is None:
        return
    mean = model.mean if isinstance(model.mean, np.ndarray) else load_mean(model.mean)
    if mean.ndim != 3:
        return
    height, width = mean.shape[1:]
    if records is not None and tuple(records) != (height, width):
        raise BadInput(f"the mean image {model.mean} is {width}x{height}, the records of {lmdb} are "
                       f"{records[1]}x{records[0]}: Caffe subtracts one from the other and needs them equal")
    if model.resize is not None and (height, width) != (model.resize, model.resize):
        raise BadInput(f"the mean image {model.mean} is {width}x{height}, but {model.name} was trained on photos "
                       f"resized to {model.resize}x{model.resize}: give the mean of its training data")


def mean_name(model: Model) -> str:
    """How to name a model's mean in reports: its file, or the ONNX file whose metadata carry it."""
    return f"carried in {model.weights}" if isinstance(model.mean, np.ndarray) else str(model.mean)
