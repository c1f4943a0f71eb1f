"""A campaign: every run of a plan trained (`ilgnet.training.runs.train`) and scored on every val record once
(`ilgnet.evaluation.pycaffe_engine`), one after another on this machine, several at once (one per local GPU, or
`jobs` on the CPU), or as Ray tasks on a cluster. What is finished is skipped, what was interrupted is resumed
from its newest snapshot, and a run that diverges or fails is recorded as such without stopping the others.

The state of a run is read from its folder, runs_dir/<run name>, so that any machine seeing the folder (shared
storage) knows it:

    campaign.json     what the run is (variant, profile, seed, overrides, data folder), its state, its attempts
                      (host, GPU, start and end) and, once finished, the machine and the Caffe that ran it
    campaign.lock     "HOST PID" of the process running it now
    evaluation.json   ilgnet.evaluation.results.summarize of the final model over every val record once, with the
                      accuracy the paper's `caffe test` protocol reads off the same records (`paper_protocol`)
    val_scores.csv    the per-record results (key, label, predicted, p_0, p_1), in LMDB order; for the nets of
                      Fig. 5 also active_fraction, and fig5_maps.npz (ilgnet.paper.figures.FeatureCollector)
    + what `ilgnet train` writes (model.json, train.log, train_log.csv, curves.png, snapshots/)

States: not started (no folder, or an empty one); running (a live lock: this host's PID exists, or another host's
lock whose run logged something within the last hour); finished (evaluation.json of the final snapshot, every file
read back whole and the data folder still holding the data model.json records: ilgnet.paper.integrity); stale
(finished on data the folder no longer holds: refused, never retrained over nor counted as done); damaged (finished,
but a file is cut short or missing: re-evaluated, or retrained where its model is gone); diverged (the loss became
NaN: not retried, the same seed would diverge again); failed (an error, recorded with its message; retried by the
next campaign); interrupted (anything else: resumed by the next campaign).
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from ilgnet import defaults
from ilgnet.bvlc.logs import parse_train_log
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile, ToolFailed, UserError
from ilgnet.evaluation.reports import PAPER
from ilgnet.evaluation.results import prefix_protocol, summarize
from ilgnet.fileio import atomic_path, atomic_write_json, waiting_lock
from ilgnet.nets import get_variant
from ilgnet.paper.figures import FIG5_VARIANTS, FeatureCollector
from ilgnet.paper.integrity import check_finished
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.paper.tables import PROFILE_COLUMNS
from ilgnet.paper.timing import environment
from ilgnet.training.runs import TrainingDiverged, TrainOptions, train
from ilgnet.zoo.models import run_model, snapshot_iteration, snapshots

CAMPAIGN_JSON = "campaign.json"
LOCK = "campaign.lock"
EVALUATION_JSON = "evaluation.json"
SCORES_CSV = "val_scores.csv"
MAPS = "fig5_maps.npz"
ACTIVE = "active_fraction"
FIG5_PHOTOS = 3             # high and low val records whose feature maps Fig. 5 shows
ERROR_LOG = "campaign.log"
DATA_LOCK = ".campaign-data.lock"   # in the plan's data folder: one campaign makes its missing data at a time
STATES = ("not started", "running", "interrupted", "finished", "stale", "damaged", "diverged", "failed")
TO_RUN = ("not started", "interrupted", "failed", "damaged")    # damaged: re-evaluated (retrained without a model)
REFUSED = ("stale", "diverged", "failed")                       # what makes a campaign exit 1
STALE_LOCK_S = 3600         # another host's lock counts as live while its run logged within this many seconds
EXIT_INTERRUPTED = 130


def _ignore(message: str) -> None:
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunBusy(UserError):
    """Another live process holds the run's lock."""


@dataclass(frozen=True)
class RunState:
    """Where one run of a plan stands: its state, the last iteration its log or snapshots show, its accuracy (the
    last test pass in its log; once finished, on every val record once), and the seconds it still needs at its own
    pace (None where not known)."""
    spec: RunSpec
    run_dir: Path
    state: str
    iteration: int | None = None
    accuracy: float | None = None
    eta_s: float | None = None
    message: str = ""


