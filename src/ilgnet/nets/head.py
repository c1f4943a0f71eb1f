"""Classifier heads: ILGNet's local/global head and GoogLeNet's classifier branches.

ILGNet's head (names as in the published ILGnet deploy.prototxt): each local feature map and the pooled global
one feed their own FC + ReLU + Dropout 0.7 (`temp1`, `temp2`, `temp3`), the three are concatenated (`temp`) and
go through `temp_cjy` (FC 1024 + ReLU + Dropout 0.7) to `loss1/classifier_cjy` (2 outputs).
"""
from __future__ import annotations

from dataclasses import dataclass

from ilgnet.nets.layers import PRETRAINED, ZERO, ave_pool, conv_relu, fc, relu_dropout


@dataclass(frozen=True)
class Classifier:
    """One classifier output of a net: its logits blob and the `<prefix>/loss`, `<prefix>/top-1` tops that
    train_val attaches to it."""

    logits: str
    prefix: str
    loss_weight: float = 1.0

    @property
    def loss(self) -> str:
        return f"{self.prefix}/loss"

    @property
    def accuracy(self) -> str:
        return f"{self.prefix}/top-1"


def pooled_conv(n, prefix: str, bottom, *, param, bn: bool = False):
    """GoogLeNet's auxiliary-classifier entry: `<prefix>/ave_pool` (AVE 5x5 stride 3), `<prefix>/conv` (128 1x1)
    and `<prefix>/relu_conv`. At 227 input it turns 14x14 maps into 4x4x128."""
    pool = ave_pool(n, f"{prefix}/ave_pool", bottom, kernel=5, stride=3)
    return conv_relu(n, f"{prefix}/conv", f"{prefix}/relu_conv", pool, 128, 1, bn=bn, param=param)


# Width of each head branch: 256 for the two local feature maps, 512 for the global one.
BRANCH_WIDTH = {"temp1": 256, "temp2": 256, "temp3": 512}


def head_branch(n, name: str, bottom):
    """One head branch, `temp1`/`temp2` (local) or `temp3` (global): new FC + `<name>_relu` + `<name>_drop` (0.7).

    Builders call it right after the block it reads, which puts the layers where the published net has them.
    """
    return relu_dropout(n, f"{name}_relu", f"{name}_drop", fc(n, name, bottom, BRANCH_WIDTH[name]), 0.7)


def ilg_classifier(n, temp1, temp2, temp3) -> Classifier:
    """Fuses the three head branches: `temp` (Concat), `temp_cjy` (FC 1024 + ReLU + Dropout 0.7) and
    `loss1/classifier_cjy` (2 outputs)."""
    temp = n.add("Concat", "temp", [temp1, temp2, temp3])                  # 256 + 256 + 512 = 1024
    fused = relu_dropout(n, "temp_cjy_relu", "temp3_cjy_drop", fc(n, "temp_cjy", temp, 1024), 0.7)
    fc(n, "loss1/classifier_cjy", fused, 2, bias=ZERO)                      # 2: (low, high)
    return Classifier("loss1/classifier_cjy", "loss1")


def googlenet_aux_classifier(n, prefix: str, bottom, *, bn: bool, loss_weight: float) -> Classifier:
    """GoogLeNet's auxiliary classifier (`loss1` after inception_4a, `loss2` after inception_4d) with a new
    2-way output `<prefix>/classifier_ava` (bvlc's 1000-way `<prefix>/classifier` would not fit by shape)."""
    features = pooled_conv(n, prefix, bottom, param=PRETRAINED, bn=bn)
    hidden = fc(n, f"{prefix}/fc", features, 1024, param=PRETRAINED)
    hidden = relu_dropout(n, f"{prefix}/relu_fc", f"{prefix}/drop_fc", hidden, 0.7)
    fc(n, f"{prefix}/classifier_ava", hidden, 2, bias=ZERO)
    return Classifier(f"{prefix}/classifier_ava", prefix, loss_weight)


def googlenet_main_classifier(n, bottom) -> Classifier:
    """GoogLeNet's final classifier: `pool5/7x7_s1` (AVE 7x7), `pool5/drop_7x7_s1` (0.4), `loss3/classifier_ava`."""
    pool = ave_pool(n, "pool5/7x7_s1", bottom, kernel=7, stride=1)          # 1024x7x7 -> 1024x1x1
    n.add("Dropout", "pool5/drop_7x7_s1", pool, dropout_ratio=0.4, in_place=True)
    fc(n, "loss3/classifier_ava", pool, 2, bias=ZERO)
    return Classifier("loss3/classifier_ava", "loss3")
