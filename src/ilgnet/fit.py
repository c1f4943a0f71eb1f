"""Does a caffemodel fit a net? Caffe copies weights into a net by layer name and silently skips the names it does
not find, so a renamed layer or another variant's model gives random scores; here the model is read in Python and
compared with the net layer by layer before Caffe ever sees it.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf.message import DecodeError

from ilgnet.caffe_proto import NetParameter
from ilgnet.errors import BadInput

Shapes = dict[str, list[tuple[int, ...]]]


def _comparable(dims) -> tuple[int, ...]:
    """A shape without leading ones: legacy 4-d blob shapes pad with them, (1, 1, 2, 1024) ~ (2, 1024)."""
    dims = tuple(dims)
    while len(dims) > 1 and dims[0] == 1:
        dims = dims[1:]
    return dims


def _blob_shape(blob) -> tuple[int, ...]:
    """A BlobProto's shape; V1-era models store num/channels/height/width instead of `shape`."""
    return _comparable(blob.shape.dim if blob.HasField("shape") else
                       (blob.num, blob.channels, blob.height, blob.width))


def read_caffemodel(path: Path) -> NetParameter:
    """A caffemodel as a NetParameter; BadInput naming the file when it does not parse as one."""
    try:
        return NetParameter.FromString(Path(path).read_bytes())
    except DecodeError as err:
        raise BadInput(f"{path}: not a Caffe model (does not parse as a NetParameter: {err})") from None


def stored_shapes(model: NetParameter) -> Shapes:
    """Layer name -> shapes of the blobs a caffemodel stores for it (`layer`, or V1 `layers` in older models)."""
    return {layer.name: [_blob_shape(b) for b in layer.blobs] for layer in [*model.layer, *model.layers]}


def net_shapes(net) -> Shapes:
    """Layer name -> parameter blob shapes of a net (a NetParameter or prototxt path), as Caffe instantiates it."""
    from ilgnet.caffe_io import load_net

    return {name: [_comparable(b.data.shape) for b in blobs] for name, blobs in load_net(net).params.items()}


def check_fits(model_path: Path, deploy_net) -> int:
    """Checks that `model_path` parses as a NetParameter holding, for every layer of `deploy_net` with
    parameters, blobs of the shapes that net expects. Returns how many layers were matched; BadInput otherwise."""
    stored = stored_shapes(read_caffemodel(model_path))
    expected = net_shapes(deploy_net)
    problems = []
    for name, shapes in expected.items():
        if name not in stored:
            problems.append(f"layer {name!r} is missing")
        elif stored[name] != shapes:
            problems.append(f"layer {name!r} has blobs {stored[name]}, the net expects {shapes}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BadInput(f"{model_path}: does not fit the {deploy_net.name or 'deploy'} net: {shown}")
    return len(expected)
