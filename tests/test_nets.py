"""The net generators on real Caffe: every variant trains, tests and deploys; ilgnet is the published net."""
import re
import subprocess
import sys

import numpy as np
import pytest
from caffe_data import write_dataset
from google.protobuf import text_format

from ilgnet import nets
from ilgnet.nets.generated import generated_files

BATCH = 2
PUBLISHED_PARAMETERS = 150_938_082  # ILGNet at 227x227 (issue 3; 603.76 MB as a caffemodel)


@pytest.fixture(scope="module")
def datasets(caffe, tmp_path_factory):
    """A tiny train/val LMDB pair + mean per LMDB image size the variants need (256 and 342)."""
    root = tmp_path_factory.mktemp("lmdb")
    return {size: write_dataset(root / str(size), train_labels=[0, 1, 1, 0], val_labels=[1, 0], size=size)
            for size in sorted({v.resize for v in nets.VARIANTS.values()})}


class Trained:
    """A variant's train_val (TRAIN phase) after one forward and backward pass on a batch of 2."""

    def __init__(self, caffe, variant, data_dir, work):
        self.variant, self.work = variant, work
        self.proto = nets.train_val(variant, train_lmdb=data_dir / "train_lmdb", val_lmdb=data_dir / "val_lmdb",
                                    mean_file=data_dir / "mean.binaryproto", train_batch=BATCH, val_batch=BATCH)
        self.train_val = work / "train_val.prototxt"
        self.train_val.write_text(str(self.proto))
        self.deploy = work / "deploy.prototxt"
        self.deploy.write_text(str(nets.deploy(variant, batch=BATCH)))
        self.net = caffe.Net(str(self.train_val), caffe.TRAIN)
        self.outputs = {name: blob.copy() for name, blob in self.net.forward().items()}
        self.net.backward()


@pytest.fixture(scope="module", params=list(nets.VARIANTS))
def trained(caffe, request, datasets, tmp_path_factory):
    variant = nets.VARIANTS[request.param]
    return Trained(caffe, variant, datasets[variant.resize], tmp_path_factory.mktemp(variant.name))


def test_train_val_forward_and_backward(trained):
    v, net = trained.variant, trained.net
    assert net.blobs["data"].data.shape == (BATCH, 3, v.input_size, v.input_size)
    assert v.loss_blob in trained.outputs and v.accuracy_blob in trained.outputs
    for name, value in trained.outputs.items():
        assert value.shape == () and np.isfinite(value), name
        if name.endswith("/top-1"):
            assert 0 <= value <= 1
    losses = [layer for layer in trained.proto.layer if layer.type == "SoftmaxWithLoss"]
    assert {layer.name for layer in losses} == {name for name in trained.outputs if name.endswith("/loss")}
    for loss in losses:
        logits = loss.bottom[0]  # blob and layer of a classifier share their name
        assert net.blobs[logits].data.shape == (BATCH, 2)
        assert np.abs(net.params[logits][0].diff).sum() > 0, f"no gradient reached {logits}"
    first_learnable = next(iter(nets.learnable_layers(net)))
    assert np.abs(net.params[first_learnable][0].diff).sum() > 0, f"no gradient reached {first_learnable}"


def test_test_phase_reads_val_and_scores(caffe, trained):
    """The TEST phase, on the TRAIN net's weights (BatchNorm needs the statistics a training pass gathers)."""
    net = caffe.Net(str(trained.train_val), caffe.TEST)
    net.share_with(trained.net)
    outputs = net.forward()
    v = trained.variant
    assert net.blobs["data"].data.shape == (BATCH, 3, v.input_size, v.input_size)
    assert list(net.blobs["label"].data) == [1, 0]
    assert np.isfinite(outputs[v.loss_blob]) and 0 <= outputs[v.accuracy_blob] <= 1


def test_deploy_has_the_train_val_layers(caffe, trained):
    """Every learnable layer of the deploy net has a namesake of the same shapes in the train_val, which only
    adds auxiliary classifier branches; the deploy net outputs a probability per class."""
    deploy = caffe.Net(str(trained.deploy), caffe.TEST)
    train_layers, deploy_layers = nets.learnable_layers(trained.net), nets.learnable_layers(deploy)
    assert deploy_layers and set(deploy_layers) <= set(train_layers)
    main = trained.variant.loss_blob.split("/")[0]
    left_out = {name.split("/")[0] for name in set(train_layers) - set(deploy_layers)}
    assert left_out <= {"loss1", "loss2"} - {main}
    for name, blobs in deploy_layers.items():
        assert [b.data.shape for b in blobs] == [b.data.shape for b in train_layers[name]], name
    deploy.share_with(trained.net)
    deploy.blobs["data"].data[...] = trained.net.blobs["data"].data
    prob = deploy.forward()[trained.variant.prob_blob]
    assert prob.shape == (BATCH, 2)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("trained", ["ilgnet"], indirect=True)
def test_ilgnet_weights_saved_from_train_val_load_into_deploy(caffe, trained):
    weights = trained.work / "trained.caffemodel"
    trained.net.save(str(weights))
    deploy = caffe.Net(str(trained.deploy), caffe.TEST, weights=str(weights))
    train_layers, deploy_layers = nets.learnable_layers(trained.net), nets.learnable_layers(deploy)
    assert list(deploy_layers) == list(train_layers)
    for name, blobs in deploy_layers.items():
        assert len(blobs) == len(train_layers[name]) == 2
        for ours, theirs in zip(blobs, train_layers[name]):
            np.testing.assert_array_equal(ours.data, theirs.data, err_msg=name)


