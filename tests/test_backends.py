"""The engines behind the Scorer (ilgnet.scoring.backends): onnxruntime (the net exported to ONNX) and OpenCV's dnn
module score without Caffe, behind the same preprocessing and weight check, and give Caffe's probabilities to 1e-5
on every variant; `auto` picks onnxruntime where pycaffe does not import.

Stand-in models are random caffemodels made without pycaffe (ilgnet.data.synthetic.random_caffemodel), so the Caffe-free
tests run in `make test-fast` (the `stand_in` fixture, tests/conftest.py); only the agreement test needs Caffe."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL

from ilgnet import nets
from ilgnet.bvlc.proto import NetParameter, parse_text, to_text
from ilgnet.bvlc.shapes import net_input, net_outputs
from ilgnet.data.synthetic import generate, random_caffemodel
from ilgnet.errors import BadInput
from ilgnet.scoring.backends import open_net
from ilgnet.scoring.scorer import Scorer

NO_CAFFE = "import sys; sys.modules['caffe'] = None; from ilgnet.cli import main; sys.exit(main(sys.argv[1:]))"


def without_caffe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`ilgnet ARGS` in a fresh interpreter where `import caffe` fails and Caffe's tools are not found, as after
    `pip install` on a machine without Caffe."""
    env = {**os.environ, "ILGNET_CAFFE_ROOT": "/nonexistent/caffe"}
    return subprocess.run([sys.executable, "-c", NO_CAFFE, *args], capture_output=True, text=True, env=env, cwd=cwd)


def predict_args(model: dict[str, Path], *extra: str) -> list[str]:
    return ["predict", str(model["photos"]), "--model", str(model["weights"]), "--mean", str(model["mean"]),
            "--variant", SMALL, "--quiet", *extra]


