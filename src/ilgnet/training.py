"""Training runs: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

Each run lives in runs/NAME: the train_val and solver prototxt regenerated from ilgnet.nets / ilgnet.solvers
(with the solver mode this invocation chose), train.log (Caffe's full output, appended to when a run is resumed),
train_log.csv and curves.png (refreshed during the run and at its end), and snapshots/.

Ctrl-C: Caffe runs with `-sigint_effect stop`, which ends the current iteration and, because the solver keeps
`snapshot_after_train`, writes a snapshot before exiting; `--resume` continues from the newest .solverstate.
(`-sigint_effect snapshot` would snapshot and carry on training, so Ctrl-C would never stop it.) SIGHUP keeps
Caffe's default: snapshot and carry on.
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ilgnet import caffelog, defaults
from ilgnet.caffe_io import lmdb_size
from ilgnet.caffe_proto import to_text
from ilgnet.caffe_tools import run_logged, tool_path
from ilgnet.curves import write_train_summary
from ilgnet.datafolder import DataFolder
from ilgnet.errors import BadInput, MissingFile, ToolFailed
from ilgnet.nets import get_variant, train_val
from ilgnet.solvers import solver, val_batch_for

REPO = Path(__file__).resolve().parents[2]
DOCKER_SCRIPT = REPO / "tools" / "docker-caffe.sh"
DEFAULT_PRETRAINED = "bvlc_googlenet.caffemodel"
SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")
SUMMARY_EVERY_S = 60


def _ignore(message: str) -> None:
    pass


class TrainingStopped(KeyboardInterrupt):
    """Caffe stopped early on an interrupt, after writing `snapshot` (a .caffemodel beside its .solverstate)."""

    def __init__(self, snapshot: Path):
        super().__init__(str(snapshot))
        self.snapshot = snapshot


def snapshots(run_dir: Path, kind: str) -> list[Path]:
    """The run's snapshot files of `kind` (caffemodel or solverstate), oldest iteration first."""
    found = [(int(m[1]), p) for p in (run_dir / "snapshots").glob(f"*_iter_*.{kind}*")
             if (m := SNAPSHOT_ITER.search(p.name)) and m[2] == kind]
    return [p for _, p in sorted(found)]


def _initial_weights(weights: Path | None, models_dir: Path, notify: Callable[[str], None]) -> Path | None:
    if weights is not None:
        if not weights.is_file():
            raise MissingFile(f"initial weights {weights} do not exist")
        return weights
    pretrained = models_dir / DEFAULT_PRETRAINED
    if pretrained.is_file():
        notify(f"fine-tuning from {pretrained}")
        return pretrained
    notify(f"WARNING: {pretrained} not found, so training starts FROM SCRATCH (random weights), not from ImageNet "
           f"as in the paper; run `ilgnet weights fetch bvlc_googlenet` to fine-tune instead")
    return None


