"""ILGNet and the paper's other nets as Caffe NetParameters, built without pycaffe (ilgnet.nets.builder).

Variants (docs/NETS.md says what each cut is and why):
  ilgnet                   the published net: GoogLeNet v1 (LRN) cut after inception_4a, local features from
                           inception_3a/3b, global from 4a; 227x227; layer-exact to the published deploy.prototxt
  ilgnet-bn                the same with BatchNorm + Scale after every convolution instead of LRN (ILGNet-Inc.V1-BN)
  ilgnet-noinc             ILGNet-without-Inc.: ilgnet-bn with each inception module replaced by one 3x3
                           convolution of its output width (Tables 2 and 3)
  googlenet-bn-third       GoogLeNetV1-BN up to inception_4a with GoogLeNet's loss1 branch (Table 4, 1/3)
  googlenet-bn-two-thirds  up to inception_4d with branches loss1 and loss2 (Table 4, 2/3)
  googlenet-bn-full        all of GoogLeNetV1-BN with branches loss1, loss2, loss3 (Table 4, full)
  ilgnet-inc3              ILGNet's head on the first third of Inception-v3, 299x299
  ilgnet-inc4              ILGNet's head on the first third of Inception-v4, 299x299

`train_val()` emits LMDB Data layers for TRAIN and TEST, SoftmaxWithLoss and Accuracy on every classifier, with the
layers a fine-tuning recipe fixes at lr_mult 0 (ilgnet.nets.recipes);
`deploy()` an Input layer and a Softmax on the main classifier, keeping only the layers that feed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ilgnet.bvlc.proto import TEST, TRAIN
from ilgnet.errors import lookup
from ilgnet.nets import googlenet, inception
from ilgnet.nets.builder import NetBuilder
from ilgnet.nets.layers import NEW
from ilgnet.nets.recipes import DEFAULT as DEFAULT_RECIPE
from ilgnet.nets.recipes import apply_recipe, check_recipe
from ilgnet.nets.recipes import fixed_layers as recipe_fixed_layers


@dataclass(frozen=True)
class Variant:
    """One net of the paper: its builder, the input it takes and the blobs the toolkit reads."""

    name: str
    summary: str
    build: Callable
    """Adds the net's layers to a NetBuilder after the `data` blob; returns its classifiers, the main one last."""
    pretrained: str
    """Registry name (weights.json) of the ImageNet model the trunk starts from when fine-tuning."""
    input_size: int = 227
    """Side of the square crops the net takes (Data layer crop_size; the deploy net's input)."""
    resize: int = 256
    """Side of the square images in the LMDB the train_val reads: crops of input_size are taken from them."""
    input_scale: float = 1.0
    """Factor Caffe applies to pixels after subtracting the mean (transform_param.scale)."""
    pretrained_batchnorm: bool = False
    """Whether the pretrained model has the variant's BatchNorm layers (else they start fresh)."""
    prob_blob: str = "loss1/loss"
    loss_blob: str = "loss1/loss"
    accuracy_blob: str = "loss1/top-1"


BVLC = "bvlc_googlenet"
INCEPTION_SCALE = 1 / 128
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant(name="ilgnet", summary="published ILGNet: GoogLeNet v1 (LRN) to inception_4a + local/global head",
            build=googlenet.ilgnet, pretrained=BVLC),
    Variant(name="ilgnet-bn", summary="ILGNet-Inc.V1-BN: BatchNorm + Scale after every convolution, no LRN",
            build=googlenet.ilgnet_bn, pretrained=BVLC),
    Variant(name="ilgnet-noinc", summary="ILGNet-without-Inc.: ilgnet-bn, each inception module one 3x3 convolution",
            build=googlenet.ilgnet_noinc, pretrained=BVLC),
    Variant(name="googlenet-bn-third", summary="GoogLeNetV1-BN to inception_4a, classifier loss1",
            build=googlenet.googlenet_bn_third, pretrained=BVLC, prob_blob="prob"),
    Variant(name="googlenet-bn-two-thirds", summary="GoogLeNetV1-BN to inception_4d, classifiers loss1, loss2",
            build=googlenet.googlenet_bn_two_thirds, pretrained=BVLC, prob_blob="prob", loss_blob="loss2/loss",
            accuracy_blob="loss2/top-1"),
    Variant(name="googlenet-bn-full", summary="GoogLeNetV1-BN, classifiers loss1, loss2, loss3",
            build=googlenet.googlenet_bn_full, pretrained=BVLC, prob_blob="prob", loss_blob="loss3/loss",
            accuracy_blob="loss3/top-1"),
    Variant(name="ilgnet-inc3", summary="ILGNet head on Inception-v3 to inception_b1", build=inception.ilgnet_inc3,
            pretrained="inception-v3", pretrained_batchnorm=True, input_size=299, resize=320,
            input_scale=INCEPTION_SCALE),
    Variant(name="ilgnet-inc4", summary="ILGNet head on Inception-v4 to inception_b1", build=inception.ilgnet_inc4,
            pretrained="inception-v4", pretrained_batchnorm=True, input_size=299, resize=320,
            input_scale=INCEPTION_SCALE),
]}


def get_variant(variant: str | Variant) -> Variant:
    """A Variant, or the one named `variant`; UnknownName (about "variant") for any other name."""
    return variant if isinstance(variant, Variant) else lookup(VARIANTS, variant, "net variant", about="variant")


