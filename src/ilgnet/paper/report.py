"""The report's model: the paper's tables, figures and claims from a campaign's runs, beside the paper's own, as one
dict (build); write_report writes DIR/REPORT.md with its PNGs, report.html and report.json (ilgnet.paper.render lays
it out). Tables 2 and 3: per net and setting, the paper's accuracy, ours (mean +- std over seeds, every val record
once, and the logs' 50-iteration protocol), the majority baseline, balanced accuracy, SRCC / PLCC, the runs. Table 4:
its four nets on AVA1 delta 0, training time from the logs, test time per image at batch 1 (trained nets) and the
throughput batch (now). Figures 3-5 and Claims: ilgnet.paper.figures, .claims. Links are relative to DIR."""
from __future__ import annotations

import dataclasses
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ilgnet.bvlc.io import lmdb_size, read_prototxt
from ilgnet.bvlc.logs import parse_train_log
from ilgnet.bvlc.proto import TRAIN, NetParameter
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile
from ilgnet.fileio import atomic_paths, atomic_write_json, atomic_write_text, read_json
from ilgnet.nets import VARIANTS
from ilgnet.pools import ctrl_c_point
from ilgnet.paper import figures, render
from ilgnet.paper.blocks import Figure, html_page, markdown
from ilgnet.paper.claims import learned, paper_claims
from ilgnet.paper.integrity import MAPS, SCORES_CSV
from ilgnet.paper.runstate import CAMPAIGN_JSON, folder_verdict, read_record
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.paper.pooling import pools, provenance
from ilgnet.paper.scores import cell_scores, mean_std as _mean_std
from ilgnet.paper.tables import PAPER_NAMES, PAPER_TIMES, PROFILE_COLUMNS, TABLE_RUNS, paper_accuracy, table_cells
from ilgnet.paper.timing import environment, hardware, test_times, training_time
from ilgnet.zoo.runfolder import RunFolder

FIG3_PHOTOS = 6             # photos in each row of Fig. 3


@dataclass(frozen=True)
class RunResult:
    """A campaign run read from its folder: what it is, its state, its evaluation (None until finished) and its
    campaign.json record."""
    spec: RunSpec
    run_dir: Path
    state: str
    message: str
    record: dict
    evaluation: dict | None
    model: dict | None = None
    """run record of a finished (or stale) run: the data it read (ilgnet.paper.pooling)."""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.record.get("tables", ()))

    @property
    def data(self) -> DataFolder:
        return DataFolder(Path(self.record["data"]))


def _read_run(run_dir: Path) -> RunResult:
    try:                                # a damaged campaign.json: named, left out of every cell, the rest reported
        run = (record := read_record(run_dir)).get("run") or {}
        spec = RunSpec(run["variant"], run["profile"], run["seed"], tuple(sorted(run.get("train", {}).items())),
                       recipe=run.get("recipe", "released"))
    except (BadInput, KeyError, TypeError, AttributeError) as err:
        why = str(err) if isinstance(err, BadInput) else \
            f"{run_dir / CAMPAIGN_JSON}: not a campaign's record (no run with variant, profile, seed)"
        return RunResult(RunSpec("-", "-", 0), run_dir.resolve(), "damaged", why, {}, None)
    state, message, evaluation = folder_verdict(run_dir, record)
    model = read_json(RunFolder(run_dir).model_json) if evaluation is not None else None
    return RunResult(spec, run_dir.resolve(), state, message, record, evaluation, model)


def find_runs(paths: list[Path]) -> list[RunResult]:
    """The campaign runs in `paths`: run folders (with campaign.json), or folders of them (a campaign's runs
    folder). BadInput for a path that holds neither; MissingFile for one that does not exist."""
    found: dict[Path, RunResult] = {}
    for path in map(Path, paths):
        if not path.is_dir():
            raise MissingFile(f"{path} is not a folder of runs")
        folders = [path] if (path / CAMPAIGN_JSON).is_file() else sorted(p for p in path.iterdir()
                                                                         if (p / CAMPAIGN_JSON).is_file())
        if not folders:
            raise BadInput(f"{path} is neither a campaign's run folder nor a folder of them (no {CAMPAIGN_JSON})")
        for folder in folders:
            found.setdefault(folder.resolve(), _read_run(folder))
    return list(found.values())


