"""Training runs: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

Each run lives in runs/NAME: model.json (what the model is: variant, profile, data, with the mean image and training
list copied beside it), the train_val and solver prototxt regenerated from ilgnet.nets / ilgnet.solvers (with the
solver mode this invocation chose), train.log (Caffe's full output, appended to when a run is resumed),
train_log.csv and curves.png, and snapshots/. Everything is checked before the run folder is made or Caffe starts:
the data, the initial weights against the net (ilgnet.fit), the GPUs.

Ctrl-C: Caffe runs with `-sigint_effect stop`, which ends the current iteration and, because the solver keeps
`snapshot_after_train`, writes a snapshot before exiting; resuming continues from the newest .solverstate.
(`-sigint_effect snapshot` would snapshot and carry on training, so Ctrl-C would never stop it.) SIGHUP keeps
Caffe's default: snapshot and carry on. A run whose loss turns NaN is stopped (ilgnet.caffe_train) and its
snapshots with non-finite weights are set aside as `<snapshot>.diverged`.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ilgnet import defaults
from ilgnet.caffe_io import lmdb_records, lmdb_size, load_mean
from ilgnet.caffe_proto import to_text
from ilgnet.caffe_tools import caffe_invocation, require_gpus, tool_path
from ilgnet.caffe_train import Diverged, run_caffe
from ilgnet.datafolder import DataFolder
from ilgnet.errors import BadInput, MissingFile, ToolFailed, UserError
from ilgnet.fit import check_finetuning, check_fits, nonfinite_layers, read_caffemodel
from ilgnet.models import snapshots, write_model_json
from ilgnet.nets import Variant, fresh_layers, get_variant, train_val
from ilgnet.solvers import get_profile, solver, val_batch_for
from ilgnet.weights import check_file, load_registry

SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")


def _ignore(message: str) -> None:
    pass


class TrainingStopped(KeyboardInterrupt):
    """Caffe stopped early on an interrupt, after writing `snapshot` (a .caffemodel beside its .solverstate)."""

    def __init__(self, snapshot: Path):
        super().__init__(str(snapshot))
        self.snapshot = snapshot


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; `last_good` is the newest snapshot with finite weights (None if none)."""

    def __init__(self, diverged: Diverged, last_good: Path | None):
        kept = f"the last good snapshot is {last_good}" if last_good else "no snapshot was written before it"
        super().__init__(f"training diverged: {diverged}; {kept} (try a lower base_lr)")
        self.iteration, self.last_good = diverged.iteration, last_good


@dataclass(frozen=True)
class Plan:
    """A checked training run: the variant, its data, and the snapshot it resumes or the weights it starts from."""
    variant: Variant
    data: DataFolder
    resume_from: Path | None
    initial: Path | None


def _check_data(data: DataFolder, v: Variant) -> None:
    """The LMDBs' images must be as large as the crop and as the mean image: Caffe would abort on either."""
    data.require_lmdbs()
    mean = load_mean(data.mean_binaryproto)
    for name in ("train", "val"):
        for key, image, _ in lmdb_records(data.lmdb(name)):
            height, width = image.shape[:2]
            if min(height, width) < v.input_size:
                raise BadInput(f"{data.lmdb(name)}: record {key} is {width}x{height}, smaller than the "
                               f"{v.input_size}x{v.input_size} crop of {v.name} (build the LMDBs at {v.resize})")
            if mean.ndim == 3 and mean.shape[1:] != (height, width):
                raise BadInput(f"{data.mean_binaryproto} is {mean.shape[2]}x{mean.shape[1]}, the records of "
                               f"{data.lmdb(name)} {width}x{height}: Caffe needs them equal")
            break
        else:
            raise BadInput(f"{data.lmdb(name)} holds no records")


def _initial_weights(v: Variant, net, weights: Path | None, models_dir: Path,
                     notify: Callable[[str], None]) -> Path | None:
    """The caffemodel training starts from, checked against the net (ilgnet.fit): `weights`, else the variant's
    pretrained model from the registry when it is in `models_dir` (its size and checksums checked too), else None."""
    entry = None
    if weights is None:
        entry = load_registry()[v.pretrained]
        weights = models_dir / entry.file
        if not weights.is_file():
            notify(f"WARNING: {weights} not found, so training starts FROM SCRATCH (random weights), not from "
                   f"ImageNet as in the paper; run `ilgnet weights fetch {entry.name}` to fine-tune instead")
            return None
    fit = check_finetuning(weights, net, fresh_layers(v))
    if entry is not None:
        check_file(entry, weights)
    fresh = ", ".join(fit.missing) or "none"
    notify(f"fine-tuning from {weights}: {len(fit.matched)} layers from it, {len(fit.missing)} start fresh "
           f"({fresh})" + (f"; {len(fit.unused)} of its layers are not used" if fit.unused else ""))
    return weights


