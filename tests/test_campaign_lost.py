"""A campaign's machine lost mid-run, made real with SIGKILL (what the kernel's OOM killer, a preempted node or a
pulled plug leave: no handler runs, no snapshot is written at the end): Caffe killed under a live campaign is a
failed run, recorded with the signal, and the campaign after it resumes the run from its newest snapshot; a whole
campaign killed with its Caffe leaves a lock whose process is gone, which the next campaign takes over, resuming the
run too. Real Caffe on the CPU, googlenet-bn-third at toy size on a synthetic AVA."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL

RUN = f"{SMALL}-ava2-seed1"


def write_plan(folder: Path) -> Path:
    """A toy plan whose run snapshots every 2 of its 8 iterations, so that a kill lands after a snapshot."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / "plan.toml"
    plan.write_text(f"""runs = "{folder / 'runs'}"
data = "{folder / 'data'}"
models = "{folder / 'models'}"
snapshots = "all"
[train]
max_iter = 8
train_batch = 2
display = 1
test_interval = 8
snapshot = 2
[synthetic]
images = 100
seed = 1
[[run]]
variant = "{SMALL}"
profile = "ava2"
seeds = [1]
tables = ["table4"]
""")
    return plan


def campaign(plan: Path, log: Path) -> subprocess.Popen:
    """`ilgnet campaign PLAN` in a process group of its own (so that the whole of it can be killed)."""
    return subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "campaign", str(plan), "--quiet"], cwd=plan.parent,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def caffe_of(group: int) -> int | None:
    """The PID of `caffe train` in process group `group` (the campaign started here), else None."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == group:
                words = (entry / "cmdline").read_bytes().split(b"\0")
                if Path(words[0].decode()).name == "caffe" and b"train" in words:
                    return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


def wait_for_snapshot(proc: subprocess.Popen, run: Path, log: Path, iteration: int) -> None:
    """Until the run has the solver state of `iteration` (and its campaign still runs)."""
    deadline = time.monotonic() + 400
    while not (run / "snapshots" / f"{SMALL}_iter_{iteration}.solverstate").exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.02)
    time.sleep(0.3)                                 # Caffe writes the caffemodel, then the solver state: let it end


def resumed_from(run: Path) -> list[int]:
    """The iterations each `caffe train` of the run's log restored its solver from (Caffe's own line)."""
    return [int(line.rsplit("_iter_", 1)[1].split(".")[0]) for line in (run / "train.log").read_text().splitlines()
            if "] Resuming from " in line]


@pytest.mark.parametrize("lost", ["caffe", "the whole campaign"])
def test_a_run_whose_process_is_killed_is_resumed_by_the_next_campaign(caffe, tmp_path, lost):
    plan, run = write_plan(tmp_path), tmp_path / "runs" / RUN
    first = campaign(plan, tmp_path / "first.log")
    wait_for_snapshot(first, run, tmp_path / "first.log", 4)
    if lost == "caffe":
        pid = caffe_of(first.pid)
        assert pid is not None, "no caffe train found in the campaign's process group"
        os.kill(pid, signal.SIGKILL)
        assert first.wait(timeout=120) == 1, (tmp_path / "first.log").read_text()[-2000:]
        record = json.loads((run / "campaign.json").read_text())
        assert record["state"] == "failed" and "killed by SIGKILL" in record["message"], record
        assert record["attempts"][-1]["outcome"] == "failed"
    else:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        deadline = time.monotonic() + 30
        while caffe_of(first.pid) is not None and time.monotonic() < deadline:     # the group's caffe too
            time.sleep(0.05)
        assert (run / "campaign.lock").exists()                 # left by a process that is gone
    status = subprocess.run([sys.executable, "-m", "ilgnet.cli", "campaign", str(plan), "--status"], cwd=tmp_path,
                            capture_output=True, text=True)
    state = "failed" if lost == "caffe" else "interrupted"
    assert f"| {RUN} | table4 | {state} |" in status.stdout, status.stdout + status.stderr
    saved = sorted(int(p.stem.rsplit("_", 1)[1]) for p in (run / "snapshots").glob("*.solverstate"))
    again = campaign(plan, tmp_path / "again.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()[-2000:]
    assert resumed_from(run) == [saved[-1]] and saved[-1] >= 4          # from the newest snapshot, not from 0
    record = json.loads((run / "campaign.json").read_text())
    assert record["state"] == "finished" and record["attempts"][-1]["outcome"] == "finished"
    assert json.loads((run / "evaluation.json").read_text())["images"] > 0
    assert not (run / "campaign.lock").exists()


def test_a_lost_tasks_lock_is_released_and_its_attempt_closed(tmp_path):
    """What the campaign does for a run whose Ray task died with its node (or whose process was killed): the lock
    of that very attempt (its host and PID) goes, so the next campaign need not wait an hour for it to go stale; a
    lock another process took since is left alone."""
    from ilgnet.paper.runstate import release_lost

    run = tmp_path / "run"
    run.mkdir()
    attempt = {"started": "2026-01-01T00:00:00Z", "host": "node-7", "pid": 4242, "gpu": "0"}
    (run / "campaign.json").write_text(json.dumps({"attempts": [attempt]}))
    (run / "campaign.lock").write_text("node-9 5151\n")
    assert release_lost(run) == {"outcome": True} and (run / "campaign.lock").exists()
    (run / "campaign.lock").write_text("node-7 4242\n")
    assert release_lost(run) == {"outcome": True} and not (run / "campaign.lock").exists()
    (run / "campaign.json").write_text(json.dumps({"attempts": [{**attempt, "ended": "x", "outcome": "failed"}]}))
    assert release_lost(run) == {}
