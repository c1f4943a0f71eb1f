"""`ilgnet lmdb` against real Caffe on the real AVA sample photos: the records are convert_imageset's byte for byte,
the mean is compute_image_mean's, a Data layer reads the LMDB, and bad images are skipped and listed."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pandas as pd
import pytest

from ilgnet.bvlc.proto import BlobProto, Datum
from ilgnet.bvlc.tools import run_tool
from ilgnet.data.ava import read_list_file, write_list_file
from ilgnet.data.lmdb_build import build_split
from ilgnet.fileio import LOCK_FILE


def lmdb_items(path) -> list[tuple[bytes, bytes]]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    return items


def parse_datum(value: bytes):
    return Datum.FromString(value)


def read_blobproto(path):
    blob = BlobProto.FromString(path.read_bytes())
    return blob, np.array(blob.data, np.float32).reshape(blob.channels, blob.height, blob.width)


def convert_imageset(images, list_path, out):
    run_tool("convert_imageset", ["--resize_height=256", "--resize_width=256", f"{images}/", list_path, out])
    return lmdb_items(out)


def list_in_key_order(items, path):
    """A list file holding our LMDB's images in its record order, for convert_imageset to number the same way."""
    rows = [(key.decode().split("_", 1)[1], parse_datum(value).label) for key, value in items]
    write_list_file(pd.DataFrame(rows, columns=["filename", "label"]), path)


@pytest.fixture(scope="module")
def images(shared_data):
    return shared_data / "ava-sample" / "images"


@pytest.fixture(scope="module")
def sample_split(tmp_path_factory, images):
    """The 87 sample photos: 70 for training, 17 for validation listed sorted by label (as the published val)."""
    labels = pd.read_csv(images.parent / "labels.csv").sort_values("image_id")
    labels["label"] = (labels["mean_score"] > 5).astype(int)
    split = tmp_path_factory.mktemp("sample_split")
    write_list_file(labels.iloc[:70], split / "train.txt")
    write_list_file(labels.iloc[70:].sort_values("label", kind="stable"), split / "val.txt")
    summary = build_split(split, images, seed=1, jobs=2)
    return split, summary


@pytest.fixture(scope="module")
def caffe_reference(caffe, sample_split, images, tmp_path_factory):
    """convert_imageset's LMDBs of the same lists in the same order, and compute_image_mean's mean."""
    split, _ = sample_split
    out = tmp_path_factory.mktemp("caffe_reference")
    reference = {}
    for name in ("train", "val"):
        list_in_key_order(lmdb_items(split / f"{name}_lmdb"), out / f"{name}.txt")
        reference[name] = convert_imageset(images, out / f"{name}.txt", out / f"{name}_lmdb")
    run_tool("compute_image_mean", [out / "train_lmdb", out / "mean.binaryproto"])
    reference["mean"] = out / "mean.binaryproto"
    return reference


def test_records_are_convert_imageset_records_byte_for_byte(sample_split, caffe_reference):
    split, summary = sample_split
    for name, count in (("train", 70), ("val", 17)):
        ours = lmdb_items(split / f"{name}_lmdb")
        assert len(ours) == count == summary[name]["records"]
        assert ours == caffe_reference[name]  # same keys, same serialized Datum: pixels, label, shape
        datum = parse_datum(ours[0][1])
        assert (datum.channels, datum.height, datum.width, len(datum.data)) == (3, 256, 256, 3 * 256 * 256)
        assert datum.HasField("encoded") and not datum.encoded
    assert summary["skipped"] == 0 and (split / "skipped.txt").read_text() == ""
    listed = read_list_file(split / "train.txt")["label"].value_counts()
    assert summary["train"]["labels"] == {"0": listed[0], "1": listed[1]} and summary["complete"]
    assert summary["train"]["decoding_cpu_seconds"] > 0 and summary["seconds"] > 0


def test_mean_matches_compute_image_mean(sample_split, caffe_reference):
    split, summary = sample_split
    blob, ours = read_blobproto(split / "mean.binaryproto")
    reference_blob, reference = read_blobproto(caffe_reference["mean"])
    assert (blob.num, blob.channels, blob.height, blob.width) == (reference_blob.num, 3, 256, 256)
    assert np.abs(ours - reference).max() < 1e-3
    assert blob.SerializeToString() == (split / "mean.binaryproto").read_bytes()  # canonical protobuf bytes
    npy = np.load(split / "mean.npy")
    assert npy.shape == (3, 256, 256) and np.array_equal(npy, ours)
    assert np.allclose(summary["mean_bgr"], ours.mean(axis=(1, 2)), atol=1e-4)


