"""`ilgnet lmdb` with the inputs users really hand it, without Caffe: list files however their columns are
separated, photos repaired between two runs, sets that lose photos or all of them, and reruns that keep a
finished LMDB only when nothing it was built from changed."""
from __future__ import annotations

import json
import re
import shutil

import lmdb
import numpy as np
import pytest
from caffe_data import photo_files

from ilgnet.bvlc.proto import Datum
from ilgnet.cli import main
from ilgnet.data.images import decode_image
from ilgnet.fileio import LOCK_FILE


def records(path) -> dict[str, Datum]:
    """An LMDB's records by key."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        found = {key.decode(): Datum.FromString(value) for key, value in txn.cursor()}
    env.close()
    return found


def ilgnet_lmdb(split, images, *extra: str) -> int:
    return main(["lmdb", "--split", str(split), "--images", str(images), "--jobs", "2", *extra])


def summary(split) -> dict:
    return json.loads((split / "lmdb.json").read_text())


@pytest.fixture
def small_split(tmp_path):
    """Six photos: four listed for training, two for validation, and the folder they are in."""
    names = photo_files(tmp_path / "images", 6)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[:4])))
    (split / "val.txt").write_text(f"{names[4]} 0\n{names[5]} 1\n")
    return split, tmp_path / "images"


@pytest.mark.parametrize("separator, line_end", [("  ", "\n"), ("\t", "\r\n"), (" \t ", "\n")])
def test_case_01_any_blanks_between_name_and_label(bugcase, separator, line_end, capsys):
    """Case 01 (two spaces in the handed lists) and its relatives (tabs, CRLF): every photo stored under its own
    name, none reported missing."""
    case = bugcase("01-list-double-space")
    for name in ("train", "val"):
        path = case / "split" / f"{name}.txt"
        entries = [line.split() for line in path.read_text().splitlines()]
        if separator != "  ":
            path.write_text("".join(f"{file}{separator}{label}{line_end}" for file, label in entries))
    assert ilgnet_lmdb(case / "split", case / "images") == 0
    out = capsys.readouterr()
    assert "skipped" not in out.err and (case / "split" / "skipped.txt").read_text() == ""
    stored = {key.split("_", 1)[1]: datum.label for key, datum in records(case / "split" / "train_lmdb").items()}
    assert stored == {"p0.jpg": 1, "p1.jpg": 0, "p2.jpg": 0, "p3.jpg": 1}
    assert sorted(key.split("_", 1)[1] for key in records(case / "split" / "val_lmdb")) == ["p4.jpg", "p5.jpg"]
    assert "split/train_lmdb: 4 records of 4 listed (label 0: 2, label 1: 2), 0 skipped" in out.out


def test_case_02_a_rerun_after_repair_rebuilds_and_says_why(bugcase, capsys):
    case = bugcase("02-rerun-after-repair")
    split, images = case / "split", case / "images"
    assert ilgnet_lmdb(split, images) == 0
    first = capsys.readouterr()
    assert (split / "skipped.txt").read_text() == ("train\t1003.jpg\tmissing file\ntrain\t1005.jpg\tmissing file\n"
                                                  "val\t1007.jpg\ttruncated JPEG (no end-of-image marker)\n")
    assert (summary(split)["train"]["records"], summary(split)["val"]["records"]) == (5, 2)
    assert "WARNING: 2 of the 7 images of" in first.err and "(28.6%) were skipped (missing file x2)" in first.err

    for photo in (case / "later").iterdir():
        shutil.copy(photo, images / photo.name)
    assert ilgnet_lmdb(split, images) == 0
    second = capsys.readouterr()
    assert (f"ilgnet lmdb: {split / 'train_lmdb'}: rebuilding: 2 of the 7 listed photos changed since it was built "
            f"(size or modification time, or they appeared or went missing): 1003.jpg, 1005.jpg") in second.err
    assert f"{split / 'val_lmdb'}: rebuilding: 1 of the 3 listed photos changed" in second.err
    after = summary(split)
    assert (after["train"]["records"], after["val"]["records"], after["skipped"]) == (7, 3, 0)
    assert after["train"]["rebuilt_because"] and (split / "skipped.txt").read_text() == ""
    # The mean is that of all seven training photos now.
    names = [line.split()[0] for line in (split / "train.txt").read_text().splitlines()]
    expected = np.mean([decode_image(images / name, 256) for name in names], axis=0).transpose(2, 0, 1)
    np.testing.assert_allclose(np.load(split / "mean.npy"), expected, atol=1e-3)

    data = split / "train_lmdb" / "data.mdb"
    built = data.stat().st_mtime_ns
    assert ilgnet_lmdb(split, images) == 0
    third = capsys.readouterr()
    assert third.out.count("(kept: list, photos, image folder, resize, seed and encoding unchanged)") == 2
    assert data.stat().st_mtime_ns == built and "rebuilding" not in third.err


@pytest.mark.parametrize("change, reason", [
    (lambda split, images: (split / "mean.binaryproto").unlink(),
     "train_lmdb: rebuilding: mean.binaryproto is missing"),
    (lambda split, images: (split / "mean.npy").unlink(), "train_lmdb: rebuilding: mean.npy is missing"),
    (lambda split, images: (split / "train.txt").write_text("p0.jpg 1\np1.jpg 1\n"),
     "train_lmdb: rebuilding: train.txt changed"),
    (lambda split, images: shutil.copy(images / "p0.jpg", images / "p5.jpg"),
     "val_lmdb: rebuilding: 1 of the 2 listed photos changed since it was built (size or modification time, or "
     "they appeared or went missing): p5.jpg"),
])
def test_what_changed_is_said_and_rebuilt(small_split, change, reason, capsys):
    split, images = small_split
    assert ilgnet_lmdb(split, images) == 0
    change(split, images)
    capsys.readouterr()
    assert ilgnet_lmdb(split, images) == 0
    assert reason in capsys.readouterr().err
    assert (split / "mean.binaryproto").is_file() and (split / "mean.npy").is_file()
    assert summary(split)["complete"]


@pytest.mark.parametrize("options, reasons", [
    (["--resize", "64"], ["the resize changed from 256 to 64"]),
    (["--seed", "3"], ["the seed changed from 1 to 3"]),
    (["--encoded", "png"], ["the encoding changed from raw to png"]),
    (["--force"], ["a rebuild was forced"]),
])
def test_settings_that_change_the_records_rebuild_both_sets(small_split, options, reasons, capsys):
    split, images = small_split
    assert ilgnet_lmdb(split, images) == 0
    assert ilgnet_lmdb(split, images, *options) == 0
    err = capsys.readouterr().err
    for name in ("train", "val"):
        assert f"{split / (name + '_lmdb')}: rebuilding: {'; '.join(reasons)}" in err
        assert summary(split)[name]["rebuilt_because"] == reasons


def test_a_set_that_ends_empty_is_an_error_and_keeps_the_finished_lmdbs(small_split, capsys):
    split, images = small_split
    assert ilgnet_lmdb(split, images) == 0
    def built():
        return {p: p.read_bytes() for p in [*split.glob("*_lmdb/*"), *split.glob("*.*")] if p.suffix != ".txt"
                or p.name == "skipped.txt"}

    finished = built()
    untouched = f"the finished train_lmdb, val_lmdb, mean.binaryproto in {split} are untouched\n"
    (split / "val.txt").write_text("gone1.jpg 0\ngone2.jpg 1\n")
    assert ilgnet_lmdb(split, images) == 1
    assert capsys.readouterr().err == (f"ilgnet lmdb: error: {split / 'val.txt'}: none of its 2 photos exists under "
                                       f"{images} (the first would be {images / 'gone1.jpg'}: is it the folder the "
                                       f"list's names are relative to?); {untouched}")
    (images / "gone1.jpg").write_bytes(b"\xff\xd8 not a photo")          # there, but nothing can be read
    (images / "gone2.jpg").write_bytes(b"")
    assert ilgnet_lmdb(split, images) == 1
    err = capsys.readouterr().err.splitlines(keepends=True)[-1]
    assert err.startswith(f"ilgnet lmdb: error: {split / 'val.txt'}: none of its 2 images could be read (")
    assert err.endswith(f"; the first is {images / 'gone1.jpg'}); {untouched}")
    assert built() == finished
    assert not list(split.glob("*.partial"))
    (split / "val.txt").write_text("\n\n")
    assert ilgnet_lmdb(split, images) == 1
    assert f"error: {split / 'val.txt'}: no images listed" in capsys.readouterr().err


@pytest.mark.parametrize("missing, loud", [(2, True), (1, False)])
def test_losing_more_than_one_percent_of_a_set_is_loud(tmp_path, missing, loud, capsys):
    names = photo_files(tmp_path / "images", 150, size=16)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names))
    (split / "val.txt").write_text(f"{names[-1]} 1\n")
    for name in names[:missing]:
        (tmp_path / "images" / name).unlink()
    assert ilgnet_lmdb(split, tmp_path / "images", "--resize", "16") == 0
    err = capsys.readouterr().err
    share = f"{missing / 150:.1%}"
    assert (f"{missing} of the 150 images of {split / 'train.txt'} ({share}) were skipped (missing file x{missing}); "
            f"each is listed with its reason in skipped.txt") in err
    assert ("WARNING" in err) is loud and ("is --images the folder" in err) is loud
    assert len((split / "skipped.txt").read_text().splitlines()) == missing


def test_a_leading_slash_is_under_the_image_folder(small_split):
    split, images = small_split
    (split / "val.txt").write_text("/p4.jpg 0\n/p5.jpg 1\n")
    assert ilgnet_lmdb(split, images) == 0
    # convert_imageset's keys keep the name as listed: "%08d_" + name.
    assert sorted(key.split("_", 1)[1] for key in records(split / "val_lmdb")) == ["/p4.jpg", "/p5.jpg"]
    assert summary(split)["val"]["skipped"] == 0


def test_a_bad_list_line_stops_before_anything_is_built(small_split, capsys):
    split, images = small_split
    (split / "val.txt").write_text("p4.jpg 0\np5.jpg\n")
    assert ilgnet_lmdb(split, images) == 1
    assert capsys.readouterr().err == (f"ilgnet lmdb: error: {split / 'val.txt'}:2: expected `<filename> <label>`, "
                                       f"found only 'p5.jpg': no label after the file name\n")
    assert sorted(p.name for p in split.iterdir()) == [LOCK_FILE, "train.txt", "val.txt"]


def finished(split) -> dict:
    """What `ilgnet lmdb` built in a data folder, every file's bytes: the LMDBs, means, lmdb.json, skipped.txt."""
    return {p.relative_to(split): p.read_bytes() for p in split.rglob("*")
            if p.is_file() and p.name not in ("train.txt", "val.txt", LOCK_FILE)}


