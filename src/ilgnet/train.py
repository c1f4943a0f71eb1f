"""`ilgnet train`: `caffe train` on a net variant and a solver profile, locally or in the Docker image.

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
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER_SCRIPT = REPO / "tools" / "docker-caffe.sh"
DEFAULT_PRETRAINED = "bvlc_googlenet.caffemodel"
SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?$")
SUMMARY_EVERY_S = 60


def snapshots(run_dir: Path, kind: str) -> list[Path]:
    """The run's snapshot files of `kind` (caffemodel or solverstate), oldest iteration first."""
    found = [(int(m[1]), p) for p in (run_dir / "snapshots").glob(f"*_iter_*.{kind}*")
             if (m := SNAPSHOT_ITER.search(p.name)) and m[2] == kind]
    return [p for _, p in sorted(found)]


def _initial_weights(weights: Path | None, models_dir: Path) -> Path | None:
    if weights is not None:
        if not weights.is_file():
            raise FileNotFoundError(f"--weights {weights} does not exist")
        return weights
    pretrained = models_dir / DEFAULT_PRETRAINED
    if pretrained.is_file():
        print(f"ilgnet train: fine-tuning from {pretrained}", file=sys.stderr)
        return pretrained
    print(f"ilgnet train: WARNING: {pretrained} not found, so training starts FROM SCRATCH (random weights), not "
          f"from ImageNet as in the paper; run `ilgnet weights fetch bvlc_googlenet` to fine-tune instead",
          file=sys.stderr)
    return None


def write_run_files(run_dir: Path, variant: str, profile: str, data_dir: Path, *, mode: str,
                    train_batch: int | None, val_batch: int | None, max_iter: int | None,
                    display: int | None, test_interval: int | None = None) -> tuple[Path, object]:
    """Writes run_dir/train_val.prototxt and run_dir/solver.prototxt; returns the solver path and parameters.

    Every path inside is absolute, so Caffe (or the container, which mounts paths where they are) finds them
    from any working directory.
    """
    from ilgnet.evaluate import lmdb_size
    from ilgnet.generate import DEFAULT_TRAIN_BATCH, DEFAULT_VAL_BATCH
    from ilgnet.nets import get_variant, train_val
    from ilgnet.solvers import solver, val_batch_for

    data_dir = data_dir.resolve()
    train_lmdb, val_lmdb, mean_file = data_dir / "train_lmdb", data_dir / "val_lmdb", data_dir / "mean.binaryproto"
    for path in (train_lmdb, val_lmdb, mean_file):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; build it with `ilgnet lmdb --split {data_dir}`")
    val_size = lmdb_size(val_lmdb)
    train_batch = train_batch or DEFAULT_TRAIN_BATCH
    val_batch = val_batch or val_batch_for(val_size, DEFAULT_VAL_BATCH)
    net = train_val(get_variant(variant), train_lmdb=str(train_lmdb), val_lmdb=str(val_lmdb),
                    mean_file=str(mean_file), train_batch=train_batch, val_batch=val_batch)
    run_dir = run_dir.resolve()
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    net_path, solver_path = run_dir / "train_val.prototxt", run_dir / "solver.prototxt"
    net_path.write_text(str(net))
    params = solver(profile, net=str(net_path), snapshot_prefix=str(run_dir / "snapshots" / variant),
                    val_size=val_size, val_batch=val_batch, mode=mode)
    if max_iter is not None:
        params.max_iter = max_iter
    if display is not None:
        params.display = display
    if test_interval is not None:
        params.test_interval = test_interval
    params.snapshot_after_train = True          # what makes Ctrl-C (sigint_effect stop) leave a snapshot
    if any(layer.type == "BatchNorm" for layer in net.layer):
        # Untrained BatchNorm statistics are zero: a test pass before any training scores nothing (or NaN).
        params.test_initialization = False
    solver_path.write_text(str(params))
    return solver_path, params


