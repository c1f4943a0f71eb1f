"""Does a caffemodel fit a net? Caffe copies weights into a net by layer name and silently skips the names it does
not find (ILGNet's own deploy file once renamed two head layers, and its users got random scores for months), its
C++ parser reads an HTML page as a model with no layers, and a shape that differs aborts the process. So the
caffemodel is read here in Python first and compared with the net layer by layer (the net's parameter shapes from
ilgnet.bvlc.shapes), before Caffe ever sees it.

For scoring, every layer of the net that has parameters must get blobs of the same count and shapes from a layer of
the same name, and the caffemodel may hold no layer the model's own training net does not have (a BatchNorm
variant's weights in the plain net would otherwise load, minus their BatchNorm). For fine-tuning, the layers the
variant adds to its pretrained trunk start fresh; every other layer must come from the pretrained model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from ilgnet.bvlc.proto import TRAIN, NetParameter, SolverState
from ilgnet.bvlc.shapes import param_shapes
from ilgnet.errors import BadInput, MissingFile
from ilgnet.bvlc.io import SNAPSHOT_ITER
from ilgnet.fileio import looks_like_html, page_title, require

Shapes = dict[str, list[tuple[int, ...]]]
SHOWN = 4           # names listed per kind of problem before "and N more"


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
    """A caffemodel as a NetParameter. BadInput, naming the file and what it is, for an empty file, an HTML page
    (what a refused download leaves), a file cut short or otherwise not a NetParameter, and one with no layers."""
    path = Path(path)
    data = require(path, what="caffemodel").read_bytes()
    if not data:
        raise BadInput(f"{path} is an empty file, not a Caffe model")
    if looks_like_html(data[:1024]):
        title = page_title(data[:1 << 20].decode("utf-8", "replace"))
        raise BadInput(f"{path} is an HTML page titled {title or 'untitled'!r}, not a Caffe model (what a refused "
                       f"download leaves behind)")
    try:
        model = NetParameter.FromString(data)
    except DecodeError as err:
        raise BadInput(f"{path}: not a Caffe model (cut short, or not a NetParameter: {err})") from None
    if not any(layer.blobs for layer in [*model.layer, *model.layers]):
        raise BadInput(f"{path} holds no layers with weights: not a trained Caffe model")
    return model


def stored_shapes(model: NetParameter) -> Shapes:
    """Layer name -> shapes of the blobs a caffemodel stores for it (`layer`, or V1 `layers` in older models)."""
    return {layer.name: [_blob_shape(b) for b in layer.blobs] for layer in [*model.layer, *model.layers]
            if layer.blobs}


def nonfinite_layers(model: NetParameter) -> list[str]:
    """Layers of a caffemodel holding NaN or infinite values (the weights of a diverged training run)."""
    return [layer.name for layer in [*model.layer, *model.layers]
            if any(not np.isfinite(np.asarray(b.data or b.double_data)).all() for b in layer.blobs)]


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


@dataclass
class Fit:
    """How a caffemodel's layers meet a net's: `matched` get their blobs, `missing` get nothing, `mismatched` find
    blobs of other shapes, `unused` are the caffemodel's layers the net has no use for."""
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stored: Shapes, expected: Shapes) -> "Fit":
        """Compares a caffemodel's blob shapes (stored_shapes) with a net's (ilgnet.bvlc.shapes.param_shapes)."""
        fit = cls(unused=[name for name in stored if name not in expected])
        for name, shapes in expected.items():
            if name not in stored:
                fit.missing.append(name)
            elif stored[name] != [_comparable(s) for s in shapes]:
                fit.mismatched.append(name)
                fit.messages.append(f"layer {name!r} has blobs {stored[name]}, the net expects "
                                    f"{[_comparable(s) for s in shapes]}")
            else:
                fit.matched.append(name)
        return fit


def _refuse(path: Path, net: str, problems: list[str]) -> None:
    if problems:
        raise BadInput(f"{path}: does not fit {net}: {'; '.join(problems)}")


