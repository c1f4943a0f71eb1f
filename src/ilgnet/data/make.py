"""A data folder made from AVA (or from the authors' list files, or your own labelled photos): the one sequence
behind `ilgnet split` then `ilgnet lmdb`, the campaign's data folders and the demo's. `make_split` writes the
partition, `make_lmdbs` the LMDBs and the mean (ilgnet.data.lmdb_build), `make_data_folder` both.

Completion is marked last: the lists and split.json replaced together (ilgnet.data.partitions.write_split), lmdb.json
(`complete`) after the LMDBs and means it describes, which replace the old ones together; an interrupted step leaves
what the step before it left. What a step has to say (photos a manifest marks unreadable, ids of a list that AVA.txt
lacks, an LMDB rebuilt and why) goes to `notify`, one line each, for the command to print.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ilgnet import defaults
from ilgnet.data import manifest, own_labels, partitions
from ilgnet.data.ava import read_ava_txt, read_id_list, read_list_file
from ilgnet.data.folder import SETS, DataFolder
from ilgnet.data.lmdb_build import build_split, ignore
from ilgnet.errors import BadInput, UnknownName
from ilgnet.fileio import atomic_write_text

PARTITIONS = (*partitions.PARTITIONS, "labels")
# What each partition reads besides the seed: the field of Partition that must be given.
SOURCES = {"ava1": "ava_txt", "ava2": "ava_txt", "official": "ava_txt", "published": "repo", "labels": "csv"}


class EmptySet(BadInput):
    """A partition that would leave a list file without images: `path` is the list file, `name` its set (train or
    val), `cause` which argument emptied it (delta, test_counts, list: an official list, held_out: the val fraction
    or list of your own photos) and `facts` the partition's facts for split.json, so that a command can name its
    own flags."""

    def __init__(self, message: str, *, path: Path, name: str, cause: str, facts: dict):
        super().__init__(message)
        self.path, self.name, self.cause, self.facts = path, name, cause, facts


@dataclass(frozen=True)
class Partition:
    """A split asked for, its fields named as the arguments of `ilgnet split PARTITION` (docs/DATA.md has their
    meanings). `partition`: ava1, ava2 and official read `ava_txt` (and the manifest beside it); published reads the
    list files of `repo` (a clone of the original ILGNet repository), set `dataset` (AVA1 or AVA2); labels reads
    `csv` (your own photos, ilgnet.data.own_labels). Fields a partition does not use are ignored. `facts`: more
    for split.json (the campaign's `synthetic`). UnknownName for another partition, BadInput when what it reads is
    not given."""
    partition: str
    ava_txt: Path | None = None
    drop_invalid: bool = False
    seed: int = defaults.SEED
    test_size: int = 20_000
    test_counts: tuple[int, int] | None = None
    delta: float = 0.0
    fraction: float = 0.1
    lists: Path | None = None
    train_list: str = "generic_ls_train"
    test_list: str = "generic_test"
    repo: Path | None = None
    dataset: str = "AVA1"
    csv: Path | None = None
    threshold: float | None = None
    top_bottom: float | None = None
    val_fraction: float = 0.2
    val_list: Path | None = None
    facts: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.partition not in PARTITIONS:
            raise UnknownName(f"unknown partition {self.partition!r}; known: {', '.join(PARTITIONS)}")
        if getattr(self, SOURCES[self.partition]) is None:
            raise BadInput(f"partition {self.partition} reads a {SOURCES[self.partition]}: none given")

    def list_path(self, name: str) -> Path:
        """An official list, `name` being train_list's or test_list's value: LISTS/<name>.jpgl, LISTS by default the
        aesthetics_image_lists folder beside AVA.txt."""
        return Path(self.lists or Path(self.ava_txt).parent / "aesthetics_image_lists") / f"{name}.jpgl"

    def inputs(self) -> list[tuple[Path, str]]:
        """The files the partition reads, each with what it is (the data folder may overwrite none of them)."""
        if self.partition == "labels":
            return [(Path(self.csv), "the labels file")] + ([(Path(self.val_list), "the val list")]
                                                            if self.val_list else [])
        if self.partition == "published":
            return [(Path(self.repo) / "data" / self.dataset / f"{name}.txt",
                     f"the published {self.dataset} {name} list") for name in SETS]
        lists = [(self.list_path(name), f"AVA's {name} list") for name in (self.train_list, self.test_list)]
        return [(Path(self.ava_txt), "AVA.txt")] + (lists if self.partition == "official" else [])


def _read_ava(partition: Partition, facts: dict, notify: Callable[[str], None]) -> pd.DataFrame:
    """AVA.txt's rows the partition may use (those the manifest beside it marks readable, when there is one, after
    checking it is not older than what it describes); what was read goes into `facts`."""
    listing = manifest.manifest_beside(partition.ava_txt)
    if listing is not None:
        manifest.check_current(listing, partition.ava_txt)
    meta = read_ava_txt(partition.ava_txt, drop_invalid=partition.drop_invalid)
    facts.update(ava_txt=str(Path(partition.ava_txt).resolve()), ava_txt_images=len(meta),
                 invalid_rows_dropped=[{"line": line, "image_id": image_id, "reason": reason}
                                       for line, image_id, reason in meta.attrs["dropped"]])
    if listing is not None:
        meta, left_out = manifest.usable(meta, listing)
        facts["manifest"] = left_out
        if left_out["missing"] or left_out["undecodable"]:
            notify(f"{left_out['missing'] + left_out['undecodable']:,} images of {partition.ava_txt} left out as "
                   f"{listing} marks them ({left_out['missing']:,} without a photo, {left_out['undecodable']:,} "
                   f"that do not decode)")
    return meta


def _ava_split(meta: pd.DataFrame, partition: Partition, *, manifest_read: bool,
               notify: Callable[[str], None]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(train, val, facts) of partition ava1, ava2 or official from AVA.txt's usable rows."""
    if partition.partition == "ava1":
        return partitions.ava1_split(meta, test_size=partition.test_size, test_counts=partition.test_counts,
                                     delta=partition.delta, seed=partition.seed)
    if partition.partition == "ava2":
        return partitions.ava2_split(meta, fraction=partition.fraction, seed=partition.seed)
    train_list, test_list = (partition.list_path(name) for name in (partition.train_list, partition.test_list))
    train, val, more = partitions.official_split(meta, read_id_list(train_list), read_id_list(test_list),
                                                 delta=partition.delta)
    more.update(train_list=str(train_list), test_list=str(test_list))
    for name, ids in more["missing_from_ava_txt"].items():
        if ids:
            why = " or have no usable photo" if manifest_read else ""
            notify(f"{len(ids)} ids of the {name} list are not in {partition.ava_txt}{why} and were left out "
                   f"(listed in split.json)")
    return train, val, more


