"""One run of a campaign executed: trained (`ilgnet.training.runs.train`, resumed from its newest snapshot), scored
on every val record once (`ilgnet.evaluation.evaluate`: in this process, or `caffe test` in Docker), and recorded
in its folder (ilgnet.paper.runstate) while it holds the run's lock; its snapshots pruned as the plan says."""
from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

from ilgnet import defaults
from ilgnet.data.folder import DataFolder
from ilgnet.errors import UserError
from ilgnet.nets import forward_time
from ilgnet.fileio import atomic_path, atomic_write_json
from ilgnet.paper.figures import FIG5_VARIANTS, FeatureCollector
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.paper.integrity import EVALUATION_JSON, MAPS, SCORES_CSV
from ilgnet.paper.runstate import (ERROR_LOG, FIG5_PHOTOS, LOCK, RunBusy, final_snapshot, ignore, now, run_state,
                                   take_lock, update_record)
from ilgnet.paper.tables import PROFILE_COLUMNS, table_cells
from ilgnet.paper.timing import environment
from ilgnet.training.plan import TrainOptions
from ilgnet.training.runs import TrainingDiverged, train
from ilgnet.zoo.models import run_model
from ilgnet.zoo.runfolder import RunFolder

BATCH1_PASSES = 5           # single-image forward passes timed (their median) after a warm-up, for Table 4


def _train(plan: Plan, spec: RunSpec, run_dir: Path, *, gpu: str | None, docker: bool, progress: bool,
           notify: Callable[[str], None]) -> Path:
    """The run's final caffemodel: trained, resumed from its newest snapshot, or already there."""
    final = final_snapshot(spec, run_dir)
    if final.is_file():
        return final
    options = TrainOptions(spec.variant, spec.profile, plan.data_folder(spec), name=spec.name,
                           runs_dir=plan.runs_dir, models_dir=plan.models_dir, gpu=gpu, docker=docker,
                           resume=bool(RunFolder(run_dir).snapshots("solverstate")), seed=spec.seed, recipe=spec.recipe,
                           **spec.options)
    return train(options, progress=progress, notify=lambda message: notify(f"{spec.name}: {message}"))


def evaluate_run(plan: Plan, spec: RunSpec, run_dir: Path, caffemodel: Path, *, gpu: str | None, docker: bool,
                 progress: bool) -> dict:
    """Scores every val record once with the run's final model and its own mean image (ilgnet.evaluation.evaluate,
    as `ilgnet test`), with the paper protocol's accuracy read off the same records and Table 4's test time (for a
    run of a Table 4 cell also its trained net's at batch 1, `scoring.batch1`); writes evaluation.json
    (Evaluation.to_json) and val_scores.csv; returns the evaluation.json dict."""
    from ilgnet.evaluation import evaluate

    device = None if gpu is None else int(gpu.split(",")[0])
    features = FeatureCollector(FIG5_PHOTOS) if spec.variant in FIG5_VARIANTS and not docker else None
    # The snapshot is Caffe's own of this run's net: checking it against the net again would only cost time.
    evaluation = evaluate(run_model(run_dir, caffemodel), DataFolder(plan.data_folder(spec)),
                          batch=spec.options.get("val_batch") or defaults.VAL_BATCH,   # the memory its test net had
                          engine="caffe" if docker else "pycaffe", gpu=device, docker=docker,
                          protocol=PROFILE_COLUMNS[spec.profile][0], paper_protocol="prefix", check=False,
                          progress=progress, on_batch=features)
    frame = evaluation.frame
    if features is not None:
        for column, values in features.columns.items():
            frame[column] = frame["key"].map(values)
        with atomic_path(run_dir / MAPS) as partial:
            features.save(partial)
    with atomic_path(run_dir / SCORES_CSV) as partial:
        frame.to_csv(partial, index=False)
    result = evaluation.to_json()
    if (spec.variant, spec.profile) in table_cells("table4") and not docker and "scoring" in result:
        # Table 4's batch-1 time with the trained weights, while they exist (a plan may keep no snapshot).
        _, ms = forward_time(spec.variant, batch=1, iterations=BATCH1_PASSES, gpu=device, weights=caffemodel)
        result["scoring"]["batch1"] = {"seconds_per_image": ms / 1000, "passes": BATCH1_PASSES,
                                       "weights": Path(caffemodel).name}
    atomic_write_json(run_dir / EVALUATION_JSON, result)
    return result


def execute(plan: Plan, spec: RunSpec, *, gpu: str | None = None, docker: bool = False, progress: bool = True,
            notify: Callable[[str], None] = ignore) -> str:
    """Trains (or resumes) and evaluates one run, holding its lock; returns its state: finished, diverged or failed
    (the error is recorded in campaign.json, and a bug's traceback in campaign.log), or running when another live
    process holds the run. A Ctrl-C (KeyboardInterrupt, after Caffe's snapshot) is recorded as an interruption and
    raised."""
    run_dir = plan.run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        take_lock(run_dir)
    except RunBusy as busy:
        notify(str(busy))
        return "running"
    try:
        if run_state(plan, spec).state == "finished":   # by another campaign, since this one read the runs' states
            notify(f"{spec.name}: finished meanwhile by another campaign; kept")
            return "finished"
        update_record(plan, spec, run_dir, state="started", message="",
                attempt={"started": now(), "host": socket.gethostname(), "pid": os.getpid(), "gpu": gpu})
        try:
            caffemodel = _train(plan, spec, run_dir, gpu=gpu, docker=docker, progress=progress, notify=notify)
            evaluate_run(plan, spec, run_dir, caffemodel, gpu=gpu, docker=docker, progress=progress)
        except KeyboardInterrupt:
            update_record(plan, spec, run_dir, state="interrupted", outcome=True,
                    message="interrupted (Ctrl-C); the next campaign resumes it from its newest snapshot")
            raise
        except TrainingDiverged as err:
            state, message = "diverged", str(err)
        except UserError as err:
            state, message = "failed", str(err)
        except Exception as err:                        # a bug: recorded, with its traceback, and the others go on
            with open(run_dir / ERROR_LOG, "a") as log:
                log.write(f"{now()}\n{traceback.format_exc()}\n")
            state, message = "failed", f"{type(err).__name__}: {err} (traceback in {run_dir / ERROR_LOG})"
        else:
            update_record(plan, spec, run_dir, state="finished", message="", outcome=True, environment=environment(gpu))
            prune_snapshots(spec, run_dir, plan.snapshots)
            return "finished"
        update_record(plan, spec, run_dir, state=state, message=message, outcome=True)
        return state
    finally:
        (run_dir / LOCK).unlink(missing_ok=True)


def prune_snapshots(spec: RunSpec, run_dir: Path, keep: str) -> None:
    """After a run is finished: keep "all" its snapshots, the "final" caffemodel only, or "none" (its scores, logs
    and curves stay; a plan that keeps no model, like the toy demo, says so)."""
    if keep == "all":
        return
    final = final_snapshot(spec, run_dir)
    for path in RunFolder(run_dir).snapshot_dir.glob("*"):
        if keep == "none" or path != final:
            path.unlink()