def check_fits(model_path: Path, net, *, allowed_unused=frozenset(), source: Path | str | None = None) -> int:
    """Checks that the caffemodel at `model_path` gives every layer of `net` (a NetParameter) that has parameters
    blobs of the shapes it needs, holds no other layer with weights outside `allowed_unused`, and holds only finite
    values. Returns how many layers were matched; BadInput names the file (and `source`, the prototxt file the net
    was read from) and the layers otherwise."""
    model = read_caffemodel(model_path)
    fit = Fit.of(stored_shapes(model), param_shapes(net))
    problems = list(fit.messages)
    if fit.missing:
        problems.append(f"no weights for layers {_names(fit.missing)}")
    if fit.unused and (problems or set(fit.unused) - set(allowed_unused)):
        problems.append(f"the caffemodel's layers {_names(fit.unused)} are not in the net")
    _refuse(model_path, f"the net of {source}" if source else f"the {net.name or 'deploy'} net", problems)
    if bad := nonfinite_layers(model):
        raise BadInput(f"{model_path}: layers {_names(bad)} hold NaN or infinite values (a diverged training run?)")
    return len(fit.matched)


def check_finetuning(model_path: Path, net, fresh: set[str]) -> Fit:
    """Checks the pretrained caffemodel at `model_path` as initial weights for `net` (a training NetParameter):
    every layer not in `fresh` (the layers the variant adds to its pretrained trunk) must get blobs of its shapes,
    and no layer may find blobs of other shapes (Caffe would abort). Returns the Fit: `matched` come from the
    pretrained model, `missing` start fresh. BadInput names the file and layers otherwise."""
    model = read_caffemodel(model_path)
    fit = Fit.of(stored_shapes(model), param_shapes(net))
    problems = list(fit.messages)
    if lacking := [name for name in fit.missing if name not in fresh]:
        problems.append(f"no weights for the pretrained layers {_names(lacking)}")
    _refuse(model_path, f"the {net.name} net", problems)
    if bad := nonfinite_layers(model):
        raise BadInput(f"{model_path}: layers {_names(bad)} hold NaN or infinite values")
    return fit


def check_solverstate(path: Path, net) -> int:
    """Checks, before Caffe reads it, that `caffe train -snapshot` can resume the training net `net` (a train_val
    NetParameter) from the .solverstate at `path`: Caffe aborts on a file cut short, on weights it cannot find, and
    on a history of another length. The file must parse as a SolverState whose iteration is the one in its name,
    whose history holds one blob of the right shape and size per learnable parameter blob of `net` (SGD's momentum,
    in the net's order), all finite, and whose `learned_net` (the .caffemodel written with it) exists and fits `net`
    (check_fits). Returns the iteration; BadInput names the file and what is wrong."""
    path = Path(path)
    data = require(path, what="solver state").read_bytes()
    try:
        state = SolverState.FromString(data)
    except DecodeError as err:
        raise BadInput(f"{path}: not a Caffe solver state (cut short, or not a SolverState: {err})") from None
    named = SNAPSHOT_ITER.search(path.name)
    expected = [_comparable(shape) for shapes in param_shapes(net, TRAIN).values() for shape in shapes]
    found = [_blob_shape(blob) for blob in state.history]
    if named and state.iter != int(named[1]):
        raise BadInput(f"{path}: holds iteration {state.iter}, its name says {named[1]} (an empty or damaged file?)")
    if len(found) != len(expected):
        raise BadInput(f"{path}: holds {len(found)} history blobs, the {net.name or 'training'} net has "
                       f"{len(expected)} learnable parameter blobs (cut short, or the state of another net)")
    if (mismatch := next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), None)) is not None:
        raise BadInput(f"{path}: history blob {mismatch} has shape {found[mismatch]}, the net's parameter blob "
                       f"{expected[mismatch]}")
    values = [np.asarray(blob.data or blob.double_data) for blob in state.history]
    if (short := next((i for i, (v, shape) in enumerate(zip(values, found)) if v.size != np.prod(shape)), None)) \
            is not None:
        raise BadInput(f"{path}: history blob {short} holds {values[short].size} values for its shape "
                       f"{found[short]} (cut short?)")
    if any(not np.isfinite(v).all() for v in values):
        raise BadInput(f"{path}: its history holds NaN or infinite values (a diverged training run?)")
    if not state.learned_net:
        raise BadInput(f"{path}: names no .caffemodel (learned_net) to resume from")
    learned = Path(state.learned_net)
    if not learned.is_file():
        raise MissingFile(f"{path}: names its weights {learned}, which does not exist (was the run folder moved?)")
    check_fits(learned, net)
    return state.iter