def _own_labels(folder: DataFolder, partition: Partition,
                notify: Callable[[str], None]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(train, val, facts) of your own photos; the ones that cannot be read are listed in unusable.txt."""
    csv = Path(partition.csv)
    frame = own_labels.read_labels_csv(csv)
    own_labels.check_rule(frame, threshold=partition.threshold, top_bottom=partition.top_bottom, source=str(csv))
    usable, problems = own_labels.check_photos(frame)
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.unusable_txt, "".join(f"{csv}:{line}\t{path}\t{why}\n" for line, path, why in problems))
    if problems:
        notify(f"{len(problems):,} of the {len(frame):,} photos of {csv} are missing or do not decode; left out, "
               f"listed in {folder.unusable_txt}")
    if usable.empty:
        raise BadInput(f"{csv}: none of its {len(frame):,} photos can be read (listed in {folder.unusable_txt})")
    labelled, facts = own_labels.label(usable, threshold=partition.threshold, top_bottom=partition.top_bottom)
    train, val, held = own_labels.hold_out(labelled, fraction=partition.val_fraction, val_list=partition.val_list,
                                           seed=partition.seed)
    facts.update(held, labels_csv=str(csv.resolve()), images_root=str(csv.resolve().parent),
                 listed_photos=len(frame), usable_photos=len(usable), unusable=len(problems))
    return train, val, facts


def _empty(folder: DataFolder, name: str, partition: Partition, facts: dict) -> EmptySet:
    """The error for set `name` left without images, with why in the library's words."""
    if name == "train" and facts.get("dropped_by_delta"):
        cause, why = "delta", f"a delta of {partition.delta:g} drops all {facts['dropped_by_delta']:,} training images"
    elif partition.partition == "labels":
        cause, why = "held_out", f"none of the {facts.get('usable_photos', 0):,} usable photos of {partition.csv}"
    elif partition.partition == "official":
        listed = partition.list_path(partition.train_list if name == "train" else partition.test_list)
        cause, why = "list", f"no image of {listed} is in {partition.ava_txt}"
    else:
        cause, why = "test_counts", (f"the test set takes every image of {partition.ava_txt}" if name == "train" else
                                     "the test set's class counts are 0 and 0")
    return EmptySet(f"{folder.list_file(name)} would list no images: {why}", path=folder.list_file(name), name=name,
                    cause=cause, facts=facts)


def make_split(out: Path, partition: Partition, *, notify: Callable[[str], None] = ignore) -> dict:
    """Writes `partition` into the data folder `out`: train.txt and val.txt (`NAME LABEL` a line), val_means.csv
    where the partition knows the mean scores, unusable.txt for your own photos, and split.json last; returns
    split.json's content (the partition, its arguments, per set the images and label counts). Raises what reading
    the inputs raises (MissingFile, BadInput naming file and line), BadInput for a manifest older than what it
    describes (ilgnet.data.manifest.check_current), own_labels.RuleMismatch for a labels CSV and a rule that do not
    go together, EmptySet for a set left without images, BadInput for an image in both sets; the list files and
    split.json are not written then."""
    folder = DataFolder(out)
    facts = {"partition": partition.partition}
    if partition.partition == "labels":
        train, val, more = _own_labels(folder, partition, notify)
    elif partition.partition == "published":
        train, val, more = partitions.published_split(partition.repo, partition.dataset)
    else:
        meta = _read_ava(partition, facts, notify)
        train, val, more = _ava_split(meta, partition, manifest_read="manifest" in facts, notify=notify)
    for name, frame in (("train", train), ("val", val)):
        if frame.empty:
            raise _empty(folder, name, partition, more)
    return partitions.write_split(folder.root, train, val, {**facts, **partition.facts, **more})


def _marked(folder: DataFolder, images: Path, notify: Callable[[str], None]) -> None:
    """Where an ava-manifest.csv is beside the photo folder (`ilgnet ava fetch/verify`), how many listed photos it
    marks unreadable; the build checks each photo as the manifest did (ilgnet.data.images) and skips those."""
    if (listing := manifest.manifest_beside(images)) is None:
        return
    names = [name for path in map(folder.list_file, SETS) if path.is_file()
             for name in read_list_file(path)["filename"]]
    marked = manifest.unreadable_in(names, listing)
    if marked["missing"] or marked["undecodable"]:
        notify(f"{marked['missing'] + marked['undecodable']:,} of the {len(names):,} listed photos are marked "
               f"unreadable by {listing} ({marked['missing']:,} without a photo, {marked['undecodable']:,} that do "
               f"not decode); the build skips those it still cannot read, each listed in skipped.txt")


def make_lmdbs(out: Path, images: Path, *, resize: int = defaults.RESIZE, seed: int = defaults.SEED,
               encoding: str | None = None, jobs: int | None = None, force: bool = False, progress: bool = True,
               notify: Callable[[str], None] = ignore) -> dict:
    """The data folder `out`'s train_lmdb, val_lmdb, mean.binaryproto and mean.npy from its list files and the
    photos under `images`, lmdb.json last; returns lmdb.json's content. The arguments and errors are
    ilgnet.data.lmdb_build.build_split's; first, where a manifest is beside `images`, `notify` hears how many listed
    photos it marks unreadable."""
    _marked(DataFolder(out), Path(images), notify)
    return build_split(out, images, resize=resize, seed=seed, encoding=encoding, jobs=jobs, force=force,
                       progress=progress, notify=notify)


def make_data_folder(out: Path, partition: Partition, images: Path, *, resize: int = defaults.RESIZE,
                     seed: int = defaults.SEED, encoding: str | None = None, jobs: int | None = None,
                     force: bool = False, progress: bool = True, notify: Callable[[str], None] = ignore) -> dict:
    """A whole data folder: `make_split(out, partition)`, then `make_lmdbs(out, images)` with the LMDBs' `seed`
    (the record order) and the other arguments; returns {"split": split.json's content, "lmdb": lmdb.json's}. The
    errors are those of the two; the folder is complete once lmdb.json is written, its last file."""
    split = make_split(out, partition, notify=notify)
    return {"split": split, "lmdb": make_lmdbs(out, images, resize=resize, seed=seed, encoding=encoding, jobs=jobs,
                                              force=force, progress=progress, notify=notify)}
