"""Where each run of a campaign stands, read from its folder, runs_dir/<run name>, so that any machine seeing the
folder (shared storage) knows it; the run's lock and its campaign.json record; the status table.


    campaign.json     what the run is (variant, profile, seed, overrides, data folder), its state, its attempts
                      (host, GPU, start and end) and, once finished, the machine and the Caffe that ran it
    campaign.lock     "HOST PID" of the process running it now
    evaluation.json   ilgnet.evaluation.Evaluation.to_json of the final model over every val record once (as
                      `ilgnet test --json`), with the accuracy the paper's `caffe test` protocol reads off the same
                      records (`paper_protocol`) and the scoring time (`scoring`)
    val_scores.csv    the per-record results (key, label, predicted, p_0, p_1), in LMDB order; for the nets of
                      Fig. 5 also active_fraction, and fig5_maps.npz (ilgnet.paper.figures.FeatureCollector)
    + what `ilgnet train` writes (ilgnet.zoo.runfolder.RunFolder)

States: not started (no folder, or an empty one); running (a live lock: this host's PID exists, or another host's
lock whose run logged something within the last hour); finished (evaluation.json of the final snapshot, every file
read back whole and the data folder still holding the data run record records: ilgnet.paper.integrity); stale
(finished on data the folder no longer holds: refused, never retrained over nor counted as done); damaged (finished,
but a file is cut short or missing, or campaign.json is: re-evaluated, or retrained where its model is gone);
diverged (the loss became NaN: not retried, the same seed would diverge again); failed (an error, recorded with its
message; retried by the next campaign); interrupted (anything else: resumed by the next campaign).
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ilgnet.bvlc.logs import parse_train_log
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, UserError
from ilgnet.fileio import atomic_write_json
from ilgnet.nets import get_variant
from ilgnet.paper.integrity import check_finished
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.paper.timing import training_time
from ilgnet.bvlc.io import snapshot_iteration
from ilgnet.zoo.runfolder import RunFolder

CAMPAIGN_JSON = "campaign.json"
LOCK = "campaign.lock"
FIG5_PHOTOS = 3             # high and low val records whose feature maps Fig. 5 shows
ERROR_LOG = "campaign.log"
DATA_LOCK = ".campaign-data.lock"   # in the plan's data folder: one campaign makes its missing data at a time
STATES = ("not started", "running", "interrupted", "finished", "stale", "damaged", "diverged", "failed")
TO_RUN = ("not started", "interrupted", "failed", "damaged")    # damaged: re-evaluated (retrained without a model)
REFUSED = ("stale", "diverged", "failed")                       # what makes a campaign exit 1
STALE_LOCK_S = 3600         # another host's lock counts as live while its run logged within this many seconds
EXIT_INTERRUPTED = 130


def ignore(message: str) -> None:
    """The default `notify` of the campaign's functions: says nothing."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunBusy(UserError):
    """Another live process holds the run's lock."""


@dataclass(frozen=True)
class RunState:
    """Where one run of a plan stands: its state, the last iteration its log or snapshots show, its accuracy (the
    last test pass in its log, at iteration `tested_at`; once finished, on every val record once, `tested_at`
    None), and the seconds it still needs at its own pace (None where not known)."""
    spec: RunSpec
    run_dir: Path
    state: str
    iteration: int | None = None
    accuracy: float | None = None
    eta_s: float | None = None
    message: str = ""
    tested_at: int | None = None


def read_record(run_dir: Path) -> dict:
    """A run folder's campaign.json ({} when there is none); BadInput when it is not JSON."""
    return DataFolder.read_json(Path(run_dir) / CAMPAIGN_JSON)


def lock_holder(run_dir: Path) -> str | None:
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
    log = RunFolder(run_dir).train_log
    latest = max(p.stat().st_mtime for p in (lock, log) if p.exists())
    return f"{host} {pid}" if time.time() - latest < STALE_LOCK_S else None


def take_lock(run_dir: Path) -> None:
    """Writes run_dir/campaign.lock ("HOST PID"), replacing a stale one; RunBusy when a live process holds it."""
    lock = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock_holder(run_dir)
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
    return RunFolder(run_dir).snapshot(spec.variant, spec.max_iter)


def _progress(spec: RunSpec, run_dir: Path) -> tuple[int | None, tuple[float, int] | None, float | None]:
    """(last iteration, (last test accuracy, its iteration), iterations per second of its latest stretch) from the
    run's Caffe log."""
    log = RunFolder(run_dir).train_log
    if not log.is_file():
        return None, None, None
    frame = parse_train_log(log, accuracy_blob=get_variant(spec.variant).accuracy_blob)
    if frame.empty:
        return None, None, None
    tests = frame.dropna(subset=["test_accuracy"])
    trained = frame.dropna(subset=["loss"])
    rate = None
    if len(trained) >= 2:
        gaps = np.diff(trained["seconds"].to_numpy())
        pauses = np.flatnonzero(gaps > 10 * max(np.median(gaps), 1e-3))   # a stop and a resumption
        tail = trained.iloc[pauses[-1] + 1:] if len(pauses) else trained
        if len(tail) >= 2 and tail["seconds"].iloc[-1] > tail["seconds"].iloc[0]:
            rate = (tail["iteration"].iloc[-1] - tail["iteration"].iloc[0]) / (tail["seconds"].iloc[-1] -
                                                                              tail["seconds"].iloc[0])
    tested = (float(tests["test_accuracy"].iloc[-1]), int(tests["iteration"].iloc[-1])) if len(tests) else None
    return int(frame["iteration"].iloc[-1]), tested, rate


