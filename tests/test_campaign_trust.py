"""Campaigns with real Caffe on the CPU (googlenet-bn-third at toy size, a synthetic AVA): a run whose data folder
was deleted and remade is refused as stale, never "finished, skipped" (bug case 14's kind); a finished run with a
damaged evaluation.json is evaluated again from its kept model (case 19's); a Ctrl-C while the synthetic AVA is
made (case 15), and at each other step of a campaign and its report (tests/test_campaign_interrupted.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.paper.pooling import pools
from ilgnet.paper.report import accuracy_cells, find_runs

RUN = f"{SMALL}-ava2-seed1"


def write_plan(folder: Path, *, images: int = 100, synthetic_seed: int = 1, seeds: str = "[1]") -> Path:
    """A toy plan in `folder`: its data in folder/data (made from a synthetic AVA), runs in folder/runs."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / f"plan-{synthetic_seed}.toml"
    plan.write_text(f"""runs = "{folder / 'runs'}"
data = "{folder / 'data'}"
models = "{folder / 'models'}"
snapshots = "final"
[train]
max_iter = 2
train_batch = 2
display = 1
test_interval = 2
snapshot = 0
[synthetic]
images = {images}
seed = {synthetic_seed}
[[run]]
variant = "{SMALL}"
profile = "ava2"
seeds = {seeds}
tables = ["table4"]
""")
    return plan


