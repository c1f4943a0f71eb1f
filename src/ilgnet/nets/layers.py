"""Caffe layer conventions shared by every builder: learning rates, fillers, convolution units, pooling.

Pretrained layers keep bvlc_googlenet's settings (lr_mult 1/2, decay_mult 1/0, xavier weights, constant 0.2
bias). Layers with no pretrained weights learn ten times faster (lr_mult 10/20), as the published ILGNet
train.prototxt does for its new fully connected layers. BatchNorm statistics are not learned (Caffe forces
their lr_mult to 0); the Scale layer after each BatchNorm learns at the base rate without weight decay.
"""
from __future__ import annotations

PRETRAINED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
NEW = [dict(lr_mult=10, decay_mult=1), dict(lr_mult=20, decay_mult=0)]
PRETRAINED_NO_BIAS = [dict(lr_mult=1, decay_mult=1)]
SCALE = [dict(lr_mult=1, decay_mult=0), dict(lr_mult=1, decay_mult=0)]
XAVIER = dict(type="xavier")
BIAS = dict(type="constant", value=0.2)
ZERO = dict(type="constant", value=0)


def _geometry(kernel, pad, stride) -> dict:
    """Convolution geometry fields; square kernels use kernel_size/pad, 1xN and Nx1 ones kernel_h/kernel_w.

    Zero pads and unit strides are left out, as in the reference prototxts.
    """
    fields = {}
    if isinstance(kernel, tuple):
        fields.update(kernel_h=kernel[0], kernel_w=kernel[1])
        if pad != (0, 0):
            fields.update(pad_h=pad[0], pad_w=pad[1])
    else:
        fields["kernel_size"] = kernel
        if pad:
            fields["pad"] = pad
    if stride != 1:
        fields["stride"] = stride
    return fields


def conv_relu(n, name: str, relu: str, bottom, num_output: int, kernel: int, *, pad: int = 0, stride: int = 1,
              bn: bool = False, param=PRETRAINED):
    """GoogLeNet-style unit: Convolution with bias, then BatchNorm + Scale (`<name>/bn`, `<name>/scale`) when
    `bn`, then the in-place ReLU `relu`. Returns the ReLU's top.

    The bias stays even before BatchNorm, where it is redundant, so that bvlc_googlenet's two blobs per
    convolution still load by name.
    """
    top = n.add("Convolution", name, bottom, num_output=num_output, **_geometry(kernel, pad, stride), param=param,
                weight_filler=XAVIER, bias_filler=BIAS)
    if bn:
        n.add("BatchNorm", f"{name}/bn", top, in_place=True)
        n.add("Scale", f"{name}/scale", top, bias_term=True, param=SCALE, in_place=True)
    return n.add("ReLU", relu, top, in_place=True)


def conv_bn(n, name: str, bottom, num_output: int, kernel, *, pad=0, stride: int = 1, relu: str | None = None):
    """Inception-v3/v4 Caffe-port unit: Convolution without bias, `<name>_bn` (BatchNorm, eps 0.001 as in the
    TensorFlow originals), `<name>_scale`, and the ReLU (`<name>_relu` unless named). Returns the ReLU's top."""
    top = n.add("Convolution", name, bottom, num_output=num_output, bias_term=False, **_geometry(kernel, pad, stride),
                param=PRETRAINED_NO_BIAS, weight_filler=XAVIER)
    n.add("BatchNorm", f"{name}_bn", top, eps=0.001, in_place=True)
    n.add("Scale", f"{name}_scale", top, bias_term=True, param=SCALE, in_place=True)
    return n.add("ReLU", relu or f"{name}_relu", top, in_place=True)


def max_pool(n, name: str, bottom, kernel: int = 3, stride: int = 2):
    """MAX pooling; Caffe rounds the output size up: ceil((H - kernel) / stride) + 1."""
    return n.add("Pooling", name, bottom, pool="MAX", kernel_size=kernel, stride=stride)


def ave_pool(n, name: str, bottom, kernel: int, stride: int, pad: int = 0):
    """AVE pooling, sized as max_pool (padded windows count the padding as zeros)."""
    fields = dict(pad=pad) if pad else {}
    return n.add("Pooling", name, bottom, pool="AVE", kernel_size=kernel, stride=stride, **fields)


def fc(n, name: str, bottom, num_output: int, *, param=NEW, bias=BIAS):
    """InnerProduct: (N, C, H, W) -> (N, num_output)."""
    return n.add("InnerProduct", name, bottom, num_output=num_output, param=param, weight_filler=XAVIER,
                 bias_filler=bias)


def relu_dropout(n, relu: str, drop: str, bottom, ratio: float):
    """In-place ReLU then in-place Dropout; returns the blob they rewrite."""
    top = n.add("ReLU", relu, bottom, in_place=True)
    return n.add("Dropout", drop, top, dropout_ratio=ratio, in_place=True)
