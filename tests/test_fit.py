"""No silent wrong score: a caffemodel must fit its net before Caffe sees it, a model knows what it is, and a test
on images the model was trained on says so (a diverged run: tests/test_health.py). Handed cases:
../shared/bugcases/03-weights-html-page and 04-renamed-layer-deploy (the `bugcase` fixture); stand-in caffemodels
come from pycaffe nets with random weights (`net.save`), runs train the small variant."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from caffe_data import published_stand_in, random_images, write_lmdb
from conftest import SMALL

from ilgnet import nets
from ilgnet.bvlc.io import load_net
from ilgnet.bvlc.proto import NetParameter
from ilgnet.bvlc.shapes import param_shapes
from ilgnet.cli import main
from ilgnet.training.plan import _initial_weights

pytest_plugins = ["caffe_data"]

@pytest.fixture(scope="module")
def variant_models(caffe, tmp_path_factory):
    """variant -> a caffemodel of its deploy net with random weights (made on first use, kept for the module)."""
    root, made = tmp_path_factory.mktemp("variant-models"), {}

    def model(variant: str) -> Path:
        if variant not in made:
            made[variant] = root / f"{variant}.caffemodel"
            load_net(nets.deploy(variant)).save(str(made[variant]))
        return made[variant]

    yield model
    for path in made.values():
        path.unlink()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(random_images(2, 300, seed=4)):
        cv2.imwrite(str(folder / f"p{i}.jpg"), image)
    return sorted(str(p) for p in folder.iterdir())


def predict(photos, model, mean, *extra) -> list[str]:
    return ["predict", *photos, "--model", str(model), "--mean", str(mean), "--workers", "1", "--quiet", *extra]


def one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err   # no score, no traceback
    assert captured.err.startswith(f"ilgnet {command}: error: ")
    return captured.err


@pytest.mark.parametrize("variant", list(nets.VARIANTS))
def test_shapes_without_caffe_are_caffes(caffe, variant):
    net = load_net(nets.deploy(variant))
    assert {name: [b.data.shape for b in blobs] for name, blobs in net.params.items()} == \
           {name: [tuple(s) for s in shapes] for name, shapes in param_shapes(nets.deploy(variant)).items()}


def test_an_html_page_is_refused_everywhere(bugcase, small_dataset, photos, tmp_path, capsys):
    """Case 03: what a refused download leaves under a model's name."""
    page = bugcase("03-weights-html-page") / "ILGnet-AVA2.caffemodel"
    expected = f"{page} is an HTML page titled 'Sign in - Drive', not a Caffe model"
    assert main(predict(photos, page, small_dataset / "mean.binaryproto")) == 1
    assert expected in one_line_error(capsys, "predict")
    assert main(["test", "--weights", str(page), "--data", str(small_dataset)]) == 1
    assert expected in one_line_error(capsys, "test")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(page, models / "bvlc_googlenet.caffemodel")
    assert main(["train", "--profile", "ava2", "--data", str(small_dataset), "--runs", str(tmp_path / "runs"),
                 "--models", str(models), "--cpu", "--max-iter", "1"]) == 1
    assert "bvlc_googlenet.caffemodel is an HTML page titled 'Sign in - Drive'" in one_line_error(capsys, "train")
    assert not (tmp_path / "runs").exists()
    assert main(["weights", "check", "bvlc_googlenet", "--file", str(page)]) == 1
    assert "is an HTML page titled 'Sign in - Drive'" in one_line_error(capsys, "weights check")


def test_a_renamed_layer_in_the_deploy_file_is_named(bugcase, ilgnet_caffemodel, small_dataset, photos, capsys):
    """Case 04: the final classifier renamed in --deploy; Caffe would skip it silently and score at random. The
    case's deploy file is the `ilgnet` net's, so the model is too."""
    deploy = bugcase("04-renamed-layer-deploy") / "deploy.prototxt"
    assert main(predict(photos, ilgnet_caffemodel, small_dataset / "mean.binaryproto", "--deploy", str(deploy))) == 1
    err = one_line_error(capsys, "predict")
    assert f"does not fit the net of {deploy}: no weights for layers 'aesthetic_fc'" in err
    assert "the caffemodel's layers 'loss1/classifier_cjy' are not in the net" in err


