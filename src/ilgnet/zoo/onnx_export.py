"""A trained model as an ONNX file: the deploy net (a NetParameter of ilgnet.nets, or a deploy prototxt) and the
caffemodel's blobs turned into an ONNX graph with the `onnx` package, layer by layer, with Caffe's arithmetic kept
where ONNX's defaults differ, and the model's identity in the file's metadata.

ONNX is what current runtimes read (onnxruntime on CPUs, CUDA and mobile; PyTorch through onnx2torch), while
Caffe, OpenCV 5 and the other converters have dropped Caffe's format. The graph takes what Caffe's deploy net takes,
`data` (N, 3, crop, crop) float32: the photo resized to resize x resize, BGR, minus the mean image at the crop's
offset, times the variant's input scale, cropped; it gives the softmax (N, 2), (p_low, p_high). The mean image is
not subtracted inside the graph: it is subtracted at each crop's own offset (the centre for scoring, five offsets
with --oversample), which one Sub of a fixed crop cannot express, and keeping the input Caffe's lets every engine
share the Scorer's preprocessing. The mean image travels in the metadata instead (`mean_npy_base64`: the .npy
file's bytes, base64), so one .onnx file is enough to score with.

Layers and the care each needs (Caffe's source, layers/*.cpp, is the reference):
  Convolution    Conv: pads, strides, dilations, group; weights (M, C / group, kh, kw)
  Pooling        Caffe rounds output sizes up and clips a last window that would start in the padding
                 (ilgnet.bvlc.shapes.pool_geometry); ONNX gets those sizes through explicit end pads with
                 ceil_mode 0, so no runtime's reading of ceil_mode matters. MAX: padding never wins. AVE: Caffe
                 divides by the window clipped to the padded input (padding counted, what lies beyond it not):
                 count_include_pad=1 where every window lies inside the padded input, else the sum of an
                 explicitly padded input times Caffe's divisors
  LRN            ACROSS_CHANNELS: Caffe's k + alpha / size * sum of squares is ONNX's bias + alpha / size * ...
  ReLU           Relu, or LeakyRelu for a negative_slope
  InnerProduct   Flatten at the layer's axis + Gemm (transB=1; transB=0 for a transposed layer)
  BatchNorm      the stored mean and variance divided by the moving-average scale factor (blob 2; 0 means 0)
  Scale          Mul (and Add for the bias) with (C, 1, 1) initialisers
  Concat, Softmax, Dropout (nothing at inference), Split (the same tensor)
In-place layers (Caffe's top = bottom) write a new tensor each time, `BLOB/LAYER`: ONNX assigns each name once.

Opset 17 and IR version 8: what onnxruntime 1.14 and later read, and every layer above has been in ONNX since.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np

import ilgnet
from ilgnet import defaults
from ilgnet.bvlc.io import read_prototxt
from ilgnet.bvlc.shapes import input_shapes, layer_shapes, net_input, net_outputs, pool_geometry, spatial
from ilgnet.errors import BadInput, MissingPackage, about
from ilgnet.fileio import atomic_path, file_digest
from ilgnet.nets import VARIANTS
from ilgnet.zoo.fit import read_caffemodel

OPSET = 17
IR_VERSION = 8
FORMAT = "1"            # the converter's own version: part of every cache key, raised when its graphs change
PRECISIONS = ("fp32", "fp16", "int8")
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
        out = graph.node("LRN", [x], name, size=p.local_size, alpha=p.alpha, beta=p.beta, bias=p.k)
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
    `caffemodel`: input `data` (N, 3, crop, crop) float32 with a free batch size, one output, the blob `output`
    (default: the net's one output) as (N, classes) float32; `metadata` in metadata_props. The caller checks that
    the weights fit the net first (ilgnet.zoo.fit). BadInput names a layer the export does not know, or the file."""
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
    body.output.append(helper.make_tensor_value_info(graph.tensor[output], floats, ["N", *graph.shape[output][1:]]))
    model.ir_version, model.producer_name, model.producer_version = IR_VERSION, PRODUCER, ilgnet.__version__
    model.opset_import.append(helper.make_opsetid("", OPSET))
    model.doc_string = f"{net.name} converted from Caffe by ilgnet {ilgnet.__version__}"
    helper.set_model_props(model, metadata or {})
    return model