def write_run_files(run_dir: Path, variant: str, profile: str, data_dir: Path, *, mode: str,
                    train_batch: int | None, val_batch: int | None, max_iter: int | None,
                    display: int | None, test_interval: int | None = None,
                    snapshot: int | None = None) -> tuple[Path, object]:
    """Writes run_dir/train_val.prototxt and run_dir/solver.prototxt; returns the solver path and parameters.

    Every path inside is absolute, so Caffe (or the container, which mounts paths where they are) finds them
    from any working directory. The counts must be positive and snapshot non-negative (0: only the final
    snapshot), else BadInput before anything is written. max_iter shortens the profile's run; its test interval
    and snapshot period then follow the run's length (ilgnet.solvers.periods) unless given.
    """
    counts = {"train_batch": train_batch, "val_batch": val_batch, "max_iter": max_iter, "display": display,
              "test_interval": test_interval, "snapshot": snapshot}
    bad = [f"{name} {value}" for name, value in counts.items()
           if value is not None and value < (0 if name == "snapshot" else 1)]
    if bad:
        raise BadInput(f"expected positive counts and a non-negative snapshot period, got {', '.join(bad)}")
    data = DataFolder(data_dir.resolve())
    data.require_lmdbs()
    train_lmdb, val_lmdb, mean_file = data.lmdb("train"), data.lmdb("val"), data.mean_binaryproto
    val_size = lmdb_size(val_lmdb)
    train_batch = defaults.TRAIN_BATCH if train_batch is None else train_batch
    val_batch = val_batch_for(val_size, defaults.VAL_BATCH) if val_batch is None else val_batch
    net = train_val(get_variant(variant), train_lmdb=str(train_lmdb), val_lmdb=str(val_lmdb),
                    mean_file=str(mean_file), train_batch=train_batch, val_batch=val_batch)
    run_dir = run_dir.resolve()
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    net_path, solver_path = run_dir / "train_val.prototxt", run_dir / "solver.prototxt"
    net_path.write_text(to_text(net))
    params = solver(profile, net=str(net_path), snapshot_prefix=str(run_dir / "snapshots" / variant),
                    val_size=val_size, val_batch=val_batch, mode=mode, max_iter=max_iter)
    if display is not None:
        params.display = display
    if test_interval is not None:
        params.test_interval = test_interval
    if snapshot is not None:
        params.snapshot = snapshot
    params.snapshot_after_train = True          # what makes Ctrl-C (sigint_effect stop) leave a snapshot
    if any(layer.type == "BatchNorm" for layer in net.layer):
        # Untrained BatchNorm statistics are zero: a test pass before any training scores nothing (or NaN).
        params.test_initialization = False
    solver_path.write_text(to_text(params))
    return solver_path, params


def caffe_command(solver_path: Path, *, gpu: str | None, weights: Path | None, resume_from: Path | None,
                  docker: bool, mounts: list[Path]) -> list[str]:
    """The `caffe train` command line, or the one running it in the Docker image (tools/docker-caffe.sh)."""
    args = ["train", "-solver", str(solver_path), "-sigint_effect", "stop", "-sighup_effect", "snapshot"]
    if resume_from is not None:
        args += ["-snapshot", str(resume_from)]
    elif weights is not None:
        args += ["-weights", str(weights.resolve())]
    if gpu is not None:
        args += ["-gpu", gpu]
    if docker:
        if not DOCKER_SCRIPT.is_file():
            raise MissingFile(f"{DOCKER_SCRIPT} is missing (it ships with the ilgnet-caffe checkout)")
        options = [] if gpu is not None else ["--cpu"]
        for mount in mounts:
            options += ["--mount", str(mount.resolve())]
        return ["bash", str(DOCKER_SCRIPT), *options, "--", "caffe", *args]
    return [str(tool_path("caffe")), *args]


