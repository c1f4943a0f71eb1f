"""Training runs: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

Each run lives in runs/NAME: model.json (what the model is: variant, profile, data, with the mean image and training
list copied beside it), the train_val and solver prototxt regenerated from ilgnet.nets / ilgnet.nets.solvers (with the
solver mode this invocation chose), train.log (Caffe's full output, appended to when a run is resumed),
train_log.csv and curves.png, and snapshots/. Everything is checked before the run folder is made or Caffe starts:
the data, the initial weights against the net (ilgnet.zoo.fit), the GPUs.

Ctrl-C: Caffe runs with `-sigint_effect stop`, which ends the current iteration and, because the solver keeps
`snapshot_after_train`, writes a snapshot before exiting; resuming continues from the newest .solverstate.
(`-sigint_effect snapshot` would snapshot and carry on training, so Ctrl-C would never stop it.) SIGHUP keeps
Caffe's default: snapshot and carry on.

A run that goes wrong is stopped (ilgnet.training.monitor: a loss or output not finite, a loss stuck at
SoftmaxWithLoss's clamp, a snapshot whose weights or val outputs are not finite), and its snapshots from where it
went wrong, and any older ones that are not good, are set aside as `<snapshot>.diverged`
(ilgnet.training.snapshots), so that resuming continues from the newest good one.

A run is one process's at a time (a lock on its folder), and the data folder it reads cannot be rebuilt while it
trains (a shared lock there; `ilgnet lmdb` takes it exclusively). A resume is checked before Caffe starts: the
variant and profile are the run's (model.json), the data folder, its mean and lists are those it was trained on
(or the change is accepted explicitly and recorded in model.json), max_iter lies beyond the snapshot, and the
.solverstate is whole (ilgnet.zoo.fit.check_solverstate).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ilgnet import defaults
from ilgnet.bvlc.io import lmdb_records, lmdb_size, load_mean
from ilgnet.bvlc.proto import to_text
from ilgnet.bvlc.tools import caffe_invocation, docker_image, require_gpus, tool_path
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, InUse, MissingFile, ToolFailed, UserError
from ilgnet.fileio import folder_lock, reading
from ilgnet.nets import Variant, fixed_layers, fresh_layers, get_variant, train_val
from ilgnet.nets.recipes import DEFAULT as DEFAULT_RECIPE
from ilgnet.nets.recipes import RECIPES, check_recipe
from ilgnet.nets.solvers import get_profile, solver, val_batch_for
from ilgnet.training.monitor import Diverged, run_caffe
from ilgnet.training.snapshots import check_net, set_aside, snapshot_problem
from ilgnet.zoo.fit import check_finetuning, check_solverstate
from ilgnet.zoo.models import (MODEL_JSON, data_changes, read_model_json, record_data_change, snapshot_iteration,
                               snapshots, write_model_json)
from ilgnet.zoo.registry import check_file, load_registry


def _ignore(message: str) -> None:
    pass


class TrainingStopped(KeyboardInterrupt):
    """Caffe stopped early on an interrupt, after writing `snapshot` (a .caffemodel beside its .solverstate)."""

    def __init__(self, snapshot: Path):
        super().__init__(str(snapshot))
        self.snapshot = snapshot


class TrainingDiverged(UserError):
    """The run went wrong (ilgnet.training.monitor.Diverged); `last_good` is the newest snapshot left under its name,
    with finite weights and finite outputs on a val batch (None if none)."""

    def __init__(self, diverged: Diverged, last_good: Path | None):
        kept = f"the last good snapshot is {last_good}" if last_good else "no good snapshot was written before it"
        super().__init__(f"training diverged: {diverged}; {kept} (try a lower base_lr)")
        self.iteration, self.last_good = diverged.iteration, last_good


class DataChanged(BadInput):
    """A resume on data other than the run's (model.json); `what` says what differs, without the advice."""

    def __init__(self, run_dir: Path, changes: list[str]):
        self.what = f"{run_dir / MODEL_JSON}: the run was trained on other data: {'; '.join(changes)}"
        super().__init__(f"{self.what}; resuming would train on the new data under the old record (accept the change "
                         f"explicitly to record it, or resume with the run's own data)")


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is asked for, as `ilgnet train` takes it. None leaves a value to the solver profile or
    to the data (ilgnet.training.runs.plan completes them). gpu: None for CPU mode, else Caffe's -gpu value ("0",
    "0,1", "all"). weights: the initial caffemodel (default: the variant's pretrained model from the registry when it
    is in models_dir, else random initialisation). resume: continue from the run's newest .solverstate;
    accept_data_change: resume even when the data differs from the run's record, and record the change. seed: the
    solver's random_seed, which seeds Caffe's fillers, random crops and mirroring (None: Caffe draws one), so two
    seeds train differently and one seed repeats its run on the CPU. recipe: the fine-tuning recipe
    (ilgnet.nets.recipes: released, paper, paper-sec5), which fixes some pretrained layers at lr_mult 0."""
    variant: str
    profile: str
    data: Path
    name: str | None = None
    runs_dir: Path = defaults.RUNS_DIR
    models_dir: Path = defaults.MODELS_DIR
    gpu: str | None = None
    docker: bool = False
    resume: bool = False
    accept_data_change: bool = False
    weights: Path | None = None
    max_iter: int | None = None
    train_batch: int | None = None
    val_batch: int | None = None
    display: int | None = None
    test_interval: int | None = None
    snapshot: int | None = None
    base_lr: float | None = None
    seed: int | None = None
    recipe: str = DEFAULT_RECIPE

    @property
    def run_dir(self) -> Path:
        """runs_dir/NAME (default name: VARIANT-PROFILE), resolved; BadInput for a name that leaves runs_dir."""
        return run_folder(self.runs_dir, self.name or f"{self.variant}-{self.profile}")


@dataclass(frozen=True)
class Plan:
    """A checked training run: the options completed from the data folder, which is read once here (the val set's
    size, the batch sizes), and the snapshot it resumes or the weights it starts from (and, for an accepted resume on
    other data, what changed)."""
    options: TrainOptions
    variant: Variant
    data: DataFolder
    run_dir: Path
    val_size: int
    train_batch: int
    val_batch: int
    resume_from: Path | None
    initial: Path | None
    data_changes: list[str] = field(default_factory=list)

    @property
    def start_iter(self) -> int:
        """The iteration training starts at: the resumed snapshot's, else 0."""
        return snapshot_iteration(self.resume_from) if self.resume_from else 0


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
    with reading(weights, "checking"):
        fit = check_finetuning(weights, net, fresh_layers(v))
    if entry is not None:
        check_file(entry, weights)
    fresh = ", ".join(fit.missing) or "none"
    notify(f"fine-tuning from {weights}: {len(fit.matched)} layers from it, {len(fit.missing)} start fresh "
           f"({fresh})" + (f"; {len(fit.unused)} of its layers are not used" if fit.unused else ""))
    return weights


