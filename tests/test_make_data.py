"""A data folder made from AVA by one function (ilgnet.data.make), whoever asks: the campaign's data folders and the
demo's are byte for byte those of `ilgnet split` then `ilgnet lmdb` on the same synthetic AVA and seed; and
`ilgnet split` refuses a manifest older than the AVA.txt or the photo folder it describes. Without Caffe."""
from __future__ import annotations

import json
import os
from pathlib import Path

import lmdb
import pytest

from ilgnet.cli import main as ilgnet
from ilgnet.commands.demo import run_demo
from ilgnet.data import make, manifest, synthetic
from ilgnet.data.folder import SETS, DataFolder
from ilgnet.paper.campaign import prepare_data
from ilgnet.paper.plans import load_plan

FILES = ("train.txt", "val.txt", "val_means.csv", "mean.binaryproto", "mean.npy")


def contents(folder: Path) -> dict:
    """What a data folder holds for Caffe, as bytes: the lists, the val means, the mean files and every LMDB
    record (key and value, in the LMDB's order); split.json without the campaign's `synthetic`; lmdb.json's
    inputs of each set."""
    data = DataFolder(folder)
    held = {name: (folder / name).read_bytes() for name in FILES}
    for name in SETS:
        with lmdb.open(str(data.lmdb(name)), readonly=True, lock=False) as env, env.begin() as txn:
            held[data.lmdb(name).name] = list(txn.cursor())
        held[f"{name} inputs"] = data.read_json(data.lmdb_json)[name]["inputs"]
    held["split.json"] = {k: v for k, v in data.read_json(data.split_json).items() if k != "synthetic"}
    return held


def split_and_lmdb(ava: Path, out: Path, partition: list[str], *, seed: int, resize: int = 256) -> Path:
    """`ilgnet split PARTITION` then `ilgnet lmdb` on the synthetic AVA in `ava`, as a user types them."""
    assert ilgnet(["split", *partition, "--ava-txt", str(ava / "AVA.txt"), "--seed", str(seed), "--out",
                   str(out)]) == 0
    assert ilgnet(["lmdb", "--split", str(out), "--images", str(ava / "images"), "--seed", str(seed), "--resize",
                   str(resize), "--jobs", "1"]) == 0
    return out


def test_the_campaigns_data_folders_are_those_of_split_and_lmdb(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'runs = "{tmp_path / "runs"}"\ndata = "{tmp_path / "data"}"\n[synthetic]\nimages = 80\n'
                    f'seed = 3\n[[run]]\nvariant = "googlenet-bn-third"\nprofile = "ava2"\nseeds = [1]\n'
                    f'[[run]]\nvariant = "googlenet-bn-third"\nprofile = "ava1-delta0"\nseeds = [1]\n')
    made = prepare_data(load_plan(str(plan)), progress=False)
    assert sorted(p.name for p in made) == ["ava1", "ava2"]
    ava = tmp_path / "data" / "synthetic-ava"
    by_hand = {"ava2": split_and_lmdb(ava, tmp_path / "ava2", ["ava2"], seed=3),
               "ava1": split_and_lmdb(ava, tmp_path / "ava1", ["ava1", "--test-size", "8"], seed=3)}
    for name, folder in by_hand.items():
        campaign = contents(tmp_path / "data" / name)
        assert campaign == contents(folder), name
        assert campaign["split.json"]["val"]["images"] == 8 and len(campaign["val_lmdb"]) == 8
        assert DataFolder(tmp_path / "data" / name).read_json(tmp_path / "data" / name / "split.json")["synthetic"]


class Stop(Exception):
    """Ends the demo once its data folder is made (the rest trains with Caffe)."""


def test_the_demos_data_folder_is_that_of_split_and_lmdb(tmp_path, monkeypatch):
    real = make.make_lmdbs

    def then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise Stop

    monkeypatch.setattr(make, "make_lmdbs", then_stop)
    with pytest.raises(Stop):
        run_demo(tmp_path / "demo", images=100, seed=4, progress=False)
    monkeypatch.undo()
    demo = tmp_path / "demo"
    by_hand = split_and_lmdb(demo / "ava", tmp_path / "by-hand", ["ava2"], seed=4)
    assert contents(demo / "data") == contents(by_hand)
    assert json.loads((demo / "data" / "split.json").read_text())["train"]["images"] == 10


@pytest.fixture
def verified(tmp_path) -> Path:
    """A synthetic AVA of 30 photos with its manifest, as `ilgnet ava verify` writes it."""
    root = tmp_path / "AVA"
    synthetic.generate(root, n_images=30, seed=2, long_sides=(40, 60))
    manifest.verify(root, progress=False)
    return root


def _older(path: Path, than: Path) -> None:
    """Gives `path` a modification time a minute before `than`'s, as a manifest written before `than` changed."""
    earlier = than.stat().st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(earlier, earlier))


def _split(root: Path, out: Path) -> int:
    return ilgnet(["split", "ava2", "--ava-txt", str(root / "AVA.txt"), "--out", str(out)])


@pytest.mark.parametrize("changed, what", [("AVA.txt", "AVA.txt"), ("images", "its photo folder")])
def test_a_manifest_older_than_what_it_describes_is_refused_until_verified_again(verified, tmp_path, capsys,
                                                                                  changed, what):
    listing = verified / manifest.MANIFEST
    assert _split(verified, tmp_path / "fresh") == 0
    _older(listing, verified / changed)
    other = verified / ("images" if changed == "AVA.txt" else "AVA.txt")
    os.utime(other, ns=(listing.stat().st_mtime_ns,) * 2)                # as old as the manifest: current
    assert _split(verified, tmp_path / "out") == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"ilgnet split ava2: error: {listing} is older than {what} {verified / changed}, so it may not describe the "
        f"photos there now; run `ilgnet ava verify {verified}` to check them again")
    assert not (tmp_path / "out").exists()
    manifest.verify(verified, progress=False)
    assert _split(verified, tmp_path / "out") == 0
    assert (tmp_path / "out" / "train.txt").read_bytes() == (tmp_path / "fresh" / "train.txt").read_bytes()


def test_the_hint_names_the_photo_folder_the_manifest_was_made_from(verified, tmp_path, capsys):
    photos = tmp_path / "photos"
    (verified / "images").rename(photos)
    manifest.verify(verified, images=photos, progress=False)
    (photos / "new.jpg").write_bytes(b"")
    _older(verified / manifest.MANIFEST, photos)
    assert _split(verified, tmp_path / "out") == 1
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"run `ilgnet ava verify {verified} --images {photos}` to check them again")