def test_record_order_is_shuffled_with_the_seed(sample_split, images, tmp_path):
    split, _ = sample_split
    keys = [key.decode() for key, _ in lmdb_items(split / "val_lmdb")]
    assert [int(key.split("_")[0]) for key in keys] == list(range(17))
    assert sorted(key.split("_", 1)[1] for key in keys) == sorted(read_list_file(split / "val.txt")["filename"])
    labels = [parse_datum(value).label for _, value in lmdb_items(split / "val_lmdb")]
    assert labels != sorted(labels)  # the list is sorted by label; the records are not
    again = tmp_path / "again"
    again.mkdir()
    for file in ("train.txt", "val.txt"):
        shutil.copy(split / file, again / file)
    build_split(again, images, seed=1, jobs=2)
    assert [key.decode() for key, _ in lmdb_items(again / "val_lmdb")] == keys
    build_split(again, images, seed=2, jobs=2)
    other = [key.decode().split("_", 1)[1] for key, _ in lmdb_items(again / "val_lmdb")]
    assert other != [key.split("_", 1)[1] for key in keys] and sorted(other) == sorted(k.split("_", 1)[1] for k in keys)


def test_finished_lmdbs_are_reused_when_nothing_changed(sample_split, images):
    split, first = sample_split
    data_file = split / "train_lmdb" / "data.mdb"
    before = data_file.stat().st_mtime_ns
    summary = build_split(split, images, seed=1, jobs=2)
    assert summary["train"]["reused"] and summary["val"]["reused"]
    assert data_file.stat().st_mtime_ns == before and summary["mean_bgr"] == first["mean_bgr"]
    assert json.loads((split / "lmdb.json").read_text())["complete"]


def test_a_caffe_data_layer_reads_the_lmdb(caffe, sample_split, tmp_path):
    from caffe import layers as L
    from caffe import params as P

    split, _ = sample_split
    spec = caffe.NetSpec()
    spec.data, spec.label = L.Data(source=str(split / "val_lmdb"), backend=P.Data.LMDB, batch_size=17, ntop=2,
                                   transform_param=dict(crop_size=227, mean_file=str(split / "mean.binaryproto")))
    prototxt = tmp_path / "data.prototxt"
    prototxt.write_text(str(spec.to_proto()))
    net = caffe.Net(str(prototxt), caffe.TEST)
    net.forward()
    records = [parse_datum(value) for _, value in lmdb_items(split / "val_lmdb")]
    assert net.blobs["data"].data.shape == (17, 3, 227, 227)
    assert net.blobs["label"].data.tolist() == [float(d.label) for d in records]
    first = np.frombuffer(records[0].data, np.uint8).reshape(3, 256, 256).astype(np.float32)
    centre = slice(14, 14 + 227)  # the TEST phase crops the centre
    expected = (first - np.load(split / "mean.npy"))[:, centre, centre]
    np.testing.assert_allclose(net.blobs["data"].data[0], expected, atol=1e-4)


@pytest.mark.parametrize("encoding", ["png", "jpg"])
def test_encoded_records_are_convert_imageset_encoded_records(caffe, sample_split, images, tmp_path, encoding):
    """`ilgnet lmdb --encoded png|jpg` against `convert_imageset --encoded --encode_type png|jpg`: the decoded
    pixels alike (PNG: the raw record's pixels exactly), then the very bytes (the venv's OpenCV and Caffe's encode
    alike), and the mean is compute_image_mean's of the encoded LMDB."""
    from ilgnet.bvlc.io import datum_image

    split, _ = sample_split
    ours = tmp_path / "ours"
    ours.mkdir()
    for name in ("train.txt", "val.txt"):
        shutil.copy(split / name, ours / name)
    summary = build_split(ours, images, seed=1, jobs=2, encoding=encoding, progress=False)
    assert summary["encoding"] == encoding and summary["val"]["records"] == 17
    items = lmdb_items(ours / "val_lmdb")
    list_in_key_order(items, tmp_path / "val.txt")
    run_tool("convert_imageset", ["--resize_height=256", "--resize_width=256", "--encoded",
                                  f"--encode_type={encoding}", f"{images}/", tmp_path / "val.txt", tmp_path / "caffe"])
    reference = lmdb_items(tmp_path / "caffe")
    raw = dict(lmdb_items(split / "val_lmdb"))
    assert [key for key, _ in items] == [key for key, _ in reference] == sorted(raw)
    for (key, value), (_, caffe_value) in zip(items, reference):
        datum = parse_datum(value)
        assert datum.encoded and [field.name for field, _ in datum.ListFields()] == ["data", "label", "encoded"]
        decoded = datum_image(datum)
        assert np.array_equal(decoded, datum_image(parse_datum(caffe_value))), key
        pixels = datum_image(parse_datum(raw[key]))
        if encoding == "png":
            assert np.array_equal(decoded, pixels), key
        else:
            assert np.abs(decoded.astype(int) - pixels).mean() < 6, key       # JPEG: quality 95, chroma halved
    assert items == reference
    run_tool("compute_image_mean", [ours / "train_lmdb", tmp_path / "mean.binaryproto"])
    assert np.abs(read_blobproto(ours / "mean.binaryproto")[1] - read_blobproto(tmp_path / "mean.binaryproto")[1]
                  ).max() < 1e-3