def accuracy_cells(runs: list[RunResult], table: str) -> list[dict]:
    """One cell per net and setting of Table 2 or 3: the paper's accuracy and ours over the finished runs that
    count in the table, or what there is instead of a finished run."""
    cells = []
    for variant, profile in table_cells(table):
        protocol, column = PROFILE_COLUMNS[profile]
        mine = [r for r in runs if (r.spec.variant, r.spec.profile) == (variant, profile) and table in r.tables]
        paper = paper_accuracy(variant, column)
        not_done = {r.name: r.state + (f" ({r.message})" if r.state == "damaged" else "")
                    for r in mine if r.evaluation is None}
        for pool in pools([r for r in mine if r.evaluation is not None]) or [None]:
            done = pool.runs if pool else []
            cell = {"table": table, "variant": variant, "profile": profile, "column": column, "n": len(done),
                    "runs": [str(r.run_dir) for r in done], "seeds": [r.spec.seed for r in done],
                    "not_finished": not_done, "pool": pool.label if pool else "",
                    "left_out": pool.left_out if pool else {},
                    "stale": [r.name for r in done if r.state == "stale"],
                    "paper": paper[0] if paper else None, "paper_source": paper[1] if paper else None}
            cells.append(_fill(cell, done, paper))
    return cells


def _fill(cell: dict, done: list[RunResult], paper) -> dict:
    """`cell` with the mean and spread of the runs `done` (one pool: ilgnet.paper.pooling), and whether they all
    learned (above their majority baseline)."""
    if done:
        evaluations = [r.evaluation for r in done]
        cell["accuracy"] = _mean_std([e["accuracy"] for e in evaluations])
        cell["paper_protocol"] = _mean_std([e["paper_protocol"]["accuracy"] for e in evaluations])
        cell["balanced_accuracy"] = _mean_std([e["balanced_accuracy"] for e in evaluations])
        cell["majority_baseline"] = statistics.fmean(e["majority_baseline"]["accuracy"] for e in evaluations)
        cell["images"] = evaluations[0]["images"]
        cell["protocol_images"] = evaluations[0]["paper_protocol"]["images"]
        cell["difference"] = cell["accuracy"][0] - paper[0] if paper else None
        cell["learned"] = all(learned(e) for e in evaluations)
        cell.update(cell_scores(evaluations))             # SRCC, PLCC; test images in a training list
    return cell


def _train_batch_and_images(run: RunResult) -> tuple[int, int]:
    """The TRAIN batch and the training records of a run, from its own train_val.prototxt."""
    net = read_prototxt(RunFolder(run.run_dir).train_val, NetParameter())
    data = next(layer for layer in net.layer if layer.type == "Data" and any(r.phase == TRAIN for r in layer.include))
    return data.data_param.batch_size, lmdb_size(Path(data.data_param.source))


def time_rows(runs: list[RunResult]) -> list[dict]:
    """Table 4: one row per net of Table 4 (the four GoogLeNetV1-BN nets, on AVA1 delta 0), in the paper's order:
    its training time from the finished runs that count in Table 4, else those on Table 4's solver profile (never a
    run on another data), and its test time at batch 1 as those runs timed their trained nets (`batch1`: seconds
    per image, "trained"; None unless every run timed it)."""
    variants, profiles = TABLE_RUNS["table4"]
    rows = []
    for variant in variants:
        finished = [r for r in runs if r.spec.variant == variant and r.state == "finished"
                    and r.spec.profile in profiles]
        chosen = [r for r in finished if "table4" in r.tables] or finished
        single = [b["seconds_per_image"] for r in chosen if (b := r.evaluation.get("scoring", {}).get("batch1"))]
        row = {"variant": variant, "runs": [str(r.run_dir) for r in chosen], "test": None,
               "batch1": {"seconds": statistics.fmean(single), "weights": "trained"}
               if single and len(single) == len(chosen) else None,
               "paper": PAPER_TIMES.get(variant), "hardware": sorted({hardware(r.record) for r in chosen}),
               "paper_accuracy": (paper_accuracy(variant, "AVA1, delta 0") or (None,))[0],
               "accuracy": _mean_std([r.evaluation["accuracy"] for r in chosen]) if chosen else None,
               "accuracy_n": len(chosen)}
        spent = [t for r in chosen if (t := training_time(RunFolder(r.run_dir).train_log))]
        if spent:
            batches = [_train_batch_and_images(r) for r in chosen]
            row.update(seconds=statistics.fmean(t["seconds"] for t in spent),
                       iterations=statistics.fmean(t["iterations"] for t in spent),
                       iterations_per_second=statistics.fmean(t["iterations_per_second"] for t in spent
                                                              if t["iterations_per_second"]),
                       images_per_second=statistics.fmean(t["iterations_per_second"] * batch for t, (batch, _) in
                                                          zip(spent, batches) if t["iterations_per_second"]),
                       epochs=statistics.fmean(r.spec.max_iter * batch / images for r, (batch, images) in
                                               zip(chosen, batches)))
        rows.append(row)
    return rows


