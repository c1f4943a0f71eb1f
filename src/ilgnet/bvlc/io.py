"""Caffe's files and records: Datum records in LMDBs, mean images, prototxt nets, and nets loaded into pycaffe.

Records, means and nets are read and written through ilgnet.bvlc.proto, so only `load_net` needs pycaffe. The
bytes are Caffe's own: tests compare the records with convert_imageset's and the mean with compute_image_mean's.
"""
from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.text_format import ParseError

from ilgnet.bvlc.proto import TEST, BlobProto, Datum, NetParameter, parse_text, to_text
from ilgnet.errors import BadInput, MissingFile
from ilgnet.fileio import read_text, require

NPY_MAGIC = b"\x93NUMPY"


def datum_frame(channels: int, height: int, width: int, label: int) -> tuple[bytes, bytes]:
    """The bytes a serialized raw Datum (datum_bytes) has before and after its channels x height x width pixels:
    head + pixels + tail is the record, so that the pixels can be copied once, straight into where it goes.

    Protocol buffers write fields in the order of their numbers (channels 1, height 2, width 3, data 4, label 5,
    encoded 7), and messages written one after the other read as one: the head is channels, height and width, then
    data's tag (field 4, length-delimited: 0x22) and its length as a varint; the tail is label and encoded=false."""
    size, length = channels * height * width, bytearray()
    while size > 0x7F:
        length.append(0x80 | size & 0x7F)
        size >>= 7
    length.append(size)
    return (Datum(channels=channels, height=height, width=width).SerializeToString() + b"\x22" + bytes(length),
            Datum(label=label, encoded=False).SerializeToString())


def datum_bytes(chw: np.ndarray, label: int) -> bytes:
    """A serialized Datum as convert_imageset writes it: channels, height, width, the C x H x W uint8 pixels
    (BGR), label, encoded=false."""
    head, tail = datum_frame(*chw.shape, label)
    return b"".join((head, np.ascontiguousarray(chw).tobytes(), tail))


def encoded_datum_bytes(data: bytes, label: int) -> bytes:
    """A serialized Datum as `convert_imageset --encoded` writes it: the encoded image, label, encoded=true (no
    channels, height or width)."""
    return Datum(data=data, label=label, encoded=True).SerializeToString()


def datum_image(datum, *, where: str = "record") -> np.ndarray:
    """A Datum's image as H x W x C (BGR uint8, or float32 for float_data records): encoded ones are decoded as
    Caffe's Data layer decodes them (natively, keeping their channels). Raises BadInput if it does not decode."""
    if datum.encoded:
        import cv2

        image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise BadInput(f"{where} does not decode")
        return image[:, :, None] if image.ndim == 2 else image
    shape = (datum.channels, datum.height, datum.width)
    pixels = np.frombuffer(datum.data, np.uint8) if datum.data else np.asarray(datum.float_data, np.float32)
    return pixels.reshape(shape).transpose(1, 2, 0)


def _open_lmdb(path: Path):
    import lmdb

    if not (Path(path) / "data.mdb").is_file():
        raise MissingFile(f"{path} is not an LMDB (no data.mdb)")
    return lmdb.open(str(path), readonly=True, lock=False, readahead=False)


def lmdb_records(path: Path) -> Iterator[tuple[str, np.ndarray, int]]:
    """(key, image H x W x C, label) for every record, in key order: the order Caffe's Data layer reads."""
    env = _open_lmdb(path)
    try:
        with env.begin() as txn:
            for raw_key, value in txn.cursor():
                key = raw_key.decode(errors="replace")
                datum = Datum.FromString(value)
                yield key, datum_image(datum, where=f"{path}: record {key}"), datum.label
    finally:
        env.close()


def record_shape(path: Path) -> tuple[int, int] | None:
    """(height, width) of the first record of the LMDB at `path` (convert_imageset writes them all at one size when
    it resizes), or None when it is empty."""
    from contextlib import closing

    with closing(lmdb_records(path)) as records:
        first = next(records, None)
    return None if first is None else first[1].shape[:2]


def lmdb_size(path: Path) -> int:
    """How many records the LMDB at `path` holds."""
    env = _open_lmdb(path)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def blobproto_bytes(mean: np.ndarray) -> bytes:
    """A mean image C x H x W as compute_image_mean writes it: a BlobProto with num=1, channels, height, width and
    the float32 data."""
    channels, height, width = mean.shape
    # A list of Python floats fills the repeated field about five times as fast as the array itself, to the same
    # float32 values.
    return BlobProto(num=1, channels=channels, height=height, width=width,
                     data=np.asarray(mean, np.float32).ravel().tolist()).SerializeToString()