def plan(variant: str, profile: str, data_dir: Path, *, run_dir: Path, models_dir: Path, gpu: str | None,
         docker: bool, resume: bool, weights: Path | None, notify: Callable[[str], None]) -> Plan:
    """Every check a run needs before anything is written: profile, data, snapshots, initial weights, GPUs."""
    v = get_variant(variant)
    get_profile(profile)
    data = DataFolder(Path(data_dir).resolve())
    _check_data(data, v)
    if not docker:
        tool_path("caffe")                  # CaffeNotFoundError before a run folder is made
    if gpu is not None and not docker:
        require_gpus(gpu)
    net = train_val(v, train_lmdb=data.lmdb("train"), val_lmdb=data.lmdb("val"), mean_file=data.mean_binaryproto,
                    train_batch=1, val_batch=1)
    states = snapshots(run_dir, "solverstate")
    if resume:
        if not states:
            raise MissingFile(f"no .solverstate in {run_dir / 'snapshots'} to resume from")
        if weights is not None:
            raise BadInput("a resumed run continues from its own snapshot; initial weights do not apply")
        resume_from = states[-1]
        check_fits(resume_from.with_suffix(".caffemodel"), net)
        return Plan(v, data, resume_from, None)
    if states:
        raise BadInput(f"{run_dir} already has snapshots (newest: {states[-1].name}); continue it, or start another "
                       f"run under another name")
    return Plan(v, data, None, _initial_weights(v, net, weights, models_dir, notify))


def write_run_files(run_dir: Path, variant: str, profile: str, data_dir: Path, *, mode: str,
                    train_batch: int | None, val_batch: int | None, max_iter: int | None,
                    display: int | None, test_interval: int | None = None,
                    base_lr: float | None = None, snapshot: int | None = None) -> tuple[Path, object]:
    """Writes run_dir/train_val.prototxt and run_dir/solver.prototxt; returns the solver path and parameters.

    Every path inside is absolute, so Caffe (or the container, which mounts paths where they are) finds them
    from any working directory. The counts must be positive and snapshot non-negative (0: only the final
    snapshot), else BadInput before anything is written. max_iter shortens the profile's run; its test interval
    and snapshot period then follow the run's length (ilgnet.solvers.periods) unless given.
    """
    counts = {"train_batch": train_batch, "val_batch": val_batch, "max_iter": max_iter, "display": display,
              "test_interval": test_interval, "snapshot": snapshot}
    bad = [f"{name} {value}" for name, value in counts.items()
           if value is not None and not (0 if name == "snapshot" else 1) <= value <= defaults.INT32_MAX]
    if bad:
        raise BadInput(f"expected positive counts and a non-negative snapshot period, at most {defaults.INT32_MAX} "
                       f"(Caffe's int32), got {', '.join(bad)}")
    data = DataFolder(data_dir.resolve())
    data.require_lmdbs()
    train_lmdb, val_lmdb, mean_file = data.lmdb("train"), data.lmdb("val"), data.mean_binaryproto
    val_size = lmdb_size(val_lmdb)
    if val_batch is not None and val_batch > val_size:
        raise BadInput(f"val batch {val_batch} is larger than the {val_size} records of {val_lmdb}: a test pass "
                       f"would read most of them more than once")
    train_batch = defaults.TRAIN_BATCH if train_batch is None else train_batch
    val_batch = val_batch_for(val_size, defaults.VAL_BATCH) if val_batch is None else val_batch
    net = train_val(get_variant(variant), train_lmdb=str(train_lmdb), val_lmdb=str(val_lmdb),
                    mean_file=str(mean_file), train_batch=train_batch, val_batch=val_batch)
    run_dir = run_dir.resolve()
    net_path, solver_path = run_dir / "train_val.prototxt", run_dir / "solver.prototxt"
    params = solver(profile, net=str(net_path), snapshot_prefix=str(run_dir / "snapshots" / variant),
                    val_size=val_size, val_batch=val_batch, mode=mode, max_iter=max_iter)
    if display is not None:
        params.display = display
    if test_interval is not None:
        params.test_interval = test_interval
    if base_lr is not None:
        params.base_lr = base_lr
    if snapshot is not None:
        params.snapshot = snapshot
    params.snapshot_after_train = True          # what makes Ctrl-C (sigint_effect stop) leave a snapshot
    if any(layer.type == "BatchNorm" for layer in net.layer):
        # Untrained BatchNorm statistics are zero: a test pass before any training scores nothing (or NaN).
        params.test_initialization = False
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)     # only now that everything is checked
    net_path.write_text(to_text(net))
    solver_path.write_text(to_text(params))
    return solver_path, params