def _resumable(states: list[Path], net) -> Path:
    """The newest .solverstate Caffe can resume `net` from (ilgnet.zoo.fit.check_solverstate). When the newest is
    not, BadInput says why and names the previous good one, which resuming would take once the newer ones are set
    aside (nothing is renamed here)."""
    try:
        with reading(states[-1], "checking"):
            check_solverstate(states[-1], net)
        return states[-1]
    except UserError as err:
        problem = str(err)
    for older in reversed(states[:-1]):
        try:
            check_solverstate(older, net)
        except UserError:
            continue
        raise BadInput(f"{problem}; the previous good one is {older} (iteration {snapshot_iteration(older)}): rename "
                       f"the newer snapshots (e.g. to *.bad) to resume from it")
    raise BadInput(f"{problem}; no earlier .solverstate of the run can be resumed either")


def _check_resume(options: TrainOptions, v: Variant, data: DataFolder, run_dir: Path, states: list[Path]) -> list[str]:
    """What a resume must keep: the run's variant and profile (model.json) and a max_iter beyond its newest
    snapshot (BadInput otherwise); returns how the data differs from the run's record (DataChanged unless
    accepted)."""
    record = read_model_json(run_dir)
    for key, now in (("variant", v.name), ("profile", options.profile), ("recipe", options.recipe)):
        if (record.get(key, DEFAULT_RECIPE) if key == "recipe" else record.get(key)) != now:
            raise BadInput(f"{run_dir / MODEL_JSON}: the run trains {key} {record.get(key)}, not {now}; a resumed run "
                           f"keeps its {key} (start another run under another name for {now})")
    at, max_iter = snapshot_iteration(states[-1]), options.max_iter or get_profile(options.profile).max_iter
    if max_iter <= at:
        raise BadInput(f"{states[-1]} is at iteration {at}: max_iter {max_iter} would train nothing (give a larger "
                       f"one)")
    changes = data_changes(run_dir, data)
    if changes and not options.accept_data_change:
        raise DataChanged(run_dir, changes)
    return changes


