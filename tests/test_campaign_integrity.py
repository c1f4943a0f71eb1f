"""Trust over a campaign's finished runs, without Caffe: a run whose files are damaged is named with the file and
left out while the rest are reported (bug case 19's kind); a run whose data folder was remade is stale, never
"finished, skipped", and never averaged with runs of other data (case 14's kind); the same seed is not counted twice;
the data a report names is the data the runs read. The run folders here are written the way a campaign writes them
(model.json by RunFolder.write_record) with stand-in evaluations; test_campaign_trust.py runs the same
situations through real Caffe campaigns."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from ilgnet.cli import main as ilgnet
from ilgnet.data import synthetic
from ilgnet.data.folder import DataFolder
from ilgnet.paper.integrity import check_finished
from ilgnet.paper.pooling import pools, provenance
from ilgnet.paper.report import accuracy_cells, find_runs
from ilgnet.zoo.runfolder import RunFolder


def data_folder(root: Path, seed: int) -> Path:
    """root as a data folder of its own content (lists and mean differ with `seed`)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in ("train", "val"):
        (root / f"{name}.txt").write_text("".join(f"{rng.integers(10**6)}.jpg {i % 2}\n" for i in range(10)))
    (root / "mean.binaryproto").write_bytes(rng.bytes(64))
    (root / "lmdb.json").write_text(json.dumps({"resize": 256, "train": {"records": 10}, "val": {"records": 10}}))
    (root / "split.json").write_text(json.dumps({"partition": "ava2", "seed": seed, "synthetic": True}))
    return root


def finished_run(runs: Path, seed: int, data: Path, accuracy: float, *, images: int = 10) -> Path:
    """runs/ilgnet-ava2-seedSEED as a finished campaign run of Table 3 on `data`, evaluated at `accuracy`."""
    run = runs / f"ilgnet-ava2-seed{seed}"
    run.mkdir(parents=True)
    (run / "campaign.json").write_text(json.dumps({
        "run": {"variant": "ilgnet", "profile": "ava2", "seed": seed, "train": {"max_iter": 2}},
        "name": run.name, "plan": "p", "data": str(data), "attempts": [], "state": "finished",
        "tables": ["table3"]}))
    RunFolder(run).write_record(variant="ilgnet", profile="ava2", data=DataFolder(data), crop=227, input_scale=1.0)
    (run / "evaluation.json").write_text(json.dumps({
        "accuracy": accuracy, "balanced_accuracy": accuracy, "images": images,
        "majority_baseline": {"accuracy": 0.5}, "paper_protocol": {"accuracy": accuracy, "images": images}}))
    rows = "".join(f"k{i},{i % 2},{i % 2},0.4,0.6\n" for i in range(images))
    (run / "val_scores.csv").write_text("key,label,predicted,p_0,p_1\n" + rows)
    (run / "train.log").write_text("# ilgnet train: stand-in\n")
    return run


def write_plan(root: Path, seeds: str = "[1, 2]") -> Path:
    plan = root / "plan.toml"
    plan.write_text(f'runs = "{root / "runs"}"\ndata = "{root / "data"}"\n[train]\nmax_iter = 2\n'
                    f'[[run]]\nvariant = "ilgnet"\nprofile = "ava2"\nseeds = {seeds}\ntables = ["table3"]\n')
    return plan


@pytest.fixture
def campaign(tmp_path) -> dict:
    """Two finished runs (seeds 1, 2) of one plan on data/ava2."""
    data = data_folder(tmp_path / "data" / "ava2", seed=1)
    runs = {seed: finished_run(tmp_path / "runs", seed, data, accuracy) for seed, accuracy in ((1, 0.6), (2, 0.8))}
    return {"root": tmp_path, "data": data, "runs": runs, "plan": write_plan(tmp_path)}


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def nan_score(path: Path) -> None:
    """val_scores.csv with its first record's p_1 (the last column) written as nan."""
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",nan"
    path.write_text("\n".join(lines) + "\n")