@pytest.mark.parametrize("model_variant, net_variant, message", [
    ("ilgnet-bn", "ilgnet", "the caffemodel's layers 'conv1/7x7_s2/bn', 'conv1/7x7_s2/scale'"),
    ("ilgnet", "ilgnet-bn", "no weights for layers 'conv1/7x7_s2/bn', 'conv1/7x7_s2/scale'"),
    ("googlenet-bn-two-thirds", "googlenet-bn-third", "the caffemodel's layers 'inception_4b/1x1'"),
    ("googlenet-bn-third", "googlenet-bn-two-thirds", "no weights for layers 'inception_4b/1x1'"),
    ("ilgnet-bn", "ilgnet-noinc", "no weights for layers 'conv3a/3x3'"),
    ("ilgnet", "ilgnet-inc3", "layer 'temp1' has blobs [(256, 200704), (256,)], the net expects [(256, 313600)"),
])
def test_a_wrong_variant_is_refused(variant_models, small_dataset, photos, capsys, model_variant, net_variant,
                                    message):
    """Pairs whose weights Caffe loads into each other's nets without a word (skipping layers), or aborts on."""
    model = variant_models(model_variant)
    assert main(predict(photos, model, small_dataset / "mean.binaryproto", "--variant", net_variant)) == 1
    err = one_line_error(capsys, "predict")
    assert f"{model}: does not fit the {net_variant} net" in err and message in err


