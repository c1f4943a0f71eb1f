"""A run's snapshots checked: one is good -- to keep under its name, to resume from, to score -- when its weights
are finite and so are its outputs on a val batch (a net can hold finite weights and still give NaN or infinite
outputs, as a run with a learning rate far too high does). The others are set aside as `<name>.diverged`, with
their .solverstate, so that resuming continues from the newest good one.

The outputs come from the run's own train_val net in its TEST phase, loaded in pycaffe on the CPU with the
snapshot's weights: its Data layer reads the first records of the val LMDB and transforms them as `caffe train`'s
test passes do, and every blob of the forward pass (the loss and accuracy outputs among them) must be finite.
Without pycaffe (a run in the Docker image on a machine without Caffe) only the weights are checked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ilgnet.bvlc.io import load_net
from ilgnet.bvlc.proto import TEST
from ilgnet.bvlc.tools import import_caffe
from ilgnet.errors import BadInput, CaffeNotFoundError
from ilgnet.nets import Variant, train_val
from ilgnet.bvlc.fit import nonfinite_layers, read_caffemodel
from ilgnet.bvlc.io import snapshot_iteration
from ilgnet.zoo.runfolder import RunFolder

CHECK_BATCH = 4         # val records forwarded per check: a few seconds on a CPU for the `ilgnet` net
SHOWN = 4


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_net(variant: Variant, data, val_size: int):
    """The net a snapshot's outputs are checked on: the variant's train_val on the data folder `data` (a
    DataFolder), reading CHECK_BATCH val records (fewer when the val set is smaller) in its TEST phase."""
    return train_val(variant, train_lmdb=str(data.lmdb("train")), val_lmdb=str(data.lmdb("val")),
                     mean_file=str(data.mean_binaryproto), train_batch=1, val_batch=min(CHECK_BATCH, val_size))


def snapshot_problem(caffemodel: Path, net) -> str | None:
    """What is wrong with a snapshot, in words that follow its name ("holds NaN or infinite weights in ..."), or
    None when it is good: its weights must be readable and finite, and its outputs on a val batch of `net` (from
    check_net) finite."""
    try:
        bad = nonfinite_layers(read_caffemodel(caffemodel))
    except BadInput as err:
        return f"cannot be read back ({err})"
    if bad:
        return f"holds NaN or infinite weights (layers {_names(bad)})"
    try:
        caffe = import_caffe()
    except CaffeNotFoundError:
        return None
    caffe.set_mode_cpu()
    loaded = load_net(net, TEST, weights=caffemodel)
    loaded.forward()
    bad = [name for name, blob in loaded.blobs.items() if not np.isfinite(blob.data).all()]
    if bad:
        batch = next(layer.data_param.batch_size for layer in net.layer if layer.type == "Data"
                     and any(rule.phase == TEST for rule in layer.include))
        return f"gives NaN or infinite outputs on a val batch of {batch} (blobs {_names(bad)})"
    return None


def set_aside(run_dir: Path, net, *, from_iteration: int | None = None) -> Path | None:
    """Renames the run's snapshots from iteration `from_iteration` on (where it went wrong), and then, newest first
    up to the first good one, those with a snapshot_problem, to `<name>.diverged` with their .solverstate; returns
    the newest good .caffemodel (None if none is left)."""
    for caffemodel in reversed(RunFolder(run_dir).snapshots("caffemodel")):
        late = from_iteration is not None and snapshot_iteration(caffemodel) >= from_iteration
        if not late and snapshot_problem(caffemodel, net) is None:
            return caffemodel
        for path in (caffemodel, caffemodel.with_suffix(".solverstate")):
            if path.exists():
                path.rename(path.with_name(path.name + ".diverged"))
    return None
