"""A data folder: one split of AVA ready for Caffe, as `ilgnet split` and `ilgnet lmdb` write it.

    DIR/train.txt, DIR/val.txt     Caffe list files (`<file> <label>`)          ilgnet split
    DIR/split.json                 how the split was made (partition, seed, counts)
    DIR/val_means.csv              the val images' mean scores (filename, mean), where the partition knows them
    DIR/unusable.txt               your own photos left out of the split (`ilgnet split labels`)
    DIR/train_lmdb, DIR/val_lmdb   Datum records as convert_imageset writes them  ilgnet lmdb
    DIR/mean.binaryproto           the training images' mean (compute_image_mean's file; mean.npy the same array)
    DIR/lmdb.json, DIR/skipped.txt what was built from what, and the photos that could not be read
    DIR/<set>_lmdb/ilgnet-files.tsv each listed photo's size and modification time when its LMDB was built
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ilgnet.errors import BadInput
from ilgnet.fileio import read_json, require

SETS = ("train", "val")
# How an LMDB's records may hold their images besides raw pixels: `convert_imageset --encoded --encode_type`.
ENCODINGS = ("png", "jpg")
LMDB_FILES = "ilgnet-files.tsv"
# The paper's protocols (Table 2: AVA1, Table 3: AVA2) by the partition split.json names.
PROTOCOLS = ("ava1", "ava2")


def _file(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"DIR/{name}")


@dataclass(frozen=True)
class DataFolder:
    """The files of one data folder (the table above), by name: DataFolder("data/ava2").lmdb("val")."""
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    mean_binaryproto = _file("mean.binaryproto")
    mean_npy = _file("mean.npy")
    split_json = _file("split.json")
    val_means = _file("val_means.csv")
    unusable_txt = _file("unusable.txt")
    lmdb_json = _file("lmdb.json")
    skipped_txt = _file("skipped.txt")

    def list_file(self, name: str) -> Path:
        """train.txt or val.txt."""
        return self.root / f"{name}.txt"

    def lmdb(self, name: str) -> Path:
        """train_lmdb or val_lmdb."""
        return self.root / f"{name}_lmdb"

    def require_lists(self) -> None:
        """train.txt and val.txt, as `ilgnet split` leaves them (MissingFile, or BadInput for a folder)."""
        for name in SETS:
            require(self.list_file(name), hint="; `ilgnet split` makes it")

    def require_lmdbs(self) -> None:
        """train_lmdb, val_lmdb and mean.binaryproto, as `ilgnet lmdb` leaves them (MissingFile, or BadInput for a
        file where a folder belongs or the reverse)."""
        for path in (self.lmdb("train"), self.lmdb("val"), self.mean_binaryproto):
            require(path, folder=path.suffix != ".binaryproto", hint="; `ilgnet lmdb` makes it")

    @staticmethod
    def read_json(path: Path) -> dict:
        """split.json or lmdb.json as a dict ({} when the file is absent); BadInput when it is not a JSON object."""
        value = read_json(path) if path.is_file() else {}
        if not isinstance(value, dict):
            raise BadInput(f"{path}: not a JSON object, so not the {path.name} of `ilgnet split` or `ilgnet lmdb`")
        return value

    def unreached(self, name: str) -> tuple[int, int] | None:
        """(images listed in <name>.txt, how many of them are not records of <name>_lmdb): from lmdb.json when it
        has the set (`ilgnet lmdb` built it), else from the list file and the LMDB's size (an LMDB made by
        convert_imageset); None without a list file."""
        from ilgnet.bvlc.io import lmdb_size
        from ilgnet.data.ava import read_list_file

        entry = self.read_json(self.lmdb_json).get(name) or {}
        if "listed" in entry and "records" in entry:
            return entry["listed"], entry["listed"] - entry["records"]
        if not self.list_file(name).is_file():
            return None
        listed = len(read_list_file(self.list_file(name)))
        return listed, max(0, listed - lmdb_size(self.lmdb(name)))

    def protocol(self) -> str | None:
        """ava1 / ava2 from split.json (the published lists count as their set), None for other partitions."""
        summary = self.read_json(self.split_json)
        partition = summary.get("partition")
        if partition == "published":
            partition = str(summary.get("dataset", "")).lower()
        return partition if partition in PROTOCOLS else None
