"""What a model is: its caffemodel together with its identity -- the net variant, the mean image it was trained
with and the list of images it was trained on -- as timm's pretrained configs and nanoGPT's checkpoints carry theirs.

A trained model is one of:
  * a published model by registry name (ilgnet-ava1, ilgnet-ava2): variant, mean and training list from weights.json,
    fetched into models/ by `ilgnet weights fetch`;
  * a run folder of `ilgnet train` (or a snapshot in its snapshots/): runs/NAME/model.json, written when the run
    started, with the mean and training list copied beside it. A resume on changed data, when accepted, appends
    the data the run had until then to model.json's `history`, with its mean and training list kept beside it
    under `<name>.until_iter_<N>`, so that a snapshot from before the change is scored with the mean it was
    trained with (`data_changes`, `record_data_change`);
  * an ONNX file `ilgnet export` wrote, whose metadata give its variant and mean (ilgnet.zoo.onnx_metadata);
  * any other .caffemodel, whose variant and mean the caller must give.
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilgnet import defaults
from ilgnet.errors import BadInput, MissingFile, about
from ilgnet.fileio import atomic_write_json, file_digest, read_json, require
from ilgnet.zoo.onnx_metadata import exported, mean_of
from ilgnet.zoo.registry import PUBLISHED_MODELS, check_file, load_registry

MODEL_JSON = "model.json"
LABELS = {"0": "low aesthetic quality", "1": "high aesthetic quality"}
SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")
# The data folder's files a run keeps a record of: key in model.json -> (DataFolder attribute or list, name of the
# copy in the run folder, or None where the run keeps only its checksum).
DATA_FILES = {"mean": ("mean.binaryproto", "mean.binaryproto"), "train_list": ("train.txt", "train.txt"),
              "val_list": ("val.txt", None)}


@dataclass(frozen=True)
class Model:
    """A trained model ready to score: the caffemodel (or exported ONNX file), its net variant, the mean image it was
    trained with (a file, or for an ONNX file the array its metadata carry) and the list of its training images
    (None where not known)."""
    caffemodel: Path
    variant: str | None
    mean: Path | np.ndarray | None
    train_list: Path | None = None
    name: str = ""
    """How the user named it: a registry name, a run folder or the caffemodel's path."""
    resize: int | None = None
    """The side of the square its training photos were resized to (model.json's `resize`, the registry's), where
    known: a mean image of another size is refused (`check_mean_size`)."""


def published_model(name: str, models: Path = defaults.MODELS_DIR, *, mean: Path | str | None = None) -> Model:
    """The authors' model `name` (ilgnet-ava1 / ilgnet-ava2) in `models`, with `mean` or else its published mean
    image, and its training list when that was fetched too (else None). What is used must have been fetched
    (`ilgnet weights fetch NAME`; nothing is downloaded here); its size and checksums are checked."""
    registry = load_registry()
    entry = registry[name]

    def fetched(item: str | None, optional: bool) -> Path | None:
        if item is None:
            return None
        path = Path(models) / registry[item].file
        if optional and not path.exists():
            return None
        require(path, hint=f"; run `ilgnet weights fetch {name}` first")
        check_file(registry[item], path)
        return path

    caffemodel = fetched(name, optional=False)
    published_mean = fetched(entry.mean, optional=mean is not None)
    return Model(caffemodel, entry.fits_variant, Path(mean) if mean else published_mean,
                 fetched(entry.train_list, optional=True), name=name, resize=entry.resize)


def snapshot_iteration(path: Path) -> int:
    """The iteration in a snapshot's name (`<prefix>_iter_<N>.caffemodel` or `.solverstate`, as Caffe names them)."""
    return int(SNAPSHOT_ITER.search(Path(path).name)[1])


def snapshots(run_dir: Path, kind: str) -> list[Path]:
    """A run's snapshot files of `kind` (caffemodel or solverstate), oldest iteration first."""
    pattern = re.compile(rf"_iter_(\d+)\.{kind}(\.h5)?$")
    found = [(int(m[1]), p) for p in (Path(run_dir) / "snapshots").glob(f"*_iter_*.{kind}*")
             if (m := pattern.search(p.name))]
    return [p for _, p in sorted(found)]


def read_model_json(run_dir: Path) -> dict:
    """run_dir/model.json as write_model_json wrote it: a JSON object naming a known net variant, and for "mean" and
    "train_list" null or {"file": NAME in run_dir, "sha256": HEX, ...}. BadInput naming model.json (and the line,
    for text that is not JSON) when it is not; MissingFile when it is absent."""
    from ilgnet.nets import get_variant

    path = Path(run_dir) / MODEL_JSON
    record = read_json(path)
    if not isinstance(record, dict):
        raise BadInput(f"{path}: not a JSON object, so not the model record `ilgnet train` writes")
    if not isinstance(record.get("variant"), str):
        raise BadInput(f"{path} names no net variant (a \"variant\" string, e.g. \"ilgnet\")")
    with about(path):
        get_variant(record["variant"])
    for key in ("mean", "train_list"):
        entry = record.get(key)
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("file"), str)
                                      and isinstance(entry.get("sha256"), str)):
            raise BadInput(f"{path}: \"{key}\" must be null or name a file in {run_dir} and its sha256 "
                           f"({{\"file\": ..., \"sha256\": ...}})")
    return record


