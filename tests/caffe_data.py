"""Tiny real Caffe datasets for the tests: LMDBs of Datum records (caffe.io.array_to_datum, or PNG-encoded as
convert_imageset --encoded writes them) and their mean.binaryproto from Caffe's own compute_image_mean.

Test modules import its helpers, and load it with `pytest_plugins = ["caffe_data"]` for its session fixtures
(small_dataset, small_caffemodel, ilgnet_caffemodel), which are then made once per session however many modules
use them.
It has no asserts to rewrite, and is often imported before pytest loads it as a plugin: PYTEST_DONT_REWRITE."""
from __future__ import annotations

from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from conftest import SMALL

from ilgnet.bvlc.tools import import_caffe, run_tool


def random_images(n: int, size: int, seed: int) -> list[np.ndarray]:
    """n BGR uint8 images (size x size x 3) of smooth random colour fields."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return [cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in small]


def photo_files(folder: Path, count: int, size: int = 40) -> list[str]:
    """`count` JPEG photos p0.jpg ... in `folder` (random_images); returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(random_images(count, size, seed=7)):
        cv2.imwrite(str(folder / f"p{i}.jpg"), image)
    return [f"p{i}.jpg" for i in range(count)]


def data_folder(root: Path, train: int, val: int, size: int = 16) -> Path:
    """root/data as `ilgnet lmdb` leaves it, made without Caffe from `train` + `val` photos (photo_files) of
    size x size in root/images, labels alternating 0, 1."""
    from ilgnet.data.lmdb_build import build_split

    names = photo_files(root / "images", train + val, size=size)
    folder = root / "data"
    folder.mkdir()
    (folder / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[:train])))
    (folder / "val.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[train:])))
    build_split(folder, root / "images", resize=size, jobs=1, progress=False)
    return folder


def write_lmdb(path: Path, images: list[np.ndarray], labels: list[int], *, encoded: bool = False,
               names: list[str] | None = None) -> Path:
    """Records keyed %08d_<name> in order, as convert_imageset names them (name: the index, or `names`)."""
    caffe = import_caffe()
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(zip(images, labels)):
            if encoded:
                datum = caffe.proto.caffe_pb2.Datum(channels=3, height=image.shape[0], width=image.shape[1],
                                                    label=label, encoded=True,
                                                    data=cv2.imencode(".png", image)[1].tobytes())
            else:
                datum = caffe.io.array_to_datum(image.transpose(2, 0, 1), label)
            txn.put(f"{i:08d}_{names[i] if names else i}".encode(), datum.SerializeToString())
    env.close()
    return path


def write_dataset(root: Path, *, train_labels: list[int], val_labels: list[int], size: int = 240,
                  val_encoded: bool = True) -> Path:
    """root/{train_lmdb, val_lmdb, mean.binaryproto}, the layout `ilgnet lmdb` writes."""
    root.mkdir(parents=True, exist_ok=True)
    write_lmdb(root / "train_lmdb", random_images(len(train_labels), size, seed=1), train_labels)
    write_lmdb(root / "val_lmdb", random_images(len(val_labels), size, seed=2), val_labels, encoded=val_encoded)
    run_tool("compute_image_mean", [root / "train_lmdb", root / "mean.binaryproto"])
    return root


def run_folder(root: Path, weights: Path, mean: Path, variant: str, *, resize: int = 256) -> Path:
    """root/runs/run as `ilgnet train` leaves it for scoring: model.json (`variant`, trained on photos resized to
    `resize`), a copy of `mean` with its sha256 recorded, and `weights` as its snapshot of iteration 1."""
    import hashlib
    import json
    import shutil

    run = root / "runs" / "run"
    (run / "snapshots").mkdir(parents=True)
    shutil.copy(weights, run / "snapshots" / f"{variant}_iter_1.caffemodel")
    shutil.copy(mean, run / "mean.binaryproto")
    digest = hashlib.sha256((run / "mean.binaryproto").read_bytes()).hexdigest()
    (run / "model.json").write_text(json.dumps({"variant": variant, "resize": resize, "train_list": None,
                                                "mean": {"file": "mean.binaryproto", "sha256": digest}}))
    return run


def published_stand_in(caffemodel: Path, name: str, models: Path, shared_data: Path | None = None) -> Path:
    """models/<file of registry entry `name`>: `caffemodel` (of the `ilgnet` net, its weights unchanged) brought to
    the size the registry checks, standing in for an authors' model that cannot be downloaded here: its layers keep
    what Caffe copies weights by (name, type, bottoms, tops, blobs) and the net's name is padded. With
    `shared_data`, the real published mean image and training list are put beside it, as `ilgnet weights fetch`
    would."""
    import shutil

    from ilgnet.bvlc.proto import NetParameter
    from ilgnet.zoo.registry import load_registry

    registry = load_registry()
    entry = registry[name]
    net = NetParameter.FromString(caffemodel.read_bytes())
    for layer in net.layer:
        for field, _ in layer.ListFields():
            if field.name not in ("name", "type", "bottom", "top", "blobs"):
                layer.ClearField(field.name)
    net.ClearField("name")
    padding = entry.size - net.ByteSize()
    for length_bytes in (1, 2, 3):                              # the name's tag byte, its length varint, the name
        net.name = "x" * (padding - 1 - length_bytes)
        if net.ByteSize() == entry.size:
            break
    size = net.ByteSize()                                       # (a NetParameter in an assert message: 600 MB)
    assert size == entry.size
    models.mkdir(parents=True, exist_ok=True)
    (models / entry.file).write_bytes(net.SerializeToString())
    dataset = name[-4:].upper()
    for companion, source in ((f"{name}-mean", f"mean/{dataset}_mean.binaryproto"),
                              (f"{name}-train-list", f"data/{dataset}/train.txt")):
        if shared_data is not None:
            shutil.copy(shared_data / "ilgnet-published" / source, models / registry[companion].file)
    return models / entry.file


SMALL_VAL_LABELS = [1, 0, 1, 1, 0]     # 5 records: not a multiple of the batch sizes the tests use


@pytest.fixture(scope="session")
def small_dataset(caffe, tmp_path_factory) -> Path:
    """240x240 photos (the ilgnet centre crop 227 sits at offset 6): 3 training records, 5 val records
    PNG-encoded as convert_imageset --encoded writes them, and a split.json naming the AVA2 partition."""
    root = write_dataset(tmp_path_factory.mktemp("small") / "data", train_labels=[0, 1, 0],
                         val_labels=SMALL_VAL_LABELS, size=240)
    (root / "split.json").write_text('{"partition": "ava2"}\n')
    return root


def calibrated_caffemodel(caffe, variant: str, dataset: Path, path: Path, weights: Path | None = None) -> Path:
    """`path`: a caffemodel of `variant`'s deploy net with `weights` (else Caffe's random initialisation) whose final
    classifier is rescaled and re-centred on `dataset`'s val records, so that their probabilities spread around 0.5
    and tests can compare them meaningfully. (Random weights give logits 10 or more apart: every probability would
    be 0 or 1 and every prediction the same.)"""
    from ilgnet.bvlc.io import lmdb_records, load_mean
    from ilgnet.nets import deploy

    net_param = deploy(variant, batch=len(SMALL_VAL_LABELS))
    classifier = net_param.layer[-1].bottom[0]                  # what the final Softmax reads
    prototxt = path.with_suffix(".prototxt")
    prototxt.write_text(str(net_param))
    net = caffe.Net(str(prototxt), caffe.TEST, **({"weights": str(weights)} if weights else {}))
    crop = net.blobs["data"].data.shape[-1]
    mean = load_mean(dataset / "mean.binaryproto")
    offset = (mean.shape[-1] - crop) // 2                       # the centre crop, as the Data layer takes it
    crops = [(image.transpose(2, 0, 1) - mean)[:, offset:offset + crop, offset:offset + crop]
             for _, image, _ in lmdb_records(dataset / "val_lmdb")]
    net.blobs["data"].data[...] = np.stack(crops)
    net.forward()
    kernel, bias = net.params[classifier]
    margin = net.blobs[classifier].data @ [-1, 1] - (bias.data[1] - bias.data[0])
    scale = 2 / margin.std()
    kernel.data[...] *= scale
    bias.data[...] = [0, -scale * margin.mean()]
    net.save(str(path))
    return path


@pytest.fixture(scope="session")
def ilgnet_caffemodel(caffe, tmp_path_factory, small_dataset) -> Path:
    """A caffemodel of the `ilgnet` deploy net (about 600 MB, like the published ones; calibrated_caffemodel on
    small_dataset), made once per session and deleted at its end. Only the tests whose subject is the `ilgnet` net
    or the published models use it; the others use small_caffemodel."""
    caffe.set_random_seed(1)
    path = calibrated_caffemodel(caffe, "ilgnet", small_dataset, tmp_path_factory.mktemp("ilgnet-model") /
                                 "ilgnet.caffemodel")
    yield path
    path.unlink()


@pytest.fixture(scope="session")
def small_caffemodel(caffe, tmp_path_factory, small_dataset) -> Path:
    """A caffemodel of the SMALL variant (googlenet-bn-third, 3.2 M parameters: 13 MB), its weights random but of
    trained scale, BatchNorm statistics included (ilgnet.data.synthetic.random_caffemodel), calibrated on
    small_dataset like ilgnet_caffemodel."""
    from ilgnet.data.synthetic import random_caffemodel
    from ilgnet.nets import deploy

    root = tmp_path_factory.mktemp("small-model")
    weights = random_caffemodel(deploy(SMALL), root / "random.caffemodel", seed=1)
    return calibrated_caffemodel(caffe, SMALL, small_dataset, root / f"{SMALL}.caffemodel", weights)
