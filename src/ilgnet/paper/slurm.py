"""A campaign as a Slurm job array: one array task per run that is not finished, `%N` of them at a time, each holding
one GPU (`--gres=gpu:1`) or N CPUs; submitted with plain `sbatch --array` (docs/SLURM.md says why not submitit).

Each task runs `ilgnet campaign PLAN --only RUN` (in an Apptainer image with `--apptainer`), so a run's lock,
campaign.json and snapshots are those of a local campaign, and any machine that sees the runs folder knows its state.
Stopping: Slurm sends SIGTERM to every process of a task it cancels (`scancel`), preempts or times out, and SIGKILL
KillWait seconds later. The batch script starts the campaign with SIGTERM blocked (Caffe inherits the mask) and
turns the SIGTERM it gets itself into the Ctrl-C of a local campaign: SIGINT to the campaign's process group, so
Caffe (`-sigint_effect stop`) snapshots and stops and the run is recorded as interrupted; the next campaign (or the
requeued task) resumes it from that snapshot.
`--signal=B:USR1@LEAD` does the same LEAD seconds before the time limit and then requeues the task itself.

Records, in RUNS/slurm/: the batch scripts as submitted (`array-STAMP.sbatch`), jobs.json (every array submitted:
its job id, time, runs in task order) and Slurm's own output per task (`JOB_TASK.log`); each run's task output is
appended to RUNS/RUN.slurm.log, beside its folder.
"""
from __future__ import annotations

import getpass
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ilgnet.bvlc.apptainer import apptainer_command, check_image
from ilgnet.errors import MissingFile, ToolFailed
from ilgnet.fileio import atomic_write_json, atomic_write_text, folder_lock, read_json
from ilgnet.paper.plans import Plan, RunSpec

FOLDER = "slurm"
JOBS_JSON = "jobs.json"
LOG_SUFFIX = ".slurm.log"
SIGNAL_LEAD_S = 300         # --signal=B:USR1@300: 5 min before the time limit, enough for a 1.2 GB snapshot
LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
        "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED")
TIMEOUT_S = 60              # for one squeue / sbatch / scontrol call
# `python -m ilgnet.cli` with SIGTERM blocked, for it and the Caffe it starts (a blocked signal stays blocked across
# fork and exec, where an ignored one would not: Caffe's glog installs a handler for SIGTERM that dies at once).
TERM_BLOCKED = ("import runpy, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
                'sys.argv[0] = "ilgnet"; runpy.run_module("ilgnet.cli", run_name="__main__", alter_sys=True)')


def _ignore(message: str) -> None:
    pass


@dataclass(frozen=True)
class SlurmOptions:
    """How a campaign's array is submitted. `task`: the arguments of `ilgnet campaign` that load the same plan in
    each task (absolute paths); `cpus`: each task trains on the CPU with that many CPUs (None: one GPU each);
    `parallel`: tasks running at once (None: as Slurm allows); `sbatch`: further sbatch options as given;
    `apptainer`: a .sif image each task runs in, binding `binds` (the data, models and runs folders)."""
    task: tuple[str, ...]
    parallel: int | None = None
    cpus: int | None = None
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    qos: str | None = None
    sbatch: tuple[str, ...] = ()
    apptainer: Path | None = None
    binds: tuple[Path, ...] = ()
    docker: bool = False
    chdir: Path | None = None      # the tasks' working folder (None: this one), for a plan's relative paths


def folder(plan: Plan) -> Path:
    return Path(plan.runs_dir).resolve() / FOLDER


def submissions(plan: Plan) -> list[dict]:
    """The arrays submitted for this runs folder, oldest first (RUNS/slurm/jobs.json; [] when none)."""
    path = folder(plan) / JOBS_JSON
    return read_json(path) if path.is_file() else []


def task_ids(plan: Plan) -> dict[str, str]:
    """Each run's latest array task, "JOB_INDEX", by run name."""
    return {name: f"{entry['job']}_{index}" for entry in submissions(plan) for index, name in enumerate(entry["runs"])}


def _require_tool(tool: str) -> None:
    """MissingFile unless Slurm's `tool` (sbatch, squeue, ...) is on PATH."""
    if shutil.which(tool) is None:
        raise MissingFile(f"no `{tool}` command here: a campaign is submitted to Slurm from a machine of the cluster "
                          f"(a login node)")


