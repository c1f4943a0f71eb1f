"""Campaign plans and run states without Caffe: the built-in plans' runs, plan files and their one-line errors, the
state of a run read from its folder, the status table, the paper protocol read off per-record results, and the
density statistic of Fig. 5."""
from __future__ import annotations

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest

from ilgnet.errors import BadInput, MissingFile
from ilgnet.evaluation.results import prefix_protocol
from ilgnet.paper import campaign, runstate
from ilgnet.paper.figures import density_test
from ilgnet.paper.integrity import EVALUATION_JSON
from ilgnet.paper.plans import built_in, load_plan, read_plan
from ilgnet.paper.tables import TABLE_RUNS


def test_the_paper_plan_trains_each_run_once_for_every_table_it_counts_in(tmp_path):
    plan = built_in("paper", seeds=(1, 2), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    # Table 2: 5 nets x 2 deltas + the released model on delta 0, Table 3: 5 nets + the released model, Table 4:
    # 4 nets on AVA1 delta 0, of which ILGNet-Inc.V1-BN and 1/3 GoogLeNetV1-BN are Table 2's runs.
    assert len(plan.runs) == 2 * (11 + 6 + 2)
    shared = next(s for s in plan.runs if s.name == "ilgnet-bn-ava1-delta0-paper-seed1")
    assert shared.tables == ("table2", "table4") and shared.recipe == "paper"
    released = [s for s in plan.runs if s.variant == "ilgnet"]
    assert {(s.profile, s.recipe) for s in released} == {("ava1-delta0", "released"), ("ava2", "released")}
    assert {s.variant for s in plan.runs if "table3" in s.tables} == {
        "ilgnet-noinc", "googlenet-bn-third", "ilgnet-bn", "ilgnet-inc3", "ilgnet-inc4", "ilgnet"}
    assert {s.profile for s in plan.runs if "table4" in s.tables} == {"ava1-delta0"}
    inc4 = next(s for s in plan.runs if s.name == "ilgnet-inc4-ava1-delta1-paper-seed2")
    assert plan.data_folder(inc4) == tmp_path / "data" / "ava1-delta1-320" and inc4.max_iter == 760_000
    assert plan.run_dir(inc4) == tmp_path / "runs" / "ilgnet-inc4-ava1-delta1-paper-seed2"
    assert plan.tables() == ("table2", "table3", "table4")
    table3 = built_in("table3", seeds=(7,), runs_dir=tmp_path)
    assert [s.variant for s in table3.runs] == list(TABLE_RUNS["table3"][0]) and {s.seed for s in table3.runs} == {7}


def test_a_plan_file_names_tables_and_runs_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text("""
tables = {table4 = [3]}
snapshots = "final"
[train]
max_iter = 100
train_batch = 8
[synthetic]
images = 50
[[run]]
variant = "ilgnet"
profile = "ava1-delta1"
seeds = [1, 2]
train = {base_lr = 1e-6}
tables = ["table2"]
""")
    plan = read_plan(tmp_path / "mine.toml")
    assert plan.name == "mine" and plan.runs_dir == tmp_path / "runs" / "mine" and plan.data_dir == tmp_path / "data"
    assert plan.synthetic == {"images": 50, "seed": 1} and plan.snapshots == "final"
    # A plan file trains with the released recipe unless it says otherwise, as `ilgnet train` does.
    assert [s.name for s in plan.runs] == ["ilgnet-bn-ava1-delta0-seed3", "googlenet-bn-third-ava1-delta0-seed3",
                                           "googlenet-bn-two-thirds-ava1-delta0-seed3",
                                           "googlenet-bn-full-ava1-delta0-seed3",
                                           "ilgnet-ava1-delta1-seed1", "ilgnet-ava1-delta1-seed2"]
    assert {s.recipe for s in plan.runs} == {"released"}
    assert plan.runs[-1].options == {"max_iter": 100, "train_batch": 8, "base_lr": 1e-6}
    assert plan.runs[0].options == {"max_iter": 100, "train_batch": 8} and plan.runs[0].max_iter == 100
    again = load_plan(str(tmp_path / "mine.toml"), seeds=[5], runs_dir=tmp_path / "elsewhere")
    assert {s.seed for s in again.runs} == {5} and again.runs_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize("text, message", [
    ("tables = [\"table3\"\n", "not TOML: "),
    ("tables = [\"table9\"]\n", "unknown table 'table9'; known: table2, table3, table4"),
    ("tabels = [\"table3\"]\n", "unknown key 'tabels'"),
    ("[[run]]\nvariant = \"ilgnet-v9\"\nprofile = \"ava2\"\n", "unknown net variant 'ilgnet-v9'"),
    ("[[run]]\nvariant = \"ilgnet\"\n", "[[run]] number 1: profile is required"),
    ("[train]\nmax_iter = -5\ntables = []\n", "[train]: max_iter = -5: expected an integer from 1 to 2147483647"),
    ("[train]\nmax_iter = 0\ntables = []\n", "[train]: max_iter = 0: expected an integer from 1 to 2147483647"),
    ("[train]\ntrain_batch = 0\ntables = []\n", "[train]: train_batch = 0: expected an integer from 1"),
    ("[train]\nval_batch = 2.5\ntables = []\n", "[train]: val_batch = 2.5: expected an integer"),
    ("[train]\nbase_lr = 0\ntables = []\n", "[train]: base_lr = 0: expected a positive number"),
    ("[train]\nbase_lr = nan\ntables = []\n", "[train]: base_lr = nan: expected a positive number"),
    ("[train]\nmax_iter = true\ntables = []\n", "[train]: max_iter = True: expected an integer"),
    ("seeds = [-1]\ntables = [\"table3\"]\n", "seeds must be a list of integers from 0 to"),
    ("[[run]]\nvariant = \"ilgnet\"\nprofile = \"ava2\"\nseeds = [1]\nname = \"../x\"\n",
     "run name '../x': expected one folder name"),
    ("[[run]]\nvariant = \"ilgnet\"\nprofile = \"ava2\"\nseeds = [1]\nname = \"..\"\n", "run name '..'"),
    ("[[run]]\nvariant = \"ilgnet\"\nprofile = \"ava2\"\nseeds = [1]\nname = \"" + "x" * 256 + "\"\n",
     "is longer than 255 bytes"),
    ("[train]\nlr = 0.1\n", "unknown training option of [train] 'lr'"),
    ("seeds = [1, \"two\"]\ntables = [\"table3\"]\n", "seeds must be a list of integers"),
    ("seeds = [1, 1]\ntables = [\"table3\"]\n", "seeds: seed 1 is listed twice in [1, 1]"),
    ("tables = {table3 = [2, 3, 2]}\n", "tables.table3: seed 2 is listed twice in [2, 3, 2]"),
    ("snapshots = \"some\"\ntables = [\"table3\"]\n", "snapshots = 'some': expected one of all, final, none"),
    ("recipe = \"frozen\"\ntables = [\"table3\"]\n", "recipe = 'frozen': expected one of released, paper, paper-sec5"),
    ("name = \"x\"\n", "the plan has no run"),
    ("tables = [\"table3\"]\n[[run]]\nvariant = \"ilgnet\"\nprofile = \"ava2\"\nseeds = [1]\ntrain = {base_lr = 0.1}\n",
     "two runs of the plan are named ilgnet-ava2-seed1 but differ"),
])
def test_a_bad_plan_file_is_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BadInput) as error:
        read_plan(path)
    assert str(error.value).startswith(f"{path}") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_named_run_refuses_seeds_given_for_every_run(tmp_path):
    path = tmp_path / "named.toml"
    path.write_text('[[run]]\nvariant = "ilgnet"\nprofile = "ava2"\nseeds = [1]\nname = "mine"\n')
    assert [s.name for s in load_plan(str(path)).runs] == ["mine"]
    with pytest.raises(BadInput) as error:
        load_plan(str(path), seeds=[1, 2])
    assert str(error.value).startswith(f"{path}: run mine is named, so it has the one seed the plan gives it")