def read_record(run_dir: Path) -> dict:
    """A run folder's campaign.json ({} when there is none); BadInput when it is not JSON."""
    return DataFolder.read_json(Path(run_dir) / CAMPAIGN_JSON)


def _lock_holder(run_dir: Path) -> str | None:
    """"HOST PID" of the live process running this run, else None (a stale lock: its process is gone)."""
    lock = run_dir / LOCK
    try:
        host, pid = lock.read_text().split()
    except (OSError, ValueError):
        return None
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{host} {pid}"
    log = run_dir / "train.log"
    latest = max(p.stat().st_mtime for p in (lock, log) if p.exists())
    return f"{host} {pid}" if time.time() - latest < STALE_LOCK_S else None


def _take_lock(run_dir: Path) -> None:
    """Writes run_dir/campaign.lock ("HOST PID"), replacing a stale one; RunBusy when a live process holds it."""
    lock = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _lock_holder(run_dir)
            if holder:
                raise RunBusy(f"{run_dir} is being run by {holder}") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}\n")
        return
    raise RunBusy(f"{run_dir}: {LOCK} came back while it was being replaced")


def final_snapshot(spec: RunSpec, run_dir: Path) -> Path:
    """The caffemodel `caffe train` writes at the run's last iteration."""
    return run_dir / "snapshots" / f"{spec.variant}_iter_{spec.max_iter}.caffemodel"


def _progress(spec: RunSpec, run_dir: Path) -> tuple[int | None, float | None, float | None]:
    """(last iteration, last test accuracy, iterations per second of its latest stretch) from the run's train.log."""
    log = run_dir / "train.log"
    if not log.is_file():
        return None, None, None
    frame = parse_train_log(log, accuracy_blob=get_variant(spec.variant).accuracy_blob)
    if frame.empty:
        return None, None, None
    accuracy = frame["test_accuracy"].dropna()
    trained = frame.dropna(subset=["loss"])
    rate = None
    if len(trained) >= 2:
        gaps = np.diff(trained["seconds"].to_numpy())
        pauses = np.flatnonzero(gaps > 10 * max(np.median(gaps), 1e-3))   # a stop and a resumption
        tail = trained.iloc[pauses[-1] + 1:] if len(pauses) else trained
        if len(tail) >= 2 and tail["seconds"].iloc[-1] > tail["seconds"].iloc[0]:
            rate = (tail["iteration"].iloc[-1] - tail["iteration"].iloc[0]) / (tail["seconds"].iloc[-1] -
                                                                              tail["seconds"].iloc[0])
    return (int(frame["iteration"].iloc[-1]), float(accuracy.iloc[-1]) if len(accuracy) else None, rate)


def folder_verdict(run_dir: Path, record: dict, data: Path | None = None) -> tuple[str, str, dict | None]:
    """(state, message, evaluation) of a run folder with campaign.json `record` (see the module docstring); a run
    recorded as finished is checked by ilgnet.paper.integrity against `data` (default: the folder its model.json
    names): finished, stale or damaged, the evaluation read back unless damaged."""
    holder = _lock_holder(run_dir)
    if record.get("state") == "finished":
        verdict = check_finished(run_dir, data)
        if verdict.state != "damaged" or not holder:
            note = f"{verdict.file}: {verdict.reason}" if verdict.state == "damaged" else verdict.reason
            return verdict.state, note, verdict.evaluation
    state, message = _unfinished_state(record, holder)
    return state, message, None


def folder_state(run_dir: Path, record: dict, data: Path | None = None) -> tuple[str, str]:
    """(state, message) of folder_verdict."""
    return folder_verdict(run_dir, record, data)[:2]


def _unfinished_state(record: dict, holder: str | None) -> tuple[str, str]:
    if holder:
        return "running", f"on {holder}"
    if record.get("state") in ("diverged", "failed"):
        return record["state"], record.get("message", "")
    return "interrupted", record.get("message", "")


