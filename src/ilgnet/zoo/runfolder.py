"""A run folder of `ilgnet train`, as data/folder.py's DataFolder is a data folder: the one place that names its
files. Layout (docs/TRAINING.md):

    model.json            what the model is (variant, profile, data, recipe); the mean image and training list it
                          names are copied beside it, and a resume on changed data keeps the earlier ones as
                          `<name>.until_iter_<N>` with a `history` entry (`record_data_change`)
    train_val.prototxt    the net and solver Caffe ran, regenerated on every start
    solver.prototxt
    train.log             Caffe's full output, appended to on a resume; train_log.csv and curves.png parsed from it
    snapshots/            <variant>_iter_<N>.caffemodel and .solverstate, as Caffe names them

It sits in zoo/ rather than training/ because resolving a model (ilgnet.zoo.models) reads run folders too, and
imports only go down the layers (tests/test_layout.py).
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ilgnet.errors import BadInput, about
from ilgnet.fileio import atomic_write_json, file_digest, folder_lock, read_json
from ilgnet.nets import get_variant

LABELS = {"0": "low aesthetic quality", "1": "high aesthetic quality"}
# The data folder's files a run keeps a record of: key in model.json -> (file in the data folder, name of the copy
# in the run folder, or None where the run keeps only its checksum).
DATA_FILES = {"mean": ("mean.binaryproto", "mean.binaryproto"), "train_list": ("train.txt", "train.txt"),
              "val_list": ("val.txt", None)}


@dataclass(frozen=True)
class RunFolder:
    """The run folder `root` (it need not exist yet); paths only, nothing is read until asked."""
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def model_json(self) -> Path:
        return self.root / "model.json"

    @property
    def snapshot_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def train_log(self) -> Path:
        """Caffe's output (ilgnet.bvlc.logs parses it); ilgnet.training.curves writes its CSV and plot beside it."""
        return self.root / "train.log"

    @property
    def train_val(self) -> Path:
        return self.root / "train_val.prototxt"

    @property
    def solver(self) -> Path:
        return self.root / "solver.prototxt"

    @staticmethod
    def of_snapshot(path: Path) -> RunFolder | None:
        """The run folder whose snapshots/ holds `path`, when it has a model.json; else None."""
        path = Path(path)
        run = RunFolder(path.parent.parent)
        return run if path.parent.name == run.snapshot_dir.name and run.is_run() else None

    def is_run(self) -> bool:
        """Whether the folder holds a model record, so is a run of `ilgnet train`."""
        return self.model_json.is_file()

    def snapshot_prefix(self, variant: str) -> Path:
        """The solver's snapshot_prefix: Caffe appends `_iter_<N>.caffemodel` (.solverstate)."""
        return self.snapshot_dir / variant

    def snapshot(self, variant: str, iteration: int, kind: str = "caffemodel") -> Path:
        """The snapshot file Caffe writes at `iteration` for a run of `variant`."""
        return self.snapshot_dir / f"{variant}_iter_{iteration}.{kind}"

    def snapshots(self, kind: str) -> list[Path]:
        """The run's snapshot files of `kind` (caffemodel or solverstate), oldest iteration first."""
        pattern = re.compile(rf"_iter_(\d+)\.{kind}(\.h5)?$")
        found = [(int(m[1]), p) for p in self.snapshot_dir.glob(f"*_iter_*.{kind}*") if (m := pattern.search(p.name))]
        return [p for _, p in sorted(found)]

    def lock(self, *, shared: bool = False):
        """The folder's lock for a `with` block (ilgnet.fileio.folder_lock): one process trains a run at a time."""
        return folder_lock(self.root, shared=shared)

    def read_record(self) -> dict:
        """model.json as write_record wrote it: a JSON object naming a known net variant, and for "mean" and
        "train_list" null or {"file": NAME in the folder, "sha256": HEX, ...}. BadInput naming model.json (and the
        line, for text that is not JSON) when it is not; MissingFile when it is absent."""
        path = self.model_json
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
                raise BadInput(f"{path}: \"{key}\" must be null or name a file in {self.root} and its sha256 "
                               f"({{\"file\": ..., \"sha256\": ...}})")
        return record

    def _data_record(self, data, *, copy: bool) -> dict:
        """What model.json records of a data folder (a DataFolder): its folder, the mean, training and val lists
        (each with its sha256; the mean and training list copied into the run folder when `copy`), the LMDBs'
        resize."""
        record = {"data": str(Path(data.root).resolve())}
        for key, (name, copy_name) in DATA_FILES.items():
            source = Path(data.root) / name
            if not source.is_file():
                record[key] = None
                continue
            copied = copy and copy_name is not None
            if copied:
                shutil.copyfile(source, self.root / copy_name)
            record[key] = {"file": copy_name, "source": str(source.resolve()),
                           "sha256": file_digest(self.root / copy_name if copied else source)}
        record["resize"] = data.read_json(data.lmdb_json).get("resize")
        return record

    def write_record(self, *, variant, profile: str, data, crop: int, input_scale: float,
                     recipe: dict | None = None) -> Path:
        """Records a training run's identity in model.json, copying the data folder's mean and training list (when
        it has one) into the run folder, so that the model keeps working after its data folder moves, and the
        sha256 of its val list. `data` is a DataFolder; `recipe` the fine-tuning recipe's record (its `name` is
        kept as `recipe`, the rest as `recipe_detail`: what it is and the layers it fixed). Returns model.json."""
        record = {"variant": variant, "profile": profile, **self._data_record(data, copy=True)}
        if recipe is not None:
            record.update(recipe=recipe["name"], recipe_detail={k: v for k, v in recipe.items() if k != "name"})
        split = data.read_json(data.split_json)
        record.update(crop=crop, input_scale=input_scale, labels=LABELS,
                      partition={k: v for k, v in split.items() if k not in ("train", "val", "invalid_rows_dropped")})
        atomic_write_json(self.model_json, record)
        return self.model_json

    def data_changes(self, data) -> list[str]:
        """How a data folder (a DataFolder) differs from the data model.json records, in words: its folder, the
        sha256 of its mean, training list and val list (where the record has them), the LMDBs' resize. Empty when
        it is the same data."""
        recorded, now = self.read_record(), self._data_record(data, copy=False)
        changes = [f"the data folder was {recorded['data']}, now {now['data']}"] \
            if recorded.get("data") != now["data"] else []
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

    def _kept_name(self, name: str, iteration: int) -> str:
        """A free name for the copy `name` kept from before a data change: mean.until_iter_2.binaryproto, ..."""
        stem, suffix = name.split(".", 1)
        candidates = (f"{stem}.until_iter_{iteration}{'' if n == 1 else f'-{n}'}.{suffix}" for n in range(1, 1000))
        return next(c for c in candidates if not (self.root / c).exists())

    def record_data_change(self, data, iteration: int, changes: list[str]) -> dict:
        """Records in model.json that the run goes on from snapshot `iteration` with the data folder `data` (a
        DataFolder): the data it had until then moves into `history` (its mean and training list copies renamed to
        `<name>.until_iter_<iteration>`), the new mean and training list are copied in, and the record names them.
        Returns the history entry."""
        record = self.read_record()
        entry = {"until_iteration": iteration, "changed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "changes": changes, **{key: record.get(key) for key in ("data", *DATA_FILES, "resize")}}
        for key in ("mean", "train_list"):
            if entry[key] and entry[key]["file"] and (self.root / entry[key]["file"]).is_file():
                kept = self._kept_name(entry[key]["file"], iteration)
                (self.root / entry[key]["file"]).rename(self.root / kept)
                entry[key] = {**entry[key], "file": kept}
        record.update(self._data_record(data, copy=True))
        # A run resumed from before an earlier change (its later snapshots set aside) trained on that data only so far.
        earlier = [{**e, "until_iteration": min(e["until_iteration"], iteration)} for e in record.get("history", [])]
        record["history"] = [*earlier, entry]
        atomic_write_json(self.model_json, record)
        return entry