def controller() -> tuple[str, Path]:
    """The Slurm controller's "ADDRESS:PORT" as the commands here find it (the first SlurmctldHost, its address in
    brackets where given, and SlurmctldPort, default 6817, of $SLURM_CONF or /etc/slurm/slurm.conf), with that file;
    "unknown" where the file cannot be read or names none."""
    conf = Path(os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf")
    try:
        settings = [line.split("#", 1)[0].strip().split("=", 1) for line in conf.read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return "unknown", conf
    found: dict[str, str] = {}
    for key, *value in settings:
        found.setdefault(key.lower(), value[0].strip() if value else "")
    host = found.get("slurmctldhost") or found.get("controlmachine")
    if not host:
        return "unknown", conf
    name, _, address = host.partition("(")
    return f"{address.rstrip(')') or name}:{found.get('slurmctldport') or 6817}", conf


def _slurm(command: list[str]) -> subprocess.CompletedProcess:
    """Runs Slurm's `command`; ToolFailed in one line, naming the controller, when it cannot be reached."""
    _require_tool(command[0])
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        address, conf = controller()
        raise ToolFailed(f"{command[0]} did not answer within {TIMEOUT_S} s: is the Slurm controller at {address} "
                         f"({conf}) up?") from None
    if done.returncode != 0 and "Unable to contact slurm controller" in done.stderr:
        address, conf = controller()
        raise ToolFailed(f"cannot reach the Slurm controller at {address} (SlurmctldHost and SlurmctldPort of "
                         f"{conf}): {done.stderr.strip().splitlines()[-1]}")
    return done


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def job_states(ids: list[str]) -> dict[str, str]:
    """The Slurm state of array tasks "JOB_INDEX": squeue (this user's jobs) for the queued and running ones, then
    sacct (where accounting is on) or scontrol (jobs that ended within MinJobAge) for the others; those Slurm no
    longer knows are left out. {} where no squeue is here; ToolFailed when squeue fails (what is queued is not
    known, so nothing may be submitted again)."""
    if not ids or shutil.which("squeue") is None:
        return {}
    found: dict[str, str] = {}
    queue = _slurm(["squeue", "--noheader", "--array", f"--user={getpass.getuser()}", "--format", "%i|%T"])
    if queue.returncode != 0:
        raise ToolFailed(f"squeue failed: {(queue.stderr.strip().splitlines() or ['no message'])[-1]}")
    for line in queue.stdout.splitlines():
        task, _, state = line.strip().partition("|")
        found[task] = state
    rest = [i for i in ids if i not in found]
    if rest and shutil.which("sacct"):
        done = _slurm(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", ",".join(rest),
                       "--format", "JobID,State"])
        for line in done.stdout.splitlines() if done.returncode == 0 else []:
            task, _, state = line.strip().partition("|")
            found.setdefault(task, state.split()[0] if state else "")
    for job in sorted({i.split("_")[0] for i in ids if i not in found}):
        shown = _slurm(["scontrol", "--oneliner", "show", "job", job])
        for fields in map(_fields, shown.stdout.splitlines() if shown.returncode == 0 else []):
            task = f"{fields.get('ArrayJobId')}_{fields.get('ArrayTaskId')}"
            if "JobState" in fields:
                found.setdefault(task, fields["JobState"])
    return {task: state for task, state in found.items() if task in ids}


def queued(plan: Plan) -> dict[str, tuple[str, str]]:
    """The runs that have a live array task (pending, running, requeued, ...): run name -> (task id, state)."""
    ids = task_ids(plan)
    states = job_states(list(ids.values()))
    return {name: (task, states[task]) for name, task in ids.items() if states.get(task) in LIVE}


def _sbatch_options(plan: Plan, specs: list[RunSpec], options: SlurmOptions) -> list[str]:
    cap = f"%{options.parallel}" if options.parallel else ""
    lines = [f"--job-name=ilgnet-{plan.name}", f"--array=0-{len(specs) - 1}{cap}",
             f"--output={folder(plan)}/%A_%a.log", f"--chdir={Path(options.chdir or Path.cwd()).resolve()}",
             "--ntasks=1",
             f"--signal=B:USR1@{SIGNAL_LEAD_S}", "--requeue", "--open-mode=append"]
    lines += [f"--cpus-per-task={options.cpus}"] if options.cpus else ["--gres=gpu:1"]
    for name in ("partition", "account", "time", "qos"):
        if getattr(options, name):
            lines.append(f"--{name}={getattr(options, name)}")
    return lines + list(options.sbatch)


def task_command(options: SlurmOptions) -> list[str]:
    """What each array task runs, before `--only RUN`: `ilgnet campaign ...` with this Python (shared storage: the
    same paths on every node), or the image's `ilgnet` in Apptainer."""
    where = ["--cpu"] if options.cpus else ["--gpus", "0"]       # Slurm shows a task its one GPU as device 0
    arguments = ["campaign", *options.task, *where, "--quiet"] + (["--docker"] if options.docker else [])
    if options.apptainer is None:
        return [sys.executable, "-c", TERM_BLOCKED, *arguments]
    return apptainer_command(options.apptainer, ["python", "-c", TERM_BLOCKED, *arguments], gpu=not options.cpus,
                             binds=list(options.binds))


def batch_script(plan: Plan, specs: list[RunSpec], options: SlurmOptions) -> str:
    """The sbatch script of one array over `specs` (task i runs specs[i]); see the module docstring for how it
    stops."""
    quote = shlex.quote
    runs = folder(plan).parent
    head = "".join(f"#SBATCH {line}\n" for line in _sbatch_options(plan, specs, options))
    return f"""#!/bin/bash
{head}# ilgnet campaign {quote(plan.source)} --slurm: one array task per run (docs/SLURM.md)
set -m                          # the campaign in a process group of its own, where SIGINT is not ignored
runs=({' '.join(quote(s.name) for s in specs)})
run=${{runs[$SLURM_ARRAY_TASK_ID]}}
exec >>{quote(str(runs))}/"$run"{LOG_SUFFIX} 2>&1
echo "# task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} (job $SLURM_JOB_ID) on $(hostname) at $(date -u +%FT%TZ)"
( exec {' '.join(map(quote, task_command(options)))} --only "$run" ) &
pid=$!
requeue=0
trap 'echo "# SIGTERM: the run snapshots and stops"; kill -INT -- -$pid' TERM
trap 'echo "# the time limit is near: the run snapshots, stops and is requeued"; requeue=1; kill -INT -- -$pid' USR1
while :; do wait $pid; status=$?; kill -0 $pid 2>/dev/null || break; done
echo "# exit status $status at $(date -u +%FT%TZ)"
if [ $requeue = 1 ] && [ $status = 130 ]; then
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit $status
"""


def to_submit(plan: Plan, todo: list[RunSpec], notify: Callable[[str], None] = _ignore) -> list[RunSpec]:
    """`todo` (the runs a campaign would run now) less those that already have a live array task."""
    live = queued(plan)
    for name, (task, state) in live.items():
        notify(f"{name}: Slurm task {task} is {state}, not submitted again")
    return [spec for spec in todo if spec.name not in live]


def check(options: SlurmOptions, *, submitting: bool = True) -> None:
    """What can be refused before anything is submitted (or, when `submitting`, any data made): the Apptainer image
    and its binds, and (`submitting`) Slurm's sbatch and squeue here. MissingFile or BadInput in one line."""
    if options.apptainer is not None:
        check_image(options.apptainer, list(options.binds), need_binary=submitting)
    for tool in ("sbatch", "squeue") if submitting else ():
        _require_tool(tool)


def submit(plan: Plan, todo: list[RunSpec], options: SlurmOptions, *,
           notify: Callable[[str], None] = _ignore) -> str | None:
    """Submits `todo`, less the runs already queued, as one array; records it in RUNS/slurm/jobs.json and returns
    its job id (None when there was nothing to submit). ToolFailed in one line when sbatch refuses it."""
    check(options)
    base = folder(plan)
    base.mkdir(parents=True, exist_ok=True)
    with folder_lock(base):
        specs = to_submit(plan, todo, notify)
        if not specs:
            notify("nothing to submit: every run is finished, queued or running")
            return None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        script = base / f"array-{stamp}.sbatch"
        atomic_write_text(script, batch_script(plan, specs, options))
        result = _slurm(["sbatch", "--parsable", str(script)])
        if result.returncode != 0:
            script.unlink(missing_ok=True)
            last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise ToolFailed(f"sbatch refused the array: {last}")
        job = result.stdout.strip().split(";")[0]
        atomic_write_json(base / JOBS_JSON, submissions(plan) + [{
            "job": job, "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "script": str(script), "runs": [s.name for s in specs]}])
    cap = f", {options.parallel} at a time" if options.parallel else ""
    notify(f"submitted job array {job}: {len(specs)} runs{cap} ({script})")
    for index, spec in enumerate(specs):
        notify(f"{spec.name}: Slurm task {job}_{index}")
    return job


def slurm_table(plan: Plan) -> str:
    """The runs with an array task as a markdown table: run, its latest task id, Slurm's state of it ("-" where
    Slurm no longer knows it), and its log. "" when the runs folder has no submission."""
    ids = task_ids(plan)
    if not ids:
        return ""
    try:
        states = job_states(list(ids.values()))
    except (ToolFailed, MissingFile) as err:
        states = {task: f"unknown ({err})" for task in ids.values()}
    lines = ["| run | Slurm task | Slurm state | log |", "|---|---|---|---|"]
    for spec in plan.runs:
        if spec.name in ids:
            log = folder(plan).parent / f"{spec.name}{LOG_SUFFIX}"
            lines.append(f"| {spec.name} | {ids[spec.name]} | {states.get(ids[spec.name], '-')} | {log} |")
    return "\n".join(lines) + "\n"



def wait_for(plan: Plan, *, poll_s: float = 5.0, notify: Callable[[str], None] = _ignore) -> None:
    """Returns once no run of the plan has a live array task (each has ended: finished, failed, cancelled); a Ctrl-C
    stops the waiting only (the tasks go on). Tells `notify` how many tasks are left whenever that changes."""
    left = None
    while live := queued(plan):
        if len(live) != left:
            left = len(live)
            shown = ", ".join(f"{task} {state}" for task, state in list(live.values())[:3])
            more = ", ..." if left > 3 else ""
            notify(f"{left} Slurm task{'s' if left != 1 else ''} queued or running ({shown}{more})")
        time.sleep(poll_s)
