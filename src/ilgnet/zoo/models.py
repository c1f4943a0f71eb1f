"""What a model is: its caffemodel together with its identity -- the net variant, the mean image it was trained
with and the list of images it was trained on -- as timm's pretrained configs and nanoGPT's checkpoints carry theirs.

A trained model is one of:
  * a published model by registry name (ilgnet-ava1, ilgnet-ava2): variant, mean and training list from weights.json,
    fetched into models/ by `ilgnet weights fetch`;
  * a run folder of `ilgnet train` (or a snapshot in its snapshots/): runs/NAME/model.json, written when the run
    started, with the mean and training list copied beside it;
  * an ONNX file `ilgnet export` wrote, whose metadata give its variant and mean (ilgnet.zoo.onnx_export);
  * any other .caffemodel, whose variant and mean the caller must give.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilgnet import defaults
from ilgnet.errors import BadInput, MissingFile
from ilgnet.fileio import atomic_write_json, file_digest, require
from ilgnet.zoo.onnx_export import exported, is_onnx, mean_of
from ilgnet.zoo.registry import PUBLISHED_MODELS, check_file, load_registry

MODEL_JSON = "model.json"
LABELS = {"0": "low aesthetic quality", "1": "high aesthetic quality"}


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
                 fetched(entry.train_list, optional=True), name=name)


def snapshots(run_dir: Path, kind: str) -> list[Path]:
    """A run's snapshot files of `kind` (caffemodel or solverstate), oldest iteration first."""
    pattern = re.compile(rf"_iter_(\d+)\.{kind}(\.h5)?$")
    found = [(int(m[1]), p) for p in (Path(run_dir) / "snapshots").glob(f"*_iter_*.{kind}*")
             if (m := pattern.search(p.name))]
    return [p for _, p in sorted(found)]


def run_model(run_dir: Path, caffemodel: Path | None = None) -> Model:
    """The model of an `ilgnet train` run: `caffemodel`, or the run's newest snapshot, with model.json's identity.
    The mean and training list are the copies in the run folder; their sha256 must be those recorded."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / MODEL_JSON).read_text())
    if caffemodel is None:
        found = snapshots(run_dir, "caffemodel")
        if not found:
            raise MissingFile(f"{run_dir} has no snapshot yet ({run_dir / 'snapshots'} is empty)")
        caffemodel = found[-1]
    files = {"train_list": None}
    for key in ("mean", "train_list"):
        if record.get(key) is None:                 # a data folder made without `ilgnet split` has no train.txt
            continue
        path = run_dir / record[key]["file"]
        require(path, hint=f" ({run_dir / MODEL_JSON} names it)")
        if file_digest(path) != record[key]["sha256"]:
            raise BadInput(f"{path} changed after the run began: its sha256 is not the one {MODEL_JSON} records")
        files[key] = path
    return Model(Path(caffemodel), record["variant"], files["mean"], files["train_list"], name=str(run_dir))


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
    elif is_onnx(path):
        facts = exported(path)
        carried = mean_of(facts["mean_npy_base64"]) if "mean_npy_base64" in facts else None
        model = Model(path, facts["variant"], carried, name=str(path))
    else:
        model = Model(path, None, None, name=str(path))
    return Model(model.caffemodel, variant or model.variant or "ilgnet", Path(mean) if mean else model.mean,
                 model.train_list, name=model.name)


def mean_name(model: Model) -> str:
    """How to name a model's mean in reports: its file, or the ONNX file whose metadata carry it."""
    return f"carried in {model.caffemodel}" if isinstance(model.mean, np.ndarray) else str(model.mean)


def write_model_json(run_dir: Path, *, variant, profile: str, data, crop: int, input_scale: float) -> Path:
    """Records a training run's identity in run_dir/model.json, copying the data folder's mean and training list
    (when it has one) into the run folder, so that the model keeps working after its data folder moves. `data` is
    a DataFolder."""
    run_dir = Path(run_dir)
    copies = {"mean": (data.mean_binaryproto, "mean.binaryproto"), "train_list": (data.list_file("train"), "train.txt")}
    record = {"variant": variant, "profile": profile, "data": str(Path(data.root).resolve())}
    for key, (source, name) in copies.items():
        if not source.is_file():
            record[key] = None
            continue
        shutil.copyfile(source, run_dir / name)
        record[key] = {"file": name, "source": str(Path(source).resolve()), "sha256": file_digest(run_dir / name)}
    split = json.loads(data.split_json.read_text()) if data.split_json.is_file() else {}
    lmdb = json.loads(data.lmdb_json.read_text()) if data.lmdb_json.is_file() else {}
    record.update(resize=lmdb.get("resize"), crop=crop, input_scale=input_scale, labels=LABELS,
                  partition={k: v for k, v in split.items() if k not in ("train", "val", "invalid_rows_dropped")})
    atomic_write_json(run_dir / MODEL_JSON, record)
    return run_dir / MODEL_JSON
