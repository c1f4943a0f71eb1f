"""The paper's tables and figures from a campaign's runs, beside the paper's own figures: DIR/REPORT.md with its
figures as PNG files, the same report as one self-contained DIR/report.html (figures embedded as data URIs), and
every number in DIR/report.json.

  Tables 2 and 3  per net and setting: the paper's accuracy; ours as mean +- std over the seeds' runs (N), on every
                  val record once and by the published logs' protocol (`caffe test` for 50 iterations, read off the same
                  per-record results); the majority-class baseline; balanced accuracy; ours minus the paper's; the
                  runs behind each number. A cell without a finished run says what there is instead.
  Table 4         per net: training wall time, iterations and iterations per second from the runs' logs, the
                  epochs trained, and the test time per image measured now for every net (same batch, same backend),
                  with the hardware named; the paper's times beside.
  Figures 3-5     ilgnet.paper.figures.
  Summary, Claims ilgnet.paper.findings and ilgnet.paper.claims: each claim of the paper tested, with a verdict.
  Provenance      the differences from the paper (ilgnet.paper.differences), each run's seed, machine and
                  Caffe, the data folders with the checksums of their lists and means.

Links to run folders are relative to DIR, so the report and the runs can move together.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ilgnet.bvlc.io import lmdb_size, read_prototxt
from ilgnet.bvlc.logs import parse_train_log
from ilgnet.bvlc.proto import TRAIN, NetParameter
from ilgnet.data.folder import DataFolder
from ilgnet.errors import BadInput, MissingFile
from ilgnet.evaluation.reports import PAPER
from ilgnet.fileio import atomic_write_json, atomic_write_text, file_digest
from ilgnet.nets import VARIANTS
from ilgnet.paper import figures, findings
from ilgnet.paper.claims import learned, paper_claims
from ilgnet.paper.campaign import CAMPAIGN_JSON, EVALUATION_JSON, MAPS, SCORES_CSV, folder_state, read_record
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.paper.tables import (NOT_KNOWN, PAPER_NAMES, PAPER_TIMES, PROFILE_COLUMNS, TABLE_RUNS, TITLES,
                                 paper_accuracy, table_cells)
from ilgnet.paper.timing import environment, test_times, training_time

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
    record = read_record(run_dir)
    run = record.get("run") or {}
    try:
        spec = RunSpec(run["variant"], run["profile"], run["seed"], tuple(sorted(run.get("train", {}).items())),
                       recipe=run.get("recipe", "released"))
    except (KeyError, TypeError):
        raise BadInput(f"{run_dir / CAMPAIGN_JSON}: not a campaign's record (no run with variant, profile, seed)")
    state, message = folder_state(run_dir, record)
    evaluation = json.loads((run_dir / EVALUATION_JSON).read_text()) if state == "finished" else None
    return RunResult(spec, run_dir.resolve(), state, message, record, evaluation)


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


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _spread(mean: float, std: float | None, n: int) -> str:
    return f"{100 * mean:.2f} %" + (f" ± {100 * std:.2f}" if std is not None else "") + f" (N = {n})"


def _link(run: RunResult, out: Path) -> str:
    return f"[{run.name}]({os.path.relpath(run.run_dir, out)})"


def accuracy_cells(runs: list[RunResult], table: str) -> list[dict]:
    """One cell per net and setting of Table 2 or 3: the paper's accuracy and ours over the finished runs that
    count in the table, or what there is instead of a finished run."""
    cells = []
    for variant, profile in table_cells(table):
        protocol, column = PROFILE_COLUMNS[profile]
        mine = [r for r in runs if (r.spec.variant, r.spec.profile) == (variant, profile) and table in r.tables]
        done = [r for r in mine if r.state == "finished"]
        paper = paper_accuracy(variant, column)
        cell = {"table": table, "variant": variant, "profile": profile, "column": column, "n": len(done),
                "runs": [str(r.run_dir) for r in done], "seeds": [r.spec.seed for r in done],
                "not_finished": {r.name: r.state for r in mine if r.state != "finished"},
                "paper": paper[0] if paper else None, "paper_source": paper[1] if paper else None}
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
        cells.append(cell)
    return cells


def _accuracy_table(cells: list[dict], runs: list[RunResult], out: Path) -> tuple[list[str], list[list[str]]]:
    by_dir = {str(r.run_dir): r for r in runs}
    header = ["net", "setting", "paper", "ours: every val record once", "ours: the published logs' protocol",
              "majority baseline", "balanced accuracy", "ours - paper", "runs"]
    rows = []
    for c in cells:
        paper = _percent(c["paper"]) if c["paper"] is not None else NOT_KNOWN
        if c["n"]:
            protocol = PAPER[PROFILE_COLUMNS[c["profile"]][0]]
            ours = [_spread(*c["accuracy"], c["n"]) + f", {c['images']:,} images",
                    _spread(*c["paper_protocol"], c["n"]) + f", {protocol['iterations']} x {protocol['batch']}",
                    _percent(c["majority_baseline"]) + ("" if c.get("learned", True) else
                                                        ": **at or above ours: did not learn**"),
                    _spread(*c["balanced_accuracy"], c["n"]),
                    "-" if c["difference"] is None else f"{100 * c['difference']:+.2f} points",
                    ", ".join(_link(by_dir[d], out) for d in c["runs"])]
        else:
            waiting = ", ".join(f"{name}: {state}" for name, state in c["not_finished"].items())
            ours = ["no finished run" + (f" ({waiting})" if waiting else "")] + ["-"] * 5
        rows.append([PAPER_NAMES[c["variant"]], c["column"], paper, *ours])
    return header, rows


def _train_batch_and_images(run: RunResult) -> tuple[int, int]:
    """The TRAIN batch and the training records of a run, from its own train_val.prototxt."""
    net = read_prototxt(run.run_dir / "train_val.prototxt", NetParameter())
    data = next(layer for layer in net.layer if layer.type == "Data" and any(r.phase == TRAIN for r in layer.include))
    return data.data_param.batch_size, lmdb_size(Path(data.data_param.source))


def time_rows(runs: list[RunResult], times: dict[str, dict]) -> list[dict]:
    """Table 4: per net (Table 4's first, then every other net with runs): its training time from the finished runs
    that count in Table 4 (else those on Table 4's solver profile, else all its finished runs), and its test time
    measured now."""
    order = list(TABLE_RUNS["table4"][0]) + [v for v in VARIANTS if v not in TABLE_RUNS["table4"][0]]
    rows = []
    for variant in order:
        finished = [r for r in runs if r.spec.variant == variant and r.state == "finished"]
        chosen = ([r for r in finished if "table4" in r.tables] or
                  [r for r in finished if r.spec.profile in TABLE_RUNS["table4"][1]] or finished)
        if variant not in TABLE_RUNS["table4"][0] and not chosen:
            continue
        row = {"variant": variant, "runs": [str(r.run_dir) for r in chosen], "test": times.get(variant),
               "paper": PAPER_TIMES.get(variant), "hardware": sorted({_hardware(r.record) for r in chosen}),
               "paper_accuracy": (paper_accuracy(variant, "AVA1, delta 0") or (None,))[0],
               "accuracy": [r.evaluation["accuracy"] for r in chosen]}
        spent = [t for r in chosen if (t := training_time(r.run_dir / "train.log"))]
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


def _run_row(run: RunResult, out: Path) -> list[str]:
    """A run as the report's table of runs shows it: its state, seed, overrides, machine and Caffe."""
    env = run.record.get("environment") or {}
    build = env.get("build") or {}
    return [_link(run, out), ", ".join(run.tables) or "-", run.state + (f": {run.message}" if run.message else ""),
            str(run.spec.seed), ", ".join(f"{k} {v}" for k, v in run.spec.train) or "-", _hardware(run.record),
            str(env.get("caffe", "-")), build.get("cuda_runtime") or "none", build.get("cudnn") or "none"]


def _hardware(record: dict) -> str:
    env = record.get("environment") or {}
    return f"{env.get('cpu', '?')}" + (f"; {env['gpu']}" if env.get("gpu") else "") + f" ({env.get('host', '?')})"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _time_table(rows: list[dict], runs: list[RunResult], out: Path) -> tuple[list[str], list[list[str]]]:
    by_dir = {str(r.run_dir): r for r in runs}
    header = ["net", "paper: accuracy", "ours: accuracy", "training wall time", "iterations", "iterations/s",
              "images/s", "epochs", "test s per image, batch 1 (now)", "test ms per image, throughput batch (now)",
              "paper: training time", "paper: test time (s per image, GTX 980 Ti)", "runs"]
    table = []
    for row in rows:
        paper = row["paper"] or ("not in Table 4", "not in Table 4")
        test = ([f"{row['test']['seconds_per_image_batch1']:.3g}", f"{row['test']['ms_per_image']:.1f}"]
                if row["test"] else ["not measured"] * 2)
        if "seconds" in row:
            trained = [_duration(row["seconds"]), f"{row['iterations']:,.0f}", f"{row['iterations_per_second']:.3g}",
                       f"{row['images_per_second']:.3g}", f"{row['epochs']:.3g}"]
        else:
            trained = ["no finished run"] + ["-"] * 4
        accuracy = [_spread(*_mean_std(row["accuracy"]), len(row["accuracy"]))] if row["accuracy"] else ["-"]
        table.append([PAPER_NAMES[row["variant"]], _percent(row["paper_accuracy"]), *accuracy, *trained, *test, *paper,
                      ", ".join(_link(by_dir[d], out) for d in row["runs"]) or "-"])
    return header, table


def choose_run(runs: list[RunResult], name: str | None, variants) -> RunResult | None:
    """The run named `name`, else the first finished run of the first of `variants` that has one (Table 3's
    before others)."""
    finished = [r for r in runs if r.state == "finished"]
    if name is not None:
        for run in runs:
            if run.name == name:
                if run.state != "finished":
                    raise BadInput(f"run {name} is {run.state}, not finished: its figures need its final model")
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
    """Training loss against iteration and epoch of Table 4's nets (one run each, the lowest seed), else of every
    net."""
    finished = [r for r in runs if r.state == "finished"]
    variants = [v for v in TABLE_RUNS["table4"][0] if any(r.spec.variant == v for r in finished)] or \
        list(dict.fromkeys(r.spec.variant for r in finished))
    chosen = [choose_run(finished, None, [v]) for v in variants]
    if not chosen:
        return None
    curves = {}
    for run in chosen:
        batch, images = _train_batch_and_images(run)
        frame = parse_train_log(run.run_dir / "train.log").dropna(subset=["loss"])
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


def data_provenance(runs: list[RunResult]) -> list[dict]:
    """Each data folder the runs read: its partition and seed (split.json), its records (lmdb.json), and the sha256
    of its train.txt, val.txt and mean.binaryproto."""
    folders = []
    for root in dict.fromkeys(r.record["data"] for r in runs):
        folder = DataFolder(Path(root))
        split, built = folder.read_json(folder.split_json), folder.read_json(folder.lmdb_json)
        digests = {path.name: file_digest(path) if path.is_file() else None
                   for path in (folder.list_file("train"), folder.list_file("val"), folder.mean_binaryproto)}
        folders.append({"folder": root, "partition": split.get("partition"), "seed": split.get("seed"),
                        "delta": split.get("delta"), "synthetic": bool(split.get("synthetic")),
                        "resize": built.get("resize"),
                        "records": {s: (built.get(s) or {}).get("records") for s in ("train", "val")},
                        "sha256": digests})
    return folders


def build(paths: list[Path], *, figure_run: str | None = None, gpu: int | None = None, time_batch: int = 10,
          time_iterations: int = 3) -> dict:
    """Everything the report shows, as a dict (report.json), with the figures' PNG bytes under "figures"."""
    runs = find_runs(paths)
    seen = list(dict.fromkeys(r.spec.variant for r in runs))
    timed = list(dict.fromkeys([*TABLE_RUNS["table4"][0], *seen]))
    report: dict = {"runs": runs, "tables": {t: accuracy_cells(runs, t) for t in ("table2", "table3")},
                    "times": test_times(timed, batch=time_batch, iterations=time_iterations, gpu=gpu),
                    "environment": environment(gpu), "data": data_provenance(runs), "figures": {}}
    report["table4"] = time_rows(runs, report["times"])
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


def _sections(report: dict, out: Path) -> list[tuple]:
    """The report as blocks: ("h", text), ("p", text), ("table", header, rows), ("img", file, png, alt)."""
    runs = report["runs"]
    env = report["environment"]
    blocks: list[tuple] = [
        ("h", "ILGNet, the paper regenerated"),
        ("p", f"{len(runs)} runs, {sum(r.state == 'finished' for r in runs)} finished. Jin et al., arXiv "
              f"1610.02256 (WCSP 2016; the later versions add the BatchNorm and Inception-v3/v4 nets). Every "
              f"figure the paper prints in its Tables 2-4 stands beside ours (ilgnet.paper.paper_figures). Each of "
              f"our numbers links to the run folders it comes from.")]
    synthetic = [d["folder"] for d in report["data"] if d["synthetic"]]
    blocks += findings.summary(report["claims"], [c for t in ("table2", "table3") for c in report["tables"][t]],
                               bool(synthetic))
    if synthetic:
        blocks.append(("p", f"**{len(synthetic)} of the {len(report['data'])} data folders are synthetic** "
                            f"(ilgnet.data.synthetic, generated photos in AVA's layout): their numbers show the "
                            f"pipeline at work, not how the nets do on AVA."))
    for table in ("table2", "table3"):
        header, rows = _accuracy_table(report["tables"][table], runs, out)
        blocks += [("h", TITLES[table]), ("table", header, rows), *findings.prior_methods(table[-1])]
    header, rows = _time_table(report["table4"], runs, out)
    timed = next(iter(report["times"].values()), None)
    blocks += [("h", TITLES["table4"]), ("table", header, rows),
               ("p", f"Training time: Caffe's wall time in each run's train.log (start-up, training, test passes, "
                     f"snapshots; the pause of an interrupted run is not counted), the mean over the runs linked. "
                     f"Test time: measured now on {env['cpu']}" + (f" and {env['gpu']}" if env["gpu"] else "") +
                     (f", {timed['backend']}, the median of {timed['iterations']} forward passes of batch "
                      f"{timed['batch']} after a warm-up, for every net the same way." if timed else ".") +
               " Runs trained on: " + "; ".join(sorted({h for row in report["table4"] for h in row["hardware"]})))]
    figs = report["figures"]
    blocks.append(("h", "Fig. 3: photos labelled good and bad"))
    if "fig3" in figs:
        png, run = figs["fig3"]
        blocks += [("p", f"The val records run {_link(run, out)} scores highest and lowest, as the net sees them "
                         f"(256 x 256 LMDB records), with the label AVA's votes give them."),
                   ("img", "fig3.png", png, "Fig. 3")]
    else:
        blocks.append(("p", "no finished run"))
    blocks.append(("h", "Fig. 4: training loss against iteration and epoch"))
    if "fig4" in figs:
        png, chosen = figs["fig4"]
        blocks += [("p", "Epoch = iteration x training batch / training images; the paper's \"epoch\" axis "
                         "(0 to 10,000) fits neither reading, so both are drawn. Runs: " +
                         ", ".join(_link(r, out) for r in chosen) + "."), ("img", "fig4.png", png, "Fig. 4")]
    else:
        blocks.append(("p", "no finished run"))
    blocks.append(("h", "Fig. 5: feature maps, and the density of the last layer's active features"))
    if "fig5" in figs:
        png, run = figs["fig5"]
        d = report["density"]
        verdict = ("cannot be tested: a class has no val record" if d["holds"] is None else
                   f"{'holds' if d['holds'] else 'does not hold'} at the {d['significance']:.0%} level")
        stats = ("" if d["holds"] is None else
                 f": median fraction of active units {d['median_high']:.3f} (high) against {d['median_low']:.3f} "
                 f"(low), means {d['mean_high']:.3f} and {d['mean_low']:.3f}; Mann-Whitney U = {d['u']:.1f}, "
                 f"one-sided p = {d['p_value']:.3g}")
        blocks += [("p", f"Run {_link(run, out)}. Layers (1)-(7): " + ", ".join(figures.FIG5_LAYERS) +
                         " (channel means of the convolution maps; the 1,024 units of `temp` and `temp_cjy` as a "
                         "32 x 32 grid). Which layers the paper's Fig. 5 shows could not be read from the copies "
                         "of the paper available here; these are the stations of ILGNet's data flow."),
                   ("p", f"The paper observes that the last layer's active features are denser for high-quality "
                         f"photos. Over all {d['high'] + d['low']:,} val records ({d['high']:,} high, {d['low']:,} "
                         f"low) of this run, the claim {verdict}{stats}."),
                   ("img", "fig5.png", png, "Fig. 5")]
    else:
        blocks.append(("p", f"no finished run of {' or '.join(figures.FIG5_VARIANTS)}"))
    blocks += findings.claims_section(report["claims"])
    blocks += findings.recipes_section(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, bool(synthetic), out)
    blocks += findings.differences_section(out)
    blocks += [("h", "Runs"), ("table", ["run", "tables", "state", "seed", "overrides", "machine", "Caffe",
                                         "CUDA runtime", "cuDNN"], [_run_row(r, out) for r in runs])]
    blocks += [("h", "Data folders"),
               ("table", ["folder", "partition", "seed", "delta", "synthetic", "resize", "train / val records",
                          "sha256 train.txt", "sha256 val.txt", "sha256 mean.binaryproto"],
                [[d["folder"], str(d["partition"]), str(d["seed"]), str(d["delta"]), "yes" if d["synthetic"] else "no",
                  str(d["resize"]), f"{d['records']['train']} / {d['records']['val']}",
                  *[(v or "missing")[:16] for v in d["sha256"].values()]] for d in report["data"]]),
               ("p", f"Checksums: the first 16 hex digits (all 64 in report.json). This report was written on "
                     f"{env['host']}: {env['cpu']}" + (f", {env['gpu']}" if env["gpu"] else "") +
                     f"; Caffe {env['caffe']}, {json.dumps(env['build'])}.")]
    return blocks


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list[tuple]) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            lines += ["", f"{'#' if not lines else '##'} {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[3]}]({block[1]})", ""]
    return "\n".join(lines).lstrip() + "\n"


LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`]+)`")
BOLD = re.compile(r"\*\*([^*]+)\*\*")
STYLE = """body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px;color:#222}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top} th{background:#f0f0ee}
img{max-width:100%;height:auto} h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.4em} code{background:#f4f4f2}"""


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = CODE.sub(lambda m: f"<code>{m[1]}</code>", escaped)
    escaped = BOLD.sub(lambda m: f"<strong>{m[1]}</strong>", escaped)
    return LINK.sub(lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', escaped)


def html_page(blocks: list[tuple]) -> str:
    """The blocks as one HTML page that needs no other file: figures as PNG data URIs, inline style."""
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            tag = "h1" if not parts else "h2"
            parts.append(f"<{tag}>{_inline_html(block[1])}</{tag}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            uri = "data:image/png;base64," + base64.b64encode(block[2]).decode()
            parts.append(f'<img src="{uri}" alt="{html.escape(block[3])}" data-figure="{html.escape(block[1])}">')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width, initial-scale=1"><title>ILGNet, the paper regenerated</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


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
    """REPORT.md with fig3/4/5.png, report.html (self-contained) and report.json in `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blocks = _sections(report, out.resolve())
    written = []
    for block in blocks:
        if block[0] == "img":
            (out / block[1]).write_bytes(block[2])
            written.append(out / block[1])
    atomic_write_text(out / "REPORT.md", markdown(blocks))
    atomic_write_text(out / "report.html", html_page(blocks))
    atomic_write_json(out / "report.json", _json_ready(report, out.resolve()))
    return [out / "REPORT.md", out / "report.html", out / "report.json", *written]


def empty_cells(report: dict, plan: Plan) -> list[str]:
    """What the plan should have filled and the report does not: a planned run that is not finished, a Table 2/3
    cell with fewer finished runs than planned, a Table 4 row of a planned net without its training or test time,
    a figure without its run."""
    runs = {r.run_dir: r for r in report["runs"]}
    empty = [f"run {spec.name}: {runs[plan.run_dir(spec)].state if plan.run_dir(spec) in runs else 'not found'}"
             for spec in plan.runs if plan.run_dir(spec) not in runs or runs[plan.run_dir(spec)].state != "finished"]
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