def caffe_command(solver_path: Path, *, gpu: str | None, weights: Path | None, resume_from: Path | None,
                  docker: bool, mounts: list[Path]) -> list[str]:
    args = ["train", "-solver", str(solver_path), "-sigint_effect", "stop", "-sighup_effect", "snapshot"]
    if resume_from is not None:
        args += ["-snapshot", str(resume_from)]
    elif weights is not None:
        args += ["-weights", str(weights.resolve())]
    if gpu is not None:
        args += ["-gpu", gpu]
    if docker:
        if not DOCKER_SCRIPT.is_file():
            raise FileNotFoundError(f"{DOCKER_SCRIPT} is missing (it ships with the ilgnet-caffe checkout)")
        options = [] if gpu is not None else ["--cpu"]
        for mount in mounts:
            options += ["--mount", str(mount.resolve())]
        return ["bash", str(DOCKER_SCRIPT), *options, "--", "caffe", *args]
    from ilgnet.caffe_tools import tool_path

    return [str(tool_path("caffe")), *args]


def run_caffe(command: list[str], log_path: Path, *, start_iter: int, max_iter: int, accuracy_blob: str | None,
              progress: bool = True) -> bool:
    """Runs `caffe train`, appending its output to log_path, with a progress bar over iterations, test scores
    and snapshots as they come. Returns whether Caffe stopped early (on SIGINT); raises CalledProcessError with
    the log's last lines when Caffe fails."""
    from tqdm import tqdm

    from ilgnet import caffelog
    from ilgnet.caffe_tools import cli_env

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())

    def forward_sigint(signum, frame):
        # A terminal's Ctrl-C reaches Caffe directly too; a SIGINT sent to this process alone is passed on.
        # Either way Caffe stops at the end of the current iteration (repeated requests are harmless).
        tqdm.write("ilgnet train: interrupt: Caffe snapshots and stops after the current iteration", file=sys.stderr)
        proc.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, forward_sigint)
    tail: deque[str] = deque(maxlen=30)
    stopped_early = False
    last_summary = time.monotonic()
    try:
        with open(log_path, "a") as log, \
                tqdm(total=max_iter, initial=start_iter, unit="it", desc=log_path.parent.name,
                     disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
            log.write(f"# ilgnet train: {' '.join(command)}\n")
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line)
                glog = caffelog.GLOG_PREFIX.match(line.rstrip("\n"))
                if not glog:
                    continue
                message = glog.group(2)
                if match := caffelog.TRAIN_LOSS.match(message):
                    bar.update(int(match[1]) - bar.n)
                    bar.set_postfix(loss=float(match[2]))
                elif caffelog.TEST_OUTPUT.match(message) or message.startswith(("Snapshotting to", "Resuming from")) \
                        or message == "Optimization stopped early." or line.startswith(("E", "F")):
                    tqdm.write(message, file=sys.stderr)
                stopped_early |= message == "Optimization stopped early."
                if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                    caffelog.write_train_summary(log_path, accuracy_blob=accuracy_blob)
                    last_summary = time.monotonic()
        proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command, output="".join(tail))
    caffelog.write_train_summary(log_path, accuracy_blob=accuracy_blob)
    return stopped_early