@pytest.mark.slow
def test_opencv_backend_scores_without_caffe(stand_in):
    result = without_caffe(*predict_args(stand_in, "--backend", "opencv", "--workers", "2", "--batch", "4"))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout))
    photos = sorted(str(p) for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")
    assert list(table.path) == photos
    assert table.p_high.between(0, 1).all() and np.ptp(table.p_high) > 0.01
    assert f"not scored: {stand_in['photos'] / 'broken.jpg'}: corrupt JPEG" in result.stderr
    assert "scored 6 photos, not scored 1 (listed above)" in result.stderr

    # The Python API in this process, one batch: the same scores as two processes of batches of 4.
    scored, skipped = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv",
                             batch_size=8).score_files(photos)
    assert not skipped
    np.testing.assert_allclose(scored.p_high, table.p_high, atol=2e-6)

    # With --backend caffe, the missing Caffe is one line that says what to do.
    result = without_caffe(*predict_args(stand_in, "--backend", "caffe"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "which has no pycaffe" in result.stderr
    assert "or score without Caffe: --backend onnxruntime (or opencv)" in result.stderr


def test_a_caffe_root_without_pycaffe_is_refused_not_replaced_by_the_venvs(stand_in, caffe):
    """ILGNET_CAFFE_ROOT names the Caffe to use, for the tools and for pycaffe alike: one without pycaffe is refused
    in one line, never scored with the venv's own pycaffe in its place."""
    env = {**os.environ, "ILGNET_CAFFE_ROOT": "/nonexistent/caffe"}
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", *predict_args(stand_in, "--backend", "caffe")],
                            capture_output=True, text=True, env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("ilgnet predict: error: ILGNET_CAFFE_ROOT is /nonexistent/caffe, which has no "
                                    "pycaffe (/nonexistent/caffe/lib/python3/dist-packages/caffe is missing)")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_without_caffe_predict_scores_with_onnxruntime_unasked(stand_in, tmp_path):
    """No backend flag on a machine without Caffe: auto picks onnxruntime, says so, and gives OpenCV's scores; the
    export is made once, beside the caffemodel."""
    weights = tmp_path / "model.caffemodel"
    weights.write_bytes(stand_in["weights"].read_bytes())
    result = without_caffe(*predict_args({**stand_in, "weights": weights}, "--workers", "2", "--batch", "4"))
    assert result.returncode == 0, result.stderr
    assert ("ilgnet predict: backend onnxruntime (ILGNET_CAFFE_ROOT's Caffe (/nonexistent/caffe) has no pycaffe; "
            "onnxruntime is installed)") in result.stderr
    table = pd.read_csv(io.StringIO(result.stdout))
    reference, _ = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv",
                          jobs=0).score_files(table.path)
    np.testing.assert_allclose(table.p_high, reference.p_high, rtol=0, atol=2e-6)
    assert len(list(tmp_path.glob("model.*.onnx"))) == 1


@pytest.mark.slow
def test_commands_that_need_caffe_say_so_in_one_line(stand_in, tmp_path):
    generate(tmp_path / "ava", n_images=60, seed=4, long_sides=(240, 300))
    data = str(tmp_path / "data")
    assert without_caffe("split", "ava2", "--ava-txt", str(tmp_path / "ava" / "AVA.txt"), "--out", data).returncode == 0
    assert without_caffe("lmdb", "--split", data, "--images", str(tmp_path / "ava" / "images")).returncode == 0
    test = ["test", "--weights", str(stand_in["weights"]), "--variant", SMALL, "--data", data]
    for command in (["nets"], ["train", "--profile", "ava2", "--data", data, "--name", "x", "--cpu"],
                    [*test, "--backend", "caffe"], [*test, "--engine", "caffe"]):
        result = without_caffe(*command, cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == "", command
        assert f"ilgnet {command[0]}: error: " in result.stderr and "Caffe" in result.stderr.splitlines()[-1]
        assert result.stderr.count("\n") == 1 + result.stderr.count("WARNING"), result.stderr
    assert not (tmp_path / "runs").exists()
    result = without_caffe(*test, "--batch", "2", "--per-image", str(tmp_path / "records.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr                    # `ilgnet test` runs in onnxruntime, unasked
    assert ("ilgnet test: backend onnxruntime (ILGNET_CAFFE_ROOT's Caffe (/nonexistent/caffe) has no pycaffe"
            in result.stderr)
    assert pd.read_csv(tmp_path / "records.csv").p_1.between(0, 1).all()


def test_opencv_backend_checks_the_weights_first(stand_in):
    result = without_caffe(*predict_args({**stand_in, "weights": stand_in["other"]}, "--backend", "opencv"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"{stand_in['other']}: does not fit the {SMALL} net" in result.stderr


def test_inner_products_batched_for_opencv_give_the_same_scores(stand_in, tmp_path):
    """A generated net reaches OpenCV with its InnerProduct layers as 1x1 convolutions over the batch; the deploy file
    of the same net reaches it as written. Both score alike."""
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(to_text(nets.deploy(SMALL)))
    photos = sorted(stand_in["photos"].iterdir())
    scores = [Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv", deploy=source,
                     batch_size=4).score_files(photos)[0].p_high for source in (None, deploy)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=0, atol=1e-5)


def test_opencv_backend_refuses_a_gpu(stand_in):
    with pytest.raises(BadInput, match="the opencv backend runs on the CPU"):
        Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv", gpu=0)


TINY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "relu" type: "ReLU" bottom: "fc" top: "fc" }
"""


def test_a_layer_opencv_lacks_is_named(tmp_path):
    weights = random_caffemodel(parse_text(TINY, NetParameter()), tmp_path / "tiny.caffemodel")
    net = parse_text(TINY + 'layer { name: "pick" type: "ArgMax" bottom: "fc" top: "pick" }\n', NetParameter())
    with pytest.raises(BadInput, match=r"cannot run this net: Can't create layer \"pick\" of type \"ArgMax\""):
        open_net("opencv", net, weights)
    assert open_net("opencv", parse_text(TINY, NetParameter()), weights).forward(
        np.ones((3, 3, 8, 8), np.float32)).shape == (3, 2)


def test_inputs_and_outputs_of_a_net():
    net = parse_text(TINY, NetParameter())
    assert net_input(net) == ("data", (1, 3, 8, 8))
    assert net_outputs(net) == {"fc": "relu"}                   # rewritten in place: the last writer's name
    legacy = parse_text('name: "old" input: "img" input_dim: 2 input_dim: 3 input_dim: 5 input_dim: 5', NetParameter())
    assert net_input(legacy) == ("img", (2, 3, 5, 5))
    with pytest.raises(BadInput, match="declares no input"):
        net_input(parse_text('name: "none"', NetParameter()))
    with pytest.raises(BadInput, match="expected one output"):
        open_net("opencv", parse_text(TINY + 'layer { name: "fc2" type: "InnerProduct" bottom: "data" top: "fc2" '
                                      'inner_product_param { num_output: 2 } }', NetParameter()), Path("unused"))


@pytest.mark.parametrize("variant", list(nets.VARIANTS))
def test_backends_agree_on_real_photos(caffe, shared_data, variant, tmp_path):
    """Caffe, onnxruntime and OpenCV give the same probabilities to 1e-5 on real AVA photos (two of them greyscale),
    every variant with a random stand-in of its weights, through the same Scorer preprocessing; onnxruntime at
    batch 1 and at batch 4, whose last batch is short."""
    images = shared_data / "ava-sample" / "images"
    photos = [images / f"{i}.jpg" for i in (42039, 770238, 771184, 769857, 770897, 771111)]
    weights = random_caffemodel(nets.deploy(variant), tmp_path / f"{variant}.caffemodel")
    v = nets.VARIANTS[variant]
    mean = np.random.default_rng(0).uniform(80, 130, (3, v.resize, v.resize)).astype(np.float32)
    scores = {}
    for backend, batch in (("caffe", 3), ("opencv", 3), ("onnxruntime", 1), ("onnxruntime", 4)):
        scorer = Scorer(weights, mean=mean, variant=variant, backend=backend, batch_size=batch, jobs=0)
        table, skipped = scorer.score_files(photos)
        assert not skipped and scorer.net.name == backend
        scores[backend, batch] = table.p_high.to_numpy()
        del scorer
    reference = scores.pop(("caffe", 3))
    assert np.ptp(reference) > 1e-4, "saturated probabilities would agree trivially"
    for (backend, batch), p_high in scores.items():
        np.testing.assert_allclose(p_high, reference, rtol=0, atol=1e-5, err_msg=f"{backend} at batch {batch}")
