"""`ilgnet campaign --slurm` (ilgnet.paper.slurm) on a real one-node Slurm cluster (tests/slurm_cluster.py), with
real Caffe on the CPU and googlenet-bn-third at toy size: a two-run campaign as a job array one task at a time and its
report, a task cancelled with scancel and resumed by the next campaign from its snapshot, and a finished campaign that
submits nothing. Without a cluster: the sbatch script of --dry-run and the Apptainer command lines (Apptainer is not
installable on Debian 12, so no image is run here)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL
from test_campaign import record, small_run, write_plan

from ilgnet.bvlc.apptainer import apptainer_command, overlap
from ilgnet.cli import main as ilgnet
from ilgnet.paper.integrity import EVALUATION_JSON

pytest_plugins = ["caffe_data", "slurm_cluster"]
RUN = f"{SMALL}-ava2-seed"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The folder of the plans' data folders, made by the first campaign from its synthetic AVA and reused."""
    return tmp_path_factory.mktemp("slurm-data")


def campaign(plan: Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ilgnet.cli", "campaign", str(plan), "--quiet", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def jobs(runs: Path) -> list[dict]:
    path = runs / "slurm" / "jobs.json"
    return json.loads(path.read_text()) if path.is_file() else []


def squeue() -> str:
    return subprocess.run(["squeue", "--noheader", "--array", "--format", "%i %T"], capture_output=True, text=True,
                          check=True).stdout


def test_dry_run_prints_the_job_array_and_submits_nothing(data, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(1) + small_run(2))
    assert ilgnet(["campaign", str(plan), "--slurm", "--slurm-parallel", "1", "--partition", "gpu", "--account", "lab",
                   "--time", "1-00:00:00", "--qos", "normal", "--sbatch=--mem=32G --constraint=a100",
                   "--dry-run"]) == 0
    script = capsys.readouterr().out
    for line in ("--array=0-1%1", "--gres=gpu:1", "--partition=gpu", "--account=lab", "--time=1-00:00:00",
                 "--qos=normal", "--mem=32G", "--constraint=a100", "--signal=B:USR1@300", "--requeue",
                 f"--output={tmp_path / 'runs' / 'slurm'}/%A_%a.log"):
        assert f"#SBATCH {line}\n" in script
    assert f"runs=({RUN}1 {RUN}2)" in script
    assert "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})" in script            # SIGTERM blocked
    assert f"campaign {plan} --runs {tmp_path / 'runs'} --data {data}" in script
    assert '--gpus 0 --quiet --only "$run"' in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert not (tmp_path / "runs" / "slurm").exists()


def test_apptainer_command_lines_and_refusals(data, tmp_path, capsys):
    image = tmp_path / "ilgnet-caffe.sif"
    image.write_bytes(b"stand-in: only the command line is tested")
    plan = write_plan(tmp_path, data, small_run(1))
    assert ilgnet(["campaign", str(plan), "--slurm", "--slurm-cpus", "2", "--apptainer", str(image), "--dry-run"]) == 0
    script = capsys.readouterr().out
    binds = ",".join(sorted({str(tmp_path), str(tmp_path / "runs"), str(data), str(Path.cwd().resolve())}))
    assert f"( exec apptainer exec --bind {binds} {image} python -c " in script and f" campaign {plan} --runs" in script
    assert "--cpus-per-task=2" in script and "--gres" not in script and "--cpu --quiet" in script
    assert apptainer_command(image, ["ilgnet", "doctor"], gpu=True, binds=[Path("/data")]) == \
        ["apptainer", "exec", "--nv", "--bind", "/data", str(image), "ilgnet", "doctor"]
    assert [overlap(Path(p)) for p in ("/", "/opt", "/usr/lib", "/opt/data", "/home/lab")] == \
        ["/", "/opt/caffe-cache", "/usr", None, None]
    for args, message in ((["--apptainer", str(tmp_path / "no.sif")], "no such image file"),
                          (["--apptainer", str(plan)], "expected an Apptainer image file ending in .sif")):
        assert ilgnet(["campaign", str(plan), "--slurm", *args, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ilgnet campaign: error: argument --apptainer: {args[1]}: ") and message in err and \
            len(err.splitlines()) == 1, err
    for args, message in ((["--slurm", "--apptainer", str(image), "--docker"], "two ways to run Caffe"),
                          (["--partition", "gpu"], "--partition goes with --slurm"),
                          (["--slurm", "--ray"], "not allowed with argument --slurm"),
                          (["--slurm", "--slurm-parallel", "0"], "--slurm-parallel: must be at least 1, got 0")):
        with pytest.raises(SystemExit) as usage:
            ilgnet(["campaign", str(plan), *args])
        assert usage.value.code == 2 and message in capsys.readouterr().err


def test_a_two_run_campaign_as_a_job_array_one_task_at_a_time(caffe, data, slurm_cluster, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(1, '["table3"]') + small_run(2, '["table3"]'))  # AVA2 runs: Table 3
    submitted = campaign(plan, "--slurm", "--slurm-parallel", "1", "--slurm-cpus", "1", cwd=tmp_path)
    assert submitted.returncode == 0 and "submitted job array" in submitted.stderr, submitted.stderr[-3000:]
    runs = tmp_path / "runs"
    [array] = jobs(runs)
    assert array["runs"] == [f"{RUN}1", f"{RUN}2"]
    # Again while the array waits in the queue: nothing is submitted twice, and --wait waits for the first array.
    result = campaign(plan, "--slurm", "--slurm-parallel", "1", "--slurm-cpus", "1", "--wait", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{RUN}2: Slurm task {array['job']}_1 is PENDING, not submitted again" in result.stderr
    assert "nothing to submit" in result.stderr and len(jobs(runs)) == 1
    assert re.search(rf"\| {RUN}1 \| table3 \| finished \| 2 / 2 \|", result.stdout)
    attempts = [record(runs / f"{RUN}{seed}")["attempts"] for seed in (1, 2)]
    assert [len(a) for a in attempts] == [1, 1] and all(a[0]["outcome"] == "finished" for a in attempts)
    assert attempts[0][0]["ended"] <= attempts[1][0]["started"]                     # %1: one after another
    for seed in (1, 2):
        assert json.loads((runs / f"{RUN}{seed}" / EVALUATION_JSON).read_text())["images"] == 10
        log = (runs / f"{RUN}{seed}.slurm.log").read_text()
        assert f"# task {array['job']}_{seed - 1} " in log and "# exit status 0" in log
    assert ilgnet(["campaign", str(plan), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"| {RUN}1 | {array['job']}_0 | COMPLETED |" in out and f"| {RUN}2 | {array['job']}_1 | COMPLETED |" in out
    assert ilgnet(["report", str(runs), "--out", str(tmp_path / "report"), "--plan", str(plan),
                   "--time-iterations", "1", "--time-batch", "2"]) == 0
    assert "every cell of plan plan is filled" in capsys.readouterr().err


def test_a_cancelled_task_is_resumed_from_its_snapshot_by_the_next_campaign(caffe, data, slurm_cluster, tmp_path):
    plan = write_plan(tmp_path, data, small_run(3, train="max_iter = 40, snapshot = 2, test_interval = 40"))
    runs, run = tmp_path / "runs", tmp_path / "runs" / f"{RUN}3"
    first = campaign(plan, "--slurm", "--slurm-cpus", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    [array] = jobs(runs)
    deadline = time.monotonic() + 300
    while not list((run / "snapshots").glob("*.solverstate")):
        assert time.monotonic() < deadline and array["job"] in squeue(), (runs / f"{RUN}3.slurm.log").read_text()
        time.sleep(0.3)
    subprocess.run(["scancel", f"{array['job']}_0"], check=True)
    deadline = time.monotonic() + 120
    while array["job"] in squeue():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    log = (runs / f"{RUN}3.slurm.log").read_text()
    assert "# SIGTERM: the run snapshots and stops" in log and "# exit status 130" in log, log[-3000:]
    assert record(run)["state"] == "interrupted" and "Traceback" not in log
    stopped_at = max(int(re.search(r"_iter_(\d+)\.", p.name)[1]) for p in (run / "snapshots").glob("*.solverstate"))
    assert stopped_at < 40

    again = campaign(plan, "--slurm", "--slurm-cpus", "1", "--wait", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(jobs(runs)) == 2
    resumed = (run / "train.log").read_text().split("# ilgnet train:")[-1]
    assert f"-snapshot {run}/snapshots/{SMALL}_iter_{stopped_at}.solverstate" in resumed
    assert [int(i) for i in re.findall(r"\] Iteration (\d+) \(", resumed)] == list(range(stopped_at, 40))
    assert [a["outcome"] for a in record(run)["attempts"]] == ["interrupted", "finished"]


def test_a_finished_campaign_submits_nothing(caffe, data, slurm_cluster, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(4))
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    capsys.readouterr()
    assert ilgnet(["campaign", str(plan), "--slurm", "--slurm-cpus", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{RUN}4: finished, skipped" in err and "nothing to submit" in err
    assert jobs(tmp_path / "runs") == [] and squeue() == ""


def test_a_refused_submission_is_one_line_and_leaves_no_record(data, slurm_cluster, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(5))
    assert ilgnet(["campaign", str(plan), "--slurm", "--slurm-cpus", "1", "--partition", "nowhere", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ilgnet campaign: error: sbatch refused the array: ") and "partition" in err[-1], err
    assert jobs(tmp_path / "runs") == [] and not list((tmp_path / "runs" / "slurm").glob("*.sbatch"))


def test_an_unreachable_controller_is_one_line_naming_it(data, slurm_cluster, tmp_path, capsys, monkeypatch):
    """slurm.conf naming a port where no slurmctld listens: Slurm's commands give up after their own retries (seconds),
    and the campaign says in one line which controller it could not reach, from which file, and submits nothing."""
    from slurm_cluster import _free_port

    from ilgnet.errors import ToolFailed
    from ilgnet.paper.slurm import job_states

    port = _free_port()
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"^SlurmctldPort=\d+$", f"SlurmctldPort={port}", (slurm_cluster / "slurm.conf").read_text(),
                           flags=re.M))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    started = time.monotonic()
    with pytest.raises(ToolFailed) as err:
        job_states(["1_0"])
    assert time.monotonic() - started < 30
    assert str(err.value) == (f"cannot reach the Slurm controller at 127.0.0.1:{port} (SlurmctldHost and "
                              f"SlurmctldPort of {conf}): slurm_load_jobs error: Unable to contact slurm controller "
                              f"(connect failure)")
    plan = write_plan(tmp_path, data, small_run(6))
    assert ilgnet(["campaign", str(plan), "--slurm", "--slurm-cpus", "1", "--quiet"]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"ilgnet campaign: error: cannot reach the Slurm controller at 127.0.0.1:{port} ") and \
        "Unable to contact slurm controller" in line, line
    assert jobs(tmp_path / "runs") == []