def train(variant: str, profile: str, data_dir: Path, *, name: str | None = None, runs_dir: Path = Path("runs"),
          models_dir: Path = Path("models"), gpu: str | None = None, docker: bool = False, resume: bool = False,
          weights: Path | None = None, max_iter: int | None = None, train_batch: int | None = None,
          val_batch: int | None = None, display: int | None = None, test_interval: int | None = None,
          progress: bool = True) -> Path:
    """Trains `variant` with solver `profile` on data_dir/{train_lmdb,val_lmdb,mean.binaryproto}.

    gpu: None for CPU mode, else Caffe's -gpu value ("0", "0,1", "all"). resume: continue from the run's newest
    .solverstate. weights: the initial caffemodel (default: models_dir/bvlc_googlenet.caffemodel when present,
    else random initialisation). Returns the run's final caffemodel.
    Interrupted by SIGINT, Caffe snapshots and stops; then this raises KeyboardInterrupt after saying where the
    snapshot is.
    """
    from ilgnet.nets import get_variant

    accuracy_blob = get_variant(variant).accuracy_blob
    run_dir = (Path(runs_dir) / (name or f"{variant}-{profile}")).resolve()
    resume_from = None
    if resume:
        states = snapshots(run_dir, "solverstate")
        if not states:
            raise FileNotFoundError(f"--resume: no .solverstate in {run_dir / 'snapshots'}")
        resume_from = states[-1]
        if weights is not None:
            raise ValueError("--resume continues from the run's own snapshot; --weights does not apply")
    elif snapshots(run_dir, "solverstate"):
        raise ValueError(f"{run_dir} already has snapshots (newest: {snapshots(run_dir, 'solverstate')[-1].name}); "
                         f"continue it with --resume, or start another run with --name")
    solver_path, params = write_run_files(run_dir, variant, profile, Path(data_dir),
                                          mode="CPU" if gpu is None else "GPU", train_batch=train_batch,
                                          val_batch=val_batch, max_iter=max_iter, display=display,
                                          test_interval=test_interval)
    initial = None if resume_from else _initial_weights(weights, Path(models_dir))
    start_iter = int(SNAPSHOT_ITER.search(resume_from.name)[1]) if resume_from else 0
    if resume_from:
        print(f"ilgnet train: resuming from {resume_from} (iteration {start_iter})", file=sys.stderr)
    mounts = [run_dir, Path(data_dir)] + ([initial.parent] if initial else [])
    command = caffe_command(solver_path, gpu=gpu, weights=initial, resume_from=resume_from, docker=docker,
                            mounts=mounts)
    stopped_early = run_caffe(command, run_dir / "train.log", start_iter=start_iter, max_iter=params.max_iter,
                              accuracy_blob=accuracy_blob, progress=progress)
    if stopped_early:
        print(f"ilgnet train: stopped early; snapshot {snapshots(run_dir, 'caffemodel')[-1]}; continue with "
              f"--resume", file=sys.stderr)
        raise KeyboardInterrupt
    final = run_dir / "snapshots" / f"{variant}_iter_{params.max_iter}.caffemodel"
    if not final.is_file():
        raise ValueError(f"caffe train finished without writing {final}")
    return final


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune a net variant with a solver profile (caffe train)")
    parser.add_argument("--variant", default="ilgnet", help="net variant (see `ilgnet nets`; default: ilgnet)")
    parser.add_argument("--profile", required=True, help="solver profile (see solvers/, e.g. ava2)")
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with train_lmdb, val_lmdb and mean.binaryproto (from `ilgnet lmdb`)")
    parser.add_argument("--name", help="run name: outputs go to RUNS/NAME (default: VARIANT-PROFILE)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default: runs/)")
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("--gpu", help="GPU mode on these devices: 0, 0,1 or all (caffe -gpu)")
    device.add_argument("--cpu", action="store_true", help="CPU mode")
    parser.add_argument("--docker", action="store_true",
                        help="run caffe inside the ilgnet-caffe Docker image (tools/docker-caffe.sh)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's newest .solverstate")
    parser.add_argument("--weights", type=Path,
                        help="initial caffemodel (default: models/bvlc_googlenet.caffemodel when present)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder (default: models/)")
    parser.add_argument("--max-iter", type=int, help="override the profile's max_iter")
    parser.add_argument("--train-batch", type=int, help="training batch size (default: 48, the published one)")
    parser.add_argument("--val-batch", type=int, help="validation batch size (default: the largest up to 50 that "
                                                       "divides the val set, so a test pass reads each image once)")
    parser.add_argument("--display", type=int, help="log the training loss every N iterations (default: profile's)")
    parser.add_argument("--test-interval", type=int,
                        help="test on the whole val set every N iterations (default: profile's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    model = train(args.variant, args.profile, args.data, name=args.name, runs_dir=args.runs, models_dir=args.models,
                  gpu=args.gpu, docker=args.docker, resume=args.resume, weights=args.weights,
                  max_iter=args.max_iter, train_batch=args.train_batch, val_batch=args.val_batch,
                  display=args.display, test_interval=args.test_interval)
    print(model)
    return 0