def _tomli():
    """tomli, the TOML reader of Python 3.10 (where tomllib is missing), for the test of that path on this Python."""
    return pytest.importorskip("tomli", reason="tomli (the TOML reader ilgnet uses on Python 3.10) is not installed")


@pytest.mark.parametrize("reader", ["tomllib", "tomli"])
@pytest.mark.parametrize("text, where, message", [
    ('name = "x"\ntables = ["table3"]\nseeds = [1,,2]\n', "3:12", "Invalid value"),
    ('name = "x"\ntables = ["table3"\n', "3:1", "Unclosed array"),            # at the end of the document
    ('name = "x"\nname = "y"\n', "2:11", "Cannot overwrite a value"),
])
def test_a_toml_syntax_error_names_its_line_and_column_on_tomllib_and_tomli(tmp_path, monkeypatch, reader, text,
                                                                           where, message):
    from ilgnet.paper import plan_fields

    if reader == "tomli":
        monkeypatch.setattr(plan_fields, "tomllib", _tomli())
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BadInput) as error:
        read_plan(path)
    assert str(error.value) == f"{path}:{where}: not TOML: {message}"


def test_the_paper_protocol_reads_the_first_records_and_wraps_around():
    frame = pd.DataFrame({"key": list("abcde"), "label": [1, 0, 1, 1, 0], "predicted": [1, 1, 1, 0, 0]})
    # 3 x 4 = 12 records: a b c d e a b c d e a b -> correct: a c e a c e a = 7 of 12
    assert prefix_protocol(frame, batch=3, iterations=4) == {
        "batch": 3, "iterations": 4, "images": 12, "records": 5, "distinct_records": 5, "accuracy": 7 / 12}
    assert prefix_protocol(frame, batch=2, iterations=1)["accuracy"] == 0.5           # a b


def test_the_density_claim_is_a_one_sided_rank_test():
    rng = np.random.default_rng(1)
    denser = pd.DataFrame({"label": [1] * 40 + [0] * 40,
                           "active_fraction": np.r_[rng.uniform(0.5, 0.9, 40), rng.uniform(0.2, 0.6, 40)]})
    result = density_test(denser)
    assert result["holds"] is True and result["p_value"] < 1e-6 and result["median_high"] > result["median_low"]
    flipped = denser.assign(label=1 - denser["label"])
    assert density_test(flipped)["holds"] is False and density_test(flipped)["p_value"] > 0.99
    assert density_test(denser[denser["label"] == 1])["holds"] is None


