"""One evaluation and one model resolution, with real Caffe on the small variant: `ilgnet test`, a campaign's run and
the demo's step 5 all reach ilgnet.evaluation.evaluate and write the same evaluation of the same model and LMDB;
`ilgnet predict` resolves its model once and picks its backend once."""
from __future__ import annotations

import json
import shutil

import cv2
import pytest
from caffe_data import random_images
from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.commands.demo import evaluate_held_out
from ilgnet.data.folder import DataFolder
from ilgnet.evaluation import evaluation
from ilgnet.evaluation.results import prefix_protocol
from ilgnet.paper.execute import evaluate_run
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.scoring import backends, pool, scorer
from ilgnet.zoo import models
from ilgnet.zoo.runfolder import RunFolder

pytest_plugins = ["caffe_data"]


@pytest.fixture
def campaign(small_dataset, small_caffemodel, tmp_path):
    """A plan of one run of the small variant on data/ava2 (small_dataset's LMDBs, with a val list naming one image
    that is not in the LMDB, the val images' means, and a training list holding one val image), its run folder as
    `ilgnet train` leaves it with small_caffemodel as its snapshot."""
    data = tmp_path / "data" / "ava2"
    shutil.copytree(small_dataset, data)
    (data / "val.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate([0, 1, 0, 1, 1, 0])))
    (data / "val_means.csv").write_text("filename,mean\n" + "".join(f"{i},{4 + i / 3:.3f}\n" for i in range(5)))
    (data / "train.txt").write_text("0 0\nelsewhere.jpg 1\n")
    spec = RunSpec(SMALL, "ava2", 1)
    plan = Plan("one", (spec,), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    run = RunFolder(plan.run_dir(spec))
    run.snapshot_dir.mkdir(parents=True)
    run.write_record(variant=SMALL, profile="ava2", data=DataFolder(data), crop=227, input_scale=1)
    shutil.copy(small_caffemodel, run.snapshot(SMALL, 20))
    return plan, spec, data


def spy(monkeypatch, module, name: str) -> list:
    """The calls of module.name from now on (their arguments), the function itself still run."""
    calls, real = [], getattr(module, name)

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)
    return calls


def test_test_the_campaign_and_the_demo_evaluate_alike(campaign, monkeypatch, tmp_path, capsys):
    plan, spec, data = campaign
    run_dir = plan.run_dir(spec)
    calls = spy(monkeypatch, evaluation, "evaluate")
    assert ilgnet(["test", "--weights", str(run_dir), "--data", str(data), "--json", str(tmp_path / "t.json")]) == 0
    by_test = json.loads((tmp_path / "t.json").read_text())
    by_campaign = evaluate_run(plan, spec, run_dir, RunFolder(run_dir).snapshot(SMALL, 20), gpu=None, docker=False,
                               progress=False)
    assert json.loads((run_dir / "evaluation.json").read_text()) == by_campaign
    by_demo = evaluate_held_out(run_dir, data, tmp_path / "demo-test.json", gpu=None, progress=False)
    assert json.loads((tmp_path / "demo-test.json").read_text()) == by_demo
    assert len(calls) == 3

    # The campaign reads the paper's 50-iteration protocol off the per-record results; the others do not ask for it.
    frame = evaluation.evaluate(models.resolve_model(run_dir), DataFolder(data), progress=False).frame
    assert by_campaign.pop("paper_protocol") == prefix_protocol(frame, batch=48, iterations=50)
    for result in (by_test, by_campaign, by_demo):
        assert result["scoring"].pop("seconds") > 0
    assert by_test == by_campaign == by_demo
    assert by_test["images"] == 5 and by_test["engine"] == "pycaffe" and by_test["scoring"]["backend"] == "caffe"
    assert by_test["val_list"] == {"file": str(data / "val.txt"), "listed": 6, "not_in_lmdb": 1}
    assert by_test["paper"]["protocol"] == "ava2" and by_test["correlations"]["images"] == 5
    assert by_test["train_overlap"]["scored"] == {"images": 5, "in_training": 1}
    assert "| listed val images not in the LMDB | 1 of the 6 in val.txt |" in capsys.readouterr().out


def test_predict_resolves_its_model_once_and_picks_its_backend_once(campaign, monkeypatch, tmp_path, capsys):
    plan, spec, _ = campaign
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(random_images(5, 240, seed=3)):
        cv2.imwrite(str(photos / f"p{i}.png"), image)
    resolved = spy(monkeypatch, models, "resolve_model")
    monkeypatch.setattr(scorer, "resolve_model", models.resolve_model)       # the Scorer's own use of it counts too
    picks = [spy(monkeypatch, module, "pick_backend") for module in (backends, pool, scorer)]
    looked_up = [spy(monkeypatch, module, "require") for module in (pool, scorer)]
    for workers in ("1", "2"):          # the Scorer in this process, and two processes of a pool
        assert ilgnet(["predict", str(photos), "--model", str(plan.run_dir(spec)), "--workers", workers,
                       "--batch", "2", "--quiet"]) == 0
        assert "ilgnet predict: backend caffe (pycaffe imports)" in capsys.readouterr().err
        assert [str(args[0]) for args, _ in resolved] == [str(plan.run_dir(spec))]
        resolved.clear()
        auto = [args for calls in picks for args, _ in calls if args[0] == "auto"]
        assert len(auto) == 1, auto                 # the backend chosen once; later calls only check that choice
        assert looked_up == [[], []]                # the weights found once, when the model was resolved
        for calls in picks:
            calls.clear()
