"""A trained model as an ONNX file: the deploy net (a NetParameter of ilgnet.nets, or a deploy prototxt) and the
caffemodel's blobs turned into an ONNX graph with the `onnx` package, layer by layer, with Caffe's arithmetic kept
where ONNX's defaults differ, and the model's identity in the file's metadata.

ONNX is what current runtimes read (onnxruntime on CPUs, CUDA and mobile; PyTorch through onnx2torch), while
Caffe, OpenCV 5 and the other converters have dropped Caffe's format. The graph takes what Caffe's deploy net takes,
`data` (N, 3, crop, crop) float32: the photo resized to resize x resize, BGR, minus the mean image at the crop's
offset, times the variant's input scale, cropped; it gives `probability` (N, 2), the softmax (p_low, p_high).
The mean image is not subtracted inside the graph: it is subtracted at each crop's own offset (the centre for
scoring, five offsets with --oversample), which one Sub of a fixed crop cannot express, and keeping the input
Caffe's lets every engine share the Scorer's preprocessing. The mean image travels in the metadata instead
(`mean_npy_base64`: the .npy file's bytes, base64), so one .onnx file is enough to score with.

Layers and the care each needs (Caffe's source, layers/*.cpp, is the reference):
  Convolution    Conv: pads, strides, dilations, group; weights (M, C / group, kh, kw)
  Pooling        Caffe rounds output sizes up and clips a last window that would start in the padding
                 (ilgnet.bvlc.shapes.pool_geometry); ONNX gets those sizes through explicit end pads with
                 ceil_mode 0, so no runtime's reading of ceil_mode matters. MAX: padding never wins. AVE: Caffe
                 divides by the window clipped to the padded input (padding counted, what lies beyond it not):
                 count_include_pad=1 where every window lies inside the padded input, else the sum of an
                 explicitly padded input times Caffe's divisors
  LRN            ACROSS_CHANNELS: x * (k + alpha / size * sum of squares)^-beta in plain operators (_lrn)
  ReLU           Relu, or LeakyRelu for a negative_slope
  InnerProduct   Flatten at the layer's axis + Gemm (transB=1; transB=0 for a transposed layer)
  BatchNorm      the stored mean and variance divided by the moving-average scale factor (blob 2; 0 means 0)
  Scale          Mul (and Add for the bias) with (C, 1, 1) initialisers
  Concat, Softmax, Dropout (nothing at inference), Split (the same tensor)
In-place layers (Caffe's top = bottom) write a new tensor each time, `BLOB/LAYER`: ONNX assigns each name once.

Opset 17 and IR version 8: what onnxruntime 1.14 and later read, and every layer above has been in ONNX since.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import ilgnet
from ilgnet.bvlc.io import read_prototxt
from ilgnet.bvlc.shapes import input_shapes, layer_shapes, net_input, net_outputs, pool_geometry, spatial
from ilgnet.errors import BadInput, MissingPackage, about
from ilgnet.fileio import atomic_path
from ilgnet.zoo.fit import read_caffemodel

OUTPUT = "probability"     # the graph's one output: the softmax (N, 2), p_low and p_high
OPSET = 17
IR_VERSION = 8
ONNX_INSTALL = "pip install onnx onnxruntime"
PRODUCER = "ilgnet"


def import_onnx():
    """The onnx module; MissingPackage, saying how to install it, when it is absent."""
    try:
        import onnx
    except ImportError as err:
        raise MissingPackage(f"ONNX export needs the onnx package ({err}): {ONNX_INSTALL}") from None
    return onnx


def caffemodel_blobs(caffemodel: Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs as float32 arrays, flat (the net's shapes are applied by the converter), from a
    caffemodel's `layer` or V1 `layers`, `data` or `double_data`. BadInput as ilgnet.zoo.fit.read_caffemodel."""
    model = read_caffemodel(caffemodel)
    return {layer.name: [np.asarray(b.data or b.double_data, np.float32) for b in layer.blobs]
            for layer in [*model.layer, *model.layers] if layer.blobs}