def test_damaged_files_are_named(variant_models, small_dataset, photos, tmp_path, capsys):
    model = variant_models("googlenet-bn-third")
    data = model.read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[:len(data) // 2])
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    mean = small_dataset / "mean.binaryproto"
    for name, message in [("cut", "not a Caffe model (cut short, or not a NetParameter"),
                          ("empty", "is an empty file, not a Caffe model")]:
        path = tmp_path / f"{name}.caffemodel"
        assert main(predict(photos, path, mean, "--variant", "googlenet-bn-third")) == 1
        assert f"{path}{':' if name == 'cut' else ''} {message}" in one_line_error(capsys, "predict")


def test_nan_weights_are_refused(caffe, variant_models, small_dataset, photos, tmp_path, capsys):
    net = load_net(nets.deploy("googlenet-bn-third"), weights=variant_models("googlenet-bn-third"))
    net.params["loss1/fc"][0].data[0, 0] = np.nan
    net.save(str(tmp_path / "nan.caffemodel"))
    assert main(predict(photos, tmp_path / "nan.caffemodel", small_dataset / "mean.binaryproto",
                        "--variant", "googlenet-bn-third")) == 1
    assert "layers 'loss1/fc' hold NaN or infinite values" in one_line_error(capsys, "predict")


def test_gpu_on_a_cpu_only_build_is_an_error_not_an_abort(small_caffemodel, small_dataset, photos, tmp_path,
                                                         capsys):
    # The --gpu given is refused for this build: a value of the command line (exit 2), named by its flag.
    assert main(predict(photos, small_caffemodel, small_dataset / "mean.binaryproto", "--variant", SMALL,
                        "--gpu", "0")) == 2
    assert "argument --gpu: GPU 0 asked for, but" in one_line_error(capsys, "predict")
    assert main(["test", "--weights", str(small_caffemodel), "--variant", SMALL, "--data", str(small_dataset),
                 "--gpu", "0"]) == 2
    assert "built without CUDA (CPU only)" in one_line_error(capsys, "test")
    assert main(["train", "--profile", "ava2", "--data", str(small_dataset), "--runs", str(tmp_path),
                 "--gpu", "0"]) == 2
    assert "built without CUDA (CPU only)" in one_line_error(capsys, "train")
    assert not any(tmp_path.iterdir())


def test_inception_variants_fine_tune_from_their_own_trunk(caffe, variant_models, small_dataset, tmp_path, capsys):
    args = ["train", "--variant", "ilgnet-inc3", "--profile", "ava2", "--data", str(small_dataset), "--runs",
            str(tmp_path / "runs"), "--models", str(tmp_path / "models"), "--cpu"]
    assert main(args) == 1                                            # 240x240 records cannot give 299 crops
    assert "record 00000000_0 is 240x240, smaller than the 299x299 crop of ilgnet-inc3 (build the LMDBs at 320)" in \
        one_line_error(capsys, "train")
    trunk = tmp_path / "models" / "inception-v3.caffemodel"          # an ImageNet trunk: no head layers
    trunk.parent.mkdir()
    load_net(nets.deploy("ilgnet-inc3")).save(str(trunk))
    stored = NetParameter.FromString(trunk.read_bytes())
    kept = [layer for layer in stored.layer if layer.name not in nets.fresh_layers("ilgnet-inc3")]
    del stored.layer[:]
    stored.layer.extend(kept)
    trunk.write_bytes(stored.SerializeToString())
    said = []
    assert _initial_weights(nets.get_variant("ilgnet-inc3"), nets.training_net("ilgnet-inc3"), None,
                            tmp_path / "models", said.append) == trunk
    assert said == [f"fine-tuning from {trunk}: 120 layers from it, 6 start fresh (temp1, temp2, loss1/conv, temp3, "
                    f"temp_cjy, loss1/classifier_cjy)"]


@pytest.fixture(scope="module")
def ava_keyed_val(caffe, shared_data, tmp_path_factory):
    """A data folder whose val_lmdb holds 6 records named after AVA ids of AVA's official generic_test list (3 of them
    in the published AVA1 training list), with that whole list as val.txt and the published AVA1 mean."""
    published = shared_data / "ilgnet-published"
    trained = {line.split()[0] for line in (published / "data/AVA1/train.txt").read_text().splitlines()}
    test_ids = (shared_data / "ava/aesthetics_image_lists/generic_test.jpgl").read_text().split()
    seen = [f"{i}.jpg" for i in test_ids if f"{i}.jpg" in trained][:3]
    unseen = [f"{i}.jpg" for i in test_ids if f"{i}.jpg" not in trained][:3]
    root = tmp_path_factory.mktemp("ava-keyed") / "data"
    root.mkdir()
    write_lmdb(root / "val_lmdb", random_images(6, 256, seed=7), [1, 0, 1, 0, 1, 0], names=seen + unseen)
    shutil.copy(published / "mean/AVA1_mean.binaryproto", root / "mean.binaryproto")
    (root / "val.txt").write_text("".join(f"{i}.jpg 0\n" for i in test_ids))
    return root


def test_published_ava1_model_was_trained_on_most_of_avas_test_list(ilgnet_caffemodel, shared_data, ava_keyed_val,
                                                                     tmp_path, capsys):
    """The authors' AVA1 training list holds 18,395 of the 20,000 images of AVA's official generic_test list:
    `ilgnet test` says so above the table, and gives the metrics on the records the model never saw."""
    models = tmp_path / "models"
    published_stand_in(ilgnet_caffemodel, "ilgnet-ava1", models, shared_data)
    out = tmp_path / "result.json"
    assert main(["test", "--weights", "ilgnet-ava1", "--models", str(models), "--data", str(ava_keyed_val),
                 "--batch", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"WARNING: ilgnet-ava1 was trained on 18,395 of the 20,000 images of "
                           f"{ava_keyed_val / 'val.txt'}")
    assert "3 of the 6 records scored are training images of ilgnet-ava1; on the other 3: accuracy " in text
    overlap = json.loads(out.read_text())["train_overlap"]
    assert overlap["val_list"] == {"path": str(ava_keyed_val / "val.txt"), "images": 20_000, "in_training": 18_395}
    assert overlap["scored"] == {"images": 6, "in_training": 3} and overlap["unseen_metrics"]["images"] == 3


@pytest.mark.slow
def test_published_ava1_training_list_holds_most_of_the_ava2_val_list(shared_data):
    from ilgnet.data.ava import read_list_file

    ava1_train = set(read_list_file(shared_data / "ilgnet-published/data/AVA1/train.txt")["filename"])
    ava2_val = set(read_list_file(shared_data / "ilgnet-published/data/AVA2/val.txt")["filename"])
    assert (len(ava2_val), len(ava2_val & ava1_train)) == (25_553, 23_768)


def test_a_run_carries_its_identity(caffe, small_dataset, photos, tmp_path, capsys):
    """`ilgnet train` writes model.json with the mean beside it; predict and test take the variant and mean from
    the run folder or a snapshot in it; a contradicting --variant is caught."""
    runs = tmp_path / "runs"
    assert main(["train", "--variant", SMALL, "--profile", "ava2", "--data", str(small_dataset), "--runs", str(runs),
                 "--name", "r", "--cpu", "--max-iter", "1", "--train-batch", "2", "--models",
                 str(tmp_path / "none")]) == 0
    run = runs / "r"
    record = json.loads((run / "model.json").read_text())
    assert (record["variant"], record["profile"], record["crop"], record["data"]) == \
           (SMALL, "ava2", 227, str(small_dataset.resolve()))
    assert record["mean"]["file"] == "mean.binaryproto" and (run / "mean.binaryproto").read_bytes() == \
        (small_dataset / "mean.binaryproto").read_bytes()
    capsys.readouterr()
    assert main(["predict", *photos, "--model", str(run), "--workers", "1", "--quiet"]) == 0
    by_run = capsys.readouterr().out
    assert main(["predict", *photos, "--model", str(run / f"snapshots/{SMALL}_iter_1.caffemodel"), "--workers",
                 "1", "--quiet"]) == 0
    assert capsys.readouterr().out == by_run and len(by_run.splitlines()) == 3
    assert main(["test", "--weights", str(run), "--data", str(small_dataset), "--batch", "5"]) == 0
    assert "images scored | 5 (every val record once)" in capsys.readouterr().out
    assert main(["predict", *photos, "--model", str(run), "--variant", "googlenet-bn-two-thirds", "--workers",
                 "1"]) == 2                                     # the --variant given is refused: named by its flag
    assert "does not fit the googlenet-bn-two-thirds net: no weights for layers" in one_line_error(capsys, "predict")
    (run / "mean.binaryproto").write_bytes(b"changed")
    assert main(["predict", *photos, "--model", str(run), "--workers", "1"]) == 1
    assert "mean.binaryproto changed after the run began" in one_line_error(capsys, "predict")
