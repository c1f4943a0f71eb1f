"""Training runs: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

Each run lives in runs/NAME: model.json (what the model is: variant, profile, data, with the mean image and training
list copied beside it), the train_val and solver prototxt regenerated from ilgnet.nets / ilgnet.nets.solvers (with the
solver mode this invocation chose), train.log (Caffe's full output, appended to when a run is resumed),
train_log.csv and curves.png, and snapshots/. Everything is checked before the run folder is made or Caffe starts:
the data, the initial weights against the net (ilgnet.zoo.fit), the GPUs.

Ctrl-C: Caffe runs with `-sigint_effect stop`, which ends the current iteration and, because the solver keeps
`snapshot_after_train`, writes a snapshot before exiting; resuming continues from the newest .solverstate.
(`-sigint_effect snapshot` would snapshot and carry on training, so Ctrl-C would never stop it.) SIGHUP keeps
Caffe's default: snapshot and carry on. A run whose loss turns NaN is stopped (ilgnet.training.monitor) and its
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
from ilgnet.bvlc.io import lmdb_records, lmdb_size, load_mean
from ilgnet.bvlc.proto import to_text
from ilgnet.bvlc.tools import caffe_invocation, require_gpus, tool_path
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile, ToolFailed, UserError
from ilgnet.nets import Variant, fresh_layers, get_variant, train_val
from ilgnet.nets.solvers import get_profile, solver, val_batch_for
from ilgnet.training.monitor import Diverged, run_caffe
from ilgnet.zoo.fit import check_finetuning, check_fits, nonfinite_layers, read_caffemodel
from ilgnet.zoo.models import snapshots, write_model_json
from ilgnet.zoo.registry import check_file, load_registry

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
class TrainOptions:
    """What a training run is asked for, as `ilgnet train` takes it. None leaves a value to the solver profile or
    to the data (ilgnet.training.runs.plan completes them). gpu: None for CPU mode, else Caffe's -gpu value ("0",
    "0,1", "all"). weights: the initial caffemodel (default: the variant's pretrained model from the registry when it
    is in models_dir, else random initialisation). resume: continue from the run's newest .solverstate. seed: the
    solver's random_seed, which seeds Caffe's fillers, random crops and mirroring (None: Caffe draws one), so two
    seeds train differently and one seed repeats its run on the CPU."""
    variant: str
    profile: str
    data: Path
    name: str | None = None
    runs_dir: Path = defaults.RUNS_DIR
    models_dir: Path = defaults.MODELS_DIR
    gpu: str | None = None
    docker: bool = False
    resume: bool = False
    weights: Path | None = None
    max_iter: int | None = None
    train_batch: int | None = None
    val_batch: int | None = None
    display: int | None = None
    test_interval: int | None = None
    snapshot: int | None = None
    base_lr: float | None = None
    seed: int | None = None

    @property
    def run_dir(self) -> Path:
        """runs_dir/NAME (default name: VARIANT-PROFILE), resolved; BadInput for a name that leaves runs_dir."""
        return run_folder(self.runs_dir, self.name or f"{self.variant}-{self.profile}")


@dataclass(frozen=True)
class Plan:
    """A checked training run: the options completed from the data folder, which is read once here (the val set's
    size, the batch sizes), and the snapshot it resumes or the weights it starts from."""
    options: TrainOptions
    variant: Variant
    data: DataFolder
    run_dir: Path
    val_size: int
    train_batch: int
    val_batch: int
    resume_from: Path | None
    initial: Path | None

    @property
    def start_iter(self) -> int:
        """The iteration training starts at: the resumed snapshot's, else 0."""
        return int(SNAPSHOT_ITER.search(self.resume_from.name)[1]) if self.resume_from else 0


def _check_counts(options: TrainOptions) -> None:
    """The counts must be positive and the snapshot period and seed non-negative (snapshot 0: only the final
    snapshot), within Caffe's int32."""
    counts = {"train_batch": options.train_batch, "val_batch": options.val_batch, "max_iter": options.max_iter,
              "display": options.display, "test_interval": options.test_interval, "snapshot": options.snapshot}
    bad = [f"{name} {value}" for name, value in counts.items()
           if value is not None and not (0 if name == "snapshot" else 1) <= value <= defaults.INT32_MAX]
    if bad:
        raise BadInput(f"expected positive counts and a non-negative snapshot period, at most {defaults.INT32_MAX} "
                       f"(Caffe's int32), got {', '.join(bad)}")
    if options.seed is not None and not 0 <= options.seed <= defaults.INT32_MAX:
        raise BadInput(f"seed {options.seed}: expected 0 to {defaults.INT32_MAX}")