def record(run_dir, spec, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runstate.CAMPAIGN_JSON).write_text(json.dumps({"run": spec.record(), "attempts": [], **fields}))


def test_a_run_state_is_read_from_its_folder(tmp_path):
    plan = built_in("table4", seeds=(1,), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    spec = plan.runs[0]
    run_dir = plan.run_dir(spec)
    assert runstate.run_state(plan, spec).state == "not started"
    record(run_dir, spec, state="started")
    assert runstate.run_state(plan, spec).state == "interrupted"         # no live lock: its process is gone
    (run_dir / runstate.LOCK).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    state = runstate.run_state(plan, spec)
    assert state.state == "running" and state.message == f"on {socket.gethostname()} {os.getpid()}"
    (run_dir / runstate.LOCK).write_text(f"{socket.gethostname()} 999999999\n")
    assert runstate.run_state(plan, spec).state == "interrupted"         # a stale lock
    (run_dir / runstate.LOCK).unlink()
    record(run_dir, spec, state="diverged", message="training diverged: the training loss became nan")
    assert runstate.run_state(plan, spec).state == "diverged"
    record(run_dir, spec, state="finished")
    state = runstate.run_state(plan, spec)                              # finished needs its evaluation
    assert (state.state, state.message) == ("damaged", f"{run_dir / EVALUATION_JSON}: missing")
    (run_dir / EVALUATION_JSON).write_text("{}")
    state = runstate.run_state(plan, spec)
    assert state.state == "damaged" and state.message.endswith("accuracy is None, not a fraction from 0 to 1")
    table = runstate.status_table(runstate.status(plan))
    assert f"| {spec.name} | table4 | damaged |" in table
    assert table.rstrip().endswith("3 not started, 1 damaged")
    # The accuracy of a run not finished is its log's last test pass, said with its iteration (here the untrained
    # net's pass at 0), never to be read as its final accuracy.
    (run_dir / "train.log").write_text(
        "I20261207 21:21:49.966333  1067 solver.cpp:347] Iteration 0, Testing net (#0)\n"
        "I20261207 21:21:54.618901  1067 solver.cpp:414]     Test net output #1: loss1/top-1 = 0.5\n"
        "I20261207 21:21:57.350530  1067 solver.cpp:239] Iteration 0 (3.5e-08 iter/s, 7.739s/1 iters), loss = 10.4\n"
        "I20261207 21:22:01.082633  1067 solver.cpp:239] Iteration 1 (0.268 iter/s, 3.731s/1 iters), loss = 5.99\n")
    table = runstate.status_table(runstate.status(plan))
    assert f"| {spec.name} | table4 | damaged | 1 / {spec.max_iter:,} | 50.00 % (test pass at 0) | - |" in table


def test_a_folder_of_another_run_is_never_trained_over(tmp_path):
    plan = built_in("table4", seeds=(1,), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    spec, other = plan.runs[:2]
    record(plan.run_dir(spec), other)
    with pytest.raises(BadInput, match="holds another run"):
        runstate.status(plan)
    foreign = plan.run_dir(plan.runs[2])
    foreign.mkdir(parents=True)
    (foreign / "train.log").write_text("")
    with pytest.raises(BadInput, match="was not made by a campaign"):
        runstate.run_state(plan, plan.runs[2])


def test_missing_data_folders_are_named_before_any_run(tmp_path):
    plan = built_in("table3", seeds=(1,), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    with pytest.raises(MissingFile, match=r"data folders missing: .*/data/ava2, .*/data/ava2-320 "):
        campaign.run_campaign(plan)
    assert not (tmp_path / "runs").exists()


def test_a_plan_file_sets_a_recipe_and_overrides_per_variant(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('tables = ["table3"]\nseeds = [1]\nrecipe = "paper-sec5"\n[train]\nmax_iter = 10\n'
                    '[variant.ilgnet-inc4]\nmax_iter = 2\n')
    plan = read_plan(path)
    by_variant = {s.variant: s for s in plan.runs}
    assert by_variant["ilgnet-inc4"].max_iter == 2 and by_variant["ilgnet-bn"].max_iter == 10
    assert by_variant["ilgnet-bn"].recipe == "paper-sec5" and by_variant["ilgnet"].recipe == "released"
    assert by_variant["ilgnet-bn"].name == "ilgnet-bn-ava2-paper-sec5-seed1"
    path.write_text('tables = ["table3"]\n[variant.ilgnet-v9]\nmax_iter = 2\n')
    with pytest.raises(BadInput, match="unknown net variant 'ilgnet-v9'"):
        read_plan(path)
    recipes = built_in("recipes", seeds=(1,), runs_dir=tmp_path)
    assert {(s.profile, s.recipe) for s in recipes.runs} == {(p, r) for p in ("ava1-delta0", "ava2")
                                                              for r in ("released", "paper", "paper-sec5")}