def test_case_12_a_mistyped_image_folder_keeps_the_finished_lmdbs(bugcase, capsys):
    """`--images AVA` for `--images AVA/images`: it exists, but none of the listed photos is in it. The finished
    LMDBs and mean stay as they were, and the error says so, before anything is decoded."""
    case = bugcase("12-wrong-images-deletes-lmdb")
    split = case / "data"
    assert ilgnet_lmdb(split, case / "AVA" / "images") == 0
    built = finished(split)
    assert {str(p) for p in built} >= {"train_lmdb/data.mdb", "val_lmdb/data.mdb", "mean.binaryproto", "lmdb.json"}
    capsys.readouterr()
    assert ilgnet_lmdb(split, case / "AVA") == 1
    assert capsys.readouterr().err == (
        f"ilgnet lmdb: error: {split / 'train.txt'}: none of its 8 photos exists under {case / 'AVA'} (the first "
        f"would be {case / 'AVA' / '0.jpg'}: is it the folder the list's names are relative to?); the finished "
        f"train_lmdb, val_lmdb, mean.binaryproto in {split} are untouched\n")
    assert finished(split) == built and not list(split.glob("*.partial"))


def test_a_name_too_long_for_an_lmdb_key_is_refused_before_decoding(tmp_path, capsys):
    """LMDB keys hold 511 bytes; convert_imageset's key is `%08d_<name>`, so 502 bytes of name fit and 503 do not
    (in folders: a file name holds 255 bytes at most)."""
    import lmdb as py_lmdb

    from ilgnet.data.lmdb_build import LMDB_MAX_KEY

    assert LMDB_MAX_KEY == py_lmdb.open(str(tmp_path / "probe")).max_key_size() == 511
    images = tmp_path / "images"
    photo_files(images, 2)
    split = tmp_path / "split"
    split.mkdir()
    for length in (502, 503):
        folder = images / ("d" * 240) / ("é" * 60)                  # 240 + 1 + 120 + 1 bytes, then the file
        name = f"{'d' * 240}/{'é' * 60}/" + "p" * (length - 362 - 4) + ".jpg"
        assert len(name.encode()) == length
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(images / "p0.jpg", images / name)
        (split / "train.txt").write_text(f"p0.jpg 0\n{name} 1\n")
        (split / "val.txt").write_text("p1.jpg 1\n")
        status = ilgnet_lmdb(split, images, "--resize", "16")
        if length == 502:
            assert status == 0 and any(len(key.encode()) == 511 for key in records(split / "train_lmdb"))
            shutil.rmtree(split / "train_lmdb")
        else:
            assert status == 1 and capsys.readouterr().err.endswith(
                f"error: {split / 'train.txt'}:2: a file name of 503 bytes: its LMDB key (`%08d_<name>`, as "
                f"convert_imageset writes it) would be 512 bytes, more than LMDB's 511\n")
            assert not (split / "train_lmdb").exists() and not list(split.glob("*.partial"))