def _data_in_effect(record: dict, iteration: int | None) -> dict:
    """The part of a run's record (data, mean, train_list, ...) a snapshot of `iteration` was trained with: the
    first history entry that lasted until it, else the record itself."""
    if iteration is not None:
        for entry in record.get("history", []):
            if iteration <= entry["until_iteration"]:
                return entry
    return record


def run_model(run_dir: Path, caffemodel: Path | None = None) -> Model:
    """The model of an `ilgnet train` run: `caffemodel`, or the run's newest snapshot, with model.json's identity
    (read_model_json). The mean and training list are the copies in the run folder that the snapshot was trained
    with (model.json's history says which, when the run was resumed on changed data); their sha256 must be those
    recorded (BadInput), and they must exist (MissingFile naming model.json too)."""
    run_dir = Path(run_dir)
    record = read_model_json(run_dir)
    if caffemodel is None:
        found = snapshots(run_dir, "caffemodel")
        if not found:
            raise MissingFile(f"{run_dir} has no snapshot yet ({run_dir / 'snapshots'} is empty)")
        caffemodel = found[-1]
    in_effect = _data_in_effect(record, snapshot_iteration(caffemodel) if SNAPSHOT_ITER.search(Path(caffemodel).name)
                                else None)
    files = {"train_list": None}
    for key in ("mean", "train_list"):
        if in_effect.get(key) is None:              # a data folder made without `ilgnet split` has no train.txt
            continue
        path = run_dir / in_effect[key]["file"]
        require(path, hint=f" ({run_dir / MODEL_JSON} names it)")
        if file_digest(path) != in_effect[key]["sha256"]:
            raise BadInput(f"{path} changed after the run began: its sha256 is not the one {MODEL_JSON} records")
        files[key] = path
    return Model(Path(caffemodel), record["variant"], files["mean"], files["train_list"], name=str(run_dir),
                 resize=record.get("resize"))


def known_variant(caffemodel: Path | str) -> tuple[str, str] | None:
    """(the net variant `caffemodel` was trained as, where that is recorded) or None: the model.json of its run
    (a snapshot in RUN/snapshots, or a caffemodel beside a model.json), else the registry entry of a published
    model of its name and exact size (weights.json's `fits_variant`). What a refusal of `--variant` names."""
    path = Path(caffemodel)
    for run_dir in (path.parent.parent, path.parent) if path.parent.name == "snapshots" else (path.parent,):
        if (run_dir / MODEL_JSON).is_file():
            try:
                return read_model_json(run_dir)["variant"], str(run_dir / MODEL_JSON)
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


def resolve_model(spec: str | Path, *, variant: str | None = None, mean: Path | str | None = None,
                  models: Path = defaults.MODELS_DIR) -> Model:
    """`spec` as a Model: a published model's registry name, a run folder, a snapshot of a run, an ONNX file
    `ilgnet export` wrote, or a .caffemodel.
    `variant` and `mean`, when given, override what the model records (ilgnet.zoo.fit catches a variant that
    contradicts the weights). A plain .caffemodel's variant defaults to ilgnet; its mean stays None unless given."""
    path = Path(spec)
    if str(spec) in PUBLISHED_MODELS:
        model = published_model(str(spec), models, mean=mean)
    elif (path / MODEL_JSON).is_file():
        model = run_model(path)
    elif path.is_dir():
        raise BadInput(f"model {spec} is a folder without {MODEL_JSON}: neither a run of `ilgnet train` nor a "
                       f".caffemodel")
    elif not path.is_file():
        raise MissingFile(f"model {spec}: not {' or '.join(PUBLISHED_MODELS)}, and no such file")
    elif path.parent.name == "snapshots" and (path.parent.parent / MODEL_JSON).is_file():
        model = run_model(path.parent.parent, path)
    elif path.suffix.lower() == ".onnx":
        facts = exported(path)
        carried = mean_of(facts["mean_npy_base64"]) if "mean_npy_base64" in facts else None
        model = Model(path, facts["variant"], carried, name=str(path),
                      resize=int(facts["resize"]) if "resize" in facts else None)
    else:
        model = Model(path, None, None, name=str(path))
    return Model(model.caffemodel, variant or model.variant or "ilgnet", Path(mean) if mean else model.mean,
                 model.train_list, name=model.name, resize=model.resize)


def check_mean_size(model: Model, *, records: tuple[int, int] | None = None, lmdb: Path | None = None) -> None:
    """A mean image of another size than the photos the model was trained on would resize every photo to that size
    and score something the net never saw: BadInput when the model records its training size (`Model.resize`: a
    run's model.json, the registry). A bare .caffemodel records none, so its mean is taken as it is. `records`:
    the (height, width) of the records of `lmdb` the mean is subtracted from, which Caffe's Data layer needs equal
    to the mean's (it aborts otherwise): BadInput when they differ. A per-channel mean (3 values) fits any size."""
    from ilgnet.bvlc.io import load_mean

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