DAMAGES = {
    "evaluation.json cut short": ("evaluation.json", lambda p: cut(p, 40), "not JSON"),
    "evaluation.json without accuracy": ("evaluation.json", lambda p: p.write_text('{"images": 10}'),
                                         "accuracy is None"),
    "val_scores.csv missing": ("val_scores.csv", Path.unlink, "missing"),
    "val_scores.csv cut short": ("val_scores.csv", lambda p: cut(p, 60), "complete rows of the 10 records"),
    "val_scores.csv with a NaN score": ("val_scores.csv", lambda p: nan_score(p), "line 2: p_1 is empty or not a "
                                        "number"),
    "fig5_maps.npz cut short": ("fig5_maps.npz", lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 40),
                                "cut short or not an .npz archive"),
    "model.json cut short": ("model.json", lambda p: cut(p, 30), "not JSON"),
    "train.log missing": ("train.log", Path.unlink, "missing"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_named_and_the_other_runs_reported(campaign, damage, capsys):
    name, harm, reason = DAMAGES[damage]
    damaged, good = campaign["runs"][1], campaign["runs"][2]
    harm(damaged / name)
    verdict = check_finished(damaged)
    assert (verdict.state, verdict.file) == ("damaged", damaged / name) and reason in verdict.reason
    assert check_finished(good).state == "finished"

    assert ilgnet(["campaign", str(campaign["plan"]), "--status"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| ilgnet-ava2-seed1 "))
    assert "| damaged |" in row and f"| {damaged / name}: {verdict.reason} |" in row
    assert "| ilgnet-ava2-seed2 | table3 | finished | 2 / 2 | 80.00 % |" in out
    assert "1 finished, 1 damaged" in out

    [cell] = [c for c in accuracy_cells(find_runs([campaign["root"] / "runs"]), "table3") if c["variant"] == "ilgnet"]
    assert cell["n"] == 1 and cell["seeds"] == [2] and cell["accuracy"][0] == 0.8
    assert cell["not_finished"]["ilgnet-ava2-seed1"].startswith(f"damaged ({damaged / name}: ")


def test_a_damaged_campaign_json_is_named_the_other_runs_reported_and_the_next_attempt_begins_anew(campaign,
                                                                                                     capsys):
    from ilgnet.paper.plans import load_plan
    from ilgnet.paper.runstate import read_record, update_record

    record = campaign["runs"][1] / "campaign.json"
    cut(record, 50)
    assert ilgnet(["campaign", str(campaign["plan"]), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"| ilgnet-ava2-seed1 | table3 | damaged | - | - | - | {record}:1: not JSON (" in out
    assert "| ilgnet-ava2-seed2 | table3 | finished | 2 / 2 | 80.00 % |" in out and "1 finished, 1 damaged" in out
    runs = find_runs([campaign["root"] / "runs"])
    assert [(r.name, r.state, r.message.startswith(f"{record}:1: not JSON")) for r in runs] == [
        ("ilgnet-ava2-seed1", "damaged", True), ("ilgnet-ava2-seed2", "finished", False)]
    [cell] = [c for c in accuracy_cells(runs, "table3") if c["variant"] == "ilgnet"]
    assert (cell["n"], cell["seeds"], cell["accuracy"][0]) == (1, [2], 0.8)
    # The campaign's next attempt keeps the damaged record beside the new one it begins.
    damaged = record.read_bytes()
    plan = load_plan(str(campaign["plan"]))
    update_record(plan, plan.runs[0], record.parent, state="started", attempt={"started": "now"})
    assert (record.parent / "campaign.json.damaged").read_bytes() == damaged
    assert read_record(record.parent)["run"] == plan.runs[0].record()


def test_a_run_whose_data_folder_was_remade_is_stale_and_pooled_apart(campaign, capsys):
    """Bug case 14's kind: seed 1 finished on data that was deleted and remade, seed 2 finished on the new data."""
    shutil.rmtree(campaign["data"])
    data_folder(campaign["data"], seed=7)
    shutil.rmtree(campaign["runs"][2])
    finished_run(campaign["root"] / "runs", 2, campaign["data"], 0.8, images=12)
    verdict = check_finished(campaign["runs"][1])
    assert verdict.state == "stale" and "train.txt differs (sha256" in verdict.reason
    assert "val.txt differs" in verdict.reason and "mean.binaryproto differs" in verdict.reason

    assert ilgnet(["campaign", str(campaign["plan"]), "--status"]) == 0
    out = capsys.readouterr().out
    assert "| ilgnet-ava2-seed1 | table3 | stale | 2 / 2 | 60.00 % | - | trained and evaluated on other data" in out
    assert "finished, skipped" not in out

    runs = find_runs([campaign["root"] / "runs"])
    cells = [c for c in accuracy_cells(runs, "table3") if c["variant"] == "ilgnet"]
    assert [(c["n"], c["seeds"], c["accuracy"][0], c["images"]) for c in cells] == [(1, [1], 0.6, 10),
                                                                                   (1, [2], 0.8, 12)]
    old, new = [json.loads((campaign["runs"][1 if i == 0 else 2] / "model.json").read_text())["mean"]["sha256"]
                for i in range(2)]
    assert [c["pool"] for c in cells] == [f"data {old[:8]}", f"data {new[:8]}"]
    assert cells[0]["stale"] == ["ilgnet-ava2-seed1"]
    # The data table names what each run read, from its own model.json, not the folder as it is now.
    assert [(d["sha256"]["mean.binaryproto"], d["current"], d["runs"]) for d in provenance(runs)] == [
        (old, False, ["ilgnet-ava2-seed1"]), (new, True, ["ilgnet-ava2-seed2"])]


def test_the_same_seed_on_the_same_data_is_counted_once(campaign):
    copy = campaign["root"] / "elsewhere" / "ilgnet-ava2-seed2"
    shutil.copytree(campaign["runs"][2], copy)
    runs = find_runs([campaign["root"] / "runs", copy.parent])
    [cell] = [c for c in accuracy_cells(runs, "table3") if c["variant"] == "ilgnet"]
    assert cell["n"] == 2 and cell["seeds"] == [1, 2] and cell["accuracy"][0] == pytest.approx(0.7)
    [(name, why)] = cell["left_out"].items()
    assert name == "ilgnet-ava2-seed2" and why.startswith("seed 2 again, with the same data and settings as")


def test_runs_of_other_settings_are_pooled_apart(campaign):
    record = json.loads((campaign["runs"][2] / "campaign.json").read_text())
    record["run"]["train"] = {"max_iter": 4}
    (campaign["runs"][2] / "campaign.json").write_text(json.dumps(record))
    found = pools([r for r in find_runs([campaign["root"] / "runs"])])
    assert [(p.label, [r.spec.seed for r in p.runs]) for p in found] == [("max_iter 2", [1]), ("max_iter 4", [2])]


def test_an_interrupted_synthetic_ava_is_made_again(tmp_path):
    """Bug case 15's kind: the stamp is written last, so photos cut short are never taken for a whole set."""
    ava = tmp_path / "ava"
    synthetic.generate(ava, n_images=4, seed=1, long_sides=(40, 60))
    assert synthetic.is_complete(ava, n_images=4, seed=1)
    assert not synthetic.is_complete(ava, n_images=5, seed=1) and not synthetic.is_complete(ava, n_images=4, seed=2)
    (ava / synthetic.STAMP).unlink()                    # as a Ctrl-C before the stamp leaves it
    assert not synthetic.is_complete(ava, n_images=4, seed=1)
    cut(ava / synthetic.STAMP if (ava / synthetic.STAMP).exists() else ava / "AVA.txt", 10)
    assert not synthetic.is_complete(ava, n_images=4, seed=1)


def test_an_unreachable_ray_address_fails_in_seconds_in_one_line(campaign, capsys):
    started = time.monotonic()
    assert ilgnet(["campaign", str(campaign["plan"]), "--ray", "127.0.0.1:1", "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert time.monotonic() - started < 10
    assert err[-1].startswith("ilgnet campaign: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused")


def test_a_ray_client_address_without_grpcio_names_the_package_in_one_line(campaign, capsys):
    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("grpcio is installed here: a ray:// address goes on to connect")
    assert ilgnet(["campaign", str(campaign["plan"]), "--ray", "ray://127.0.0.1:1", "--quiet"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ilgnet campaign: error: ray://127.0.0.1:1: a ray:// address is served by Ray Client, which needs grpcio: "
        "pip install 'ray[client]', or give the head node's GCS address HOST:6379 instead")


def _prepare(plan: str) -> None:
    from ilgnet.paper.campaign import prepare_data
    from ilgnet.paper.plans import load_plan

    prepare_data(load_plan(plan), progress=False)


@pytest.mark.slow
def test_two_campaigns_making_the_same_data_folder_wait_for_each_other(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'runs = "{tmp_path / "runs"}"\ndata = "{tmp_path / "data"}"\n[synthetic]\nimages = 60\n'
                    f'[[run]]\nvariant = "googlenet-bn-third"\nprofile = "ava2"\nseeds = [1]\n')
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_prepare, args=(str(plan),)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0]
    built = json.loads((tmp_path / "data" / "ava2" / "lmdb.json").read_text())
    assert built["train"]["records"] == built["train"]["listed"] == 6 and not built["train"]["skipped_reasons"]
    assert synthetic.is_complete(tmp_path / "data" / "synthetic-ava", n_images=60, seed=1)
    assert not list((tmp_path / "data").rglob("*.partial"))