def run_folder(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, resolved. BadInput unless `name` is one plain folder name: no separator, not `.` or `..`, so a
    run never writes outside runs_dir."""
    if name in ("", ".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise BadInput(f"run name {name!r}: expected one folder name (no / or \\, not . or ..)")
    return (Path(runs_dir) / name).resolve()


@contextmanager
def _removed_on_failure(run_dir: Path):
    """Removes the folders this call makes for run_dir (the run folder, and the runs folder when it was missing too)
    if the block fails, so that a run that never reached Caffe leaves nothing behind; never a folder that existed."""
    made = None
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            break
        made = folder
    try:
        yield
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def caffe_command(solver_path: Path, *, gpu: str | None, weights: Path | None, resume_from: Path | None,
                  docker: bool, mounts: list[Path]) -> list[str]:
    """The `caffe train` command line, or the one running it in the Docker image (tools/docker-caffe.sh)."""
    args = ["train", "-solver", str(solver_path), "-sigint_effect", "stop", "-sighup_effect", "snapshot"]
    if resume_from is not None:
        args += ["-snapshot", str(resume_from)]
    elif weights is not None:
        args += ["-weights", str(weights.resolve())]
    return caffe_invocation(args, gpu=gpu, docker=docker, mounts=mounts)


def _set_aside_diverged(run_dir: Path) -> Path | None:
    """Renames the run's snapshots with non-finite weights to `<name>.diverged` (newest first, up to the first good
    one, so that resuming picks that one); returns the newest good snapshot."""
    for caffemodel in reversed(snapshots(run_dir, "caffemodel")):
        if not nonfinite_layers(read_caffemodel(caffemodel)):
            return caffemodel
        for path in (caffemodel, caffemodel.with_suffix(".solverstate")):
            if path.exists():
                path.rename(path.with_name(path.name + ".diverged"))
    return None


def train(variant: str, profile: str, data_dir: Path, *, name: str | None = None,
          runs_dir: Path = defaults.RUNS_DIR, models_dir: Path = defaults.MODELS_DIR, gpu: str | None = None,
          docker: bool = False, resume: bool = False, weights: Path | None = None, max_iter: int | None = None,
          train_batch: int | None = None, val_batch: int | None = None, display: int | None = None,
          test_interval: int | None = None, snapshot: int | None = None, base_lr: float | None = None,
          progress: bool = True, notify: Callable[[str], None] = _ignore) -> Path:
    """Trains `variant` with solver `profile` on data_dir/{train_lmdb,val_lmdb,mean.binaryproto}.

    gpu: None for CPU mode, else Caffe's -gpu value ("0", "0,1", "all"). resume: continue from the run's newest
    .solverstate. weights: the initial caffemodel (default: the variant's pretrained model from the registry when it
    is in models_dir, else random initialisation). notify: receives what the user should know before the run (the
    initial weights and which layers start fresh, a resumption). Returns the run's final caffemodel.
    Raises TrainingStopped (a KeyboardInterrupt) when Caffe stopped early on SIGINT, after its snapshot;
    TrainingDiverged when the loss became NaN or infinite; BadInput/MissingFile before anything is written when
    the data, the weights or the GPUs are not right.
    """
    run_dir = run_folder(runs_dir, name or f"{variant}-{profile}")
    checked = plan(variant, profile, data_dir, run_dir=run_dir, models_dir=Path(models_dir), gpu=gpu, docker=docker,
                   resume=resume, weights=weights, notify=notify)
    resume_from, initial = checked.resume_from, checked.initial
    start_iter = int(SNAPSHOT_ITER.search(resume_from.name)[1]) if resume_from else 0
    with _removed_on_failure(run_dir):
        solver_path, params = write_run_files(run_dir, variant, profile, Path(data_dir),
                                              mode="CPU" if gpu is None else "GPU", train_batch=train_batch,
                                              val_batch=val_batch, max_iter=max_iter, display=display,
                                              test_interval=test_interval, snapshot=snapshot, base_lr=base_lr)
        if not resume_from:
            write_model_json(run_dir, variant=checked.variant.name, profile=profile, data=checked.data,
                             crop=checked.variant.input_size, input_scale=checked.variant.input_scale)
        mounts = [run_dir, Path(data_dir)] + ([initial.parent] if initial else [])
        command = caffe_command(solver_path, gpu=gpu, weights=initial, resume_from=resume_from, docker=docker,
                                mounts=mounts)
    if resume_from:
        notify(f"resuming from {resume_from} (iteration {start_iter})")
    try:
        stopped_early = run_caffe(command, run_dir / "train.log", start_iter=start_iter, max_iter=params.max_iter,
                                  accuracy_blob=checked.variant.accuracy_blob, progress=progress)
    except Diverged as diverged:
        raise TrainingDiverged(diverged, _set_aside_diverged(run_dir)) from None
    if stopped_early:
        raise TrainingStopped(snapshots(run_dir, "caffemodel")[-1])
    final = run_dir / "snapshots" / f"{variant}_iter_{params.max_iter}.caffemodel"
    if not final.is_file():
        raise ToolFailed(f"caffe train finished without writing {final}")
    return final