@pytest.fixture
def bad_inputs(tmp_path, images):
    """Real photos, one grayscale, a CMYK JPEG and a PNG named .jpg, next to broken files and a missing one."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("42039.jpg", "953619.jpg", "770238.jpg"):  # 770238.jpg is a grayscale JPEG
        shutil.copy(images / name, folder / name)
    with Image.open(images / "42040.jpg") as photo:
        photo.convert("CMYK").save(folder / "cmyk.jpg", quality=92)
        photo.save(folder / "png_named.jpg", format="PNG")
        photo.save(folder / "plain.jpg", quality=90)  # no EXIF: its first FF C0 is the frame header
    data = (images / "953958.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a photo\n")
    plain = bytearray((folder / "plain.jpg").read_bytes())
    frame = plain.find(b"\xff\xc0")
    plain[frame + 5:frame + 7] = b"\x00\x00"  # height 0
    (folder / "corrupt.jpg").write_bytes(bytes(plain))
    (folder / "plain.jpg").unlink()
    split = tmp_path / "split"
    split.mkdir()
    train = ["42039.jpg", "truncated.jpg", "770238.jpg", "empty.jpg", "cmyk.jpg", "text.jpg", "missing.jpg",
             "png_named.jpg", "corrupt.jpg"]
    (split / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(train)))
    (split / "val.txt").write_text("953619.jpg 1\n")
    return folder, split


def test_bad_images_are_skipped_and_listed_while_the_rest_is_built(caffe, bad_inputs, tmp_path):
    folder, split = bad_inputs
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images",
                             str(folder), "--jobs", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"5 images skipped, listed in {split / 'skipped.txt'}" in result.stdout
    skipped = {file: reason for _, file, reason in
               (line.split("\t") for line in (split / "skipped.txt").read_text().splitlines())}
    assert skipped == {"truncated.jpg": "truncated JPEG (no end-of-image marker)", "empty.jpg": "empty file",
                       "text.jpg": "not a decodable image (starts with b'this is not ')",
                       "missing.jpg": "missing file", "corrupt.jpg": "corrupt JPEG"}
    summary = json.loads((split / "lmdb.json").read_text())
    assert (summary["train"]["records"], summary["train"]["skipped"], summary["val"]["records"]) == (4, 5, 1)
    ours = {key.decode().split("_", 1)[1]: value for key, value in lmdb_items(split / "train_lmdb")}
    assert sorted(ours) == ["42039.jpg", "770238.jpg", "cmyk.jpg", "png_named.jpg"]
    # Every stored image is what convert_imageset stores for it: grayscale, CMYK and PNG decoded alike.
    caffe = dict((key.decode().split("_", 1)[1], value)
                 for key, value in convert_imageset(folder, split / "train.txt", tmp_path / "caffe_lmdb"))
    for name, value in ours.items():
        assert value == caffe[name], name
    pixels = {name: np.frombuffer(parse_datum(v).data, np.uint8).reshape(3, 256, 256) for name, v in ours.items()}
    gray = pixels["770238.jpg"]
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()
    assert not (pixels["cmyk.jpg"][0] == pixels["cmyk.jpg"][2]).all()


def _interrupted_build(split: Path, images: Path, *extra: str) -> None:
    """`ilgnet lmdb` interrupted (SIGINT) while it writes train_lmdb.partial: it exits 130."""
    process = subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images",
                                str(images), "--jobs", "1", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while not (split / "train_lmdb.partial" / "data.mdb").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read()


@pytest.mark.slow
def test_an_interrupted_build_leaves_no_lmdb_that_looks_complete_and_keeps_the_finished_ones(tmp_path, images):
    split = tmp_path / "split"
    split.mkdir()
    # About 1,000 photos: several seconds of decoding on one core, so the interrupt lands during the build even on a
    # loaded machine.
    names = sorted(path.name for path in images.iterdir()) * 12
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names))
    (split / "val.txt").write_text("42039.jpg 1\n")
    _interrupted_build(split, images)
    assert sorted(p.name for p in split.iterdir()) == [LOCK_FILE, "train.txt", "val.txt"]   # nothing half made
    summary = build_split(split, images, jobs=2)
    assert summary["train"]["records"] == len(names) and summary["complete"]
    assert len(lmdb_items(split / "train_lmdb")) == len(names)

    # A rebuild interrupted half way leaves the finished LMDBs, mean and records exactly as they were.
    before = {p.name: p.read_bytes() for p in [*split.glob("*_lmdb/*"), *split.glob("*.*")] if p.is_file()}
    _interrupted_build(split, images, "--force")
    assert {p.name: p.read_bytes() for p in [*split.glob("*_lmdb/*"), *split.glob("*.*")] if p.is_file()} == before
    assert not list(split.glob("*.partial")) and not list(split.glob("*.replaced"))


@pytest.mark.slow
@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
@pytest.mark.parametrize("delay", [0.3, 0.5, 0.7, 0.9, 1.2, 1.6])
def test_ctrl_c_at_any_moment_prints_one_line_and_no_worker_traceback(tmp_path, images, delay, twice):
    """Ctrl-C reaches the whole process group: workers still starting (importing NumPy in the forkserver) must not
    print tracebacks of their own. A second SIGINT (as `timeout -s INT` sends, to the command and to its group,
    or an impatient user) must not cut the pool's shutdown short, which left the command hanging at exit."""
    import os

    split = tmp_path / "split"
    split.mkdir()
    names = sorted(path.name for path in images.iterdir())
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names[:70]))
    (split / "val.txt").write_text("".join(f"{name} 1\n" for name in names[70:]))
    process = subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images",
                                str(images), "--jobs", "2", "--force"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    if twice:
        time.sleep(0.02)
        process.send_signal(signal.SIGINT)
    status, err = process.wait(timeout=60), process.stderr.read()
    # 0: finished first; -SIGINT: finished, and interrupted while Python was exiting (its handler already removed).
    assert "Traceback" not in err and status in (0, 130, -signal.SIGINT), err
    assert status != 130 or err.splitlines()[-1] == "ilgnet lmdb: interrupted"


