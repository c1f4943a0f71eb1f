"""`ilgnet campaign` and `ilgnet report` with real Caffe on the CPU, on a synthetic AVA, with googlenet-bn-third (3.2M
parameters) at toy size: a campaign interrupted for real with SIGINT and run again (the finished run untouched, the
interrupted one resumed from its snapshot), runs that diverge or fail without stopping the others, a two-run
campaign on a local Ray runtime, a seed that repeats its run, and the report opened in headless Chromium."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import SMALL
from test_gallery import PROBE, chromium, chromium_args  # noqa: F401  (chromium: the fixture)
from test_scale import local_ray  # noqa: F401  (the fixture: a local Ray runtime of 2 CPUs, joined by --ray)

from ilgnet.bvlc.logs import parse_train_log
from ilgnet.cli import main as ilgnet
from ilgnet.paper.integrity import EVALUATION_JSON, SCORES_CSV
from ilgnet.paper.runstate import CAMPAIGN_JSON
from ilgnet.paper.timing import training_time

pytest_plugins = ["caffe_data"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The folder of the plans' data folders, made by the first campaign from its synthetic AVA (100 photos: AVA2
    keeps 10 training and 10 val images) and reused by the others."""
    return tmp_path_factory.mktemp("paper-data")


def write_plan(folder: Path, data: Path, runs: str, *, max_iter: int = 2, snapshots: str = "none") -> Path:
    """A plan file in `folder` with its runs in folder/runs, at toy size, keeping `snapshots` of a finished run, and
    the [[run]] entries `runs`."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / "plan.toml"
    plan.write_text(f"""