def run_state(plan: Plan, spec: RunSpec) -> RunState:
    """Where `spec` stands, from its folder. BadInput when the folder holds a run this plan did not ask for (another
    plan's, or one of `ilgnet train`): it is never trained over."""
    run_dir = plan.run_dir(spec)
    record = read_record(run_dir)
    if record and record.get("run") != spec.record():
        raise BadInput(f"{run_dir} holds another run ({record.get('run')}), not {spec.record()}: give the plan "
                       f"another runs folder")
    if not record:
        if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
            raise BadInput(f"{run_dir} exists and was not made by a campaign: give the plan another runs folder")
        return RunState(spec, run_dir, "not started")
    iteration, accuracy, rate = _progress(spec, run_dir)
    saved = [snapshot_iteration(p) for p in snapshots(run_dir, "solverstate")]
    iteration = max([i for i in (iteration, *saved) if i is not None], default=None)
    state, message, evaluation = folder_verdict(run_dir, record, plan.data_folder(spec))
    finished = evaluation is not None
    eta = None
    if state in ("running", "interrupted") and rate and iteration is not None:
        eta = max(0.0, (spec.max_iter - iteration) / rate)
    if finished:
        accuracy = evaluation["accuracy"]
    return RunState(spec, run_dir, state, spec.max_iter if finished else iteration, accuracy, eta, message)


def status(plan: Plan) -> list[RunState]:
    """Every run's RunState, in the plan's order; a run not started gets an ETA at the pace of the finished runs of
    its net (their logs' iterations per second), where there are any."""
    from dataclasses import replace

    from ilgnet.paper.timing import training_time

    states = [run_state(plan, spec) for spec in plan.runs]
    pace: dict[str, list[float]] = {}
    for s in states:
        if s.state == "finished" and (spent := training_time(s.run_dir / "train.log")):
            pace.setdefault(s.spec.variant, []).extend([spent["iterations_per_second"]] * bool(
                spent["iterations_per_second"]))
    return [replace(s, eta_s=s.spec.max_iter * len(pace[s.spec.variant]) / sum(pace[s.spec.variant]))
            if s.state == "not started" and pace.get(s.spec.variant) else s for s in states]


def _record(plan: Plan, spec: RunSpec, run_dir: Path, *, attempt: dict | None = None, **changes) -> None:
    """Updates run_dir/campaign.json with `changes`; `attempt` starts a new entry of `attempts`, and `outcome` (a
    state) closes the last one."""
    record = read_record(run_dir) or {"run": spec.record(), "name": spec.name, "plan": plan.name,
                                      "data": str(Path(plan.data_folder(spec)).resolve()), "attempts": []}
    record["tables"] = sorted(set(record.get("tables", [])) | set(spec.tables))
    if attempt is not None:
        record["attempts"].append(attempt)
    if "outcome" in changes and record["attempts"]:
        record["attempts"][-1].update(ended=_now(), outcome=changes["state"])
    changes.pop("outcome", None)
    record.update(changes, updated=_now())
    atomic_write_json(run_dir / CAMPAIGN_JSON, record)


def _train(plan: Plan, spec: RunSpec, run_dir: Path, *, gpu: str | None, docker: bool, progress: bool,
           notify: Callable[[str], None]) -> Path:
    """The run's final caffemodel: trained, resumed from its newest snapshot, or already there."""
    final = final_snapshot(spec, run_dir)
    if final.is_file():
        return final
    options = TrainOptions(spec.variant, spec.profile, plan.data_folder(spec), name=spec.name,
                           runs_dir=plan.runs_dir, models_dir=plan.models_dir, gpu=gpu, docker=docker,
                           resume=bool(snapshots(run_dir, "solverstate")), seed=spec.seed, **spec.options)
    return train(options, progress=progress, notify=lambda message: notify(f"{spec.name}: {message}"))