def run_caffe(command: list[str], log_path: Path, *, start_iter: int, max_iter: int, accuracy_blob: str | None,
              progress: bool = True) -> bool:
    """Runs `caffe train`, appending its output to log_path, with a progress bar over iterations and the test
    scores and snapshots shown as they come; train_log.csv and curves.png are refreshed every minute and at the end.
    Returns whether Caffe stopped early (on SIGINT, which is passed on to it); raises ToolFailed with the log's last
    lines when Caffe fails."""
    last_summary = time.monotonic()
    stopped_early = False

    with tqdm(total=max_iter, initial=start_iter, unit="it", desc=log_path.parent.name, disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def on_line(line: str) -> None:
            nonlocal last_summary, stopped_early
            glog = caffelog.GLOG_PREFIX.match(line.rstrip("\n"))
            if not glog:
                return
            message = glog.group(2)
            if match := caffelog.TRAIN_LOSS.match(message):
                bar.update(int(match[1]) - bar.n)
                bar.set_postfix(loss=float(match[2]))
            elif caffelog.TEST_OUTPUT.match(message) or message.startswith(("Snapshotting to", "Resuming from")) \
                    or message == "Optimization stopped early." or line.startswith(("E", "F")):
                tqdm.write(message, file=sys.stderr)
            stopped_early |= message == "Optimization stopped early."
            if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                write_train_summary(log_path, accuracy_blob=accuracy_blob)
                last_summary = time.monotonic()

        def on_sigint() -> None:
            tqdm.write("ilgnet train: interrupt: Caffe snapshots and stops after the current iteration",
                       file=sys.stderr)

        with open(log_path, "a") as log:
            log.write(f"# ilgnet train: {' '.join(command)}\n")
        run_logged(command, log_path=log_path, on_line=on_line, on_sigint=on_sigint, keep=False)
    write_train_summary(log_path, accuracy_blob=accuracy_blob)
    return stopped_early


def train(variant: str, profile: str, data_dir: Path, *, name: str | None = None, runs_dir: Path = Path("runs"),
          models_dir: Path = Path("models"), gpu: str | None = None, docker: bool = False, resume: bool = False,
          weights: Path | None = None, max_iter: int | None = None, train_batch: int | None = None,
          val_batch: int | None = None, display: int | None = None, test_interval: int | None = None,
          snapshot: int | None = None, progress: bool = True, notify: Callable[[str], None] = _ignore) -> Path:
    """Trains `variant` with solver `profile` on data_dir/{train_lmdb,val_lmdb,mean.binaryproto}.

    gpu: None for CPU mode, else Caffe's -gpu value ("0", "0,1", "all"). resume: continue from the run's newest
    .solverstate. weights: the initial caffemodel (default: models_dir/bvlc_googlenet.caffemodel when present,
    else random initialisation). notify: receives what the user should know before and after the run (the
    initial weights, a resumption, an early stop). Returns the run's final caffemodel.
    Interrupted by SIGINT, Caffe snapshots and stops; then this raises TrainingStopped (a KeyboardInterrupt) with
    the snapshot.
    """
    accuracy_blob = get_variant(variant).accuracy_blob
    run_dir = (Path(runs_dir) / (name or f"{variant}-{profile}")).resolve()
    resume_from = None
    if resume:
        states = snapshots(run_dir, "solverstate")
        if not states:
            raise MissingFile(f"no .solverstate in {run_dir / 'snapshots'} to resume from")
        resume_from = states[-1]
        if weights is not None:
            raise BadInput("a resumed run continues from its own snapshot; initial weights do not apply")
    elif snapshots(run_dir, "solverstate"):
        raise BadInput(f"{run_dir} already has snapshots (newest: {snapshots(run_dir, 'solverstate')[-1].name}); "
                       f"continue it, or start another run under another name")
    solver_path, params = write_run_files(run_dir, variant, profile, Path(data_dir),
                                          mode="CPU" if gpu is None else "GPU", train_batch=train_batch,
                                          val_batch=val_batch, max_iter=max_iter, display=display,
                                          test_interval=test_interval, snapshot=snapshot)
    initial = None if resume_from else _initial_weights(weights, Path(models_dir), notify)
    start_iter = int(SNAPSHOT_ITER.search(resume_from.name)[1]) if resume_from else 0
    if resume_from:
        notify(f"resuming from {resume_from} (iteration {start_iter})")
    mounts = [run_dir, Path(data_dir)] + ([initial.parent] if initial else [])
    command = caffe_command(solver_path, gpu=gpu, weights=initial, resume_from=resume_from, docker=docker,
                            mounts=mounts)
    stopped_early = run_caffe(command, run_dir / "train.log", start_iter=start_iter, max_iter=params.max_iter,
                              accuracy_blob=accuracy_blob, progress=progress)
    if stopped_early:
        raise TrainingStopped(snapshots(run_dir, "caffemodel")[-1])
    final = run_dir / "snapshots" / f"{variant}_iter_{params.max_iter}.caffemodel"
    if not final.is_file():
        raise ToolFailed(f"caffe train finished without writing {final}")
    return final