runs = "{folder / 'runs'}"
data = "{data}"
models = "{folder / 'models'}"
snapshots = "{snapshots}"
[train]
max_iter = {max_iter}
train_batch = 2
display = 1
test_interval = {max_iter}
snapshot = 0
[synthetic]
images = 100
{runs}""")
    return plan


def small_run(seed: int, tables: str = '["table4"]', train: str = "", profile: str = "ava2") -> str:
    return f'[[run]]\nvariant = "{SMALL}"\nprofile = "{profile}"\nseeds = [{seed}]\ntables = {tables}\n' + \
        (f"train = {{{train}}}\n" if train else "")


def campaign(*args: str, cwd: Path, log: Path | None = None) -> subprocess.Popen:
    """`ilgnet campaign` in its own process group, so a SIGINT to the group is what a terminal's Ctrl-C sends."""
    return subprocess.Popen([sys.executable, "-m", "ilgnet.cli", "campaign", *args, "--quiet"], cwd=cwd,
                            stdout=open(log, "w") if log else subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def record(run: Path) -> dict:
    return json.loads((run / CAMPAIGN_JSON).read_text())


def test_a_campaign_resumes_after_ctrl_c_without_redoing_finished_runs(caffe, data, tmp_path):
    plan = write_plan(tmp_path, data, small_run(1) + small_run(2, train="max_iter = 40, snapshot = 2, "
                                                                        "test_interval = 40"), snapshots="final")
    first, second = tmp_path / "runs" / f"{SMALL}-ava2-seed1", tmp_path / "runs" / f"{SMALL}-ava2-seed2"
    proc = campaign(str(plan), cwd=tmp_path, log=tmp_path / "first.out")
    deadline = time.monotonic() + 300
    while not list((second / "snapshots").glob("*.solverstate")):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.out").read_text()[-3000:]
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=240) == 130, (tmp_path / "first.out").read_text()[-3000:]
    out = (tmp_path / "first.out").read_text()
    assert re.search(rf"\| {SMALL}-ava2-seed1 \| table4 \| finished \| 2 / 2 \|", out)
    assert re.search(rf"\| {SMALL}-ava2-seed2 \| table4 \| interrupted \| \d+ / 40 \|", out)
    assert "ilgnet campaign: interrupted" in out and "Traceback" not in out
    assert record(second)["state"] == "interrupted" and record(second)["attempts"][0]["outcome"] == "interrupted"
    stopped_at = max(int(re.search(r"_iter_(\d+)\.", p.name)[1]) for p in (second / "snapshots").glob("*.solverstate"))
    finished = {p: p.stat().st_mtime_ns for p in first.rglob("*")}

    again = campaign(str(plan), cwd=tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert f"{SMALL}-ava2-seed1: finished, skipped" in out
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == finished         # not touched
    resumed = (second / "train.log").read_text().split("# ilgnet train:")[-1]
    assert f"-snapshot {second}/snapshots/{SMALL}_iter_{stopped_at}.solverstate" in resumed
    assert [int(i) for i in re.findall(r"\] Iteration (\d+) \(", resumed)] == list(range(stopped_at, 40))
    assert [a["outcome"] for a in record(second)["attempts"]] == ["interrupted", "finished"]
    spent = training_time(second / "train.log")             # Table 4's figures: both `caffe train`s, not the pause
    assert spent["segments"] == 2 and spent["iterations"] >= 39 and spent["iterations_per_second"] > 0
    assert record(second)["state"] == "finished" and (second / EVALUATION_JSON).is_file()
    assert [p.name for p in (second / "snapshots").iterdir()] == [f"{SMALL}_iter_40.caffemodel"]   # "final"


def test_runs_that_diverge_or_fail_do_not_stop_the_others(caffe, data, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(1, train="base_lr = 1e8, max_iter = 8, test_interval = 8")
                      + small_run(2, train="val_batch = 50") + small_run(3), max_iter=2)
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 1
    out = capsys.readouterr()
    states = {name: state for name, state in re.findall(rf"\| ({SMALL}-ava2-seed\d) \| table4 \| (\w+) \|", out.out)}
    assert states == {f"{SMALL}-ava2-seed1": "diverged", f"{SMALL}-ava2-seed2": "failed",
                      f"{SMALL}-ava2-seed3": "finished"}
    assert "the training loss became nan" in out.out and "val batch 50 is larger than the 10 records" in out.out
    assert out.err.splitlines()[-1] == (f"ilgnet campaign: error: 2 of 3 runs diverged or failed: {SMALL}-ava2-seed1, "
                                        f"{SMALL}-ava2-seed2 (the table says why)")
    # Again: the diverged run stays diverged (its seed would diverge again), the failed one is tried again.
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{SMALL}-ava2-seed1: diverged (training diverged" in err and f"{SMALL}-ava2-seed3: finished, skipped" in err
    assert len(record(tmp_path / "runs" / f"{SMALL}-ava2-seed2")["attempts"]) == 2


def test_a_two_run_campaign_on_a_local_ray_runtime(caffe, data, tmp_path, local_ray, capsys):
    plan = write_plan(tmp_path, data, small_run(1) + small_run(2))
    assert ilgnet(["campaign", str(plan), "--ray", "--ray-cpus", "1", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.err.count("submitted to Ray (1 CPUs)") == 2 and out.out.rstrip().endswith("2 finished")
    for seed in (1, 2):
        run = tmp_path / "runs" / f"{SMALL}-ava2-seed{seed}"
        [attempt] = record(run)["attempts"]
        assert attempt["outcome"] == "finished" and attempt["pid"] != os.getpid()        # in a Ray worker
        assert json.loads((run / EVALUATION_JSON).read_text())["images"] == 10


def test_two_runs_at_once_on_the_cpu_each_in_a_process_of_its_own(caffe, data, tmp_path, capsys):
    plan = write_plan(tmp_path, data, small_run(1) + small_run(2))
    assert ilgnet(["campaign", str(plan), "--jobs", "2", "--quiet"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("2 finished")
    pids = {record(tmp_path / "runs" / f"{SMALL}-ava2-seed{seed}")["attempts"][0]["pid"] for seed in (1, 2)}
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_run_another_campaign_finished_meanwhile_is_kept_not_trained_again(caffe, data, tmp_path):
    """A second campaign on the same runs folder read the runs' states before the first finished this one: when its
    turn comes, it keeps what the first made (nothing retrained, rescored or recorded again)."""
    from ilgnet.paper.execute import execute
    from ilgnet.paper.plans import load_plan

    plan_file = write_plan(tmp_path, data, small_run(3))
    assert ilgnet(["campaign", str(plan_file), "--quiet"]) == 0
    run = tmp_path / "runs" / f"{SMALL}-ava2-seed3"
    before, attempts = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}, len(record(run)["attempts"])
    plan, messages = load_plan(plan_file), []
    assert execute(plan, plan.runs[0], progress=False, notify=messages.append) == "finished"
    assert messages == [f"{plan.runs[0].name}: finished meanwhile by another campaign; kept"]
    assert len(record(run)["attempts"]) == attempts == 1
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_a_seed_repeats_its_run_and_another_seed_differs(caffe, data, tmp_path):
    plan = write_plan(tmp_path, data, small_run(5) + small_run(6), max_iter=4)
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    repeat = write_plan(tmp_path / "again", data, small_run(5), max_iter=4)
    assert ilgnet(["campaign", str(repeat), "--quiet"]) == 0

    def losses(root: Path, seed: int) -> list[float]:
        run = root / "runs" / f"{SMALL}-ava2-seed{seed}"
        assert f"random_seed: {seed}" in (run / "solver.prototxt").read_text()
        return parse_train_log(run / "train.log")["loss"].dropna().tolist()
    assert losses(tmp_path, 5) == losses(tmp_path / "again", 5)
    assert losses(tmp_path, 5) != losses(tmp_path, 6)


class ReportPage(HTMLParser):
    """The tables (rows of cell texts), the links and the images (with their recorded naturalWidth) of a report."""

    def __init__(self, dom: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.links: list[str] = []
        self.images: list[dict] = []
        self.body: dict = {}
        self._cell: list[str] | None = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def test_the_report_fills_the_cells_of_its_plan_and_renders_in_chromium(caffe, data, tmp_path, chromium, capsys):
    plan = write_plan(tmp_path, data, small_run(1, profile="ava1-delta0") + small_run(2, profile="ava1-delta0") +
                      '[[run]]\nvariant = "ilgnet"\nprofile = "ava2"\nseeds = [1]\ntables = ["table3"]\n')
    assert ilgnet(["campaign", str(plan), "--quiet"]) == 0
    out = tmp_path / "report"
    assert ilgnet(["report", str(tmp_path / "runs"), "--out", str(out), "--plan", str(plan),
                   "--time-iterations", "1", "--time-batch", "2"]) == 0
    assert "every cell of plan plan is filled" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    ilgnet_cell = next(c for c in report["tables"]["table3"] if c["variant"] == "ilgnet")
    evaluation = json.loads((tmp_path / "runs" / "ilgnet-ava2-seed1" / EVALUATION_JSON).read_text())
    assert ilgnet_cell["n"] == 1 and ilgnet_cell["accuracy"][0] == evaluation["accuracy"]
    scored = (tmp_path / "runs" / "ilgnet-ava2-seed1" / SCORES_CSV).read_text().splitlines()[1:]
    assert evaluation["scoring"]["seconds"] > 0 and evaluation["scoring"]["images"] == len(scored)   # Table 4
    # The paper's figure stands beside ours; on synthetic data no "ours - paper" difference is given.
    assert ilgnet_cell["paper"] == 0.855 and ilgnet_cell["difference"] is None
    assert {c["claim"]: c["verdict"] for c in report["claims"]}["ILGNet-Inc.V4 is the most accurate on AVA2"] == \
        "not enough runs"
    assert len(report["claims"]) == 10 and all(c["verdict"] for c in report["claims"])
    assert 0 <= report["density"]["p_value"] <= 1 and report["density"]["high"] + report["density"]["low"] == 10
    assert f"On `{report['density']['layer']}`, over all 10 val records" in (out / "REPORT.md").read_text()
    # Table 4 holds its four GoogLeNetV1-BN nets on AVA1 delta 0, never the released model's AVA2 run.
    assert [row["variant"] for row in report["table4"]] == ["ilgnet-bn", SMALL, "googlenet-bn-two-thirds",
                                                            "googlenet-bn-full"]
    assert set(report["times"]) == {row["variant"] for row in report["table4"]}
    small_runs = [tmp_path / "runs" / f"{SMALL}-ava1-delta0-seed{seed}" for seed in (1, 2)]
    assert sorted(next(r for r in report["table4"] if r["variant"] == SMALL)["runs"]) == list(map(str, small_runs))
    # Its batch-1 test time is the trained nets' own, timed while the campaign scored them (no snapshot is kept).
    timed = [json.loads((run / EVALUATION_JSON).read_text())["scoring"]["batch1"] for run in small_runs]
    assert all(t["seconds_per_image"] > 0 and t["weights"] == f"{SMALL}_iter_2.caffemodel" for t in timed)
    assert "batch1" not in evaluation["scoring"]                          # the AVA2 run is in no Table 4 cell

    probed = tmp_path / "probed.html"
    probed.write_text((out / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run([*chromium_args(chromium, tmp_path / "profile"), "--virtual-time-budget=10000",
                             "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    page = ReportPage(result.stdout)
    assert [img["data-figure"] for img in page.images] == ["fig3.png", "fig4.png", "fig5.png"]
    assert all(img["src"].startswith("data:image/png;base64,") and int(img["data-rendered"]) > 0
               for img in page.images)                                            # nothing outside the file
    table3 = next(t for t in page.tables if t[0][0] == "net" and any("AVA2" in row for row in t))
    released = "released model (ILGNet, LRN, no BN)"
    ilgnet_row = next(row for row in table3 if row[0] == released)
    assert ilgnet_row[2] == "85.50 %" and ilgnet_row[3].startswith(f"{100 * evaluation['accuracy']:.2f} % (N = 1)")
    assert [row[0] for row in table3[1:]] == ["ILGNet-without-Inc.", "1/3 GoogLeNetV1-BN", "ILGNet-Inc.V1-BN",
                                              "ILGNet-Inc.V3", "ILGNet-Inc.V4", released]
    assert [row[2] for row in table3[1:-1]] == ["79.64 %", "82.26 %", "85.50 %", "85.51 %", "85.53 %"]
    assert all(row[3] == "no finished run" for row in table3[1:-1])
    table4 = next(t for t in page.tables if t[0][3] == "training wall time")
    small = next(row for row in table4 if row[0] == "1/3 GoogLeNetV1-BN")
    assert small[1] == "80.74 %" and small[-3:-1] == ["4 days", "0.33 s"]
    assert re.fullmatch(r"\d+:\d\d:\d\d", small[3]) and small[4].endswith(" CPU-days") and small[5] == "2"
    assert re.fullmatch(r"[\d.e+-]+ \(batch \d+, CPU\)", small[9])       # the trained net over the val set
    assert small[10].endswith(" (trained net)") and float(small[10].split()[0]) > 0    # seconds per image, batch 1
    assert float(small[11]) > 0                                                        # and throughput (now)
    assert all(row[10].endswith(" (random weights)") for row in table4[1:] if row[0] != "1/3 GoogLeNetV1-BN")
    assert any(t[0] == ["what", "the paper (section)", "the release", "this toolkit", "switch"] for t in page.tables)
    assert any(t[0][0] == "claim" for t in page.tables)
    assert all((out / link).exists() for link in page.links) and len(page.links) >= 3  # every link leads somewhere
    assert any(link.endswith("docs/REPRODUCING.md") for link in page.links)

    assert ilgnet(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "whole"), "--plan", "table3",
                   "--time-iterations", "1", "--time-batch", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cells of plan table3 are empty: run ilgnet-noinc-ava2-paper-seed1: not found" in err
    assert (tmp_path / "whole" / "report.html").is_file()                 # written, then refused

    # The runs moved to another folder (or read from a copy): --plan finds its runs by name, not by the plan's path.
    (tmp_path / "runs").rename(tmp_path / "moved")
    capsys.readouterr()
    assert ilgnet(["report", str(tmp_path / "moved"), "--out", str(tmp_path / "again"), "--plan", str(plan),
                   "--time-iterations", "1", "--time-batch", "2"]) == 0
    assert "every cell of plan plan is filled" in capsys.readouterr().err


def test_the_status_of_a_runs_folder_that_does_not_exist_says_so(tmp_path, capsys):
    """A mistyped --runs is not shown as an ordinary table of runs not started."""
    assert ilgnet(["campaign", "table4", "--status", "--runs", str(tmp_path / "typo")]) == 0
    out, err = capsys.readouterr()
    assert err == f"ilgnet campaign: {tmp_path / 'typo'} does not exist yet: no run of plan table4 has started there\n"
    assert out.rstrip().endswith("not started") and not (tmp_path / "typo").exists()