@pytest.mark.parametrize("trained", ["ilgnet"], indirect=True)
def test_ilgnet_has_the_published_parameter_count(trained):
    assert nets.parameter_count(trained.net) == PUBLISHED_PARAMETERS


def _published_log(shared_data):
    return (shared_data / "ilgnet-published" / "results" / "AVA1_result.txt").read_text()


def _published_net(caffe, log: str):
    """The NetParameter `caffe test` printed when it loaded the published AVA1 model (its val.prototxt)."""
    start = log.index("Initializing net from parameters:") + len("Initializing net from parameters:")
    end = start + re.search(r"^[IWE]\d{4} ", log[start:], re.M).start()
    return text_format.Parse(log[start:end], caffe.proto.caffe_pb2.NetParameter())


def test_ilgnet_is_layer_exact_to_the_published_net(caffe, shared_data):
    """Same layers in the same order with the same parameters as the published val net; only the loss layer
    differs: the published one has no top (Caffe names it "(automatic)"), ours is named loss1/loss."""
    published = [layer for layer in _published_net(caffe, _published_log(shared_data)).layer if layer.type != "Data"]
    ours = nets.train_val("ilgnet", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=48, val_batch=50)
    ours = caffe.proto.caffe_pb2.NetParameter.FromString(ours.SerializeToString())   # pycaffe's own message type
    ours = [layer for layer in ours.layer if layer.type != "Data"]
    loss = next(layer for layer in ours if layer.type == "SoftmaxWithLoss")
    assert list(loss.top) == ["loss1/loss"]
    del loss.top[:]
    assert [layer.name for layer in ours] == [layer.name for layer in published]
    for mine, theirs in zip(ours, published):
        assert mine == theirs, f"{mine.name} differs:\n{mine}\nvs published\n{theirs}"


def test_ilgnet_deploy_is_the_train_val_body():
    train = nets.train_val("ilgnet", train_lmdb="t", val_lmdb="v", mean_file="m", train_batch=2, val_batch=2)
    deploy = nets.deploy("ilgnet")
    body = [layer for layer in train.layer if layer.type not in ("Data", "SoftmaxWithLoss", "Accuracy")]
    assert list(deploy.layer[1:-1]) == body
    assert deploy.layer[0].type == "Input" and list(deploy.layer[0].input_param.shape[0].dim) == [1, 3, 227, 227]
    assert (deploy.layer[-1].name, deploy.layer[-1].type, list(deploy.layer[-1].top)) == \
           ("loss1/loss", "Softmax", ["loss1/loss"])


@pytest.mark.parametrize("trained", ["ilgnet"], indirect=True)
def test_ilgnet_blob_shapes_match_the_published_log(trained, shared_data):
    """Each layer's output shapes, batch aside, equal what Caffe logged for the published net at 227x227."""
    shapes, layer = {}, None
    for line in _published_log(shared_data).splitlines():
        if match := re.search(r"Setting up (\S+)", line):
            layer = match.group(1)
            shapes[layer] = []
        elif (match := re.search(r"Top shape: ((\d+ )*\d+) \(", line)) and layer:
            shapes[layer].append(tuple(int(d) for d in match.group(1).split()[1:]))
    checked = 0
    for name, logged in shapes.items():
        if name.endswith("_split") or name in ("data", "loss1/loss", "loss1/top-1"):
            continue
        ours = [trained.net.blobs[top].data.shape[1:] for top in trained.net.top_names[name]]
        assert ours == logged, name
        checked += 1
    assert checked == 70  # every layer but the data, loss and accuracy layers


def test_committed_generated_files_are_current(repo):
    files, _ = generated_files()
    stale = [path for path, text in files.items()
             if not (repo / path).is_file() or (repo / path).read_text() != text]
    assert not stale, f"out of date, run `ilgnet gen`: {stale}"
    generated = [*repo.glob("prototxt/*/*.prototxt"), *repo.glob("solvers/*.prototxt")]
    committed = {str(p.relative_to(repo)) for p in generated}
    assert committed == set(files), f"files `ilgnet gen` no longer writes: {sorted(committed - set(files))}"


def test_gen_command_writes_parseable_files_deterministically(caffe, tmp_path):
    subprocess.run([sys.executable, "-m", "ilgnet.cli", "gen", "--out", str(tmp_path)], check=True,
                   capture_output=True, text=True)
    files, _ = generated_files()
    for path, text in files.items():
        assert (tmp_path / path).read_text() == text, path
        message = caffe.proto.caffe_pb2.SolverParameter() if path.startswith("solvers/") \
            else caffe.proto.caffe_pb2.NetParameter()
        text_format.Parse(text, message)
    assert len(files) == 2 * len(nets.VARIANTS) + 5


def test_nets_command_prints_a_markdown_table(caffe):
    out = subprocess.run([sys.executable, "-m", "ilgnet.cli", "nets", "--variants", "googlenet-bn-third",
                          "--iterations", "1"], check=True, capture_output=True, text=True).stdout
    header, rule, row = out.splitlines()[:3]
    assert header.startswith("| variant | input | parameters |") and rule.startswith("|---")
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:2] == ["googlenet-bn-third", "227x227"]
    assert int(cells[2].replace(",", "")) > 1_000_000 and float(cells[3].replace(",", "")) > 0


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown net variant 'ilgnet-v9'; known: ilgnet, "):
        nets.deploy("ilgnet-v9")
