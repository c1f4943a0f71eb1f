"""`ilgnet predict` and ilgnet.Scorer with real Caffe: the preprocessing equals Caffe's own TEST-phase Data layer
on LMDBs written by convert_imageset, unreadable files are skipped while the rest are scored, and the CLI's
folders, formats, --top, --oversample and worker processes behave."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from caffe_data import published_stand_in, run_folder
from conftest import SMALL

from ilgnet import nets
from ilgnet.bvlc.io import blobproto_bytes
from ilgnet.bvlc.proto import to_text
from ilgnet.bvlc.tools import import_caffe, run_tool
from ilgnet.cli import main as ilgnet
from ilgnet.scoring.scorer import Scorer

pytest_plugins = ["caffe_data"]     # the stand-in models of the small variant and the `ilgnet` net, once per session

LOGITS = nets.deploy(SMALL).layer[-1].bottom[0]         # the blob the SMALL deploy net's final Softmax reads


def write_photos(folder: Path) -> list[Path]:
    """Photos of several sizes (one smaller than 256, so it is enlarged), a greyscale JPEG and a PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for i, (height, width) in enumerate([(300, 420), (512, 384), (180, 240), (256, 256)]):
        small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.circle(image, (width // 3, height // 2), min(height, width) // 5, (250, 250, 250), -1)
        paths.append(folder / f"photo{i}.jpg")
        cv2.imwrite(str(paths[-1]), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    grey = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2GRAY)
    paths.append(folder / "grey.jpg")
    cv2.imwrite(str(paths[-1]), grey)
    paths.append(folder / "drawing.png")
    cv2.imwrite(str(paths[-1]), cv2.imread(str(paths[1]))[::2, ::2])
    return paths


def caffe_data_layer_outputs(photos: list[Path], weights: Path, work: Path) -> dict[str, np.ndarray]:
    """What Caffe itself computes for the photos: convert_imageset (256x256) -> compute_image_mean -> the SMALL
    variant's train_val net in the TEST phase (Data layer: centre crop 227, mean image) -> its input blob and
    logits."""
    from ilgnet.nets import train_val

    caffe = import_caffe()
    work.mkdir()
    root = photos[0].parent
    (work / "list.txt").write_text("".join(f"{p.relative_to(root)} {i % 2}\n" for i, p in enumerate(photos)))
    run_tool("convert_imageset", ["--resize_height=256", "--resize_width=256", f"{root}/", work / "list.txt",
                                  work / "lmdb"])
    run_tool("compute_image_mean", [work / "lmdb", work / "mean.binaryproto"])
    net_param = train_val(SMALL, train_lmdb=work / "lmdb", val_lmdb=work / "lmdb",
                          mean_file=work / "mean.binaryproto", train_batch=1, val_batch=len(photos))
    (work / "train_val.prototxt").write_text(str(net_param))
    net = caffe.Net(str(work / "train_val.prototxt"), caffe.TEST, weights=str(weights))
    net.forward()
    return {"data": net.blobs["data"].data.copy(), "logits": net.blobs[LOGITS].data.copy(),
            "labels": net.blobs["label"].data.copy(), "mean": work / "mean.binaryproto"}


def assert_scorer_matches_caffe(photos: list[Path], weights: Path, work: Path) -> None:
    expected = caffe_data_layer_outputs(photos, weights, work)
    scorer = Scorer(weights, mean=expected["mean"], variant=SMALL, batch_size=len(photos), jobs=2)
    decoded = list(scorer.decoded(photos))
    assert [name for name, _ in decoded] == [str(p) for p in photos]
    inputs = np.stack([scorer.preprocess(image)[0] for _, image in decoded])
    # Same uint8 pixels minus the same float mean: the network input is identical, not merely close.
    assert np.array_equal(inputs, expected["data"])
    table, skipped = scorer.score_files(photos)
    assert not skipped and list(table.path) == [str(p) for p in photos]
    np.testing.assert_allclose(scorer.net.caffe_net.blobs[LOGITS].data, expected["logits"], rtol=1e-4, atol=1e-4)
    logits = expected["logits"].astype(np.float64)
    p_high = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
    np.testing.assert_allclose(table.p_high, p_high, rtol=1e-4, atol=1e-6)
    assert list(table.label) == [int(p > 0.5) for p in table.p_high]


def test_scorer_input_and_output_equal_caffe_data_layer(small_caffemodel, tmp_path):
    assert_scorer_matches_caffe(write_photos(tmp_path / "photos"), small_caffemodel, tmp_path / "caffe")


def test_real_photos_equal_caffe_data_layer(shared_data, small_caffemodel, tmp_path):
    images = shared_data / "ava-sample" / "images"
    # 770238 and 771184 are greyscale JPEGs; the others colour, portrait and landscape.
    photos = [images / f"{i}.jpg" for i in (42039, 770238, 771184, 769857, 770897, 771111)]
    assert_scorer_matches_caffe(photos, small_caffemodel, tmp_path / "caffe")


def test_real_photos_through_split_lmdb_and_predict(shared_data, small_caffemodel, tmp_path, capsys):
    """The 87 AVA photos with their real votes: `ilgnet split ava1` -> `ilgnet lmdb` -> `ilgnet predict` on the
    held-out photos, whose scores equal those of their LMDB records (`ilgnet test`'s per-record scores)."""
    from ilgnet.evaluation.in_process import score_lmdb
    from ilgnet.zoo.models import Model

    sample = shared_data / "ava-sample"
    labels = pd.read_csv(sample / "labels.csv")
    rows = [f"{i} {row.image_id} {row.votes} 0 0 0\n" for i, row in enumerate(labels.itertuples(), 1)]
    (tmp_path / "AVA.txt").write_text("".join(rows))
    data = tmp_path / "data"
    assert ilgnet(["split", "ava1", "--ava-txt", str(tmp_path / "AVA.txt"), "--test-size", "12",
                   "--out", str(data)]) == 0
    assert ilgnet(["lmdb", "--split", str(data), "--images", str(sample / "images")]) == 0
    val = pd.read_csv(data / "val.txt", sep=" ", header=None, names=["filename", "label"])
    assert len(val) == 12 and set(val.label) <= {0, 1}
    capsys.readouterr()
    assert ilgnet(["predict", *[str(sample / "images" / f) for f in val.filename], "--model", str(small_caffemodel),
                   "--variant", SMALL, "--mean", str(data / "mean.binaryproto"), "--quiet"]) == 0
    out = capsys.readouterr()
    predicted = pd.read_csv(io.StringIO(out.out))
    assert len(predicted) == 12 and "scored 12 photos, not scored 0" in out.err
    records = score_lmdb(Model(small_caffemodel, SMALL, data / "mean.binaryproto"), data / "val_lmdb", batch=5,
                         progress=False)
    by_file = dict(zip(records.key.str.split("_", n=1).str[1], records.p_1))
    np.testing.assert_allclose(predicted.p_high, [by_file[Path(p).name] for p in predicted.path], atol=1e-6)


def test_published_model_names_take_their_own_mean(shared_data, ilgnet_caffemodel, tmp_path, capsys):
    """`--model ilgnet-ava2` scores with models/ILGnet-AVA2.caffemodel and the published AVA2 mean image. The
    authors' model cannot be downloaded here, so a stand-in of the size the registry checks takes its place: the
    `ilgnet` net with its name padded. The mean is the real published file."""
    from ilgnet.zoo.registry import load_registry

    registry = load_registry()
    model, mean = registry["ilgnet-ava2"], registry["ilgnet-ava2-mean"]
    models = tmp_path / "models"
    published_stand_in(ilgnet_caffemodel, "ilgnet-ava2", models, shared_data)
    photos = [str(p) for p in write_photos(tmp_path / "photos")[:3]]

    assert ilgnet(["predict", *photos, "--model", "ilgnet-ava2", "--models", str(models), "--quiet"]) == 0
    by_name = capsys.readouterr()
    assert f"ilgnet-ava2: {models / model.file} is present and checks out" in by_name.err
    assert ilgnet(["predict", *photos, "--model", str(models / model.file), "--mean", str(models / mean.file),
                   "--quiet"]) == 0
    assert by_name.out == capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_model(caffe, tmp_path_factory) -> dict[str, Path]:
    """A small deploy net on 227x227 input (one strided convolution, a 2-way classifier, Softmax) with random
    weights, and a random 256x256 mean image, so crop offsets show."""
    caffe.set_random_seed(3)
    L = caffe.layers
    root = tmp_path_factory.mktemp("tiny")
    spec = caffe.NetSpec()
    spec.data = L.Input(shape=dict(dim=[1, 3, 227, 227]))
    spec.conv = L.Convolution(spec.data, num_output=4, kernel_size=11, stride=8,
                              weight_filler=dict(type="gaussian", std=0.002))
    spec.relu = L.ReLU(spec.conv, in_place=True)
    spec.fc = L.InnerProduct(spec.conv, num_output=2, weight_filler=dict(type="gaussian", std=0.02))
    spec.prob = L.Softmax(spec.fc)
    (root / "deploy.prototxt").write_text(str(spec.to_proto()))
    caffe.Net(str(root / "deploy.prototxt"), caffe.TEST).save(str(root / "tiny.caffemodel"))
    mean = np.random.default_rng(4).uniform(60, 160, (1, 3, 256, 256)).astype(np.float32)
    (root / "mean.binaryproto").write_bytes(caffe.io.array_to_blobproto(mean).SerializeToString())
    return {"weights": root / "tiny.caffemodel", "deploy": root / "deploy.prototxt", "mean": root / "mean.binaryproto"}


def tiny_args(model: dict[str, Path]) -> list[str]:
    return ["--model", str(model["weights"]), "--deploy", str(model["deploy"]), "--mean", str(model["mean"]),
            "--quiet", "--batch", "2"]


def test_folders_unreadable_files_formats_and_workers(tiny_model, tmp_path, capsys):
    photos = write_photos(tmp_path / "album" / "2024")
    shutil.copy(photos[0], tmp_path / "album" / "cover.JPG")
    bad = {"empty.jpg": b"", "notes.jpg": b"not a photo\n",
           "cut.jpg": photos[1].read_bytes()[:3000]}
    for name, content in bad.items():
        (tmp_path / "album" / name).write_bytes(content)
    (tmp_path / "album" / "readme.txt").write_text("not an image suffix: not even tried\n")

    assert ilgnet(["predict", str(tmp_path / "album"), *tiny_args(tiny_model), "--workers", "1"]) == 0
    out = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out.out))
    expected = sorted([*(str(p) for p in photos), str(tmp_path / "album" / "cover.JPG")])
    assert list(table.columns) == ["path", "p_high", "label"]
    assert sorted(table.path) == expected
    assert table.p_high.between(0, 1).all() and table.p_high.nunique() > 1
    assert (table.label == (table.p_high > 0.5)).all()
    for name, reason in [("empty.jpg", "empty file"), ("notes.jpg", "not a decodable image"),
                         ("cut.jpg", "truncated JPEG")]:
        assert f"not scored: {tmp_path / 'album' / name}: {reason}" in out.err
    assert "readme.txt" not in out.err
    assert out.err.splitlines()[-1] == (f"ilgnet predict: scored {len(expected)} photos, not scored 3 (listed above), "
                                        f"1 known non-photos passed over (AppleDouble ._* files, folder metadata, "
                                        f"text files)")

    # Two worker processes, each with its own net: the same scores. JSON lines, --top ranks the best.
    out_file = tmp_path / "best.jsonl"
    assert ilgnet(["predict", str(tmp_path / "album"), *tiny_args(tiny_model), "--workers", "2", "--top", "3",
                   "--out", str(out_file)]) == 0
    best = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [set(row) for row in best] == [{"path", "p_high", "label"}] * 3
    expected_best = table.sort_values("p_high", ascending=False, kind="stable").head(3)
    assert [row["path"] for row in best] == list(expected_best.path)
    np.testing.assert_allclose([row["p_high"] for row in best], expected_best.p_high, atol=1e-6)