class _Graph:
    """The ONNX graph under construction, written straight into `model` (a ModelProto: a 600 MB graph is not
    copied), and which tensor holds each Caffe blob now."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.model = onnx.ModelProto()
        self.proto = self.model.graph
        self.tensor: dict[str, str] = {}        # Caffe blob -> the ONNX tensor that holds it now
        self.shape: dict[str, tuple] = {}       # Caffe blob -> its shape (ilgnet.bvlc.shapes)
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        base, n = name, 1
        while name in self.names:
            n += 1
            name = f"{base}#{n}"
        self.names.add(name)
        return name

    def constant(self, name: str, values: np.ndarray, dtype=np.float32) -> str:
        name = self.unique(name)
        values = np.asarray(values, dtype)
        tensor = self.proto.initializer.add(name=name, dims=values.shape,
                                            data_type=self.onnx.helper.np_dtype_to_tensor_dtype(values.dtype))
        tensor.raw_data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        output = self.unique(name)
        self.proto.node.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _top_name(graph: _Graph, layer) -> str:
    """The tensor name of a layer's (first) top: the blob's own name when first written, else BLOB/LAYER."""
    top = layer.top[0]
    return top if top not in graph.tensor and top not in graph.names else f"{top}/{layer.name}"


def _blobs(layer, blobs: dict[str, list[np.ndarray]], shapes: list[tuple]) -> list[np.ndarray]:
    stored = blobs.get(layer.name)
    if stored is None or len(stored) < len(shapes):
        raise BadInput(f"layer {layer.name!r}: the caffemodel holds no weights for it")
    return [values.reshape(shape) for values, shape in zip(stored, shapes)]


def _pooling(graph: _Graph, layer, x: str, bottom: tuple, name: str) -> str:
    """Caffe's Pooling as MaxPool / AveragePool with explicit end pads (see the module's doc)."""
    p = layer.pooling_param
    axes = pool_geometry(layer, bottom)
    kernel = [k for k, *_ in axes]
    begin = [pad for _, pad, _, _ in axes]
    strides = [stride for *_, stride, _ in axes]
    end = [(out - 1) * stride + k - size - pad for (k, pad, stride, out), size in zip(axes, bottom[2:])]
    if min(end) < 0:
        raise BadInput(f"layer {layer.name!r} (Pooling): a stride larger than the kernel is not exported")
    if p.pool == p.MAX:
        return graph.node("MaxPool", [x], name, kernel_shape=kernel, strides=strides, pads=begin + end)
    if p.pool != p.AVE:
        raise BadInput(f"layer {layer.name!r}: STOCHASTIC pooling is not exported")
    # Caffe's divisor of each window: its extent clipped to [-pad, size + pad).
    divisors = [np.minimum(np.arange(out) * stride - pad + k, size + pad) - (np.arange(out) * stride - pad)
                for (k, pad, stride, out), size in zip(axes, bottom[2:])]
    if all((d == k).all() for d, k in zip(divisors, kernel)):
        return graph.node("AveragePool", [x], name, kernel_shape=kernel, strides=strides, pads=begin + end,
                          count_include_pad=1)
    pads = graph.constant(f"{name}/pads", np.array([0, 0, *begin, 0, 0, *end]), np.int64)
    padded = graph.node("Pad", [x, pads], f"{name}/padded")
    summed = graph.node("AveragePool", [padded], f"{name}/windows", kernel_shape=kernel, strides=strides)
    factor = kernel[0] * kernel[1] / np.outer(divisors[0], divisors[1])
    return graph.node("Mul", [summed, graph.constant(f"{name}/divisors", factor[None, None])], name)


def _lrn(graph: _Graph, x: str, name: str, *, size: int, alpha: float, beta: float, k: float) -> str:
    """Caffe's LRN across channels, x * (k + alpha / size * the sum of x^2 over `size` channels centred on each,
    zero-padded)^-beta, in plain operators: the window's mean of squares is an AveragePool over the channel axis
    of (N, 1, C, H, W), padding counted; ^-0.75 (GoogLeNet's beta) is a division by two square roots. onnxruntime's
    own LRN kernel took 3 to 6 times as long (one thread), half of ILGNet's forward pass. Node names start NAME/lrn,
    which the int8 conversion keeps in float (ilgnet.zoo.onnx_precision)."""
    axis = graph.constant(f"{name}/lrn_axis", np.array([1]), np.int64)
    squares = graph.node("Unsqueeze", [graph.node("Mul", [x, x], f"{name}/lrn_squares"), axis], f"{name}/lrn_5d")
    half = (size - 1) // 2
    mean = graph.node("AveragePool", [squares], f"{name}/lrn_window", kernel_shape=[size, 1, 1],
                      pads=[half, 0, 0, size - 1 - half, 0, 0], count_include_pad=1)
    scaled = graph.node("Mul", [graph.node("Squeeze", [mean, axis], f"{name}/lrn_mean"),
                                graph.constant(f"{name}/lrn_alpha", np.float32(alpha))], f"{name}/lrn_scaled")
    base = graph.node("Add", [scaled, graph.constant(f"{name}/lrn_k", np.float32(k))], f"{name}/lrn_base")
    if beta == 0.75:
        root = graph.node("Sqrt", [base], f"{name}/lrn_root")
        power = graph.node("Mul", [root, graph.node("Sqrt", [root], f"{name}/lrn_root4")], f"{name}/lrn_power")
        return graph.node("Div", [x, power], name)
    factor = graph.node("Pow", [base, graph.constant(f"{name}/lrn_beta", np.float32(-beta))], f"{name}/lrn_factor")
    return graph.node("Mul", [x, factor], name)


def _layer(graph: _Graph, layer, blobs: dict[str, list[np.ndarray]]) -> None:
    """Adds one Caffe layer to the graph."""
    kind = layer.type
    bottoms = [graph.shape[b] for b in layer.bottom]
    tops, params = layer_shapes(layer, bottoms)
    inputs = [graph.tensor[b] for b in layer.bottom]
    if kind in ("Dropout", "Split"):                    # the same values: the tops name the bottom's tensor
        for top in layer.top:
            graph.tensor[top] = inputs[0]
        graph.shape.update(zip(layer.top, tops))
        return
    name = _top_name(graph, layer)
    x = inputs[0] if inputs else None
    if kind == "Convolution":
        p = layer.convolution_param
        weights = _blobs(layer, blobs, params)
        kernel = list(weights[0].shape[2:])
        pad = list(spatial(p.pad, p.pad_h, p.pad_w, 0))
        stride = list(spatial(p.stride, p.stride_h, p.stride_w, 1))
        dilation = list(spatial(p.dilation, 0, 0, 1))
        args = [x, graph.constant(f"{layer.name}/weights", weights[0])]
        if p.bias_term:
            args.append(graph.constant(f"{layer.name}/bias", weights[1]))
        out = graph.node("Conv", args, name, kernel_shape=kernel, pads=pad + pad, strides=stride,
                         dilations=dilation, group=p.group)
    elif kind == "Pooling":
        out = _pooling(graph, layer, x, bottoms[0], name)
    elif kind == "LRN":
        p = layer.lrn_param
        if p.norm_region != p.ACROSS_CHANNELS:
            raise BadInput(f"layer {layer.name!r}: LRN WITHIN_CHANNEL is not exported")
        out = _lrn(graph, x, name, size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)
    elif kind == "ReLU":
        slope = layer.relu_param.negative_slope
        out = graph.node("LeakyRelu", [x], name, alpha=slope) if slope else graph.node("Relu", [x], name)
    elif kind == "Concat":
        out = graph.node("Concat", inputs, name, axis=layer.concat_param.axis)
    elif kind == "InnerProduct":
        p = layer.inner_product_param
        if p.axis != 1:
            raise BadInput(f"layer {layer.name!r}: only an InnerProduct on axis 1 is exported")
        weights = _blobs(layer, blobs, params)
        flat = graph.node("Flatten", [x], f"{name}/flat", axis=1)
        args = [flat, graph.constant(f"{layer.name}/weights", weights[0])]
        if p.bias_term:
            args.append(graph.constant(f"{layer.name}/bias", weights[1]))
        out = graph.node("Gemm", args, name, transB=0 if p.transpose else 1)
    elif kind == "Softmax":
        out = graph.node("Softmax", [x], name, axis=layer.softmax_param.axis)
    elif kind == "BatchNorm":
        p = layer.batch_norm_param
        if p.HasField("use_global_stats") and not p.use_global_stats:
            raise BadInput(f"layer {layer.name!r}: BatchNorm with use_global_stats false normalises by each "
                           f"batch's own statistics, which an exported net cannot")
        mean, variance, factor = _blobs(layer, blobs, params)
        scale = np.float32(0) if factor[0] == 0 else np.float32(1) / np.float32(factor[0])
        channels = len(mean)
        out = graph.node("BatchNormalization",
                         [x, graph.constant(f"{layer.name}/gamma", np.ones(channels)),
                          graph.constant(f"{layer.name}/beta", np.zeros(channels)),
                          graph.constant(f"{layer.name}/mean", mean * scale),
                          graph.constant(f"{layer.name}/variance", variance * scale)], name, epsilon=p.eps)
    elif kind == "Scale":
        p = layer.scale_param
        if len(layer.bottom) != 1 or p.axis != 1 or p.num_axes != 1:
            raise BadInput(f"layer {layer.name!r}: only a Scale with learned factors along axis 1 is exported")
        values = _blobs(layer, blobs, params)
        shape = (-1, *[1] * (len(bottoms[0]) - 2))
        out = graph.node("Mul", [x, graph.constant(f"{layer.name}/factor", values[0].reshape(shape))],
                         f"{name}/scaled" if p.bias_term else name)
        if p.bias_term:
            out = graph.node("Add", [out, graph.constant(f"{layer.name}/bias", values[1].reshape(shape))], name)
    else:
        raise BadInput(f"layer {layer.name!r}: the ONNX export does not know layer type {kind!r}")
    graph.tensor[layer.top[0]] = out
    graph.shape[layer.top[0]] = tops[0]


def net_to_onnx(net, caffemodel: Path, *, output: str | None = None, metadata: dict[str, str] | None = None):
    """The ONNX ModelProto of `net` (a deploy NetParameter, or a deploy prototxt path) with the weights of
    `caffemodel`: input `data` (N, 3, crop, crop) float32 with a free batch size, one output `probability`
    (OUTPUT): the blob `output` (default: the net's one output) as (N, classes) float32; `metadata` in
    metadata_props. The caller checks that the weights fit the net first (ilgnet.zoo.fit). BadInput names a layer
    the export does not know, or the file."""
    onnx = import_onnx()
    source = str(net) if isinstance(net, (str, Path)) else f"the {net.name} deploy net"
    with about(source):
        net = read_prototxt(net) if isinstance(net, (str, Path)) else net
        blobs = caffemodel_blobs(caffemodel)
        graph = _Graph(onnx)
        input_blob, input_shape = net_input(net)
        graph.tensor[input_blob] = graph.unique(input_blob)
        graph.shape[input_blob] = input_shape
        outputs = net_outputs(net)
        if output is None and len(outputs) != 1:
            raise BadInput(f"expected one output (the softmax), found {', '.join(outputs) or 'none'}")
        output = output or next(iter(outputs))
        for layer in net.layer:
            if layer.type == "Input":
                graph.shape.update(zip(layer.top, input_shapes(layer)))
                continue
            _layer(graph, layer, blobs)
    helper, floats = onnx.helper, onnx.TensorProto.FLOAT
    model, body = graph.model, graph.proto
    body.name = net.name or "deploy"
    body.input.append(helper.make_tensor_value_info(graph.tensor[input_blob], floats, ["N", *input_shape[1:]]))
    # The output is named for what it is, whatever the net's blob is called (prob, loss3/prob, ...).
    body.node.append(helper.make_node("Identity", [graph.tensor[output]], [OUTPUT], name=OUTPUT))
    body.output.append(helper.make_tensor_value_info(OUTPUT, floats, ["N", *graph.shape[output][1:]]))
    model.ir_version, model.producer_name, model.producer_version = IR_VERSION, PRODUCER, ilgnet.__version__
    model.opset_import.append(helper.make_opsetid("", OPSET))
    model.doc_string = f"{net.name} converted from Caffe by ilgnet {ilgnet.__version__}"
    helper.set_model_props(model, metadata or {})
    return model


def save(model, path: Path) -> Path:
    """Writes an ONNX ModelProto to `path` atomically (complete or not at all; its folder is made) once
    onnx.checker has passed on the written file."""
    onnx = import_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        onnx.save_model(model, str(partial))
        onnx.checker.check_model(str(partial))
    return path