def _check_data(data: DataFolder, v: Variant) -> None:
    """The LMDBs' images must be as large as the crop and as the mean image: Caffe would abort on either."""
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
    """The caffemodel training starts from, checked against the net (ilgnet.zoo.fit): `weights`, else the variant's
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


def plan(options: TrainOptions, notify: Callable[[str], None] = _ignore) -> Plan:
    """Every check a run needs before anything is written: the counts, profile, data, snapshots, initial weights
    and GPUs; the data folder is read here and nowhere else. BadInput/MissingFile (or CaffeNotFoundError without
    Caffe, unless the run is in Docker) when something is not right."""
    _check_counts(options)
    v = get_variant(options.variant)
    get_profile(options.profile)
    run_dir = options.run_dir
    data = DataFolder(Path(options.data).resolve())
    data.require_lmdbs()
    _check_data(data, v)
    val_size = lmdb_size(data.lmdb("val"))
    if options.val_batch is not None and options.val_batch > val_size:
        raise BadInput(f"val batch {options.val_batch} is larger than the {val_size} records of {data.lmdb('val')}: "
                       f"a test pass would read most of them more than once")
    if not options.docker:
        tool_path("caffe")                  # CaffeNotFoundError before a run folder is made
    if options.gpu is not None and not options.docker:
        require_gpus(options.gpu)
    net = train_val(v, train_lmdb=data.lmdb("train"), val_lmdb=data.lmdb("val"), mean_file=data.mean_binaryproto,
                    train_batch=1, val_batch=1)
    states = snapshots(run_dir, "solverstate")
    resume_from = initial = None
    if options.resume:
        if not states:
            raise MissingFile(f"no .solverstate in {run_dir / 'snapshots'} to resume from")
        if options.weights is not None:
            raise BadInput("a resumed run continues from its own snapshot; initial weights do not apply")
        resume_from = states[-1]
        check_fits(resume_from.with_suffix(".caffemodel"), net)
    elif states:
        raise BadInput(f"{run_dir} already has snapshots (newest: {states[-1].name}); continue it, or start another "
                       f"run under another name")
    else:
        initial = _initial_weights(v, net, options.weights, Path(options.models_dir), notify)
    return Plan(options, v, data, run_dir, val_size,
                train_batch=defaults.TRAIN_BATCH if options.train_batch is None else options.train_batch,
                val_batch=val_batch_for(val_size, defaults.VAL_BATCH) if options.val_batch is None
                else options.val_batch,
                resume_from=resume_from, initial=initial)


def write_run_files(checked: Plan) -> tuple[Path, object]:
    """Writes RUN/train_val.prototxt and RUN/solver.prototxt for a checked plan; returns the solver path and
    parameters.

    Every path inside is absolute, so Caffe (or the container, which mounts paths where they are) finds them
    from any working directory. max_iter shortens the profile's run; its test interval and snapshot period then
    follow the run's length (ilgnet.nets.solvers.periods) unless given.
    """
    options, data, run_dir = checked.options, checked.data, checked.run_dir
    net = train_val(checked.variant, train_lmdb=str(data.lmdb("train")), val_lmdb=str(data.lmdb("val")),
                    mean_file=str(data.mean_binaryproto), train_batch=checked.train_batch,
                    val_batch=checked.val_batch)
    net_path, solver_path = run_dir / "train_val.prototxt", run_dir / "solver.prototxt"
    params = solver(options.profile, net=str(net_path), snapshot_prefix=str(run_dir / "snapshots" / options.variant),
                    val_size=checked.val_size, val_batch=checked.val_batch,
                    mode="CPU" if options.gpu is None else "GPU", max_iter=options.max_iter)
    for field in ("display", "test_interval", "base_lr", "snapshot"):
        if getattr(options, field) is not None:
            setattr(params, field, getattr(options, field))
    if options.seed is not None:
        params.random_seed = options.seed
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


def train(options: TrainOptions, *, progress: bool = True, notify: Callable[[str], None] = _ignore) -> Path:
    """Trains options.variant with solver options.profile on DATA/{train_lmdb,val_lmdb,mean.binaryproto}, into
    options.run_dir. notify receives what the user should know before the run (the initial weights and which layers
    start fresh, a resumption). Returns the run's final caffemodel.
    Raises TrainingStopped (a KeyboardInterrupt) when Caffe stopped early on SIGINT, after its snapshot;
    TrainingDiverged when the loss became NaN or infinite; BadInput/MissingFile before anything is written when
    the data, the weights or the GPUs are not right.
    """
    checked = plan(options, notify)
    run_dir, resume_from, initial = checked.run_dir, checked.resume_from, checked.initial
    with _removed_on_failure(run_dir):
        solver_path, params = write_run_files(checked)
        if not resume_from:
            write_model_json(run_dir, variant=checked.variant.name, profile=options.profile, data=checked.data,
                             crop=checked.variant.input_size, input_scale=checked.variant.input_scale)
        mounts = [run_dir, checked.data.root] + ([initial.parent] if initial else [])
        command = caffe_command(solver_path, gpu=options.gpu, weights=initial, resume_from=resume_from,
                                docker=options.docker, mounts=mounts)
    if resume_from:
        notify(f"resuming from {resume_from} (iteration {checked.start_iter})")
    try:
        stopped_early = run_caffe(command, run_dir / "train.log", start_iter=checked.start_iter,
                                  max_iter=params.max_iter, accuracy_blob=checked.variant.accuracy_blob,
                                  progress=progress)
    except Diverged as diverged:
        raise TrainingDiverged(diverged, _set_aside_diverged(run_dir)) from None
    if stopped_early:
        raise TrainingStopped(snapshots(run_dir, "caffemodel")[-1])
    final = run_dir / "snapshots" / f"{options.variant}_iter_{params.max_iter}.caffemodel"
    if not final.is_file():
        raise ToolFailed(f"caffe train finished without writing {final}")
    return final