def test_oversample_scores_ten_crops(tiny_model, tmp_path):
    photo = write_photos(tmp_path)[1]
    options = dict(mean=tiny_model["mean"], deploy=tiny_model["deploy"], jobs=0)
    centre = Scorer(tiny_model["weights"], **options)
    ten = Scorer(tiny_model["weights"], oversample=True, **options)
    image = cv2.resize(cv2.imread(str(photo)), (256, 256), interpolation=cv2.INTER_LINEAR)
    crops = ten.preprocess(image)
    assert crops.shape == (10, 3, 227, 227)
    assert np.array_equal(crops[4], centre.preprocess(image)[0])              # the centre crop, offset 14
    chw = image.transpose(2, 0, 1).astype(np.float32) - ten.mean
    assert np.array_equal(crops[3], chw[:, 29:, 29:])                         # bottom-right corner
    assert np.array_equal(crops[5:], crops[:5, :, :, ::-1])                   # mirrors, after the mean
    assert ten.score_images([image])[0] == pytest.approx(ten.forward(crops)[:, 1].mean(), rel=1e-6)


def test_errors_are_reported(tiny_model, tmp_path, capsys):
    photo = write_photos(tmp_path / "p")[0]
    assert ilgnet(["predict", str(tmp_path / "missing.jpg"), *tiny_args(tiny_model)]) == 1
    assert "missing.jpg does not exist" in capsys.readouterr().err
    assert ilgnet(["predict", str(photo), "--model", str(tiny_model["weights"])]) == 2
    assert "ilgnet predict: error: argument --mean: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ilgnet(["predict", str(photo), "--model", str(tmp_path / "nothing.caffemodel")])
    assert "not ilgnet-ava1 or ilgnet-ava2, and no such file" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    assert ilgnet(["predict", str(tmp_path / "bad.jpg"), *tiny_args(tiny_model)]) == 1
    assert "scored 0 photos, not scored 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ilgnet(["predict", str(photo), "--model", str(tiny_model["weights"]), "--mean", str(tmp_path)])
    assert f"argument --mean: {tmp_path} is a folder, not a file" in capsys.readouterr().err
    assert ilgnet(["predict", str(photo), "--model", str(tmp_path), "--mean", str(tiny_model["mean"])]) == 2
    assert capsys.readouterr().err == (f"ilgnet predict: error: argument --model: model {tmp_path} is a folder without "
                                       f"model.json: neither a run of `ilgnet train` nor a .caffemodel\n")