def choose_run(runs: list[RunResult], name: str | None, variants) -> RunResult | None:
    """The run named `name`, else the first finished run of the first of `variants` that has one (Table 3's
    before others)."""
    finished = [r for r in runs if r.state == "finished"]
    if name is not None:
        for run in runs:
            if run.name == name:
                if run.state == "stale":
                    raise BadInput(f"run {name} is stale ({run.message}): its figures would show photos it never "
                                   f"saw")
                if run.state != "finished":
                    raise BadInput(f"run {name} is {run.state}, not finished: its figures need its final model"
                                   + (f" ({run.message})" if run.message else ""))
                return run
        raise BadInput(f"no run named {name} among {', '.join(r.name for r in runs)}")
    for variant in variants:
        mine = sorted((r for r in finished if r.spec.variant == variant),
                      key=lambda r: ("table3" not in r.tables, r.spec.seed))
        if mine:
            return mine[0]
    return None


def fig3(run: RunResult) -> bytes:
    """The run's FIG3_PHOTOS best- and worst-scored val records, as the net saw them (the val LMDB)."""
    scores = pd.read_csv(run.run_dir / SCORES_CSV).sort_values("p_1", ascending=False, kind="stable")
    top, bottom = scores.head(FIG3_PHOTOS), scores.tail(FIG3_PHOTOS).iloc[::-1]
    images = figures.records(run.data.lmdb("val"), set(top["key"]) | set(bottom["key"]))

    def row(frame: pd.DataFrame) -> list:
        return [(images[k], f"p_high {p:.3f}\nAVA: {'high' if label else 'low'}")
                for k, p, label in zip(frame["key"], frame["p_1"], frame["label"])]
    return figures.photo_grid([("labelled good (highest p_high)", row(top)),
                               ("labelled bad (lowest p_high)", row(bottom))])


def fig4(runs: list[RunResult]) -> tuple[bytes, list[RunResult]] | None:
    """Training loss against iteration and epoch of Table 4's nets on its AVA1 delta 0 (one run each, the lowest
    seed), else of every net."""
    nets, profiles = TABLE_RUNS["table4"]
    finished = [r for r in runs if r.state == "finished"]
    pool = [r for r in finished if r.spec.profile in profiles and r.spec.variant in nets] or finished
    variants = [v for v in nets if v in {r.spec.variant for r in pool}] or dict.fromkeys(r.spec.variant for r in pool)
    if not pool:
        return None
    chosen = [choose_run(pool, None, [v]) for v in variants]
    curves = {}
    for run in chosen:
        batch, images = _train_batch_and_images(run)
        frame = parse_train_log(RunFolder(run.run_dir).train_log).dropna(subset=["loss"])
        curves[f"{PAPER_NAMES[run.spec.variant]} ({run.name})"] = pd.DataFrame(
            {"iteration": frame["iteration"], "epoch": frame["iteration"] * batch / images, "loss": frame["loss"]})
    return figures.loss_curves(curves), chosen


def fig5(run: RunResult) -> tuple[bytes, dict]:
    """The feature maps the campaign kept for the run's first high and low val records, and the density statistic
    over all its val records."""
    scores = pd.read_csv(run.run_dir / SCORES_CSV)
    density = figures.density_test(scores)
    kept = figures.read_maps(run.run_dir / MAPS)
    images = figures.records(run.data.lmdb("val"), {key for key, _, _ in kept})
    p_high = dict(zip(scores["key"], scores["p_1"]))
    photos = [(f"{'high' if label else 'low'}, p_high {p_high[key]:.3f}", images[key], maps)
              for key, label, maps in sorted(kept, key=lambda item: -item[1])]
    return figures.feature_maps(photos, density, scores), density


