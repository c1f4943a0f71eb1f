"""What an exported ONNX file says about itself: the metadata `ilgnet export` writes into it (`identity`: variant,
labels, preprocessing, the source caffemodel's sha256, precision, the mean image), read back without parsing the
graph (`read_metadata`), and the checks that a file is one `ilgnet export` wrote (`exported`, `check_exported`).
ilgnet.zoo.onnx_export writes the graph; ilgnet.zoo.onnx_precision its fp16 and int8 versions.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

import ilgnet
from ilgnet.errors import BadInput
from ilgnet.fileio import file_digest

FORMAT = "3"            # the converter's own version: part of every cache key, raised when its graphs change


def mean_text(mean: np.ndarray) -> str:
    """The mean image (C, H, W) or per-channel mean (C,) as metadata: its .npy bytes, base64."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(mean, np.float32))
    return base64.b64encode(buffer.getvalue()).decode()


def mean_of(text: str) -> np.ndarray:
    """The mean image from `mean_npy_base64` metadata (mean_text)."""
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def preprocessing(resize: int, crop: int, scale: float) -> str:
    """How to make the net's input from a photo, exactly as the Scorer and Caffe's TEST phase do (the `preprocessing`
    metadata of an export; docs/SCORING.md has it as code)."""
    offset = (resize - crop) // 2
    return (f"decode to 8-bit BGR (OpenCV cv2.imread or cv2.imdecode, IMREAD_COLOR); resize to {resize}x{resize} with "
            f"cv2.resize(image, ({resize}, {resize}), interpolation=cv2.INTER_LINEAR) (Pillow's BILINEAR gives other "
            f"pixels and can change labels near 0.5); as float32 (3, {resize}, {resize}), channels B, G, R, subtract "
            f"the mean image (mean_npy_base64: (3, {resize}, {resize}), or one value per channel); multiply by "
            f"{scale:g}; take the centre {crop}x{crop} crop (rows and columns {offset} to {offset + crop - 1}); input "
            f"`data` (N, 3, {crop}, {crop}) float32; output `probability` (N, 2): p_low, p_high")


def identity(variant, caffemodel: Path, *, caffemodel_sha256: str | None = None, precision: str = "fp32",
             mean: np.ndarray | None = None, mean_source: str = "") -> dict[str, str]:
    """The metadata an exported file carries: what it is (variant, labels, input and preprocessing, the source
    caffemodel's sha256, the toolkit version and precision) and, given, the mean image. `variant` is a Variant
    of ilgnet.nets, or a name for a deploy file of no known variant (then no sizes are recorded)."""
    from ilgnet.zoo.models import LABELS

    facts = {"variant": getattr(variant, "name", str(variant)), "labels": json.dumps(LABELS),
             "output": "probability (N, 2) float32: the softmax, p_low and p_high (p_high: the probability that the "
                       "photo is of high aesthetic quality)", "caffemodel": Path(caffemodel).name,
             "caffemodel_sha256": caffemodel_sha256 or file_digest(caffemodel), "ilgnet_version": ilgnet.__version__,
             "format": FORMAT, "precision": precision}
    if hasattr(variant, "input_size"):
        facts.update(crop=str(variant.input_size), resize=str(variant.resize), input_scale=repr(variant.input_scale),
                     channel_order="BGR", resize_method="cv2.resize INTER_LINEAR",
                     crop_offset=str((variant.resize - variant.input_size) // 2),
                     preprocessing=preprocessing(variant.resize, variant.input_size, variant.input_scale))
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