def plan(options: TrainOptions, notify: Callable[[str], None] = _ignore) -> Plan:
    """Every check a run needs before anything is written: the counts, profile, data, snapshots, initial weights
    and GPUs; the data folder is read here and nowhere else. BadInput/MissingFile when something is not right;
    CaffeNotFoundError without Caffe here, or for a run in Docker, without Docker or its image (Caffe here is
    then not needed)."""
    _check_counts(options)
    v = get_variant(options.variant)
    check_recipe(options.recipe)
    get_profile(options.profile)
    run_dir = options.run_dir
    data = DataFolder(Path(options.data).resolve())
    data.require_lmdbs()
    _check_data(data, v)
    val_size = lmdb_size(data.lmdb("val"))
    if options.val_batch is not None and options.val_batch > val_size:
        raise BadInput(f"val batch {options.val_batch} is larger than the {val_size} records of {data.lmdb('val')}: "
                       f"a test pass would read most of them more than once")
    if options.docker:
        # CaffeNotFoundError before the run's files are written (the run folder is removed again)
        docker_image(gpu=options.gpu is not None, mounts=[run_dir, data.root])
    else:
        tool_path("caffe")
    if options.gpu is not None:
        require_gpus(options.gpu, docker=options.docker)
    net = train_val(v, train_lmdb=data.lmdb("train"), val_lmdb=data.lmdb("val"), mean_file=data.mean_binaryproto,
                    train_batch=1, val_batch=1)
    states = snapshots(run_dir, "solverstate")
    resume_from = initial = None
    changes = []
    if options.resume:
        if not states:
            raise MissingFile(f"no .solverstate in {run_dir / 'snapshots'} to resume from")
        if options.weights is not None:
            raise BadInput("a resumed run continues from its own snapshot; initial weights do not apply")
        changes = _check_resume(options, v, data, run_dir, states)
        resume_from = _resumable(states, net)
    elif states:
        raise BadInput(f"{run_dir} already has snapshots (newest: {states[-1].name}); continue it, or start another "
                       f"run under another name")
    else:
        initial = _initial_weights(v, net, options.weights, Path(options.models_dir), notify)
    return Plan(options, v, data, run_dir, val_size,
                train_batch=defaults.TRAIN_BATCH if options.train_batch is None else options.train_batch,
                val_batch=val_batch_for(val_size, defaults.VAL_BATCH) if options.val_batch is None
                else options.val_batch,
                resume_from=resume_from, initial=initial, data_changes=changes)


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
                    val_batch=checked.val_batch, recipe=options.recipe)
    net_path, solver_path = run_dir / "train_val.prototxt", run_dir / "solver.prototxt"
    params = solver(options.profile, net=str(net_path), snapshot_prefix=str(run_dir / "snapshots" / options.variant),
                    val_size=checked.val_size, val_batch=checked.val_batch,
                    mode="CPU" if options.gpu is None else "GPU", max_iter=options.max_iter)
    for name in ("display", "test_interval", "base_lr", "snapshot"):
        if getattr(options, name) is not None:
            setattr(params, name, getattr(options, name))
    if options.display is None:
        # A loss displayed with every test pass and ten times a run at least: a shortened run displays as often as
        # it tests (6 iterations: every one), so that the monitor and the progress bar see its losses.
        params.display = min(params.display, params.test_interval, max(1, params.max_iter // 10))
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


def recipe_record(variant: Variant, recipe: str) -> dict:
    """What model.json keeps of a run's recipe: its name, what it is, and the layers it fixed (lr_mult 0)."""
    return {"name": recipe, "summary": RECIPES[recipe], "fixed_layers": fixed_layers(variant, recipe)}


def run_folder(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, resolved. BadInput unless `name` is one plain folder name: no separator, not `.` or `..`, so a
    run never writes outside runs_dir."""
    if name in ("", ".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise BadInput(f"run name {name!r}: expected one folder name (no / or \\, not . or ..)")
    return (Path(runs_dir) / name).resolve()


@contextmanager
def _made_for_the_block(run_dir: Path):
    """Makes run_dir (and the runs folder when it is missing too) and removes what this call made if the block fails,
    so that a run that never reached Caffe leaves nothing behind: never a folder that existed, nor one that another
    process made at the same moment (mkdir says which call made it), nor one another process holds (InUse)."""
    made = None
    for folder in reversed([run_dir, *run_dir.parents]):
        if folder.is_dir():
            continue
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        made = made or folder
    try:
        yield
    except InUse:
        raise
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


def train(options: TrainOptions, *, progress: bool = True, notify: Callable[[str], None] = _ignore) -> Path:
    """Trains options.variant with solver options.profile on DATA/{train_lmdb,val_lmdb,mean.binaryproto}, into
    options.run_dir. notify receives what the user should know before the run (the initial weights and which layers
    start fresh, a resumption, an accepted change of data). Returns the run's final caffemodel.
    Raises TrainingStopped (a KeyboardInterrupt) when Caffe stopped early on SIGINT, after its snapshot;
    TrainingDiverged when the run went wrong (its bad snapshots set aside); InUse when another process holds the
    run folder, or rebuilds the data folder; BadInput/MissingFile before anything is written when the data, the
    weights, the GPUs or a resume are not right.
    """
    run_dir = options.run_dir
    with ExitStack() as held:
        with _made_for_the_block(run_dir):
            held.enter_context(folder_lock(run_dir))
            DataFolder(options.data).require_lmdbs()        # first: a lock would leave its file in any folder
            held.enter_context(folder_lock(Path(options.data), shared=True))
            checked = plan(options, notify)
            resume_from, initial = checked.resume_from, checked.initial
            if checked.data_changes:
                record_data_change(run_dir, checked.data, checked.start_iter, checked.data_changes)
                notify(f"resuming on changed data, recorded in {run_dir / MODEL_JSON}: "
                       f"{'; '.join(checked.data_changes)}")
            solver_path, params = write_run_files(checked)
            if not resume_from:
                write_model_json(run_dir, variant=checked.variant.name, profile=options.profile, data=checked.data,
                                 crop=checked.variant.input_size, input_scale=checked.variant.input_scale,
                                 recipe=recipe_record(checked.variant, options.recipe))
            mounts = [run_dir, checked.data.root] + ([initial.parent] if initial else [])
            command = caffe_command(solver_path, gpu=options.gpu, weights=initial, resume_from=resume_from,
                                    docker=options.docker, mounts=mounts)
        if resume_from:
            notify(f"resuming from {resume_from} (iteration {checked.start_iter})")
        net = check_net(checked.variant, checked.data, checked.val_size)
        try:
            stopped_early = run_caffe(command, run_dir / "train.log", start_iter=checked.start_iter,
                                      max_iter=params.max_iter, accuracy_blob=checked.variant.accuracy_blob,
                                      check_snapshot=lambda caffemodel: snapshot_problem(caffemodel, net),
                                      progress=progress)
        except Diverged as diverged:
            raise TrainingDiverged(diverged, set_aside(run_dir, net, from_iteration=diverged.iteration)) from None
    if stopped_early:
        raise TrainingStopped(snapshots(run_dir, "caffemodel")[-1])
    final = run_dir / "snapshots" / f"{options.variant}_iter_{params.max_iter}.caffemodel"
    if not final.is_file():
        raise ToolFailed(f"caffe train finished without writing {final}")
    return final