def evaluate_run(plan: Plan, spec: RunSpec, run_dir: Path, caffemodel: Path, *, gpu: str | None, docker: bool,
                 progress: bool) -> dict:
    """Scores every val record once with the run's final model and its own mean image; writes evaluation.json
    (with the paper protocol's accuracy on the same records) and val_scores.csv; returns the evaluation."""
    from ilgnet.evaluation import caffe_engine, pycaffe_engine

    model = run_model(run_dir, caffemodel)
    data = DataFolder(plan.data_folder(spec))
    device = None if gpu is None else int(gpu.split(",")[0])
    batch = spec.options.get("val_batch") or defaults.VAL_BATCH          # the memory the plan allowed its test net
    features = FeatureCollector(FIG5_PHOTOS) if spec.variant in FIG5_VARIANTS and not docker else None
    if docker:
        frame = caffe_engine.score_lmdb(model.variant, model.caffemodel, data.lmdb("val"), model.mean, batch,
                                        gpu=device, docker=True)
    else:
        # The snapshot is Caffe's own of this run's net: checking it against the net again would only cost time.
        frame = pycaffe_engine.score_lmdb(model.variant, model.caffemodel, data.lmdb("val"), model.mean, batch,
                                          gpu=device, progress=progress, check=False, on_batch=features)
    result = summarize(frame, variant=model.variant, weights=model.caffemodel, lmdb_path=data.lmdb("val"),
                       mean_file=model.mean)
    protocol = PROFILE_COLUMNS[spec.profile][0]
    result["engine"] = "caffe" if docker else "pycaffe"
    result["paper_protocol"] = prefix_protocol(frame, batch=PAPER[protocol]["batch"],
                                               iterations=PAPER[protocol]["iterations"])
    if unreached := data.unreached("val"):
        result["val_list"] = {"file": str(data.list_file("val")), "listed": unreached[0], "not_in_lmdb": unreached[1]}
    if features is not None:
        frame[ACTIVE] = frame["key"].map(features.active)
        with atomic_path(run_dir / MAPS) as partial:
            features.save(partial)
    with atomic_path(run_dir / SCORES_CSV) as partial:
        frame.to_csv(partial, index=False)
    atomic_write_json(run_dir / EVALUATION_JSON, result)
    return result


def execute(plan: Plan, spec: RunSpec, *, gpu: str | None = None, docker: bool = False, progress: bool = True,
            notify: Callable[[str], None] = _ignore) -> str:
    """Trains (or resumes) and evaluates one run, holding its lock; returns its state: finished, diverged or failed
    (the error is recorded in campaign.json, and a bug's traceback in campaign.log), or running when another live
    process holds the run. A Ctrl-C (KeyboardInterrupt, after Caffe's snapshot) is recorded as an interruption and
    raised."""
    run_dir = plan.run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _take_lock(run_dir)
    except RunBusy as busy:
        notify(str(busy))
        return "running"
    try:
        _record(plan, spec, run_dir, state="started", message="",
                attempt={"started": _now(), "host": socket.gethostname(), "pid": os.getpid(), "gpu": gpu})
        try:
            caffemodel = _train(plan, spec, run_dir, gpu=gpu, docker=docker, progress=progress, notify=notify)
            evaluate_run(plan, spec, run_dir, caffemodel, gpu=gpu, docker=docker, progress=progress)
        except KeyboardInterrupt:
            _record(plan, spec, run_dir, state="interrupted", outcome=True,
                    message="interrupted (Ctrl-C); the next campaign resumes it from its newest snapshot")
            raise
        except TrainingDiverged as err:
            state, message = "diverged", str(err)
        except UserError as err:
            state, message = "failed", str(err)
        except Exception as err:                        # a bug: recorded, with its traceback, and the others go on
            with open(run_dir / ERROR_LOG, "a") as log:
                log.write(f"{_now()}\n{traceback.format_exc()}\n")
            state, message = "failed", f"{type(err).__name__}: {err} (traceback in {run_dir / ERROR_LOG})"
        else:
            _record(plan, spec, run_dir, state="finished", message="", outcome=True, environment=environment(gpu))
            prune_snapshots(spec, run_dir, plan.snapshots)
            return "finished"
        _record(plan, spec, run_dir, state=state, message=message, outcome=True)
        return state
    finally:
        (run_dir / LOCK).unlink(missing_ok=True)


