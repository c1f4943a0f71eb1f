"""Training runs: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

Each run lives in runs/NAME, a RunFolder (ilgnet.zoo.runfolder, which names its files): the run record (what the
model is: variant, profile, data, with the mean image and training list copied beside it), the train_val and solver
prototxt regenerated from ilgnet.nets / ilgnet.nets.solvers (with the solver mode this invocation chose), Caffe's
log (appended to when a run is resumed), its CSV and curves, and the snapshots. Everything is checked before the run
folder is made or Caffe starts (ilgnet.training.plan): the data, the initial weights against the net, the GPUs.

Ctrl-C: Caffe runs with `-sigint_effect stop`, which ends the current iteration and, because the solver keeps
`snapshot_after_train`, writes a snapshot before exiting; resuming continues from the newest .solverstate.
(`-sigint_effect snapshot` would snapshot and carry on training, so Ctrl-C would never stop it.) SIGHUP keeps
Caffe's default: snapshot and carry on.

A run that goes wrong is stopped (ilgnet.training.monitor: a loss or output not finite, a loss stuck at
SoftmaxWithLoss's clamp, a snapshot whose weights or val outputs are not finite), and its snapshots from where it
went wrong, and any older ones that are not good, are set aside as `<snapshot>.diverged`
(ilgnet.training.snapshots), so that resuming continues from the newest good one.

A run is one process's at a time (a lock on its folder), and the data folder it reads cannot be rebuilt while it
trains (a shared lock there; `ilgnet lmdb` takes it exclusively). A resume is checked before Caffe starts
(ilgnet.training.plan), and an accepted change of data is recorded in the run record.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ilgnet.bvlc.proto import to_text
from ilgnet.bvlc.tools import caffe_invocation
from ilgnet.data.folder import DataFolder
from ilgnet.errors import InUse, ToolFailed, UserError
from ilgnet.fileio import folder_lock
from ilgnet.nets import Variant, fixed_layers, train_val
from ilgnet.nets.recipes import RECIPES
from ilgnet.nets.solvers import solver
from ilgnet.training.monitor import Diverged, run_caffe
from ilgnet.training.plan import Plan, TrainOptions, plan
from ilgnet.training.snapshots import check_net, set_aside, snapshot_problem
from ilgnet.zoo.runfolder import RunFolder


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
    run = RunFolder(run_dir)
    net_path, solver_path = run.train_val, run.solver
    params = solver(options.profile, net=str(net_path), snapshot_prefix=str(run.snapshot_prefix(options.variant)),
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
    run.snapshot_dir.mkdir(parents=True, exist_ok=True)     # only now that everything is checked
    net_path.write_text(to_text(net))
    solver_path.write_text(to_text(params))
    return solver_path, params


def recipe_record(variant: Variant, recipe: str) -> dict:
    """What run record keeps of a run's recipe: its name, what it is, and the layers it fixed (lr_mult 0)."""
    return {"name": recipe, "summary": RECIPES[recipe], "fixed_layers": fixed_layers(variant, recipe)}


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
    run_dir, run = options.run_dir, RunFolder(options.run_dir)
    with ExitStack() as held:
        with _made_for_the_block(run_dir):
            held.enter_context(run.lock())
            DataFolder(options.data).require_lmdbs()        # first: a lock would leave its file in any folder
            held.enter_context(folder_lock(Path(options.data), shared=True))
            checked = plan(options, notify)
            resume_from, initial = checked.resume_from, checked.initial
            if checked.data_changes:
                run.record_data_change(checked.data, checked.start_iter, checked.data_changes)
                notify(f"resuming on changed data, recorded in {run.model_json}: "
                       f"{'; '.join(checked.data_changes)}")
            solver_path, params = write_run_files(checked)
            if not resume_from:
                run.write_record(variant=checked.variant.name, profile=options.profile, data=checked.data,
                                 crop=checked.variant.input_size, input_scale=checked.variant.input_scale,
                                 recipe=recipe_record(checked.variant, options.recipe))
            mounts = [run_dir, checked.data.root] + ([initial.parent] if initial else [])
            command = caffe_command(solver_path, gpu=options.gpu, weights=initial, resume_from=resume_from,
                                    docker=options.docker, mounts=mounts)
        if resume_from:
            notify(f"resuming from {resume_from} (iteration {checked.start_iter})")
        net = check_net(checked.variant, checked.data, checked.val_size)
        try:
            stopped_early = run_caffe(command, run.train_log, start_iter=checked.start_iter,
                                      max_iter=params.max_iter, accuracy_blob=checked.variant.accuracy_blob,
                                      check_snapshot=lambda caffemodel: snapshot_problem(caffemodel, net),
                                      progress=progress)
        except Diverged as diverged:
            raise TrainingDiverged(diverged, set_aside(run_dir, net, from_iteration=diverged.iteration)) from None
    if stopped_early:
        raise TrainingStopped(run.snapshots("caffemodel")[-1])
    final = run.snapshot(options.variant, params.max_iter)
    if not final.is_file():
        raise ToolFailed(f"caffe train finished without writing {final}")
    return final