def _data_record(run_dir: Path, data, *, copy: bool) -> dict:
    """What model.json records of a data folder (a DataFolder): its folder, the mean, training and val lists (each
    with its sha256; the mean and training list copied into run_dir when `copy`), and the LMDBs' resize."""
    record = {"data": str(Path(data.root).resolve())}
    for key, (name, copy_name) in DATA_FILES.items():
        source = Path(data.root) / name
        if not source.is_file():
            record[key] = None
            continue
        copied = copy and copy_name is not None
        if copied:
            shutil.copyfile(source, run_dir / copy_name)
        record[key] = {"file": copy_name, "source": str(source.resolve()),
                       "sha256": file_digest(run_dir / copy_name if copied else source)}
    record["resize"] = data.read_json(data.lmdb_json).get("resize")
    return record


def mean_name(model: Model) -> str:
    """How to name a model's mean in reports: its file, or the ONNX file whose metadata carry it."""
    return f"carried in {model.caffemodel}" if isinstance(model.mean, np.ndarray) else str(model.mean)


def write_model_json(run_dir: Path, *, variant, profile: str, data, crop: int, input_scale: float,
                     recipe: dict | None = None) -> Path:
    """Records a training run's identity in run_dir/model.json, copying the data folder's mean and training list
    (when it has one) into the run folder, so that the model keeps working after its data folder moves, and the
    sha256 of its val list. `data` is a DataFolder; `recipe` the fine-tuning recipe's record (its `name` is kept as
    model.json's `recipe`, the rest as `recipe_detail`: what it is and the layers it fixed)."""
    run_dir = Path(run_dir)
    record = {"variant": variant, "profile": profile, **_data_record(run_dir, data, copy=True)}
    if recipe is not None:
        record.update(recipe=recipe["name"], recipe_detail={k: v for k, v in recipe.items() if k != "name"})
    split = data.read_json(data.split_json)
    record.update(crop=crop, input_scale=input_scale, labels=LABELS,
                  partition={k: v for k, v in split.items() if k not in ("train", "val", "invalid_rows_dropped")})
    atomic_write_json(run_dir / MODEL_JSON, record)
    return run_dir / MODEL_JSON


def data_changes(run_dir: Path, data) -> list[str]:
    """How a data folder (a DataFolder) differs from the data a run's model.json records, in words: its folder,
    the sha256 of its mean, training list and val list (where the record has them), the LMDBs' resize. Empty when
    it is the same data."""
    recorded, now = read_model_json(run_dir), _data_record(Path(run_dir), data, copy=False)
    changes = [f"the data folder was {recorded['data']}, now {now['data']}"] if recorded.get("data") != now["data"] \
        else []
    for key, (name, _) in DATA_FILES.items():
        if key not in recorded:                     # recorded before the toolkit kept it
            continue
        before, after = [(entry or {}).get("sha256") for entry in (recorded[key], now[key])]
        if before != after:
            changes.append(f"{name} {'is gone' if after is None else 'is new' if before is None else 'differs'}"
                           + (f" (sha256 {before[:12]} -> {after[:12]})" if before and after else ""))
    if recorded.get("resize") != now["resize"]:
        changes.append(f"the LMDBs' resize was {recorded.get('resize')}, now {now['resize']}")
    return changes


def _kept_name(run_dir: Path, name: str, iteration: int) -> str:
    """A free name for the copy `name` kept from before a data change: mean.until_iter_2.binaryproto, ..."""
    stem, suffix = name.split(".", 1)
    candidates = (f"{stem}.until_iter_{iteration}{'' if n == 1 else f'-{n}'}.{suffix}" for n in range(1, 1000))
    return next(c for c in candidates if not (Path(run_dir) / c).exists())


def record_data_change(run_dir: Path, data, iteration: int, changes: list[str]) -> dict:
    """Records in run_dir/model.json that the run goes on from snapshot `iteration` with the data folder `data` (a
    DataFolder): the data it had until then moves into `history` (its mean and training list copies renamed to
    `<name>.until_iter_<iteration>`), the new mean and training list are copied in, and the record names them.
    Returns the history entry."""
    run_dir = Path(run_dir)
    record = read_model_json(run_dir)
    entry = {"until_iteration": iteration, "changed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes,
             **{key: record.get(key) for key in ("data", *DATA_FILES, "resize")}}
    for key in ("mean", "train_list"):
        if entry[key] and entry[key]["file"] and (run_dir / entry[key]["file"]).is_file():
            kept = _kept_name(run_dir, entry[key]["file"], iteration)
            (run_dir / entry[key]["file"]).rename(run_dir / kept)
            entry[key] = {**entry[key], "file": kept}
    record.update(_data_record(run_dir, data, copy=True))
    # A run resumed from before an earlier change (its later snapshots set aside) trained on that data only so far.
    earlier = [{**e, "until_iteration": min(e["until_iteration"], iteration)} for e in record.get("history", [])]
    record["history"] = [*earlier, entry]
    atomic_write_json(run_dir / MODEL_JSON, record)
    return entry