@pytest.mark.parametrize("backend", ["opencv", "caffe"])
@pytest.mark.parametrize("name", ["nan.npy", "inf.binaryproto", "empty.npy", "text.npy", "objects.npy", "words.npy",
                                  "cut.npy"])
def test_a_bad_mean_file_is_named_in_one_line(stand_in, bad_means, name, backend, capsys):
    """Refused as it is read, whatever the backend (a NaN mean once scored p_high 0.48 with OpenCV, and Caffe's
    NaN outputs blamed the model), before any net is loaded: so the caffe backend needs no Caffe here."""
    path, message = bad_means[name]
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--variant", SMALL,
                   "--mean", str(path), "--backend", backend, "--workers", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ilgnet predict: error: {message}"), err


def test_a_mean_too_small_for_the_net_is_named(stand_in, tmp_path, capsys):
    np.save(tmp_path / "small.npy", np.full((3, 100, 100), 100, np.float32))
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--variant", SMALL,
                   "--mean", str(tmp_path / "small.npy"), "--backend", "opencv", "--quiet"]) == 1
    assert capsys.readouterr().err == (f"ilgnet predict: error: the mean image {tmp_path / 'small.npy'} is 100x100, "
                                       f"smaller than the net's 227x227 input\n")


def test_a_users_deploy_file_is_named_in_every_error_about_its_net(stand_in, tmp_path, capsys):
    """An empty file, a layer type the weight check does not know, a renamed layer: each error names the file."""
    text = to_text(nets.deploy(SMALL))
    cases = {"empty": ("", "@: net '' declares no input (an Input layer, or input with its shape)"),
             "unknown": (text.replace('type: "Convolution"', 'type: "Convolution3D"', 1),
                         "@: layer 'conv1/7x7_s2': the weight check does not know layer type 'Convolution3D'"),
             "renamed": (text.replace('name: "conv1/7x7_s2"', 'name: "conv1"', 1),
                         f"{stand_in['weights']}: does not fit the net of @: no weights for layers 'conv1'; the "
                         f"caffemodel's layers 'conv1/7x7_s2' are not in the net")}
    for name, (content, message) in cases.items():
        deploy = tmp_path / f"{name}.prototxt"
        deploy.write_text(content)
        for backend in ("opencv", "caffe"):
            assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--variant", SMALL,
                           "--mean", str(stand_in["mean"]), "--deploy", str(deploy), "--backend", backend,
                           "--workers", "1", "--quiet"]) == 1
            err = capsys.readouterr().err
            assert err == f"ilgnet predict: error: {message.replace('@', str(deploy))}\n", (backend, err)


