"""A training run checked before anything is written (`plan`): the counts, profile, data, snapshots, initial
weights and GPUs, and for a resume that the variant, profile and data are the run's (its RunFolder record), that
max_iter lies beyond the snapshot and that the .solverstate is whole (ilgnet.bvlc.fit.check_solverstate). What
`ilgnet train` asks for is a TrainOptions; the checked result a Plan, which ilgnet.training.runs executes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ilgnet import defaults
from ilgnet.bvlc.io import lmdb_records, lmdb_size, load_mean
from ilgnet.bvlc.tools import docker_image, require_gpus, tool_path
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile, UserError
from ilgnet.fileio import reading
from ilgnet.nets import Variant, fresh_layers, get_variant, train_val
from ilgnet.nets.recipes import DEFAULT as DEFAULT_RECIPE
from ilgnet.nets.recipes import check_recipe
from ilgnet.nets.solvers import get_profile, val_batch_for
from ilgnet.bvlc.fit import check_finetuning, check_solverstate
from ilgnet.zoo.registry import check_file, load_registry
from ilgnet.bvlc.io import snapshot_iteration
from ilgnet.zoo.runfolder import RunFolder


def _ignore(message: str) -> None:
    pass

class DataChanged(BadInput):
    """A resume on data other than the run's (run record); `what` says what differs, without the advice."""

    def __init__(self, run_dir: Path, changes: list[str]):
        self.what = f"{RunFolder(run_dir).model_json}: the run was trained on other data: {'; '.join(changes)}"
        super().__init__(f"{self.what}; resuming would train on the new data under the old record (accept the change "
                         f"explicitly to record it, or resume with the run's own data)")


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is asked for, as `ilgnet train` takes it. None leaves a value to the solver profile or
    to the data (`plan` completes them). gpu: None for CPU mode, else Caffe's -gpu value ("0",
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
    """The caffemodel training starts from, checked against the net (ilgnet.bvlc.fit): `weights`, else the variant's
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
    """The newest .solverstate Caffe can resume `net` from (ilgnet.bvlc.fit.check_solverstate). When the newest is
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
    """What a resume must keep: the run's variant and profile (run record) and a max_iter beyond its newest
    snapshot (BadInput otherwise); returns how the data differs from the run's record (DataChanged unless
    accepted)."""
    run = RunFolder(run_dir)
    record = run.read_record()
    for key, now in (("variant", v.name), ("profile", options.profile), ("recipe", options.recipe)):
        if (record.get(key, DEFAULT_RECIPE) if key == "recipe" else record.get(key)) != now:
            raise BadInput(f"{run.model_json}: the run trains {key} {record.get(key)}, not {now}; a resumed run "
                           f"keeps its {key} (start another run under another name for {now})")
    at, max_iter = snapshot_iteration(states[-1]), options.max_iter or get_profile(options.profile).max_iter
    if max_iter <= at:
        raise BadInput(f"{states[-1]} is at iteration {at}: max_iter {max_iter} would train nothing (give a larger "
                       f"one)")
    changes = run.data_changes(data)
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
                       f"a test pass would read most of them more than once", about="val_batch")
    if options.docker:
        # CaffeNotFoundError before the run's files are written (the run folder is removed again)
        docker_image(gpu=options.gpu is not None, mounts=[run_dir, data.root])
    else:
        tool_path("caffe")
    if options.gpu is not None:
        require_gpus(options.gpu, docker=options.docker)
    net = train_val(v, train_lmdb=data.lmdb("train"), val_lmdb=data.lmdb("val"), mean_file=data.mean_binaryproto,
                    train_batch=1, val_batch=1)
    states = RunFolder(run_dir).snapshots("solverstate")
    resume_from = initial = None
    changes = []
    if options.resume:
        if not states:
            raise MissingFile(f"no .solverstate in {RunFolder(run_dir).snapshot_dir} to resume from", about="resume")
        if options.weights is not None:
            raise BadInput("a resumed run continues from its own snapshot; initial weights do not apply",
                           about="weights")
        changes = _check_resume(options, v, data, run_dir, states)
        resume_from = _resumable(states, net)
    elif states:
        raise BadInput(f"{run_dir} already has snapshots (newest: {states[-1].name}); continue it, or start another "
                       f"run under another name")
    else:
        initial = _initial_weights(v, net, options.weights, Path(options.models_dir), notify)
        if initial is None and options.recipe != DEFAULT_RECIPE:
            notify(f"WARNING: recipe {options.recipe} keeps its fixed layers at lr_mult 0 from scratch too: they "
                   f"stay at their random initial values and only the layers it trains learn")
    return Plan(options, v, data, run_dir, val_size,
                train_batch=defaults.TRAIN_BATCH if options.train_batch is None else options.train_batch,
                val_batch=val_batch_for(val_size, defaults.VAL_BATCH) if options.val_batch is None
                else options.val_batch,
                resume_from=resume_from, initial=initial, data_changes=changes)


def run_folder(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, resolved. BadInput unless `name` is one plain folder name: no separator, not `.` or `..`, so a
    run never writes outside runs_dir."""
    if name.strip() in ("", ".", "..") or name != name.strip() or any(c in name for c in ("/", "\\", "\0")):
        raise BadInput(f"run name {name!r}: expected one folder name (no / or \\, not . or .., no blanks at "
                       f"either end)")
    return (Path(runs_dir) / name).resolve()
