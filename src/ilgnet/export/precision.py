"""fp16 and int8 versions of an exported ONNX file (ilgnet.export.converter), and what the machine's CPU offers them.

fp16: every float tensor inside the graph as float16, the input and output kept float32
(onnxruntime.transformers.float16): half the size, not faster on a CPU.

int8: onnxruntime's static quantization in the QDQ format (onnxruntime.quantization.quantize_static): the weights of
every Convolution and InnerProduct as int8, per output channel (symmetric), the activations between them as uint8
with a scale and zero point fixed by calibration, the range (MinMax) each tensor takes over the calibration photos
the caller preprocesses as the Scorer does. onnxruntime's CPU provider fuses each QuantizeLinear / DequantizeLinear
pair around a Conv or Gemm into an integer kernel (QLinearConv, QGemm), where the time of ILGNet's forward pass goes.
How much faster depends on the CPU's integer instructions (`cpu_kernels`): AVX2 multiplies 8-bit pairs in two
steps, AVX-512 VNNI and AVX-VNNI in one, AMX in tiles. Without VNNI the weights keep 7 bits (`reduce_range`): AVX2's
two-step product of uint8 x int8 pairs can saturate 16 bits otherwise (onnxruntime's quantization guide).

Both are approximations of the fp32 net: `ilgnet export --check` measures how far on photos not used to calibrate.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ilgnet.defaults import PRECISIONS
from ilgnet.errors import BadInput
from ilgnet.fileio import atomic_path
from ilgnet.export.converter import import_onnx, net_to_onnx, save

QUANTIZATION = ("onnxruntime static quantization, QDQ: Conv (average pools as depthwise Conv) and Gemm weights int8 "
                "per output channel (symmetric), activations uint8 calibrated (MinMax); LRN kept in float")
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "amx_int8": "AMX-INT8"}       # /proc/cpuinfo flag -> the name Intel and AMD give the instructions


def cpu_kernels(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The integer instruction sets int8 kernels can use on this machine (names of CPU_FLAGS' values, in its
    order), read from the `flags` line of `cpuinfo`; [] where there is no such file (not Linux) or no such flag."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [name for flag, name in CPU_FLAGS.items() if flag in flags]


def has_vnni(kernels: Iterable[str]) -> bool:
    """Whether `kernels` (cpu_kernels) include a one-step 8-bit dot product (VNNI or AMX)."""
    return any("VNNI" in name or "AMX" in name for name in kernels)


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger (pre-processing, per-tensor ranges): silenced."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _fp16(source: Path, out: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    onnx = import_onnx()
    converted = OnnxModel(convert_float_to_float16(onnx.load_model(str(source)), keep_io_types=True))
    converted.topological_sort()            # the input's Cast comes last otherwise, which onnx.checker refuses
    onnx.save_model(converted.model, str(out))


def pools_as_convolutions(model) -> int:
    """Turns every 2-D AveragePool of the ModelProto `model` that counts its padding (or has none) into the depthwise
    Conv that computes the same (each channel's window times 1 / its size); returns how many. Quantized, an
    AveragePool becomes onnxruntime's QLinearAveragePool, which took a sixth of ILGNet's int8 forward pass, where a
    quantized depthwise Conv runs as QLinearConv."""
    onnx = import_onnx()
    inferred = onnx.shape_inference.infer_shapes(model).graph
    channels = {value.name: value.type.tensor_type.shape.dim[1].dim_value
                for value in [*inferred.value_info, *inferred.input] if len(value.type.tensor_type.shape.dim) == 4}
    changed = 0
    for node in model.graph.node:
        found = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(found.get("kernel_shape", []))
        counted = found.get("count_include_pad") or not any(found.get("pads", []))
        if node.op_type != "AveragePool" or len(kernel) != 2 or found.get("ceil_mode") or not counted \
                or not channels.get(node.input[0]):
            continue
        count = channels[node.input[0]]
        weights = np.full((count, 1, *kernel), 1 / (kernel[0] * kernel[1]), np.float32)
        model.graph.initializer.append(onnx.numpy_helper.from_array(weights, f"{node.name}/depthwise"))
        node.CopyFrom(onnx.helper.make_node("Conv", [node.input[0], f"{node.name}/depthwise"], list(node.output),
                                            name=node.name, kernel_shape=kernel, group=count,
                                            strides=found.get("strides", [1, 1]), pads=found.get("pads", [0] * 4)))
        changed += 1
    return changed


def quantize_int8(source: Path, out: Path, calibration: Iterable[np.ndarray], *,
                  reduce_range: bool | None = None) -> int:
    """Writes the int8 QDQ version of the fp32 ONNX file `source` to `out` (see the module's doc), calibrated on
    `calibration`: batches of net inputs (N, 3, crop, crop) float32, preprocessed as the Scorer does. reduce_range:
    7-bit weights (default: where the CPU has no VNNI). Average pools become depthwise convolutions first
    (pools_as_convolutions) and the LRN layers' nodes stay float. Returns the photos (inputs) calibrated on; BadInput
    when `calibration` is empty."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = [np.ascontiguousarray(batch, np.float32) for batch in calibration if len(batch)]
    if not batches:
        raise BadInput("no photo to calibrate the int8 file with")
    model = import_onnx().load_model(str(source))
    pools_as_convolutions(model)
    input_name = model.graph.input[0].name
    lrn = {node.name for node in model.graph.node if "/lrn_" in node.name}
    lrn |= {node.name for node in model.graph.node if any(name in lrn for name in node.input)}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    if reduce_range is None:
        reduce_range = not has_vnni(cpu_kernels())
    with _quiet_onnxruntime():
        quantize_static(model, str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=sorted(lrn),
                        extra_options={"WeightSymmetric": True})
    return sum(len(batch) for batch in batches)


def export_file(net, caffemodel: Path, out: Path, *, metadata: dict[str, str], output: str | None = None,
                precision: str = "fp32", fp32: Path | None = None,
                calibration: Iterable[np.ndarray] | None = None) -> Path:
    """Writes `net` with the weights of `caffemodel` (checked to fit it by the caller) to the ONNX file `out` at
    `precision` (one of PRECISIONS), atomically, with `metadata`, after onnx.checker has passed on it. fp16 and int8
    are converted from an fp32 file, left at `fp32` when given (else in a temporary folder beside `out`); int8 needs
    `calibration` (quantize_int8). BadInput for an unknown precision or int8 without calibration."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == "int8" and calibration is None:
        raise BadInput("an int8 export needs photos to calibrate it with")
    model = net_to_onnx(net, caffemodel, output=output, metadata={**metadata, "precision": precision})
    if precision == "fp32":
        return save(model, out)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as folder:
        source = save(model, fp32 or Path(folder) / "fp32.onnx")
        del model
        with atomic_path(out) as partial:
            if precision == "fp16":
                _fp16(source, partial)
            else:
                quantize_int8(source, partial, calibration)
            import_onnx().checker.check_model(str(partial))
    return out