def prune_snapshots(spec: RunSpec, run_dir: Path, keep: str) -> None:
    """After a run is finished: keep "all" its snapshots, the "final" caffemodel only, or "none" (its scores, logs
    and curves stay; a plan that keeps no model, like the toy demo, says so)."""
    if keep == "all":
        return
    final = final_snapshot(spec, run_dir)
    for path in (run_dir / "snapshots").glob("*"):
        if keep == "none" or path != final:
            path.unlink()


def missing_data(plan: Plan) -> list[Path]:
    """The data folders the plan's runs read that have no train_lmdb, val_lmdb or mean yet."""
    folders = dict.fromkeys(plan.data_folder(spec) for spec in plan.runs)
    missing = []
    for folder in folders:
        try:
            DataFolder(folder).require_lmdbs()
        except UserError:
            missing.append(folder)
    return missing


def prepare_data(plan: Plan, *, progress: bool = True, notify: Callable[[str], None] = _ignore) -> list[Path]:
    """Makes the plan's missing data folders from its synthetic AVA (ilgnet.data.synthetic: AVA.txt and photos in
    DATA/synthetic-ava, made once); returns the folders it made. MissingFile naming them, and how to make them,
    when the plan has no synthetic AVA."""
    missing = missing_data(plan)
    if not missing:
        return []
    if plan.synthetic is None:
        raise MissingFile(f"data folders missing: {', '.join(map(str, missing))} (`ilgnet split` and `ilgnet lmdb`, "
                          f"or `make paper-data`, make them; see docs/PAPER.md)")
    # Two campaigns on one data folder: the second waits for the first, then finds its data made.
    Path(plan.data_dir).mkdir(parents=True, exist_ok=True)
    with waiting_lock(Path(plan.data_dir) / DATA_LOCK):
        return _make_data(plan, missing_data(plan), progress=progress, notify=notify)