def mean_text(mean: np.ndarray) -> str:
    """The mean image (C, H, W) or per-channel mean (C,) as metadata: its .npy bytes, base64."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(mean, np.float32))
    return base64.b64encode(buffer.getvalue()).decode()


def mean_of(text: str) -> np.ndarray:
    """The mean image from `mean_npy_base64` metadata (mean_text)."""
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def identity(variant, caffemodel: Path, *, caffemodel_sha256: str | None = None, precision: str = "fp32",
             mean: np.ndarray | None = None, mean_source: str = "") -> dict[str, str]:
    """The metadata an exported file carries: what it is (variant, labels, input and preprocessing, the source
    caffemodel's sha256, the toolkit version and precision) and, given, the mean image. `variant` is a Variant
    of ilgnet.nets, or a name for a deploy file of no known variant (then no sizes are recorded)."""
    from ilgnet.zoo.models import LABELS

    facts = {"variant": getattr(variant, "name", str(variant)), "labels": json.dumps(LABELS),
             "output": "softmax (N, 2): p_low, p_high", "caffemodel": Path(caffemodel).name,
             "caffemodel_sha256": caffemodel_sha256 or file_digest(caffemodel), "ilgnet_version": ilgnet.__version__,
             "format": FORMAT, "precision": precision}
    if hasattr(variant, "input_size"):
        facts.update(crop=str(variant.input_size), resize=str(variant.resize), input_scale=repr(variant.input_scale),
                     preprocessing=f"decode as BGR, resize to {variant.resize}x{variant.resize} (bilinear), "
                                   f"subtract the mean image, multiply by {variant.input_scale:g}, take the centre "
                                   f"{variant.input_size}x{variant.input_size} crop; input (N, 3, "
                                   f"{variant.input_size}, {variant.input_size}) float32")
    if mean is not None:
        facts.update(mean_npy_base64=mean_text(mean), mean_source=mean_source,
                     mean_shape="x".join(map(str, np.shape(mean))))
    return facts


def _varint(stream) -> int:
    """A protobuf varint read from `stream`; EOFError at its end."""
    value, shift = 0, 0
    while byte := stream.read(1):
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise EOFError("cut short")


def _fields(stream, size: int, wanted: set[int]):
    """(field number, bytes) of the length-delimited fields in `wanted` among a protobuf message's top-level fields
    (the message is the `size` bytes of `stream` from where it is), every other field skipped by seeking."""
    end = stream.tell() + size
    while stream.tell() < end:
        tag = _varint(stream)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _varint(stream)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, io.SEEK_CUR)
        elif wire == 2:
            length = _varint(stream)
            if stream.tell() + length > end:
                raise EOFError("a field runs past the end")
            if field in wanted:
                yield field, stream.read(length)
            else:
                stream.seek(length, io.SEEK_CUR)
        else:
            raise ValueError(f"wire type {wire} at byte {stream.tell()}")


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (ModelProto field 14, StringStringEntryProto key 1 and value 2), read in
    protobuf's wire format with every other field skipped: a 600 MB model answers in a millisecond (onnx.load
    would parse its whole graph) and reading needs no onnx package. BadInput for a file that is not protobuf."""
    path = Path(path)
    props = {}
    try:
        with open(path, "rb") as stream:
            for _, entry in _fields(stream, path.stat().st_size, {14}):
                pair = dict(_fields(io.BytesIO(entry), len(entry), {1, 2}))
                props[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
    except (EOFError, ValueError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: not an ONNX model ({err})") from None
    return props


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


def is_onnx(path: Path | str) -> bool:
    """Whether `path` names an ONNX file (by its suffix, .onnx)."""
    return Path(path).suffix.lower() == ".onnx"


def exported(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file `ilgnet export` wrote (see identity); BadInput for any other file."""
    facts = read_metadata(path)
    if "ilgnet_version" not in facts or "variant" not in facts:
        raise BadInput(f"{path}: an ONNX file without ilgnet's metadata (variant, mean, labels): not one `ilgnet "
                       f"export` wrote, so its net and preprocessing are unknown")
    return facts


def check_exported(path: Path, variant: str | None) -> dict[str, str]:
    """The metadata of an exported file (exported), checked to hold `variant`'s net when one is given."""
    facts = exported(path)
    if variant is not None and facts["variant"] != variant:
        raise BadInput(f"{path} holds the {facts['variant']} net, not {variant}")
    return facts


def _convert(source: Path, out: Path, precision: str) -> None:
    """The fp32 ONNX file `source` written to `out` at `precision`: fp16, every float tensor inside the graph as
    float16 with the input and output kept float32 (onnxruntime.transformers.float16); int8, dynamic quantization
    of the InnerProduct layers' Gemm weights (onnxruntime.quantization.quantize_dynamic, int8 weights, activations
    quantized per batch at run time). Both are approximations of the fp32 net."""
    onnx = import_onnx()
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from onnxruntime.transformers.onnx_model import OnnxModel

        converted = OnnxModel(convert_float_to_float16(onnx.load_model(str(source)), keep_io_types=True))
        converted.topological_sort()            # the input's Cast comes last otherwise, which onnx.checker refuses
        onnx.save_model(converted.model, str(out))
        return
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)        # its advice to pre-process before quantizing is for QDQ
    try:
        quantize_dynamic(source, out, op_types_to_quantize=["Gemm", "MatMul"], weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().setLevel(quiet)


def export_file(net, caffemodel: Path, out: Path, *, metadata: dict[str, str], output: str | None = None,
                precision: str = "fp32", fp32: Path | None = None) -> Path:
    """Writes `net` with the weights of `caffemodel` (checked to fit it by the caller) to the ONNX file `out` at
    `precision` (one of PRECISIONS), atomically, with `metadata`, after onnx.checker has passed on it. fp16 and int8
    are converted from an fp32 file, left at `fp32` when given (else in a temporary folder beside `out`)."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    model = net_to_onnx(net, caffemodel, output=output, metadata={**metadata, "precision": precision})
    if precision == "fp32":
        return save(model, out)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as folder:
        source = save(model, fp32 or Path(folder) / "fp32.onnx")
        del model
        with atomic_path(out) as partial:
            _convert(source, partial, precision)
            import_onnx().checker.check_model(str(partial))
    return out


def _cache_key(path: Path) -> str | None:
    """The cache_key in the metadata of a kept export; None for a file without one or not readable as ONNX."""
    try:
        return read_metadata(path).get("cache_key")
    except BadInput:
        return None


def cached_export(net, caffemodel: Path, *, variant: str, output: str | None = None,
                  cache: Path = defaults.CACHE_DIR) -> Path:
    """The fp32 ONNX file of `net` (a NetParameter or a deploy prototxt) with the weights of `caffemodel` (checked
    to fit by the caller), exported once and kept beside the caffemodel as NAME.KEY.onnx, or under `cache`/onnx
    where that folder cannot be written. KEY hashes the caffemodel's sha256, the variant, the net, the output and
    the toolkit's and converter's versions, so a changed file or toolkit exports anew; a kept file whose metadata
    do not carry that key (cut short, or another file under its name) is exported again. The file carries no mean:
    the caller subtracts it."""
    caffemodel = Path(caffemodel)
    digest = file_digest(caffemodel)
    text = Path(net).read_bytes() if isinstance(net, (str, Path)) else net.SerializeToString()
    parts = [digest, variant, hashlib.sha256(text).hexdigest(), output or "", ilgnet.__version__, FORMAT]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    name = f"{caffemodel.stem}.{key}.onnx"
    places = [caffemodel.parent / name, Path(cache) / "onnx" / name]
    for path in places:
        if path.is_file() and _cache_key(path) == key:
            return path
    known = VARIANTS.get(variant, variant)
    model = net_to_onnx(net, caffemodel, output=output,
                        metadata={**identity(known, caffemodel, caffemodel_sha256=digest), "cache_key": key})
    for path in places:
        try:
            return save(model, path)
        except OSError:
            continue
    raise BadInput(f"cannot write the ONNX export of {caffemodel} beside it nor under {cache}")