def test_python_api_is_lazy_and_exported():
    import subprocess
    import sys

    code = ("import sys, ilgnet, ilgnet.cli; assert 'numpy' not in sys.modules and 'caffe' not in sys.modules; "
            "from ilgnet import Scorer; assert ilgnet.Scorer is Scorer; print(Scorer.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "ilgnet.scoring.scorer"


def test_case_06_every_decodable_photo_is_scored_whatever_its_name(bugcase, tiny_model, capsys):
    """Case 06: photos named .jfif, .gif and .JPEG beside a .jpg; all four are scored (this OpenCV reads GIF)."""
    photos = bugcase("06-folder-suffixes") / "photos"
    assert ilgnet(["predict", str(photos), *tiny_args(tiny_model), "--workers", "1"]) == 0
    out = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out.out))
    assert sorted(Path(p).name for p in table.path) == ["a.jpg", "b.jfif", "c.gif", "d.JPEG"]
    assert out.err.splitlines()[-1] == "ilgnet predict: scored 4 photos, not scored 0"


def test_a_folder_is_read_by_content(tmp_path):
    """What OpenCV recognises is a photo whatever its name; AppleDouble files, folder metadata and text are known
    non-photos, counted; anything else is listed with the reason."""
    from ilgnet.data.images import scan_folder

    folder = tmp_path / "album"
    jpeg = cv2.imencode(".jpg", np.full((32, 48, 3), 90, np.uint8))[1].tobytes()
    files = {"a.jpg": jpeg, "b.jfif": jpeg, "no_suffix": jpeg, "sub/d.JPEG": jpeg, "c.png.txt": jpeg,
             "empty.jpg": b"", "._a.jpg": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
             ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(64), "readme.txt": b"holiday photos\n",
             "notes": "caf\u00e9 list\n".encode(), "clip.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(64)}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    scan = scan_folder(folder)
    assert [p.relative_to(folder).as_posix() for p in scan.photos] == ["a.jpg", "b.jfif", "c.png.txt", "empty.jpg",
                                                                       "no_suffix", "sub/d.JPEG"]
    assert scan.known_non_photos == 4
    assert scan.not_photos == [(folder / "clip.mp4", "not an image OpenCV can read (starts with "
                                                     "b'\\x00\\x00\\x00\\x18ftypmp42')")]


def test_a_given_mean_is_used_and_nothing_is_downloaded(shared_data, ilgnet_caffemodel, small_dataset, tmp_path,
                                                        capsys, monkeypatch):
    """`ilgnet weights install` puts a hand-fetched ilgnet-ava2 in place (checked: size, and its layers fit the
    ilgnet net); `predict --model ilgnet-ava2 --mean M` then scores with M, though the published mean is absent,
    and never touches the network."""
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("predict tried to download")

    monkeypatch.setattr(requests.Session, "request", no_network)
    fetched = published_stand_in(ilgnet_caffemodel, "ilgnet-ava2", tmp_path / "Downloads")
    models = tmp_path / "models"
    assert ilgnet(["weights", "install", "ilgnet-ava2", str(fetched), "--dest", str(models)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{fetched}: OK as ilgnet-ava2; installed as {models / fetched.name}",
        f"ilgnet-ava2 is used with ilgnet-ava2-mean, which is not in {models} yet: `ilgnet weights fetch "
        f"ilgnet-ava2-mean`, or install a copy you fetched",
        f"ilgnet-ava2 is used with ilgnet-ava2-train-list, which is not in {models} yet: `ilgnet weights fetch "
        f"ilgnet-ava2-train-list`, or install a copy you fetched"]
    fetched.unlink()
    photos = [str(p) for p in write_photos(tmp_path / "photos")[:3]]
    small_mean = small_dataset / "mean.binaryproto"            # 240 x 240: not the size ilgnet-ava2 was trained at
    assert ilgnet(["predict", *photos, "--model", "ilgnet-ava2", "--models", str(models), "--mean", str(small_mean),
                   "--quiet"]) == 1
    assert capsys.readouterr().err == (f"ilgnet predict: error: the mean image {small_mean} is 240x240, but "
                                       f"ilgnet-ava2 was trained on photos resized to 256x256: give the mean of its "
                                       f"training data\n")
    mean = tmp_path / "mean.binaryproto"
    mean.write_bytes(blobproto_bytes(np.random.default_rng(4).uniform(80, 140, (3, 256, 256)).astype(np.float32)))
    assert ilgnet(["predict", *photos, "--model", "ilgnet-ava2", "--models", str(models), "--mean", str(mean),
                   "--quiet", "--workers", "1"]) == 0
    by_name = capsys.readouterr().out
    assert ilgnet(["predict", *photos, "--model", str(models / fetched.name), "--mean", str(mean), "--quiet",
                   "--workers", "1"]) == 0
    assert by_name == capsys.readouterr().out
    assert sorted(p.name for p in models.iterdir()) == ["ILGnet-AVA2.caffemodel"]
    assert ilgnet(["predict", *photos, "--model", "ilgnet-ava2", "--models", str(models), "--quiet"]) == 1
    assert (f"{models / 'AVA2_mean.binaryproto'} does not exist; run `ilgnet weights fetch ilgnet-ava2 --dest "
            f"{models}` first" in capsys.readouterr().err)


def test_a_file_name_that_is_not_utf8_is_scored_and_printed_as_its_bytes(tiny_model, tmp_path):
    """Linux names are any bytes (a Latin-1 `café.jpg` from an old camera card); OpenCV crashed on such a name."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "album"
    write_photos(folder)
    name = os.fsdecode(b"caf\xe9.jpg")
    (folder / "photo0.jpg").rename(folder / name)
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "predict", str(folder), *tiny_args(tiny_model),
                             "--workers", "1"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert os.fsencode(folder) + b"/caf\xe9.jpg," in result.stdout
    assert result.stderr.splitlines()[-1] == b"ilgnet predict: scored 6 photos, not scored 0"


def test_an_at_list_names_its_file_and_line(tmp_path, capsys, monkeypatch):
    """@LIST: paths one a line (a byte-order mark and blank lines allowed); what is wrong names LIST:LINE. These
    errors come before any model is loaded, so the model is any file."""
    monkeypatch.chdir(tmp_path)
    photos = write_photos(tmp_path / "p")
    stand_in = ["--model", str(photos[0]), "--mean", str(photos[0])]
    Path("list.txt").write_bytes(b"\xef\xbb\xbf" + f"{photos[0]}\n\n".encode() + b"nope.jpg\n")
    assert ilgnet(["predict", "@list.txt", *stand_in]) == 1
    assert capsys.readouterr().err == "ilgnet predict: error: list.txt:3: nope.jpg does not exist\n"
    assert ilgnet(["predict", "@nolist", *stand_in]) == 1
    assert capsys.readouterr().err == "ilgnet predict: error: @nolist: no file of that name, and no list file nolist\n"
    assert ilgnet(["predict", "@p", *stand_in]) == 1
    assert capsys.readouterr().err == "ilgnet predict: error: p is a folder, not a file\n"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_names_that_are_not_utf8_are_refused_before_scoring_in_utf8_only_formats(tmp_path, capsys, fmt):
    """JSON lines and Parquet hold UTF-8 only: a Latin-1 `café.jpg` would be a lone surrogate escape strict JSON
    readers reject, so it is refused before any photo is scored, pointing to CSV, which keeps the name's bytes."""
    import os

    folder = tmp_path / "album"
    photos = write_photos(folder)
    photos[0].rename(folder / os.fsdecode(b"caf\xe9.jpg"))
    stand_in = ["--model", str(photos[1]), "--mean", str(photos[1])]
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    assert ilgnet(["predict", str(folder), *stand_in, "--format", fmt, "--out", str(tmp_path / f"out.{fmt}")]) == 1
    shown = {"jsonl": "JSON lines", "parquet": "Parquet"}[fmt]
    assert capsys.readouterr().err == (f"ilgnet predict: error: {folder}/caf\\xe9.jpg: this name is not UTF-8, which "
                                       f"{shown} cannot hold; write CSV (which keeps the name's own bytes) or rename "
                                       f"the file\n")
    assert not (tmp_path / f"out.{fmt}").exists()


def write_mean(path: Path, side: int) -> Path:
    path.write_bytes(blobproto_bytes(np.full((3, side, side), 110, np.float32)))
    return path


def test_a_mean_of_another_size_than_the_training_resize_is_refused_or_warned(stand_in, tmp_path, capsys):
    """Refused where the model records the size its photos were resized to (model.json, the registry); a bare
    caffemodel records none, and its mean is taken as given."""
    run = run_folder(tmp_path, stand_in["weights"], stand_in["mean"], SMALL)
    mean = write_mean(tmp_path / "m240.binaryproto", 240)
    photos = [str(stand_in["photos"]), "--backend", "opencv", "--quiet"]
    assert ilgnet(["predict", *photos, "--model", str(run), "--mean", str(mean)]) == 1
    assert capsys.readouterr().err == (f"ilgnet predict: error: the mean image {mean} is 240x240, but {run} was "
                                       f"trained on photos resized to 256x256: give the mean of its training data\n")
    assert ilgnet(["predict", *photos, "--model", str(run)]) == 0              # its own mean
    capsys.readouterr()
    plain = stand_in["weights"]
    assert ilgnet(["predict", *photos, "--model", str(plain), "--variant", SMALL, "--mean", str(mean)]) == 0
    assert "warning" not in capsys.readouterr().err