def build(paths: list[Path], *, figure_run: str | None = None, gpu: int | None = None, time_batch: int = 10,
          time_iterations: int = 3) -> dict:
    """Everything the report shows, as a dict (report.json), with the figures' PNG bytes under "figures"."""
    runs = find_runs(paths)
    rows = time_rows(runs)
    untimed = [row["variant"] for row in rows if row["batch1"] is None]
    times = test_times(TABLE_RUNS["table4"][0], batch=time_batch, iterations=time_iterations, gpu=gpu,
                       single=untimed)
    for row in rows:                    # no trained net timed: random weights (a forward pass takes the same time)
        row["test"] = times[row["variant"]]
        row["batch1"] = row["batch1"] or {"seconds": row["test"]["seconds_per_image_batch1"], "weights": "random"}
    report: dict = {"runs": runs, "tables": {t: accuracy_cells(runs, t) for t in ("table2", "table3")},
                    "times": times, "table4": rows, "environment": environment(gpu), "data": provenance(runs),
                    "figures": {}}
    shown = choose_run(runs, figure_run, ["ilgnet", *VARIANTS])
    if shown is not None:
        report["figures"]["fig3"] = (fig3(shown), shown)
    if curves := fig4(runs):
        report["figures"]["fig4"] = curves
    with_maps = [r for r in runs if (r.run_dir / MAPS).is_file()]
    feature_run = choose_run(with_maps, figure_run if shown in with_maps else None, figures.FIG5_VARIANTS)
    density = None
    if feature_run is not None:
        png, report["density"] = fig5(feature_run)
        report["figures"]["fig5"] = (png, feature_run)
        scores = pd.read_csv(feature_run.run_dir / SCORES_CSV)
        layers = {figures.LAST_LAYER: report["density"]}
        if figures.ACTIVE_COLUMNS[figures.CONNECTED] in scores:
            layers[figures.CONNECTED] = figures.density_test(scores, figures.CONNECTED)
        density = (layers, feature_run, list(scores["p_1"]))
    if any(d["synthetic"] for d in report["data"]):
        for cell in (c for cells in report["tables"].values() for c in cells):
            cell["difference"] = None           # synthetic data: an "ours - paper" difference compares nothing
    report["claims"] = paper_claims(runs, PAPER_NAMES, report["table4"], density)
    return report


def _json_ready(report: dict, out: Path) -> dict:
    runs = [{"name": r.name, "folder": os.path.relpath(r.run_dir, out), "state": r.state, "message": r.message,
             "tables": list(r.tables), **r.spec.record(), "evaluation": r.evaluation,
             "environment": r.record.get("environment")} for r in report["runs"]]
    figs = {name: {"file": f"{name}.png", "runs": [os.path.relpath(r.run_dir, out) for r in
                                                   (run if isinstance(run, list) else [run])]}
            for name, (_, run) in report["figures"].items()}
    claims = [dataclasses.asdict(c) for c in report.get("claims", [])]
    return {**{k: v for k, v in report.items() if k not in ("runs", "figures", "claims")}, "runs": runs,
            "figures": figs, "claims": claims}


def write_report(report: dict, out: Path) -> list[Path]:
    """REPORT.md with fig3/4/5.png, report.html (self-contained) and report.json in `out`, replacing the ones there
    together once all are written (an interrupted report leaves the previous one whole); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blocks = render.sections(report, out.resolve())
    images = {out / block.file: block.png for block in blocks if isinstance(block, Figure)}
    paths = [out / "REPORT.md", out / "report.html", out / "report.json", *images]
    with atomic_paths(paths) as partials:
        for png, partial in zip(images.values(), partials[3:]):
            partial.write_bytes(png)
        ctrl_c_point("report")
        atomic_write_text(partials[0], markdown(blocks))
        atomic_write_text(partials[1], html_page(blocks))
        atomic_write_json(partials[2], _json_ready(report, out.resolve()))
    return paths


def empty_cells(report: dict, plan: Plan) -> list[str]:
    """What the plan should have filled and the report does not: a planned run that is not finished, a Table 2/3
    cell with fewer finished runs than planned, a Table 4 row of a planned net without its training or test time,
    a figure without its run."""
    runs = {r.name: r for r in report["runs"]}      # by name: the runs folder read need not be the plan's own
    empty = [f"run {spec.name}: {runs[spec.name].state if spec.name in runs else 'not found'}"
             for spec in plan.runs if spec.name not in runs or runs[spec.name].state != "finished"]
    for table in ("table2", "table3"):
        for cell in report["tables"][table]:
            planned = sum(1 for s in plan.runs if table in s.tables and (s.variant, s.profile) ==
                          (cell["variant"], cell["profile"]))
            if planned and cell["n"] < planned:
                empty.append(f"{table} {cell['variant']} {cell['column']}: {cell['n']} of {planned} runs")
    for row in report["table4"]:
        if any("table4" in s.tables and s.variant == row["variant"] for s in plan.runs):
            if "seconds" not in row or row["test"] is None:
                empty.append(f"table4 {row['variant']}: no training or test time")
    wanted = {"fig3", "fig4"} | ({"fig5"} if any(s.variant in figures.FIG5_VARIANTS for s in plan.runs) else set())
    empty += [f"{name}: not drawn" for name in sorted(wanted - set(report["figures"]))]
    return empty