def folder_verdict(run_dir: Path, record: dict, data: Path | None = None) -> tuple[str, str, dict | None]:
    """(state, message, evaluation) of a run folder with campaign.json `record` (see the module docstring); a run
    recorded as finished is checked by ilgnet.paper.integrity against `data` (default: the folder its run record
    names): finished, stale or damaged, the evaluation read back unless damaged."""
    holder = lock_holder(run_dir)
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
    try:
        record = read_record(run_dir)
    except BadInput as err:             # cut short or not JSON: the run is redone from what its folder holds
        return RunState(spec, run_dir, "damaged", message=str(err))
    if record and record.get("run") != spec.record():
        raise BadInput(f"{run_dir} holds another run ({record.get('run')}), not {spec.record()}: give the plan "
                       f"another runs folder")
    if not record:
        if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
            raise BadInput(f"{run_dir} exists and was not made by a campaign: give the plan another runs folder")
        return RunState(spec, run_dir, "not started")
    iteration, tested, rate = _progress(spec, run_dir)
    saved = [snapshot_iteration(p) for p in RunFolder(run_dir).snapshots("solverstate")]
    iteration = max([i for i in (iteration, *saved) if i is not None], default=None)
    state, message, evaluation = folder_verdict(run_dir, record, plan.data_folder(spec))
    finished = evaluation is not None
    eta = None
    if state in ("running", "interrupted") and rate and iteration is not None:
        eta = max(0.0, (spec.max_iter - iteration) / rate)
    accuracy, tested_at = (evaluation["accuracy"], None) if finished else tested or (None, None)
    return RunState(spec, run_dir, state, spec.max_iter if finished else iteration, accuracy, eta, message, tested_at)


def status(plan: Plan) -> list[RunState]:
    """Every run's RunState, in the plan's order; a run not started gets an ETA at the pace of the finished runs of
    its net (their logs' iterations per second), where there are any."""
    states = [run_state(plan, spec) for spec in plan.runs]
    pace: dict[str, list[float]] = {}
    for s in states:
        if s.state == "finished" and (spent := training_time(RunFolder(s.run_dir).train_log)):
            pace.setdefault(s.spec.variant, []).extend([spent["iterations_per_second"]] * bool(
                spent["iterations_per_second"]))
    return [replace(s, eta_s=s.spec.max_iter * len(pace[s.spec.variant]) / sum(pace[s.spec.variant]))
            if s.state == "not started" and pace.get(s.spec.variant) else s for s in states]


def release_lost(run_dir: Path) -> dict:
    """For a run whose process is known to be gone (its Ray task died with its node): removes the lock that names the
    host and PID of the run's last, unfinished attempt, which would otherwise keep the run "running" for
    STALE_LOCK_S, and returns {"outcome": True} to close that attempt in update_record ({} when none is open)."""
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


def update_record(plan: Plan, spec: RunSpec, run_dir: Path, *, attempt: dict | None = None, **changes) -> None:
    """Updates run_dir/campaign.json with `changes`; `attempt` starts a new entry of `attempts`, and `outcome` (a
    state) closes the last one. A campaign.json that cannot be read is set aside as campaign.json.damaged and a new
    one begun."""
    try:
        record = read_record(run_dir)
    except BadInput:
        os.replace(run_dir / CAMPAIGN_JSON, run_dir / f"{CAMPAIGN_JSON}.damaged")
        record = {}
    record = record or {"run": spec.record(), "name": spec.name, "plan": plan.name,
                                      "data": str(Path(plan.data_folder(spec)).resolve()), "attempts": []}
    record["tables"] = sorted(set(record.get("tables", [])) | set(spec.tables))
    if attempt is not None:
        record["attempts"].append(attempt)
    if "outcome" in changes and record["attempts"]:
        record["attempts"][-1].update(ended=now(), outcome=changes["state"])
    changes.pop("outcome", None)
    record.update(changes, updated=now())
    atomic_write_json(run_dir / CAMPAIGN_JSON, record)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status_table(states: list[RunState]) -> str:
    """The runs as a markdown table: state, iteration of max_iter, accuracy (the last test pass in the log, and
    its iteration; of a finished run, on every val record once), ETA, and the message of a diverged, failed or
    running one; with the count per state and the time the unfinished runs still need."""
    lines = ["| run | tables | state | iteration | accuracy | ETA | note |", "|---|---|---|---:|---:|---:|---|"]
    for s in states:
        iteration = "-" if s.iteration is None else f"{s.iteration:,} / {s.spec.max_iter:,}"
        accuracy = "-" if s.accuracy is None else f"{100 * s.accuracy:.2f} %" + (
            "" if s.tested_at is None else f" (test pass at {s.tested_at:,})")
        note = s.message.replace("|", "\\|")
        lines.append(f"| {s.spec.name} | {', '.join(s.spec.tables) or '-'} | {s.state} | {iteration} | {accuracy} | "
                     f"{_duration(s.eta_s)} | {note} |")
    counts = {state: sum(s.state == state for s in states) for state in STATES}
    known = [s.eta_s for s in states if s.eta_s is not None]
    lines.append("\n" + ", ".join(f"{n} {state}" for state, n in counts.items() if n) +
                 (f"; the runs not finished need {_duration(sum(known))} more (at their own pace, or at that of "
                  f"their net's finished runs)" if known else ""))
    return "\n".join(lines) + "\n"