def _data_layer(n: NetBuilder, v: Variant, phase: int, source, mean_file, batch: int) -> None:
    """A Data layer reading an LMDB: random crop and mirror in TRAIN, the centre crop in TEST, minus the mean."""
    transform = dict(mirror=phase == TRAIN, crop_size=v.input_size, mean_file=str(mean_file))
    if v.input_scale != 1:
        transform["scale"] = v.input_scale
    n.add("Data", "data", [], tops=["data", "label"], include=[dict(phase=phase)], transform_param=transform,
          data_param=dict(source=str(source), batch_size=batch, backend="LMDB"))


def train_val(variant: str | Variant, *, train_lmdb, val_lmdb, mean_file, train_batch: int, val_batch: int,
              recipe: str = DEFAULT_RECIPE):
    """The training net: Data layers (TRAIN: random crop + mirror; TEST: centre crop), the body, and per
    classifier a SoftmaxWithLoss `<prefix>/loss` and an Accuracy `<prefix>/top-1` (in both phases, so training
    logs show accuracy too), with the layers `recipe` fixes at lr_mult 0 (ilgnet.nets.recipes; UnknownName for
    another recipe). Returns a caffe NetParameter (ilgnet.bvlc.proto)."""
    v = get_variant(variant)
    check_recipe(recipe)
    n = NetBuilder()
    _data_layer(n, v, TRAIN, train_lmdb, mean_file, train_batch)
    _data_layer(n, v, TEST, val_lmdb, mean_file, val_batch)
    for classifier in v.build(n, "data"):
        loss_weight = {} if classifier.loss_weight == 1 else dict(loss_weight=[classifier.loss_weight])
        n.add("SoftmaxWithLoss", classifier.loss, [classifier.logits, "label"], **loss_weight)
        n.add("Accuracy", classifier.accuracy, [classifier.logits, "label"])
    net = n.net(v.name)
    apply_recipe(net, _fresh(net, v), recipe)
    return net


def deploy(variant: str | Variant, *, batch: int = 1):
    """The inference net: Input `data` (batch x 3 x input_size x input_size), the layers that feed the main
    classifier, and Softmax `prob_blob` on it: (batch, 2) probabilities of (low, high). Auxiliary classifier
    branches are left out."""
    v = get_variant(variant)
    n = NetBuilder()
    data = n.add("Input", "data", [], shape=[dict(dim=[batch, 3, v.input_size, v.input_size])])
    main = v.build(n, data)[-1]
    n.add("Softmax", v.prob_blob, main.logits)
    return n.net(v.name, _feeding(n.layers, v.prob_blob))


def _feeding(layers: list[dict], blob: str) -> list[dict]:
    """The layers `blob` depends on, in their original order (a layer is kept if it writes a needed blob;
    in-place layers keep their blob needed)."""
    needed, kept = {blob}, []
    for layer in reversed(layers):
        if needed.intersection(layer["top"]):
            kept.append(layer)
            needed.update(layer["bottom"])
    return kept[::-1]


def training_net(variant: str | Variant):
    """The variant's train_val with placeholder LMDB paths: its layers and shapes, for weight checks."""
    return train_val(variant, train_lmdb="train_lmdb", val_lmdb="val_lmdb", mean_file="mean.binaryproto",
                     train_batch=1, val_batch=1)


def fresh_layers(variant: str | Variant) -> set[str]:
    """The layers a variant adds to its pretrained trunk, which start from their fillers when fine-tuning: those the
    builders mark as new (lr_mult 10, as the published ILGNet train.prototxt's new layers), and the BatchNorm and
    Scale layers when the pretrained model has none (bvlc_googlenet)."""
    v = get_variant(variant)
    return _fresh(training_net(v), v)


def _fresh(net, v: Variant) -> set[str]:
    return {layer.name for layer in net.layer
            if (layer.param and layer.param[0].lr_mult == NEW[0]["lr_mult"])
            or (layer.type in ("BatchNorm", "Scale") and not v.pretrained_batchnorm)}


def fixed_layers(variant: str | Variant, recipe: str) -> list[str]:
    """The pretrained layers `recipe` fixes (lr_mult 0) in the variant's training net, in net order (empty for
    `released`); ilgnet.nets.recipes says which."""
    net = training_net(variant)
    v = get_variant(variant)
    return recipe_fixed_layers(net, _fresh(net, v), recipe)


def learnable_layers(net) -> dict:
    """Layer name -> parameter blobs of a caffe.Net's layers that learn (BatchNorm statistics are not weights)."""
    types = {name: layer.type for name, layer in zip(net._layer_names, net.layers)}
    return {name: blobs for name, blobs in net.params.items() if types[name] != "BatchNorm"}


def parameter_count(net) -> int:
    """Learnable parameters of a caffe.Net (150,938,082 for `ilgnet`)."""
    return sum(blob.data.size for blobs in learnable_layers(net).values() for blob in blobs)


def forward_time(variant: str | Variant, *, batch: int, iterations: int, gpu: int | None = None) -> tuple[int, float]:
    """(learnable parameter count, median forward milliseconds over `iterations` passes after one warm-up) of a
    variant's deploy net with random weights, in pycaffe on the CPU or on GPU `gpu`. Needs Caffe (BadInput for a GPU
    it cannot use)."""
    import time

    import numpy as np

    from ilgnet.bvlc.io import load_net
    from ilgnet.bvlc.tools import import_caffe, require_gpus

    caffe = import_caffe()
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        require_gpus(gpu)
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    net = load_net(deploy(variant, batch=batch))
    net.blobs["data"].data[...] = np.random.default_rng(0).uniform(-100, 100, net.blobs["data"].data.shape)
    net.forward()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net.forward()
        times.append(time.perf_counter() - start)
    return parameter_count(net), 1000 * float(np.median(times))
