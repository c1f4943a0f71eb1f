"""A real one-node Slurm cluster on this machine for the `slurm` tests (a pytest plugin: `pytest_plugins`).

Debian 12's munge and slurm-wlm 22.05 (`make test-tools` installs slurmctld, slurmd, slurm-client and munge): a
munge key made for the test, munged on its own socket (slurm.conf's AuthInfo=socket=... points Slurm's daemons and
commands at it), slurmctld and slurmd in the foreground (-D) as this test's own processes, with their state, spool
and logs in a temporary folder, ProctrackType=proctrack/linuxproc and TaskPlugin=task/none (no cgroups needed),
no accounting database (sacct says so; squeue and scontrol answer). SLURM_CONF points the commands at it while the
fixture lives. At the end every job is cancelled and waited for, and each daemon is stopped by its PID.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
START_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, what: str, logs: list[Path], seconds: float = START_S) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"{log}:\n{log.read_text()[-2000:]}" for log in logs if log.is_file())
            raise RuntimeError(f"the test's Slurm cluster: {what} within {seconds} s\n{tails}")
        time.sleep(0.5)


def _conf(root: Path, node: str, cpus: int) -> str:
    return f"""ClusterName=ilgnet-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=60
SchedulerParameters=sched_interval=1
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def sbin(name: str) -> str:
    """A daemon's path: on PATH, else in /usr/sbin (not on a user's PATH on Debian)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """The cluster's folder (slurm.conf, log/) while munged, slurmctld and slurmd run; SLURM_CONF set to it."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: Debian's slurmctld, slurmd, slurm-client and munge packages are not "
                    f"installed (`make test-tools` installs them)")
    if os.geteuid() != 0:
        pytest.skip("the test's Slurm cluster runs its daemons as root")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, node, os.cpu_count() or 1))
    procs: list[subprocess.Popen] = []
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    logs = [root / "log" / "munged.log", root / "log" / "slurmctld.log", root / "log" / "slurmd.log"]
    try:
        procs.append(subprocess.Popen([sbin("munged"), "--foreground", "--force", f"--key-file={key}",
                                       f"--socket={root}/munge/socket", f"--pid-file={root}/munge/munged.pid",
                                       f"--log-file={logs[0]}", f"--seed-file={root}/munge/seed"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        _wait_until(lambda: (root / "munge" / "socket").exists(), "munged made no socket", logs)
        for daemon in ("slurmctld", "slurmd"):
            procs.append(subprocess.Popen([sbin(daemon), "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.STDOUT))

        def idle() -> bool:
            state = subprocess.run(["sinfo", "--noheader", "--format", "%T"], capture_output=True, text=True,
                                   check=False)
            return state.stdout.strip() == "idle"
        _wait_until(idle, "the node did not become idle", logs)
        yield root
    finally:
        if len(procs) == 3:
            subprocess.run(["scancel", "--user", "root"], capture_output=True, check=False)

            def empty() -> bool:
                queue = subprocess.run(["squeue", "--noheader"], capture_output=True, text=True, check=False)
                return queue.returncode == 0 and not queue.stdout.strip()
            try:
                _wait_until(empty, "jobs still ran after scancel", logs, seconds=90)
            finally:
                for proc in reversed(procs):
                    _stop(proc)
        else:
            for proc in reversed(procs):
                _stop(proc)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
