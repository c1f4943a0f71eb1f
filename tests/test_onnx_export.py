"""The ONNX export (ilgnet.export.converter) and `ilgnet export`: each layer the variants use against real Caffe on
small nets made for its pitfalls (pooling rounded up and clipped, AVE pooling's divisor, LRN, BatchNorm's scale
factor, in-place layers), the metadata read back, the checker, the cache beside the model, fp16 and int8 checked on
photos, and the one-line errors. Every variant's agreement on real photos is in tests/test_backends.py."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import SMALL

from ilgnet import __version__, nets
from ilgnet.bvlc.io import load_mean, load_net
from ilgnet.bvlc.proto import NetParameter, parse_text
from ilgnet.cli import main as ilgnet
from ilgnet.data.synthetic import random_caffemodel
from ilgnet.errors import BadInput
from ilgnet.fileio import file_digest
from ilgnet.scoring.scorer import Scorer
from ilgnet.zoo.models import resolve_model
from ilgnet.zoo.runfolder import LABELS
from ilgnet.export.converter import net_to_onnx
from ilgnet.zoo.onnx_metadata import mean_of, read_metadata

INPUT = ('layer {{ name: "data" type: "Input" top: "data" '
         'input_param {{ shape {{ dim: 1 dim: {c} dim: {h} dim: {w} }} }} }}\n')
# A 1x1 convolution first, so that every net has weights; then each case reads "x".
PRE = ('layer { name: "pre" type: "Convolution" bottom: "data" top: "x" '
       'convolution_param { num_output: 4 kernel_size: 1 } }\n')
# Each a small net around one pitfall, the last layer's top its output.
LAYERS = {
    # 7 -> ceil(4/2)+1 = 3 windows: the last one runs past the input (Caffe rounds up)
    "max-ceil": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: MAX kernel_size: 3 '
                'stride: 2 } }',
    # 8, pad 1 -> ceil(7/2)+1 = 5 windows, the last one past the padding: its divisor is clipped to it
    "ave-past-padding": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE '
                        'kernel_size: 3 stride: 2 pad: 1 } }',
    # 9, pad 1, stride 2: the last window would start in the padding, so Caffe drops it
    "ave-clipped": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE kernel_size: '
                   '2 stride: 2 pad: 1 } }',
    "ave-same": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE kernel_size: 3 '
                'stride: 1 pad: 1 } }',
    "ave-no-pad": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE kernel_size: '
                  '5 stride: 3 } }',
    "max-pad": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: MAX kernel_size: 3 '
               'stride: 2 pad: 1 } }',
    "global": 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" pooling_param { pool: AVE global_pooling: '
              'true } }',
    "lrn": 'layer { name: "n" type: "LRN" bottom: "x" top: "n" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 '
           '} }\nlayer { name: "m" type: "LRN" bottom: "n" top: "m" lrn_param { local_size: 3 alpha: 0.5 beta: 0.6 '
           'k: 2 } }',
    "conv": 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 6 '
            'kernel_h: 1 kernel_w: 3 pad_h: 0 pad_w: 1 stride: 2 group: 2 } }\nlayer { name: "d" type: "Convolution" '
            'bottom: "c" top: "d" convolution_param { num_output: 4 kernel_size: 3 dilation: 2 pad: 2 bias_term: '
            'false } }',
    "in-place": 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 6 '
                'kernel_size: 3 } }\nlayer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { '
                'eps: 0.001 } }\nlayer { name: "s" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } '
                '}\nlayer { name: "r" type: "ReLU" bottom: "c" top: "c" relu_param { negative_slope: 0.1 } }\n'
                'layer { name: "drop" type: "Dropout" bottom: "c" top: "c" }\nlayer { name: "split" type: "Split" '
                'bottom: "c" top: "c1" top: "c2" }\nlayer { name: "cat" type: "Concat" bottom: "c1" bottom: "c2" '
                'top: "cat" }',
    "fc": 'layer { name: "f" type: "InnerProduct" bottom: "x" top: "f" inner_product_param { num_output: 5 } }\n'
          'layer { name: "g" type: "InnerProduct" bottom: "f" top: "g" inner_product_param { num_output: 3 '
          'transpose: true } }\nlayer { name: "prob" type: "Softmax" bottom: "g" top: "prob" }',
}
SIZES = {"max-ceil": (7, 7), "ave-past-padding": (8, 8), "ave-clipped": (9, 9), "ave-same": (6, 7), "global": (5, 6)}


def small_net(case: str) -> NetParameter:
    h, w = SIZES.get(case, (14, 11))
    return parse_text(f'name: "{case}"\n' + INPUT.format(c=3, h=h, w=w) + PRE + LAYERS[case], NetParameter())


@pytest.mark.parametrize("case", list(LAYERS))
def test_each_layer_gives_caffes_values(caffe, case, tmp_path):
    net = small_net(case)
    weights = random_caffemodel(net, tmp_path / "w.caffemodel", seed=5)
    model = net_to_onnx(net, weights)
    onnx.checker.check_model(model)
    x = np.random.default_rng(1).uniform(-3, 3, (3, *net.layer[0].input_param.shape[0].dim[1:])).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"data": x})[0]
    reference = load_net(net, weights=weights)
    reference.blobs["data"].reshape(*x.shape)
    reference.reshape()
    reference.blobs["data"].data[...] = x
    expected = reference.forward()[list(reference.outputs)[0]]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_layer_the_export_does_not_know_is_named(tmp_path):
    net = parse_text('name: "x"\n' + INPUT.format(c=3, h=4, w=4) + PRE + 'layer { name: "s1" type: "Sigmoid" '
                     'bottom: "x" top: "top1" }', NetParameter())
    weights = random_caffemodel(parse_text('name: "x"\n' + INPUT.format(c=3, h=4, w=4) + PRE, NetParameter()),
                                tmp_path / "w.caffemodel")
    with pytest.raises(BadInput, match="layer 's1': the ONNX export does not know layer type 'Sigmoid'"):
        net_to_onnx(net, weights)


@pytest.fixture(scope="module")
def exported(stand_in, tmp_path_factory):
    """`ilgnet export` of the SMALL stand-in at fp32, with its mean."""
    out = tmp_path_factory.mktemp("export") / "small.onnx"
    assert ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                   "--out", str(out)]) == 0
    return out


def test_the_exported_file_carries_the_models_identity(exported, stand_in):
    facts = read_metadata(exported)
    v = nets.VARIANTS[SMALL]
    assert facts["variant"] == SMALL and facts["labels"] == __import__("json").dumps(LABELS)
    assert (facts["crop"], facts["resize"], facts["input_scale"]) == ("227", "256", "1.0")
    assert facts["caffemodel_sha256"] == file_digest(stand_in["weights"]) and facts["ilgnet_version"] == __version__
    assert facts["precision"] == "fp32" and facts["mean_source"] == str(stand_in["mean"])
    np.testing.assert_array_equal(mean_of(facts["mean_npy_base64"]), load_mean(stand_in["mean"]))
    model = onnx.load(str(exported))
    onnx.checker.check_model(model, full_check=True)
    assert {p.key: p.value for p in model.metadata_props} == facts           # the light reader reads what onnx does
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    assert [i.name for i in model.graph.input] == ["data"] and [o.name for o in model.graph.output] == ["probability"]
    assert facts["output"].startswith("probability (N, 2) float32: the softmax, p_low and p_high")
    # How to preprocess, said exactly: OpenCV's bilinear resize (Pillow's differs), BGR, the mean, the centre crop.
    assert (facts["resize_method"], facts["channel_order"], facts["crop_offset"]) == (
        "cv2.resize INTER_LINEAR", "BGR", str((256 - v.input_size) // 2))
    for said in ("cv2.resize(image, (256, 256), interpolation=cv2.INTER_LINEAR)", "Pillow's BILINEAR gives other",
                 "channels B, G, R, subtract the mean image", f"take the centre {v.input_size}x{v.input_size} crop"):
        assert said in facts["preprocessing"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, v.input_size, v.input_size]
    resolved = resolve_model(exported)                  # the file alone is a model: variant and mean inside it
    assert resolved.variant == SMALL and resolved.weights == exported


def test_predict_scores_with_the_exported_file_alone(exported, stand_in, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(exported), "--quiet", "--out", str(out),
                   "--workers", "2", "--batch", "2"]) == 0
    err = capsys.readouterr().err
    assert f"backend onnxruntime ({exported} is an ONNX model)" in err and "scored 6 photos" in err
    table = __import__("pandas").read_csv(out)
    reference, _ = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="opencv",
                          jobs=0).score_files(table.path)
    np.testing.assert_allclose(table.p_high, reference.p_high, atol=2e-6)


def test_an_output_naming_the_onnx_model_calls_it_so(exported, stand_in, tmp_path, capsys):
    with pytest.raises(SystemExit):
        ilgnet(["predict", str(stand_in["photos"]), "--model", str(exported), "--html", str(exported)])
    assert f"argument --html: {exported} is the name of an ONNX model" in capsys.readouterr().err


def test_an_onnx_model_is_refused_where_it_cannot_go(exported, stand_in, tmp_path, capsys):
    with pytest.raises(BadInput, match="is an ONNX model: the onnxruntime backend runs it, not opencv"):
        Scorer(exported, mean=stand_in["mean"], variant=SMALL, backend="opencv")
    with pytest.raises(BadInput, match=f"{exported} holds the {SMALL} net, not ilgnet-bn"):
        Scorer(exported, mean=stand_in["mean"], variant="ilgnet-bn")
    with pytest.raises(BadInput, match="an ONNX model, which holds its own net"):
        Scorer(exported, mean=stand_in["mean"], variant=SMALL, deploy=exported)
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(foreign), "--quiet"]) == 1
    assert "an ONNX file without ilgnet's metadata" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        ilgnet(["export", str(exported), "--out", str(tmp_path / "again.onnx")])
    assert stop.value.code == 2 and "is an ONNX file already" in capsys.readouterr().err


def test_export_checks_the_weights_and_needs_the_mean(stand_in, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert ilgnet(["export", str(stand_in["other"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                   "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{stand_in['other']}: does not fit the {SMALL} net" in err
    assert ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"ilgnet export: error: argument --mean: {stand_in['weights']}: the mean image "
                                       f"it was trained with is needed (DATA/mean.binaryproto from `ilgnet lmdb`)\n")
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp16", pytest.param("int8", marks=pytest.mark.slow)])
def test_smaller_precisions_report_their_agreement(precision, exported, stand_in, tmp_path, capsys):
    out = tmp_path / f"small-{precision}.onnx"
    assert ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                   "--out", str(out), "--precision", precision, "--check", str(stand_in["photos"])]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "against fp32" in line)
    difference = float(line.split("max |dp_high| ")[1].split()[0])
    assert 0 < difference < (5e-3 if precision == "fp16" else 5e-2), line
    assert "labels agree on" in line and "of 6 photos" in line
    assert out.stat().st_size < 0.6 * exported.stat().st_size
    assert read_metadata(out)["precision"] == precision
    onnx.checker.check_model(str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]           # no fp32 file left behind


def test_an_export_on_the_fly_is_kept_beside_the_caffemodel(stand_in, tmp_path):
    weights = tmp_path / "model.caffemodel"
    weights.write_bytes(stand_in["weights"].read_bytes())
    with pytest.warns(UserWarning, match=r"^exporting model.caffemodel to ONNX for onnxruntime, once: ") as said:
        first = Scorer(weights, mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=0)
    cached = first.net.onnx_file
    assert f"once: {cached} (about 1" in str(said[0].message)             # announced with its path and size
    assert cached.parent == tmp_path and cached.name.startswith("model.") and cached.suffix == ".onnx"
    facts = read_metadata(cached)
    assert facts["caffemodel_sha256"] == file_digest(weights) and "mean_npy_base64" not in facts
    stamp = cached.stat().st_mtime_ns
    again = Scorer(weights, mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=0)
    assert again.net.onnx_file == cached and cached.stat().st_mtime_ns == stamp        # not exported twice
    scores = again.score_files(sorted(stand_in["photos"].glob("*.jpg")))[0]
    for damage in (cached.read_bytes()[:len(cached.read_bytes()) // 2], b"not onnx"):   # cut short; another file
        cached.write_bytes(damage)
        kept = Scorer(weights, mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=0)
        assert kept.net.onnx_file == cached and read_metadata(cached)["caffemodel_sha256"] == file_digest(weights)
        np.testing.assert_allclose(kept.score_files(scores.path)[0].p_high, scores.p_high, atol=1e-7)
    changed = random_caffemodel(nets.deploy(SMALL), weights, seed=9)                  # new weights, new export
    assert Scorer(changed, mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=0).net.onnx_file != cached


def test_a_gpu_without_the_cuda_provider_is_one_line(stand_in, capsys):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--mean",
                   str(stand_in["mean"]), "--variant", SMALL, "--backend", "onnxruntime", "--gpu", "0",
                   "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GPU 0 asked for, but this onnxruntime has no CUDA provider" in err


def test_ilgnet_test_scores_an_lmdb_with_the_exported_file(exported, stand_in, tmp_path, capsys):
    import json

    from ilgnet.data.synthetic import generate

    generate(tmp_path / "ava", n_images=60, seed=4, long_sides=(240, 300))
    data = tmp_path / "data"
    assert ilgnet(["split", "ava2", "--ava-txt", str(tmp_path / "ava" / "AVA.txt"), "--out", str(data)]) == 0
    assert ilgnet(["lmdb", "--split", str(data), "--images", str(tmp_path / "ava" / "images")]) == 0
    capsys.readouterr()
    report = tmp_path / "test.json"
    assert ilgnet(["test", "--weights", str(exported), "--data", str(data), "--json", str(report), "--batch", "2"]) == 0
    assert f"ilgnet test: backend onnxruntime ({exported} is an ONNX model)" in capsys.readouterr().err
    result = json.loads(report.read_text())
    assert result["images"] == 6 and result["mean_file"] == f"carried in {exported}"
    with pytest.raises(SystemExit) as stop:
        ilgnet(["test", "--weights", str(exported), "--data", str(data), "--engine", "caffe"])
    assert stop.value.code == 2 and f"the ONNX model {exported} goes with --engine pycaffe" in capsys.readouterr().err


def test_predict_announces_an_export_on_the_fly_in_one_warning_line(stand_in, tmp_path, capsys):
    """The first onnxruntime run of a caffemodel writes an ONNX file as large as it beside it: said before it is
    made, as a warning naming the file; the second run uses it and says nothing of it."""
    weights = tmp_path / "model.caffemodel"
    weights.write_bytes(stand_in["weights"].read_bytes())
    argv = ["predict", str(stand_in["photos"]), "--model", str(weights), "--mean", str(stand_in["mean"]),
            "--variant", SMALL, "--backend", "onnxruntime", "--quiet", "--out", str(tmp_path / "s.csv")]
    assert ilgnet(argv) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    made = sorted(tmp_path.glob("model.*.onnx"))
    assert len(made) == 1 and said == [f"ilgnet predict: warning: exporting model.caffemodel to ONNX for onnxruntime, "
                                       f"once: {made[0]} (about 1{said[0].split('(about 1')[1]}"]
    assert ilgnet(argv) == 0
    assert "exporting" not in capsys.readouterr().err


def test_the_onnxruntime_example_of_the_docs_scores_as_predict_does(exported, stand_in, repo, tmp_path):
    """docs/SCORING.md's example, taken from the page as it is, run with this package unimportable: the exported
    file and onnxruntime, OpenCV and NumPy are all it needs, and it gives predict's p_high."""
    import subprocess
    import sys

    page = (repo / "docs" / "SCORING.md").read_text()
    block = page.split("```python\n")[1].split("```")[0]
    assert block.count("\n") <= 12 and "ilgnet" not in block.replace("`ilgnet export`", "")
    script = tmp_path / "score.py"
    script.write_text(block)
    photos = sorted(str(p) for p in stand_in["photos"].glob("*.jpg") if p.name != "broken.jpg")
    guard = (f"import sys, runpy; sys.modules['ilgnet'] = None; sys.argv = {[str(script), str(exported), *photos]!r}; "
             f"runpy.run_path({str(script)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    theirs = dict(line.rsplit(",", 1) for line in result.stdout.splitlines())
    ours = Scorer(exported, mean=stand_in["mean"], variant=SMALL, jobs=0).score_files(photos)[0]
    assert sorted(theirs) == sorted(str(p) for p in ours.path)
    np.testing.assert_allclose([float(theirs[str(p)]) for p in ours.path], ours.p_high, atol=2e-6)
