"""ILGNet and the paper's other nets as Caffe NetParameters, built with Caffe's own NetSpec.

Variants (docs/NETS.md says what each cut is and why):
  ilgnet                   the published net: GoogLeNet v1 (LRN) cut after inception_4a, local features from
                           inception_3a/3b, global from 4a; 227x227; layer-exact to the published deploy.prototxt
  ilgnet-bn                the same with BatchNorm + Scale after every convolution instead of LRN (ILGNet-Inc.V1-BN)
  ilgnet-noinc             each inception module replaced by one 3x3 convolution of its output width (Table 2)
  googlenet-bn-third       GoogLeNetV1-BN up to inception_4a with GoogLeNet's loss1 branch (Table 4, 1/3)
  googlenet-bn-two-thirds  up to inception_4d with branches loss1 and loss2 (Table 4, 2/3)
  googlenet-bn-full        all of GoogLeNetV1-BN with branches loss1, loss2, loss3 (Table 4, full)
  ilgnet-inc3              ILGNet's head on the first third of Inception-v3, 299x299
  ilgnet-inc4              ILGNet's head on the first third of Inception-v4, 299x299

`train_val()` emits LMDB Data layers for TRAIN and TEST, SoftmaxWithLoss and Accuracy on every classifier;
`deploy()` an Input layer and a Softmax on the main classifier, keeping only the layers that feed it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One net of the paper. `build` names the builder as "<module of ilgnet.nets>.<function>"; it is imported
    only when a net is built, so listing variants needs no Caffe."""

    name: str
    summary: str
    input_size: int
    build: str
    pretrained: str
    prob_blob: str = "loss1/loss"
    loss_blob: str = "loss1/loss"
    accuracy_blob: str = "loss1/top-1"
    resize: int = 256
    """Side of the square images in the LMDB the train_val reads: crops of input_size are taken from them."""
    input_scale: float = 1.0
    """Factor Caffe applies to pixels after subtracting the mean (transform_param.scale)."""

    def builder(self):
        module, function = self.build.rsplit(".", 1)
        return getattr(importlib.import_module(f"ilgnet.nets.{module}"), function)


BVLC = "bvlc_googlenet"
INCEPTION_SCALE = 1 / 128
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("ilgnet", "published ILGNet: GoogLeNet v1 (LRN) to inception_4a + local/global head", 227,
            "googlenet.ilgnet", BVLC),
    Variant("ilgnet-bn", "ILGNet-Inc.V1-BN: BatchNorm + Scale after every convolution, no LRN", 227,
            "googlenet.ilgnet_bn", BVLC),
    Variant("ilgnet-noinc", "ILGNet with each inception module replaced by one 3x3 convolution", 227,
            "googlenet.ilgnet_noinc", f"{BVLC} (stem and loss1/conv)"),
    Variant("googlenet-bn-third", "GoogLeNetV1-BN to inception_4a, classifier loss1", 227,
            "googlenet.googlenet_bn_third", BVLC, prob_blob="prob"),
    Variant("googlenet-bn-two-thirds", "GoogLeNetV1-BN to inception_4d, classifiers loss1, loss2", 227,
            "googlenet.googlenet_bn_two_thirds", BVLC, prob_blob="prob", loss_blob="loss2/loss",
            accuracy_blob="loss2/top-1"),
    Variant("googlenet-bn-full", "GoogLeNetV1-BN, classifiers loss1, loss2, loss3", 227,
            "googlenet.googlenet_bn_full", BVLC, prob_blob="prob", loss_blob="loss3/loss",
            accuracy_blob="loss3/top-1"),
    Variant("ilgnet-inc3", "ILGNet head on Inception-v3 to inception_b1", 299, "inception.ilgnet_inc3",
            "Inception-v3 Caffe port (soeaver/caffe-model)", resize=320, input_scale=INCEPTION_SCALE),
    Variant("ilgnet-inc4", "ILGNet head on Inception-v4 to inception_b1", 299, "inception.ilgnet_inc4",
            "Inception-v4 Caffe port (soeaver/caffe-model)", resize=320, input_scale=INCEPTION_SCALE),
]}


def get_variant(variant: str | Variant) -> Variant:
    if isinstance(variant, Variant):
        return variant
    if variant not in VARIANTS:
        raise ValueError(f"unknown net variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _data_layer(caffe, v: Variant, phase, source, mean_file, batch: int):
    transform = dict(mirror=phase == caffe.TRAIN, crop_size=v.input_size, mean_file=str(mean_file))
    if v.input_scale != 1:
        transform["scale"] = v.input_scale
    spec = caffe.NetSpec()
    spec.data, spec.label = caffe.layers.Data(
        ntop=2, include=dict(phase=phase), transform_param=transform,
        data_param=dict(source=str(source), batch_size=batch, backend=caffe.params.Data.LMDB))
    return spec


def train_val(variant: str | Variant, *, train_lmdb, val_lmdb, mean_file, train_batch: int, val_batch: int):
    """The training net: Data layers (TRAIN: random crop + mirror; TEST: centre crop), the body, and per
    classifier a SoftmaxWithLoss `<prefix>/loss` and an Accuracy `<prefix>/top-1` (in both phases, so training
    logs show accuracy too). Returns a caffe_pb2.NetParameter."""
    from ilgnet.caffe_tools import import_caffe

    caffe = import_caffe()
    v = get_variant(variant)
    n = _data_layer(caffe, v, caffe.TEST, val_lmdb, mean_file, val_batch)
    for classifier in v.builder()(n, n.data):
        loss_weight = {} if classifier.loss_weight == 1 else dict(loss_weight=classifier.loss_weight)
        n[classifier.loss] = caffe.layers.SoftmaxWithLoss(n[classifier.logits], n.label, **loss_weight)
        n[classifier.accuracy] = caffe.layers.Accuracy(n[classifier.logits], n.label)
    train_data = _data_layer(caffe, v, caffe.TRAIN, train_lmdb, mean_file, train_batch).to_proto().layer
    net = caffe.proto.caffe_pb2.NetParameter(name=v.name)
    net.layer.extend([*train_data, *n.to_proto().layer])
    return net


def deploy(variant: str | Variant, *, batch: int = 1):
    """The inference net: Input `data` (batch x 3 x input_size x input_size), the layers that feed the main
    classifier, and Softmax `prob_blob` on it. Auxiliary classifier branches are left out."""
    from ilgnet.caffe_tools import import_caffe

    caffe = import_caffe()
    v = get_variant(variant)
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[batch, 3, v.input_size, v.input_size]))
    main = v.builder()(n, n.data)[-1]
    n[v.prob_blob] = caffe.layers.Softmax(n[main.logits])
    net = caffe.proto.caffe_pb2.NetParameter(name=v.name)
    net.layer.extend(_feeding(n.to_proto().layer, v.prob_blob))
    return net


def _feeding(layers, blob: str) -> list:
    """The layers `blob` depends on, in their original order (a layer is kept if it writes a needed blob;
    in-place layers keep their blob needed)."""
    needed, kept = {blob}, []
    for layer in reversed(layers):
        if needed.intersection(layer.top):
            kept.append(layer)
            needed.update(layer.bottom)
    return kept[::-1]


def learnable_layers(net) -> dict:
    """Layer name -> parameter blobs of a caffe.Net's layers that learn (BatchNorm statistics are not weights)."""
    types = {name: layer.type for name, layer in zip(net._layer_names, net.layers)}
    return {name: blobs for name, blobs in net.params.items() if types[name] != "BatchNorm"}


def parameter_count(net) -> int:
    return sum(blob.data.size for blobs in learnable_layers(net).values() for blob in blobs)
