"""ILGNet's head on the first third of Inception-v3 and Inception-v4 (299x299 input).

Layer names, branch order and widths follow the widely used Caffe ports of the TensorFlow Inception models in
soeaver/caffe-model (cls/inception/deploy_inception_v3.prototxt and deploy_inception_v4.prototxt):
convolutions without bias, each followed by `<conv>_bn` (BatchNorm, eps 0.001), `<conv>_scale` and a ReLU,
blocks named inception_a<i>, reduction_a, inception_b<i>. Their ImageNet caffemodels therefore initialise the
backbone by name. Those ports were evaluated on 299x299 crops of images with a short side of 320, with pixels
mapped to about [-1, 1] (mean 128, std 128, cls/README.md there); our Data layers crop 299 from 320x320 LMDB
images, subtract the mean image and scale by 1/128 (Variant.resize, Variant.input_scale).

The cut follows ILGNet's rule on GoogLeNet: local features from the first two inception modules, the global
feature from the first module after the next grid reduction (inception_b1, 17x17), pooled as GoogLeNet's
first auxiliary classifier pools inception_4a (AVE 5x5 stride 3, then a 1x1 convolution to 128 channels).
"""
from __future__ import annotations

from ilgnet.nets.head import Classifier, head_branch, ilg_classifier, pooled_conv
from ilgnet.nets.layers import NEW, ave_pool, conv_bn, max_pool


def _concat(n, name: str, *tops):
    return n.add("Concat", name, list(tops))


def v3_stem(n, data):
    """299x299x3 -> 35x35x192."""
    x = conv_bn(n, "conv1_3x3_s2", data, 32, 3, stride=2, relu="conv1_3x3_relu")
    x = conv_bn(n, "conv2_3x3_s1", x, 32, 3, relu="conv2_3x3_relu")
    x = conv_bn(n, "conv3_3x3_s1", x, 64, 3, pad=1, relu="conv3_3x3_relu")
    x = max_pool(n, "pool1_3x3_s2", x)
    x = conv_bn(n, "conv4_3x3_reduce", x, 80, 1, relu="conv4_relu_3x3_reduce")
    x = conv_bn(n, "conv4_3x3", x, 192, 3, relu="conv4_relu_3x3")
    return max_pool(n, "pool2_3x3_s2", x)


def v3_inception_a(n, p: str, bottom, pool_proj: int):
    """35x35 module (TF Mixed_5b/5c/5d): 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 |
    3x3 average pool -> 1x1 `pool_proj`."""
    b1 = conv_bn(n, f"{p}_1x1", bottom, 64, 1)
    b5 = conv_bn(n, f"{p}_5x5_reduce", bottom, 48, 1)
    b5 = conv_bn(n, f"{p}_5x5", b5, 64, 5, pad=2)
    b3 = conv_bn(n, f"{p}_3x3_reduce", bottom, 64, 1)
    b3 = conv_bn(n, f"{p}_3x3_1", b3, 96, 3, pad=1)
    b3 = conv_bn(n, f"{p}_3x3_2", b3, 96, 3, pad=1)
    bp = conv_bn(n, f"{p}_pool_proj", ave_pool(n, f"{p}_pool", bottom, 3, 1, pad=1), pool_proj, 1)
    return _concat(n, f"{p}_output", b1, b5, b3, bp)


def reduction_a(n, bottom, k: int, l: int, m: int, w: int):  # noqa: E741 (the Inception-v4 paper names them k, l, m, n)
    """35x35 -> 17x17 (Szegedy et al. 2016, Inception-v4 paper's Reduction-A with filter counts k, l, m, n):
    3x3/2 `w` | 1x1 k -> 3x3 l -> 3x3/2 m | 3x3/2 max pool."""
    b3 = conv_bn(n, "reduction_a_3x3", bottom, w, 3, stride=2)
    b33 = conv_bn(n, "reduction_a_3x3_2_reduce", bottom, k, 1)
    b33 = conv_bn(n, "reduction_a_3x3_2", b33, l, 3, pad=1)
    b33 = conv_bn(n, "reduction_a_3x3_3", b33, m, 3, stride=2)
    pool = max_pool(n, "reduction_a_pool", bottom)
    return _concat(n, "reduction_a_concat", b3, b33, pool)


def inception_b(n, p: str, bottom, *, widths, double_reduce: str):
    """17x17 module: 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | 3x3 average pool -> 1x1.

    `widths` = (1x1, first-branch reduce, 1x7, 7x1, second-branch reduce, 7x1_2, 1x7_2, 7x1_3, 1x7_3, pool 1x1);
    `double_reduce` is the port's name for the second branch's 1x1 (`7x1_reduce` in v3, `7x1_2_reduce` in v4).
    """
    w1, r1, w17, w71, r2, w71_2, w17_2, w71_3, w17_3, wp = widths
    b1 = conv_bn(n, f"{p}_1x1_2", bottom, w1, 1)
    b7 = conv_bn(n, f"{p}_1x7_reduce", bottom, r1, 1)
    b7 = conv_bn(n, f"{p}_1x7", b7, w17, (1, 7), pad=(0, 3))
    b7 = conv_bn(n, f"{p}_7x1", b7, w71, (7, 1), pad=(3, 0))
    b77 = conv_bn(n, f"{p}_{double_reduce}", bottom, r2, 1)
    b77 = conv_bn(n, f"{p}_7x1_2", b77, w71_2, (7, 1), pad=(3, 0))
    b77 = conv_bn(n, f"{p}_1x7_2", b77, w17_2, (1, 7), pad=(0, 3))
    b77 = conv_bn(n, f"{p}_7x1_3", b77, w71_3, (7, 1), pad=(3, 0))
    b77 = conv_bn(n, f"{p}_1x7_3", b77, w17_3, (1, 7), pad=(0, 3))
    bp = conv_bn(n, f"{p}_1x1", ave_pool(n, f"{p}_pool_ave", bottom, 3, 1, pad=1), wp, 1)
    return _concat(n, f"{p}_concat", b1, b7, b77, bp)