def test_a_remade_data_folder_makes_a_finished_run_stale_and_a_damaged_one_is_evaluated_again(caffe, tmp_path,
                                                                                                capsys):
    plan = write_plan(tmp_path)
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    run = tmp_path / "runs" / RUN
    # Fig. 4 from the only run there is, an AVA2 one: the report says it is not the paper's setting.
    assert ilgnet(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "first"), "--time-batch", "1",
                   "--time-iterations", "1"]) == 0
    assert "No run of Table 4's nets on AVA1 (delta 0) has finished, so these are other runs" in \
        (tmp_path / "first" / "REPORT.md").read_text()
    evaluation = json.loads((run / "evaluation.json").read_text())
    (run / "evaluation.json").write_text(json.dumps(evaluation)[:100])         # cut short
    capsys.readouterr()
    assert ilgnet(["campaign", str(plan), "--status"]) == 0
    assert f"| {RUN} | table4 | damaged |" in capsys.readouterr().out
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["accuracy"] == evaluation["accuracy"]
    assert [a["outcome"] for a in json.loads((run / "campaign.json").read_text())["attempts"]] == ["finished"] * 2
    capsys.readouterr()
    # A run not started yet has an ETA at the pace of its net's finished run.
    two = tmp_path / "two.toml"
    two.write_text(plan.read_text().replace("seeds = [1]", "seeds = [1, 2]"))
    assert ilgnet(["campaign", str(two), "--status"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\| {SMALL}-ava2-seed2 \| table4 \| not started \| - \| - \| 0:00:\d\d \|", out), out
    assert "the runs not finished need 0:00:" in out

    shutil.rmtree(tmp_path / "data")
    other = write_plan(tmp_path, images=120, synthetic_seed=7, seeds="[1, 2]")
    assert ilgnet(["campaign", str(other), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert f"{RUN}: stale, not run again: trained and evaluated on other data than {tmp_path / 'data' / 'ava2'}" in err
    assert "finished, skipped" not in err
    assert err.splitlines()[-1] == f"ilgnet campaign: error: 1 of 2 runs are stale: {RUN} (the table says why)"
    assert f"| {RUN} | table4 | stale |" in out and f"| {SMALL}-ava2-seed2 | table4 | finished |" in out
    runs = find_runs([tmp_path / "runs"])
    assert [[r.name for r in pool.runs] for pool in pools(runs)] == [[RUN], [f"{SMALL}-ava2-seed2"]]

    # One run damaged, the other stale: the report is written, naming both, and averages neither with the other.
    scores = tmp_path / "runs" / f"{SMALL}-ava2-seed2" / "val_scores.csv"
    records = json.loads((scores.parent / "evaluation.json").read_text())["images"]
    scores.write_text(scores.read_text()[:50])
    assert ilgnet(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--time-batch", "1",
                   "--time-iterations", "1"]) == 0
    named = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ilgnet report: ")]
    assert len(named) == 2
    assert named[0].startswith(f"ilgnet report: {RUN}: stale: trained and evaluated on other data than ")
    assert named[0].endswith(" (flagged in the tables)")
    assert named[1].startswith(f"ilgnet report: {SMALL}-ava2-seed2: damaged: {scores}: 1 complete rows")
    assert named[1].endswith(" (left out of the tables)")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    states = {r["name"]: (r["state"], r["message"]) for r in report["runs"]}
    assert states[RUN][0] == "stale" and states[f"{SMALL}-ava2-seed2"] == (
        "damaged", f"{scores}: 1 complete rows of the {records} records evaluation.json counts")
    assert [d["current"] for d in report["data"]] == [False]          # what seed 1 read; seed 2 is damaged
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert f"damaged: {scores}: " in text
    # An AVA2 folder has no delta: its cell reads "-", never Python's None.
    # (and an unknown record count too: the folder holds other data now, so its train LMDB is not the run's).
    assert re.search(r"/data/ava2 \(holds other data now\) \| ava2 \| 1 \| - \| yes \| 256 \| - / 10 \|", text)
    assert "None" not in text and '"blas"' not in text          # the Caffe build in words, not as a dict
    # No Table 4 run: its rows say so where the accuracy goes, and the caption names no machine.
    assert "| ILGNet-Inc.V1-BN | 81.68 % | no finished run | - | - |" in text and "Runs trained on:" not in text


def start(plan: Path, log: Path) -> subprocess.Popen:
    """`ilgnet campaign` in a process group of its own, as a terminal runs it (its Ctrl-C: SIGINT to the group)."""
    return subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "campaign", str(plan), "--quiet"], cwd=plan.parent,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def test_bug_case_14_the_campaign_and_report_after_the_data_folder_is_remade(caffe, bugcase, tmp_path, capsys):
    case = bugcase("14-campaign-data-rebuilt")
    where = ["--runs", str(tmp_path / "runs"), "--data", str(tmp_path / "data"), "--models", str(tmp_path / "m")]
    assert ilgnet(["campaign", str(case / "rebuilt-1.toml"), *where, "--quiet"]) == 0
    shutil.rmtree(tmp_path / "data")
    capsys.readouterr()
    assert ilgnet(["campaign", str(case / "rebuilt-2.toml"), *where, "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "ilgnet-ava2-seed1: stale, not run again: trained and evaluated on other data" in err
    assert "finished, skipped" not in err and "| ilgnet-ava2-seed2 | table3 | finished |" in out
    cells = [c for c in accuracy_cells(find_runs([tmp_path / "runs"]), "table3") if c["variant"] == "ilgnet"]
    assert [(c["n"], c["seeds"], c["images"]) for c in cells] == [(1, [1], 12), (1, [2], 15)]   # never averaged
    assert cells[0]["stale"] == ["ilgnet-ava2-seed1"] and cells[0]["pool"] != cells[1]["pool"]


def test_bug_case_15_a_ctrl_c_while_the_synthetic_ava_is_made(caffe, bugcase, tmp_path):
    case = bugcase("15-ctrlc-synthetic-generation")
    plan = case / "cut.toml"
    plan.write_text(plan.read_text().replace("/tmp/ilgnet-cases/w/cut", str(tmp_path)).replace(
        "/tmp/ilgnet-cases/w/empty-models", str(tmp_path / "models")))
    proc = start(plan, tmp_path / "first.log")
    photos = tmp_path / "data" / "synthetic-ava" / "images"
    deadline = time.monotonic() + 300
    while not (photos.is_dir() and len(list(photos.iterdir())) >= 50):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=240) == 130
    assert not (tmp_path / "data" / "synthetic-ava" / "AVA.txt").exists()          # written only once whole
    again = start(plan, tmp_path / "again.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "again.log").read_text()[-2000:]
    assert "not finished, or was made with other settings" in (tmp_path / "again.log").read_text()
    built = json.loads((tmp_path / "data" / "ava2" / "lmdb.json").read_text())
    assert {s: (built[s]["listed"], built[s]["records"], built[s]["skipped_reasons"]) for s in ("train", "val")} == {
        "train": (200, 200, {}), "val": (200, 200, {})}
