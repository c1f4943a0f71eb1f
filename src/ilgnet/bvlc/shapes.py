"""Blob and parameter shapes of a net, computed as Caffe computes them, without Caffe.

Caffe sizes a net's parameter blobs from its prototxt and the shapes flowing into each layer; this module does the
same arithmetic for the layer types the toolkit's nets (and plain deploy files) use, so a caffemodel can be checked
against a net before Caffe loads it (ilgnet.bvlc.fit), with or without Caffe installed. tests/test_fit.py compares the
result with pycaffe's own nets for every variant. A layer type it does not know is a BadInput naming the layer:
the check must never pass a net it could not read.

Shapes are tuples, N x C x H x W for images; a Data layer's tops are (batch, 3, crop, crop) and (batch,), since the
toolkit's LMDBs hold 3-channel BGR images.
"""
from __future__ import annotations

import math

from ilgnet.errors import BadInput

Shape = tuple[int, ...]
# Layers whose output has their input's shape and which learn nothing.
_SAME_SHAPE = {"ReLU", "Sigmoid", "TanH", "Dropout", "LRN", "Softmax", "Power", "AbsVal", "BNLL", "ELU"}
_NO_TOP_PARAMS = {"SoftmaxWithLoss", "Accuracy", "Silence"}


def spatial(values, h: int, w: int, default: int) -> tuple[int, int]:
    """(height, width) of a convolution's kernel/pad/stride: the _h/_w fields, else the repeated value."""
    if h or w:
        return h, w
    values = list(values) or [default]
    return (values[0], values[-1])