def test_raw_records_are_estimated_from_above(tmp_path):
    """The room a build asks for: record_bytes x records, never less than what LMDB takes, and not far more."""
    from ilgnet.data.lmdb_build import LMDB_OVERHEAD, build_split, record_bytes

    names = photo_files(tmp_path / "images", 40, size=64)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names[:30]))
    (split / "val.txt").write_text("".join(f"{name} 1\n" for name in names[30:]))
    for resize in (16, 64, 256):
        build_split(split, tmp_path / "images", resize=resize, jobs=1, progress=False, force=True)
        used = sum(f.stat().st_size for f in (split / "train_lmdb").iterdir())
        assert used <= 30 * record_bytes(resize) + LMDB_OVERHEAD <= 3 * used, (resize, used)


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MB filesystem of its own (tmpfs), as root can mount one; skipped elsewhere."""
    import os
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a 1 MB tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_too_small_is_refused_before_anything_is_written(tmpfs, tmp_path, capsys):
    """Raw records of 256 x 256 (200,788 bytes each on disk, at most) for 7 photos need 1.5 MB; the disk has 1 MB."""
    images = tmp_path / "images"
    names = photo_files(images, 7)
    (tmpfs / "train.txt").write_text("".join(f"{name} 0\n" for name in names[:5]))
    (tmpfs / "val.txt").write_text("".join(f"{name} 1\n" for name in names[5:]))
    assert ilgnet_lmdb(tmpfs, images) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(rf"ilgnet lmdb: error: tmpfs mounted at {tmpfs} has 1\.0\dMB free; the LMDBs to build in "
                        rf"{tmpfs} \(train_lmdb, val_lmdb: 7 records of 200,788 bytes\) need up to 1\.54MB; free some "
                        rf"space and run it again\n", err), err
    assert sorted(p.name for p in tmpfs.iterdir()) == [LOCK_FILE, "train.txt", "val.txt"]


def test_a_disk_that_fills_up_is_one_line_and_keeps_the_finished_lmdbs(tmpfs, tmp_path, capsys):
    """Encoded records take what they take: this PNG build runs out of room on the way, LMDB reporting an
    input/output error. The partial output goes, and the finished LMDBs stay."""
    images = tmp_path / "images"
    names = photo_files(images, 40, size=256)
    (tmpfs / "train.txt").write_text("".join(f"{name} 0\n" for name in names[:36]))
    (tmpfs / "val.txt").write_text("".join(f"{name} 1\n" for name in names[36:]))
    assert ilgnet_lmdb(tmpfs, images, "--resize", "16") == 0
    built = finished(tmpfs)
    capsys.readouterr()
    assert ilgnet_lmdb(tmpfs, images, "--encoded", "png") == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(rf"ilgnet lmdb: error: tmpfs mounted at {tmpfs} is full: building train_lmdb, val_lmdb in "
                        rf"{tmpfs} needed up to 8\.16MB \(as raw records; encoded ones take less\), \d+kB was free "
                        rf"when it began and \d+kB had been written; the partial output is removed and the finished "
                        rf"train_lmdb, val_lmdb, mean\.binaryproto in {tmpfs} are untouched", err), err
    assert finished(tmpfs) == built and not list(tmpfs.glob("*.partial"))


def test_no_room_for_the_mean_is_one_line_too(small_split, monkeypatch, capsys):
    """The same error where the write that fails is this process's own (the mean, after the LMDBs): ENOSPC."""
    import errno

    from ilgnet.data import lmdb_build

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    split, images = small_split
    monkeypatch.setattr(lmdb_build, "write_mean", full)
    assert ilgnet_lmdb(split, images) == 1
    err = capsys.readouterr().err
    assert err.startswith("ilgnet lmdb: error: ") and " is full: building train_lmdb, val_lmdb in " in err
    assert err.endswith("; the partial output is removed and nothing was written as finished\n")
    assert sorted(p.name for p in split.iterdir()) == [LOCK_FILE, "train.txt", "val.txt"]