def load_mean(path: Path | str) -> np.ndarray:
    """The mean image (3, H, W) float32 from a Caffe .binaryproto or a NumPy .npy; a .npy of 3 values is a
    per-channel mean (3,). Raises MissingFile, or BadInput naming the file for one that does not read as a mean or
    holds NaN or infinite values."""
    path = Path(path)
    require(path, what="mean file")
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            header = f.read(len(NPY_MAGIC))
        if header != NPY_MAGIC:
            raise BadInput(f"{path} is {'not a NumPy .npy file (no .npy header)' if header else 'an empty file'}, "
                           f"not a mean")
        try:
            mean = np.load(path, allow_pickle=False)
        except (OSError, EOFError, ValueError) as err:    # cut short, a bad header, or objects (pickles)
            raise BadInput(f"{path}: not a readable .npy array of numbers ({str(err).rstrip('.')})") from None
    else:
        try:
            blob = BlobProto.FromString(path.read_bytes())
        except DecodeError as err:
            raise BadInput(f"{path} is not a Caffe BlobProto (.binaryproto): {err}") from None
        shape = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height,
                                                                      blob.width)
        values = blob.data or blob.double_data
        if len(values) != np.prod(shape):
            raise BadInput(f"{path}: a BlobProto of shape {shape} holding {len(values)} values")
        mean = np.asarray(values, np.float32).reshape(shape)
    if not (np.issubdtype(mean.dtype, np.integer) or np.issubdtype(mean.dtype, np.floating)):
        raise BadInput(f"{path}: a mean must hold numbers, not {mean.dtype} values")
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if not (mean.shape == (3,) or (mean.ndim == 3 and mean.shape[0] == 3)):
        raise BadInput(f"{path}: expected a mean image of shape (3, H, W) or 3 channel values, got {mean.shape}")
    if not np.isfinite(mean).all():
        raise BadInput(f"{path}: the mean holds {np.count_nonzero(~np.isfinite(mean))} NaN or infinite values")
    return mean


def write_mean(mean: np.ndarray, binaryproto: Path, npy: Path) -> None:
    """Writes a C x H x W mean as compute_image_mean's .binaryproto and as .npy (the same float32 array), each
    under a temporary name first."""
    from ilgnet.fileio import atomic_path

    mean = np.asarray(mean, np.float32)
    with atomic_path(binaryproto) as tmp:
        tmp.write_bytes(blobproto_bytes(mean))
    with atomic_path(npy) as tmp, open(tmp, "wb") as f:
        np.save(f, mean)


def read_prototxt(path: Path | str, message=None):
    """A prototxt file as a NetParameter (or into `message`, e.g. a SolverParameter); BadInput names the file,
    line and column of a syntax error, or says that the file is binary (a caffemodel or a photo given in its place:
    prototxt is text, and binary files hold NUL bytes)."""
    path = Path(path)
    text = read_text(path, errors="replace")
    if "\0" in text:
        raise BadInput(f"{path} is not a prototxt: it holds binary data (a caffemodel, a photo?), not text")
    try:
        return parse_text(text, message if message is not None else NetParameter())
    except ParseError as err:
        shown = "".join(c if c.isprintable() else "?" for c in str(err))
        raise BadInput(f"{path}:{shown}") from None


def load_net(net, phase: int = TEST, *, weights: Path | None = None):
    """A pycaffe caffe.Net of `net` (a NetParameter or a prototxt path) in `phase`, with `weights` copied in by
    layer name when given. Needs Caffe (ilgnet.bvlc.tools.import_caffe)."""
    from ilgnet.bvlc.tools import import_caffe

    caffe = import_caffe()
    options = {} if weights is None else {"weights": str(weights)}
    if isinstance(net, (str, Path)):
        return caffe.Net(str(net), phase, **options)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as handle:
        handle.write(to_text(net))
        handle.flush()
        return caffe.Net(handle.name, phase, **options)


# How Caffe names a snapshot: `<snapshot_prefix>_iter_<N>.caffemodel` and `.solverstate` (`.h5` in HDF5 format).
SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")


def snapshot_iteration(path: Path) -> int:
    """The iteration in a snapshot's name (`<prefix>_iter_<N>.caffemodel` or `.solverstate`, as Caffe names them)."""
    return int(SNAPSHOT_ITER.search(Path(path).name)[1])


def is_snapshot_name(path: Path) -> bool:
    """Whether `path` is named as Caffe names a snapshot (`<prefix>_iter_<N>.caffemodel`, ...)."""
    return SNAPSHOT_ITER.search(Path(path).name) is not None