def _conv(layer, bottom: Shape, name: str) -> tuple[Shape, list[Shape]]:
    p = layer.convolution_param
    kh, kw = spatial(p.kernel_size, p.kernel_h, p.kernel_w, 0)
    ph, pw = spatial(p.pad, p.pad_h, p.pad_w, 0)
    sh, sw = spatial(p.stride, p.stride_h, p.stride_w, 1)
    dilation = list(p.dilation) or [1]
    if len(bottom) != 4 or not (kh and kw) or not p.num_output:
        raise BadInput(f"layer {name!r} (Convolution): needs a 4-d input, a kernel size and num_output")
    n, c, height, width = bottom
    if c % p.group or p.num_output % p.group:
        raise BadInput(f"layer {name!r}: {c} input channels and num_output {p.num_output} do not divide by group "
                       f"{p.group}")
    out_h = (height + 2 * ph - (dilation[0] * (kh - 1) + 1)) // sh + 1
    out_w = (width + 2 * pw - (dilation[-1] * (kw - 1) + 1)) // sw + 1
    if out_h < 1 or out_w < 1:
        raise BadInput(f"layer {name!r}: a {kh}x{kw} kernel does not fit its {height}x{width} input")
    params = [(p.num_output, c // p.group, kh, kw)] + ([(p.num_output,)] if p.bias_term else [])
    return (n, p.num_output, out_h, out_w), params


def pool_geometry(layer, bottom: Shape) -> list[tuple[int, int, int, int]]:
    """(kernel, pad, stride, output size) along height and width of a Pooling layer on a (N, C, H, W) input, as
    Caffe's PoolingLayer::Reshape computes them: the output size rounded up, ceil((size + 2 pad - kernel) / stride)
    + 1, less one when the last window would start inside the padding; global pooling takes the whole input.
    BadInput for a layer without a kernel size."""
    p = layer.pooling_param
    height, width = bottom[2:]
    if p.global_pooling:
        return [(height, 0, 1, 1), (width, 0, 1, 1)]
    kh, kw = (p.kernel_h, p.kernel_w) if p.kernel_h else (p.kernel_size, p.kernel_size)
    ph, pw = (p.pad_h, p.pad_w) if p.pad_h or p.pad_w else (p.pad, p.pad)
    sh, sw = (p.stride_h, p.stride_w) if p.stride_h else (p.stride, p.stride)
    if not (kh and kw):
        raise BadInput(f"layer {layer.name!r} (Pooling): no kernel size")
    axes = []
    for size, k, pad, stride in ((height, kh, ph, sh), (width, kw, pw, sw)):
        out = math.ceil((size + 2 * pad - k) / stride) + 1      # Caffe rounds pooled sizes up ...
        if pad and (out - 1) * stride >= size + pad:            # ... but never starts a window in the padding
            out -= 1
        axes.append((k, pad, stride, out))
    return axes


def _pool(layer, bottom: Shape) -> Shape:
    return (*bottom[:2], *(out for *_, out in pool_geometry(layer, bottom)))


def layer_shapes(layer, bottoms: list[Shape]) -> tuple[list[Shape], list[Shape]]:
    """(top shapes, parameter blob shapes) of one layer given its bottom shapes."""
    kind, name = layer.type, layer.name
    if kind == "Convolution":
        top, params = _conv(layer, bottoms[0], name)
        return [top], params
    if kind == "Pooling":
        return [_pool(layer, bottoms[0])], []
    if kind in _SAME_SHAPE:
        return [bottoms[0]], []
    if kind == "InnerProduct":
        p = layer.inner_product_param
        inputs = math.prod(bottoms[0][p.axis:])
        weight = (inputs, p.num_output) if p.transpose else (p.num_output, inputs)
        return [(*bottoms[0][:p.axis], p.num_output)], [weight] + ([(p.num_output,)] if p.bias_term else [])
    if kind == "Concat":
        axis = layer.concat_param.axis
        if any(len(b) != len(bottoms[0]) or b[:axis] + b[axis + 1:] != bottoms[0][:axis] + bottoms[0][axis + 1:]
               for b in bottoms):
            raise BadInput(f"layer {name!r} (Concat): its inputs {bottoms} differ outside axis {axis}")
        return [(*bottoms[0][:axis], sum(b[axis] for b in bottoms), *bottoms[0][axis + 1:])], []
    if kind == "BatchNorm":
        return [bottoms[0]], [(bottoms[0][1],), (bottoms[0][1],), (1,)]
    if kind == "Scale":
        if len(bottoms) > 1:
            return [bottoms[0]], [(bottoms[0][1],)] if layer.scale_param.bias_term else []
        channels = (bottoms[0][1],)
        return [bottoms[0]], [channels, channels] if layer.scale_param.bias_term else [channels]
    if kind == "Eltwise":
        return [bottoms[0]], []
    if kind == "Flatten":
        return [(bottoms[0][0], math.prod(bottoms[0][1:]))], []
    if kind == "Split":
        return [bottoms[0]] * len(layer.top), []
    if kind in _NO_TOP_PARAMS:
        return [()] * len(layer.top), []
    raise BadInput(f"layer {name!r}: the weight check does not know layer type {kind!r}")


def input_shapes(layer) -> list[Shape]:
    """The top shapes of an Input layer, or of a Data layer (batch, 3, crop, crop) and (batch,)."""
    if layer.type == "Input":
        shapes = [tuple(s.dim) for s in layer.input_param.shape]
        return shapes * len(layer.top) if len(shapes) == 1 else shapes
    batch, crop = layer.data_param.batch_size, layer.transform_param.crop_size
    if not crop:
        raise BadInput(f"layer {layer.name!r} (Data): without a crop size its image size comes from the LMDB")
    return [(batch, 3, crop, crop), (batch,)][:len(layer.top)]


def param_shapes(net, phase: int | None = None) -> dict[str, list[Shape]]:
    """Layer name -> shapes of its parameter blobs (in Caffe's order: weights, then bias; BatchNorm's mean, variance,
    scale factor), for the layers of `net` (a NetParameter) that have any, in `phase` (layers whose include rules
    name another phase are left out; None keeps them all). Raises BadInput naming the layer that cannot be sized."""
    blobs: dict[str, Shape] = {}
    params: dict[str, list[Shape]] = {}
    for layer in net.layer:
        if phase is not None and any(rule.HasField("phase") and rule.phase != phase for rule in layer.include):
            continue
        if layer.type in ("Input", "Data"):
            tops = input_shapes(layer)
        else:
            missing = [b for b in layer.bottom if b not in blobs]
            if missing:
                raise BadInput(f"layer {layer.name!r} reads blob {missing[0]!r}, which no layer before it writes")
            tops, layer_params = layer_shapes(layer, [blobs[b] for b in layer.bottom])
            if layer_params:
                params[layer.name] = layer_params
        blobs.update(zip(layer.top, tops))
    return params


def net_input(net) -> tuple[str, Shape]:
    """(blob name, shape) of a deploy net's first input: its first Input layer, or the legacy `input` field with
    `input_shape` or four `input_dim` values. BadInput when the net declares no input."""
    for layer in net.layer:
        if layer.type == "Input" and layer.top:
            return layer.top[0], input_shapes(layer)[0]
    if net.input:
        dims = net.input_shape[0].dim if net.input_shape else net.input_dim[:4]
        if len(dims) == 4:
            return net.input[0], tuple(dims)
    raise BadInput(f"net {net.name!r} declares no input (an Input layer, or input with its shape)")


def net_outputs(net) -> dict[str, str]:
    """Output blob -> name of the layer that last writes it, for the blobs of `net` that no later layer reads: what
    Caffe calls the net's outputs (an in-place layer reads and rewrites its blob, which stays an output)."""
    outputs: dict[str, str] = {}
    for layer in net.layer:
        for blob in layer.bottom:
            outputs.pop(blob, None)
        outputs.update(dict.fromkeys(layer.top, layer.name))
    return outputs
