"""A campaign and its report interrupted by a real SIGINT at each of their steps, run again after each, give the
same report as an uninterrupted campaign and report: the same report.json, REPORT.md and figures, once what
honestly differs is set aside (timings, the date, the two campaigns' folders). Real Caffe on the CPU, the smallest
synthetic campaign with a net that has Fig. 5's layers (ILGNet, 2 iterations on 10 training photos).

Each Ctrl-C lands at a known point of its step (ilgnet.pools.ctrl_c_point, named by $ILGNET_CTRL_C_AT): the
process sends SIGINT to its own process group there, as a terminal does, so that Caffe receives it too. The
interruptions follow one another in one campaign folder, each rerun going through what the ones before left: the
synthetic AVA half made, a split with its train list only, the training LMDB without the val one, Caffe during its
first test pass, the final snapshot's check, the scoring after its first batch, the Fig. 5 maps while they are
written, and the report after its figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ilgnet.pools import CTRL_C_AT

RUN = "ilgnet-ava2-seed1"
CAMPAIGN_STEPS = ("synthetic AVA", "split", "LMDBs", "training", "snapshot check", "scoring", "Fig. 5 maps")
REPORT = ["--time-batch", "1", "--time-iterations", "1", "--figure-run", RUN]
# report.json's values that are measured again each time: test and training times, and what follows from them.
MEASURED = {"times", "environment", "ms_per_image", "seconds_per_image_batch1", "seconds", "iterations_per_second",
            "images_per_second", "throughput", "images_per_second_batch", "days"}
# REPORT.md's Table 4 columns of the same: training wall time, days, iterations/s, images/s, the three test times.
TABLE4_MEASURED = {3, 4, 6, 7, 9, 10, 11}


def write_plan(root: Path) -> Path:
    plan = root / "plan.toml"
    plan.write_text(f"""runs = "{root / 'runs'}"
data = "{root / 'data'}"
models = "{root / 'models'}"
snapshots = "final"
[train]
max_iter = 2
train_batch = 2
val_batch = 5
display = 1
test_interval = 2
snapshot = 0
[synthetic]
images = 100
seed = 1
[[run]]
variant = "ilgnet"
profile = "ava2"
seeds = [1]
tables = ["table3", "table4"]
""")
    return plan


def ilgnet(root: Path, args: list[str], log: str, ctrl_c_at: str | None = None) -> int:
    """`ilgnet ARGS` in a process group of its own, as a terminal runs it; its output in root/LOG."""
    env = {k: v for k, v in os.environ.items() if k != CTRL_C_AT}
    if ctrl_c_at:
        env[CTRL_C_AT] = ctrl_c_at
    with open(root / log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ilgnet.cli", *args], cwd=root, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return proc.wait(timeout=900)


def campaign_and_report(root: Path, report_ctrl_c: bool = False) -> None:
    assert ilgnet(root, ["campaign", str(write_plan(root)), "--quiet"], "campaign.log") == 0, \
        (root / "campaign.log").read_text()[-3000:]
    if report_ctrl_c:
        assert ilgnet(root, ["report", "runs", "--out", "report", *REPORT], "report-1.log", "report") == 130
        assert "Traceback" not in (root / "report-1.log").read_text()
        assert not (root / "report").exists() or not any((root / "report").iterdir()), "a half-written report"
    assert ilgnet(root, ["report", "runs", "--out", "report", *REPORT], "report.log") == 0, \
        (root / "report.log").read_text()[-3000:]


def unmeasured(value):
    """report.json without what is measured again each time (MEASURED)."""
    if isinstance(value, dict):
        return {k: None if k in MEASURED else unmeasured(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unmeasured(v) for v in value]
    return value


def the_report(root: Path) -> dict:
    """The report as files, its two campaigns' folders written ROOT, its measured figures set aside."""
    folder = root / "report"
    text = {name: (folder / name).read_text().replace(str(root.resolve()), "ROOT").replace(str(root), "ROOT")
            for name in ("REPORT.md", "report.json")}
    # REPORT.md: Table 4's training and test times and speeds, measured again by each campaign and report.
    markdown, table4 = [], False
    for line in text["REPORT.md"].splitlines():
        table4 = line.startswith("## Table 4") or (table4 and not line.startswith("## "))
        cells = line.split(" | ")
        if table4 and len(cells) == 15 and not line.startswith("| net |"):
            cells = [("T" if i in TABLE4_MEASURED else cell) for i, cell in enumerate(cells)]
        markdown.append(" | ".join(cells))
    return {"report.json": unmeasured(json.loads(text["report.json"])), "REPORT.md": markdown,
            **{png.name: png.read_bytes() for png in sorted(folder.glob("*.png"))}}


@pytest.fixture(scope="module")
def uninterrupted(caffe, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    campaign_and_report(root)
    return the_report(root)


def test_a_campaign_and_report_interrupted_at_each_step_and_run_again_give_the_uninterrupted_report(
        uninterrupted, tmp_path):
    plan = write_plan(tmp_path)
    for number, step in enumerate(CAMPAIGN_STEPS):
        log = f"campaign-{number}.log"
        assert ilgnet(tmp_path, ["campaign", str(plan), "--quiet"], log, step) == 130, \
            f"{step}: {(tmp_path / log).read_text()[-3000:]}"
        assert "Traceback" not in (tmp_path / log).read_text(), step
    campaign_and_report(tmp_path, report_ctrl_c=True)
    interrupted = the_report(tmp_path)
    assert interrupted.keys() == uninterrupted.keys()
    for name in uninterrupted:
        assert interrupted[name] == uninterrupted[name], name