@pytest.mark.slow
def test_a_second_build_of_the_same_folder_waits_for_the_first_and_keeps_what_it_built(tmp_path):
    """Two `ilgnet lmdb` on one folder would write one LMDB from two processes: the second waits, saying for whom,
    and then keeps the first's LMDBs. The first is paused (SIGSTOP) once it has begun writing, so that the second
    surely meets it, and let go once the second has said that it waits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    names = photo_files(tmp_path / "images", 200, size=64)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names))
    (split / "val.txt").write_text(f"{names[0]} 1\n")
    args = [sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images", str(tmp_path / "images"),
            "--jobs", "1"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        deadline = time.monotonic() + 60
        while not (split / "train_lmdb.partial").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None and (split / "train_lmdb.partial").exists(), "the first build ended too soon"
        second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = second.stderr.readline()                      # written before it waits: no race
    finally:
        os.kill(first.pid, signal.SIGCONT)
        first.wait(timeout=120)
    out, err = second.communicate(timeout=120)
    assert waiting.startswith(f"ilgnet lmdb: {split} is being built by process {first.pid} ({sys.executable} -m "
                              f"ilgnet.cli lmdb --split ")            # its command line, up to 120 characters
    assert waiting.endswith("...); waiting for it, then keeping what it built if the settings match\n") and err == ""
    assert first.returncode == 0 and second.returncode == 0 and summary(split)["train"]["records"] == 200
    kept = "(kept: list, photos, image folder, resize, seed and encoding unchanged)"
    assert [line.endswith(kept) for line in out.splitlines()[:2]] == [True, True], out
    assert "images stored in" not in out


def test_a_build_of_a_folder_that_a_run_reads_is_refused_naming_the_reader(tmp_path, capsys):
    """A reader (`ilgnet train` for hours) is not waited for: the build is refused in one line naming it."""
    import subprocess
    import sys

    from ilgnet.cli import main as ilgnet

    names = photo_files(tmp_path / "images", 4, size=64)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names))
    (split / "val.txt").write_text(f"{names[0]} 1\n")
    script = tmp_path / "reader.py"
    script.write_text(f"import sys\nfrom ilgnet.fileio import folder_lock\nwith folder_lock({str(split)!r}, "
                      f"shared=True):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    reader = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held\n"
        assert ilgnet(["lmdb", "--split", str(split), "--images", str(tmp_path / "images")]) == 1
    finally:
        reader.communicate("", timeout=60)
    err = capsys.readouterr().err
    assert err == (f"ilgnet lmdb: error: {split} is in use by process {reader.pid} ({sys.executable} {script}); "
                   f"wait for it to end (or stop it) and try again\n")
    assert not (split / "train_lmdb").exists()