def _make_data(plan: Plan, missing: list[Path], *, progress: bool, notify: Callable[[str], None]) -> list[Path]:
    """prepare_data's work, under the data folder's lock: the synthetic AVA (again when unfinished), then each
    missing data folder split and built."""
    from ilgnet.data import synthetic
    from ilgnet.data.ava import read_ava_txt
    from ilgnet.data.lmdb_build import build_split
    from ilgnet.data.partitions import ava1_split, ava2_split, write_split

    ava = Path(plan.data_dir) / "synthetic-ava"
    images, seed = plan.synthetic["images"], plan.synthetic["seed"]
    if not synthetic.is_complete(ava, n_images=images, seed=seed):
        redo = " (again: the one there was not finished, or was made with other settings)" if ava.exists() else ""
        notify(f"a synthetic AVA of {images:,} photos in {ava}{redo}")
        synthetic.generate(ava, n_images=images, seed=seed)
    meta = read_ava_txt(ava / "AVA.txt")
    for folder in missing:
        name = folder.name.removesuffix("-320")
        if name == "ava2":
            train_rows, val_rows, facts = ava2_split(meta, seed=seed)
        else:
            delta = 1.0 if name == "ava1-delta1" else 0.0
            train_rows, val_rows, facts = ava1_split(meta, test_size=max(1, images // 10), delta=delta, seed=seed)
        notify(f"{folder}: split {name} of the synthetic AVA, LMDBs at {320 if folder.name.endswith('-320') else 256}")
        write_split(folder, train_rows, val_rows, {"partition": name.split("-")[0], "ava_txt": str(ava / "AVA.txt"),
                                                   "ava_txt_images": len(meta), "synthetic": True, **facts})
        build_split(folder, ava / "images", resize=320 if folder.name.endswith("-320") else 256, seed=seed,
                    progress=progress)
    return missing


def _child(plan: Plan, spec: RunSpec, gpu: str | None, docker: bool) -> None:
    """A spawned process's run (one per GPU): its state is in its folder; the exit status says only whether it was
    interrupted."""
    try:
        execute(plan, spec, gpu=gpu, docker=docker, progress=False)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None


def _run_in_processes(plan: Plan, specs: list[RunSpec], slots: list[str | None], *, docker: bool,
                      notify: Callable[[str], None]) -> None:
    """Runs `specs` in spawned processes, one per slot (a GPU id, or None for the CPU) at a time. On Ctrl-C the
    running ones are interrupted too (Caffe snapshots), waited for, and KeyboardInterrupt is raised."""
    context = multiprocessing.get_context("spawn")
    pending, free, running = list(specs), list(slots), {}
    try:
        while pending or running:
            while pending and free:
                spec, slot = pending.pop(0), free.pop(0)
                process = context.Process(target=_child, args=(plan, spec, slot, docker), name=spec.name)
                process.start()
                running[process.sentinel] = (process, spec, slot)
                notify(f"{spec.name}: started on {'the CPU' if slot is None else f'GPU {slot}'}")
            for sentinel in wait(list(running)):
                process, spec, slot = running.pop(sentinel)
                process.join()
                free.append(slot)
                if (process.exitcode or 0) < 0 and plan.run_dir(spec).is_dir():     # killed: no handler ran
                    how = signal.Signals(-process.exitcode).name if -process.exitcode in signal.valid_signals() \
                        else f"signal {-process.exitcode}"
                    run_dir = plan.run_dir(spec)
                    _record(plan, spec, run_dir, state="failed", message=f"its process was killed by {how}; the next "
                            f"campaign resumes it from its newest snapshot", **_release_lost(run_dir))
                notify(f"{spec.name}: {run_state(plan, spec).state}")
    except KeyboardInterrupt:
        for process, _, _ in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process, _, _ in running.values():
            process.join()
        raise


def _ray_task(plan: Plan, spec: RunSpec, docker: bool) -> str:
    """A Ray task's run: on the GPU Ray gave it (CUDA_VISIBLE_DEVICES shows it as device 0), else on the CPU."""
    from ilgnet.scoring.cluster import import_ray

    return execute(plan, spec, gpu="0" if import_ray().get_gpu_ids() else None, docker=docker, progress=False)


def _release_lost(run_dir: Path) -> dict:
    """For a run whose process is known to be gone (its Ray task died with its node): removes the lock that names the
    host and PID of the run's last, unfinished attempt, which would otherwise keep the run "running" for
    STALE_LOCK_S, and returns {"outcome": True} to close that attempt in _record ({} when none is open)."""
    last = (read_record(run_dir).get("attempts") or [{"ended": None}])[-1]
    if "ended" in last:
        return {}
    try:
        held = (run_dir / LOCK).read_text().split()
    except OSError:
        held = []
    if held == [str(last.get("host")), str(last.get("pid"))]:
        (run_dir / LOCK).unlink(missing_ok=True)
    return {"outcome": True}


def _run_on_ray(plan: Plan, specs: list[RunSpec], address: str, *, cpus: float | None, docker: bool,
                notify: Callable[[str], None]) -> None:
    """One Ray task per run holding one GPU (or `cpus` CPUs, on the CPU): on the cluster at `address`, or the Ray
    runtime this process already started, else a local one. A task that dies is recorded as failed."""
    from ilgnet.scoring.cluster import import_ray

    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address or None, logging_level="WARNING", include_dashboard=False)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            raise ToolFailed(f"cannot reach {where}: {str(err).strip().splitlines()[0]}") from None
    resources = {"num_cpus": cpus, "num_gpus": 0} if cpus else {"num_cpus": 1, "num_gpus": 1}
    task = ray.remote(_ray_task).options(max_retries=0, **resources)
    refs = {}
    try:
        for spec in specs:
            refs[task.remote(plan, spec, docker)] = spec
            notify(f"{spec.name}: submitted to Ray ({'GPU' if not cpus else f'{cpus:g} CPUs'})")
        while refs:
            [done], _ = ray.wait(list(refs), num_returns=1)
            spec = refs.pop(done)
            try:
                state = ray.get(done)
            except ray.exceptions.RayError as err:
                run_dir = plan.run_dir(spec)
                run_dir.mkdir(parents=True, exist_ok=True)
                message = str(err).strip().splitlines()[-1]
                _record(plan, spec, run_dir, state="failed", message=f"the Ray task failed: {message}; the next "
                        f"campaign resumes it from its newest snapshot", **_release_lost(run_dir))
                state = "failed"
            notify(f"{spec.name}: {state}")
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        raise
    finally:
        if started:
            ray.shutdown()


def run_campaign(plan: Plan, *, gpus: list[str] | None = None, jobs: int = 1, ray: str | None = None,
                 ray_cpus: float | None = None, docker: bool = False, progress: bool = True,
                 notify: Callable[[str], None] = _ignore, slurm=None) -> list[RunState]:
    """Runs what the plan has not done yet (not started, interrupted, failed), skipping what is finished, running
    elsewhere or diverged; returns every run's state afterwards.

    Where: `ray` (an address, or "" for the runtime this process started or a local one): a Ray task per run;
    `gpus` of this machine: one run per GPU at a time (one GPU: one after another, in this process); else the CPU,
    `jobs` runs at a time; `slurm` (ilgnet.paper.slurm.SlurmOptions): submitted as one Slurm job array, and not
    waited for. The data folders are checked (or made, for a synthetic plan) before any run starts, and a Ray
    address that takes no connection is refused before that (ToolFailed, in seconds)."""
    if ray:
        from ilgnet.scoring.cluster import check_reachable

        check_reachable(ray)
    prepare_data(plan, progress=progress, notify=notify)
    states = status(plan)
    todo = [s.spec for s in states if s.state in TO_RUN]
    for s in states:
        if s.state == "stale":
            notify(f"{s.spec.name}: stale, not run again: {s.message}; its results stand for the data it recorded "
                   f"only (move {s.run_dir} aside to train it on today's data, or restore its data)")
        elif s.state not in TO_RUN:
            notify(f"{s.spec.name}: {s.state}{f' ({s.message})' if s.message else ''}, skipped")
    if slurm is not None:
        from ilgnet.paper.slurm import submit

        submit(plan, todo, slurm, notify=notify)
    elif ray is not None:
        _run_on_ray(plan, todo, ray, cpus=ray_cpus, docker=docker, notify=notify)
    elif (gpus and len(gpus) > 1) or jobs > 1:
        _run_in_processes(plan, todo, list(gpus) if gpus else [None] * jobs, docker=docker, notify=notify)
    else:
        gpu = gpus[0] if gpus else None
        for spec in todo:
            notify(f"{spec.name}: {run_state(plan, spec).state}, now on {'the CPU' if gpu is None else f'GPU {gpu}'}")
            notify(f"{spec.name}: {execute(plan, spec, gpu=gpu, docker=docker, progress=progress, notify=notify)}")
    return status(plan)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status_table(states: list[RunState]) -> str:
    """The runs as a markdown table: state, iteration of max_iter, accuracy (the last test pass in the log; of a
    finished run, on every val record once), ETA, and the message of a diverged, failed or running one; with the
    count per state and the time the unfinished runs still need."""
    lines = ["| run | tables | state | iteration | accuracy | ETA | note |", "|---|---|---|---:|---:|---:|---|"]
    for s in states:
        iteration = "-" if s.iteration is None else f"{s.iteration:,} / {s.spec.max_iter:,}"
        accuracy = "-" if s.accuracy is None else f"{100 * s.accuracy:.2f} %"
        note = s.message.replace("|", "\\|")
        lines.append(f"| {s.spec.name} | {', '.join(s.spec.tables) or '-'} | {s.state} | {iteration} | {accuracy} | "
                     f"{_duration(s.eta_s)} | {note} |")
    counts = {state: sum(s.state == state for s in states) for state in STATES}
    known = [s.eta_s for s in states if s.eta_s is not None]
    lines.append("\n" + ", ".join(f"{n} {state}" for state, n in counts.items() if n) +
                 (f"; the runs not finished need {_duration(sum(known))} more (at their own pace, or at that of "
                  f"their net's finished runs)" if known else ""))
    return "\n".join(lines) + "\n"