def test_decoding_processes_are_capped_by_images_and_cpus(tmp_path, images, monkeypatch):
    from ilgnet import pools

    assert pools.pool_size(None, 10**6) == pools.cpu_count()
    assert pools.pool_size(100_000, 10) == min(10, pools.max_processes())
    assert pools.pool_size(100_000, 10**6) == pools.PROCESSES_PER_CPU * pools.cpu_count()
    assert pools.pool_size(3, 0) == 1
    split = tmp_path / "split"
    split.mkdir()
    names = sorted(path.name for path in images.iterdir())[:3]
    (split / "train.txt").write_text("".join(f"{name} 0\n" for name in names[:2]))
    (split / "val.txt").write_text(f"{names[2]} 1\n")
    summary = build_split(split, images, jobs=100_000, progress=False)
    assert summary["jobs"] == 3 and summary["complete"]


def test_a_folder_for_a_file_and_a_file_for_a_folder_are_named(tmp_path, images, capsys):
    from ilgnet.cli import main

    split = tmp_path / "e3"
    (split / "val.txt").mkdir(parents=True)
    (split / "train.txt").write_text("42039.jpg 1\n")
    assert main(["lmdb", "--split", str(split), "--images", str(images)]) == 1
    assert capsys.readouterr().err == f"ilgnet lmdb: error: {split / 'val.txt'} is a folder, not a file\n"
    (split / "val.txt").rmdir()
    (split / "val.txt").write_text("42039.jpg 1\n")
    with pytest.raises(ValueError, match=f"image folder {split / 'train.txt'} is a file, not a folder"):
        build_split(split, split / "train.txt")
    (split / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=f"{split / 'train.txt'} does not exist; `ilgnet split` makes it"):
        build_split(split, images)