def v4_stem(n, data):
    """299x299x3 -> 35x35x384 (Inception-v4 paper, Figure 3)."""
    x = conv_bn(n, "conv1_3x3_s2", data, 32, 3, stride=2)
    x = conv_bn(n, "conv2_3x3_s1", x, 32, 3)
    x = conv_bn(n, "conv3_3x3_s1", x, 64, 3, pad=1)
    conv = conv_bn(n, "inception_stem1_3x3_s2", x, 96, 3, stride=2)
    x = _concat(n, "inception_stem1", max_pool(n, "inception_stem1_pool", x), conv)
    b3 = conv_bn(n, "inception_stem2_3x3_reduce", x, 64, 1)
    b3 = conv_bn(n, "inception_stem2_3x3", b3, 96, 3)
    b7 = conv_bn(n, "inception_stem2_1x7_reduce", x, 64, 1)
    b7 = conv_bn(n, "inception_stem2_1x7", b7, 64, (1, 7), pad=(0, 3))
    b7 = conv_bn(n, "inception_stem2_7x1", b7, 64, (7, 1), pad=(3, 0))
    b7 = conv_bn(n, "inception_stem2_3x3_2", b7, 96, 3)
    x = _concat(n, "inception_stem2", b3, b7)
    conv = conv_bn(n, "inception_stem3_3x3_s2", x, 192, 3, stride=2)
    return _concat(n, "inception_stem3", conv, max_pool(n, "inception_stem3_pool", x))


def v4_inception_a(n, p: str, bottom):
    """35x35x384 module: 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | 3x3 average pool -> 1x1 96."""
    b1 = conv_bn(n, f"{p}_1x1_2", bottom, 96, 1)
    b3 = conv_bn(n, f"{p}_3x3_reduce", bottom, 64, 1)
    b3 = conv_bn(n, f"{p}_3x3", b3, 96, 3, pad=1)
    b33 = conv_bn(n, f"{p}_3x3_2_reduce", bottom, 64, 1)
    b33 = conv_bn(n, f"{p}_3x3_2", b33, 96, 3, pad=1)
    b33 = conv_bn(n, f"{p}_3x3_3", b33, 96, 3, pad=1)
    bp = conv_bn(n, f"{p}_1x1", ave_pool(n, f"{p}_pool_ave", bottom, 3, 1, pad=1), 96, 1)
    return _concat(n, f"{p}_concat", b1, b3, b33, bp)


def _global_branch(n, bottom):
    """temp3 on the 17x17 module, pooled to 5x5x128 by new loss1/ave_pool + loss1/conv layers."""
    return head_branch(n, "temp3", pooled_conv(n, "loss1", bottom, param=NEW))


def ilgnet_inc3(n, data) -> list[Classifier]:
    """Stem, inception_a1..a3, reduction_a, inception_b1: 5 of Inception-v3's 11 blocks after the stem."""
    x = v3_inception_a(n, "inception_a1", v3_stem(n, data), 32)
    temp1 = head_branch(n, "temp1", x)
    x = v3_inception_a(n, "inception_a2", x, 64)
    temp2 = head_branch(n, "temp2", x)
    x = v3_inception_a(n, "inception_a3", x, 64)
    x = reduction_a(n, x, k=64, l=96, m=96, w=384)
    x = inception_b(n, "inception_b1", x, widths=(192, 128, 128, 192, 128, 128, 128, 128, 192, 192),
                    double_reduce="7x1_reduce")
    return [ilg_classifier(n, temp1, temp2, _global_branch(n, x))]


def ilgnet_inc4(n, data) -> list[Classifier]:
    """Stem, inception_a1..a4, reduction_a, inception_b1: 6 of Inception-v4's 16 blocks after the stem."""
    x = v4_inception_a(n, "inception_a1", v4_stem(n, data))
    temp1 = head_branch(n, "temp1", x)
    x = v4_inception_a(n, "inception_a2", x)
    temp2 = head_branch(n, "temp2", x)
    x = v4_inception_a(n, "inception_a3", x)
    x = v4_inception_a(n, "inception_a4", x)
    x = reduction_a(n, x, k=192, l=224, m=256, w=384)
    x = inception_b(n, "inception_b1", x, widths=(384, 192, 224, 256, 192, 192, 224, 224, 256, 128),
                    double_reduce="7x1_2_reduce")
    return [ilg_classifier(n, temp1, temp2, _global_branch(n, x))]
