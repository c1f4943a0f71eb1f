"""Nets on GoogLeNet v1: the published ILGNet, its BN and no-inception variants, and GoogLeNetV1-BN baselines.

Layer and blob names follow bvlc_googlenet's train_val.prototxt, so its caffemodel initialises every
pretrained layer by name. Each builder adds its layers to a NetBuilder after the `data` blob and returns its
classifiers, the main one last. Shape comments are (channels, height, width) of one 227x227 input.
"""
from __future__ import annotations

from ilgnet.nets.head import (Classifier, googlenet_aux_classifier, googlenet_main_classifier, head_branch,
                              ilg_classifier, pooled_conv)
from ilgnet.nets.layers import NEW, PRETRAINED, ave_pool, conv_relu, max_pool

# Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


# The stride-2 max pools between GoogLeNet's stages.
POOL_BEFORE = {"4a": "pool3/3x3_s2", "5a": "pool4/3x3_s2"}


def stem(n, data, *, bn: bool):
    """conv1/7x7_s2 through pool2/3x3_s2. With `bn` the two LRN layers (pool1/norm1, conv2/norm2) give way to
    BatchNorm + Scale after each convolution."""
    x = conv_relu(n, "conv1/7x7_s2", "conv1/relu_7x7", data, 64, 7, pad=3, stride=2, bn=bn)   # 64x114x114
    x = max_pool(n, "pool1/3x3_s2", x)                                                        # 64x57x57
    if not bn:
        x = n.add("LRN", "pool1/norm1", x, local_size=5, alpha=1e-4, beta=0.75)
    x = conv_relu(n, "conv2/3x3_reduce", "conv2/relu_3x3_reduce", x, 64, 1, bn=bn)
    x = conv_relu(n, "conv2/3x3", "conv2/relu_3x3", x, 192, 3, pad=1, bn=bn)                # 192x57x57
    if not bn:
        x = n.add("LRN", "conv2/norm2", x, local_size=5, alpha=1e-4, beta=0.75)
    return max_pool(n, "pool2/3x3_s2", x)                                                     # 192x28x28


def inception(n, stage: str, bottom, *, bn: bool):
    """inception_<stage>: 1x1, 3x3 (after a 1x1 reduce), 5x5 (after a 1x1 reduce) and 3x3 average pool + 1x1
    projection branches, concatenated as inception_<stage>/output."""
    w1, w3r, w3, w5r, w5, wp = INCEPTION[stage]
    p = f"inception_{stage}"
    b1 = conv_relu(n, f"{p}/1x1", f"{p}/relu_1x1", bottom, w1, 1, bn=bn)
    b3 = conv_relu(n, f"{p}/3x3_reduce", f"{p}/relu_3x3_reduce", bottom, w3r, 1, bn=bn)
    b3 = conv_relu(n, f"{p}/3x3", f"{p}/relu_3x3", b3, w3, 3, pad=1, bn=bn)
    b5 = conv_relu(n, f"{p}/5x5_reduce", f"{p}/relu_5x5_reduce", bottom, w5r, 1, bn=bn)
    b5 = conv_relu(n, f"{p}/5x5", f"{p}/relu_5x5", b5, w5, 5, pad=2, bn=bn)
    pool = ave_pool(n, f"{p}/pool", bottom, kernel=3, stride=1, pad=1)
    bp = conv_relu(n, f"{p}/pool_proj", f"{p}/relu_pool_proj", pool, wp, 1, bn=bn)
    return n.add("Concat", f"{p}/output", [b1, b3, b5, bp])      # (w1 + w3 + w5 + wp) channels, same H x W


def plain_block(n, stage: str, bottom, *, bn: bool):
    """Table 2's replacement for inception_<stage>: one 3x3 convolution `conv<stage>/3x3` as wide as the
    module's output (256, 480, 512), newly initialised."""
    width = sum(INCEPTION[stage][i] for i in (0, 2, 4, 5))
    return conv_relu(n, f"conv{stage}/3x3", f"conv{stage}/relu_3x3", bottom, width, 3, pad=1, bn=bn, param=NEW)


def _ilgnet(n, data, *, bn: bool, block) -> list[Classifier]:
    """GoogLeNet cut after its third module: local features from blocks 3a and 3b, the global one from 4a
    through loss1's pooling and 1x1 convolution."""
    x = stem(n, data, bn=bn)                                          # 192x28x28
    x = block(n, "3a", x, bn=bn)                                      # 256x28x28
    temp1 = head_branch(n, "temp1", x)                                # 256
    x = block(n, "3b", x, bn=bn)                                      # 480x28x28
    temp2 = head_branch(n, "temp2", x)                                # 256
    x = block(n, "4a", max_pool(n, POOL_BEFORE["4a"], x), bn=bn)      # 480x14x14 -> 512x14x14
    temp3 = head_branch(n, "temp3", pooled_conv(n, "loss1", x, param=PRETRAINED, bn=bn))   # 128x4x4 -> 512
    return [ilg_classifier(n, temp1, temp2, temp3)]


def ilgnet(n, data):
    """The published ILGNet: 3x227x227 -> 2 logits (loss1/classifier_cjy)."""
    return _ilgnet(n, data, bn=False, block=inception)


def ilgnet_bn(n, data):
    """ILGNet-Inc.V1-BN: BatchNorm + Scale after each convolution instead of the two LRN layers."""
    return _ilgnet(n, data, bn=True, block=inception)


def ilgnet_noinc(n, data):
    """ILGNet-without-Inc. (Tables 2 and 3), "a modified network of ILGNet-Inc.V1-BN" (Sec. 4.2): ILGNet-Inc.V1-BN
    with each inception module a single 3x3 convolution, BatchNorm + Scale after every convolution."""
    return _ilgnet(n, data, bn=True, block=plain_block)


def _googlenet_bn(n, data, last: str) -> list[Classifier]:
    """GoogLeNetV1-BN up to inception_<last> with GoogLeNet's classifier branches on the way: loss1 after 4a,
    loss2 after 4d, loss3 after 5b. The deepest branch is the main one (loss weight 1), the others weigh 0.3
    as in GoogLeNet."""
    classifiers = []
    x = stem(n, data, bn=True)
    for stage in INCEPTION:
        if stage in POOL_BEFORE:
            x = max_pool(n, POOL_BEFORE[stage], x)
        x = inception(n, stage, x, bn=True)
        branch = {"4a": "loss1", "4d": "loss2"}.get(stage)
        if branch:
            classifiers.append(googlenet_aux_classifier(n, branch, x, bn=True,
                                                        loss_weight=1.0 if stage == last else 0.3))
        if stage == last:
            break
    if last == "5b":
        classifiers.append(googlenet_main_classifier(n, x))
    return classifiers


def googlenet_bn_third(n, data):
    """GoogLeNetV1-BN to inception_4a (Table 4, 1/3): classifier loss1."""
    return _googlenet_bn(n, data, "4a")


def googlenet_bn_two_thirds(n, data):
    """GoogLeNetV1-BN to inception_4d (Table 4, 2/3): classifiers loss1 (0.3) and loss2."""
    return _googlenet_bn(n, data, "4d")


def googlenet_bn_full(n, data):
    """All of GoogLeNetV1-BN (Table 4, full): classifiers loss1, loss2 (0.3 each) and loss3."""
    return _googlenet_bn(n, data, "5b")
