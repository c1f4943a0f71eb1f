"""The report's sections as typed blocks (Heading, Paragraph, Bullets, Table, Figure) from the report's model
(ilgnet.paper.report.build).

REPORT.md and report.html are both rendered from these blocks (ilgnet.paper.blocks).
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ilgnet.paper.blocks import Block, Figure, Heading, Paragraph, Table
from ilgnet.evaluation.reports import PAPER
from ilgnet.paper import figures, findings, scores
from ilgnet.paper.tables import NOT_KNOWN, PAPER_NAMES, PROFILE_COLUMNS, TABLE_RUNS, TITLES, paper_accuracy
from ilgnet.paper.timing import hardware

if TYPE_CHECKING:
    from ilgnet.paper.report import RunResult


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _cell(value) -> str:
    """A table cell: "-" for a value that is not known or does not apply."""
    return "-" if value is None else str(value)


def _spread(mean: float, std: float | None, n: int) -> str:
    return f"{100 * mean:.2f} %" + (f" ± {100 * std:.2f}" if std is not None else "") + f" (N = {n})"


def _link(run: RunResult, out: Path) -> str:
    return f"[{run.name}]({os.path.relpath(run.run_dir, out)})"


def _accuracy_table(cells: list[dict], runs: list[RunResult], out: Path) -> tuple[list[str], list[list[str]]]:
    by_dir = {str(r.run_dir): r for r in runs}
    header = ["net", "setting", "paper", "ours: every val record once", "ours: the published logs' protocol",
              "majority baseline", "balanced accuracy", "SRCC / PLCC of p_high", "ours - paper", "runs"]
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
                    scores.correlation_text(c),
                    "-" if c["difference"] is None else f"{100 * c['difference']:+.2f} points",
                    ", ".join(_link(by_dir[d], out) for d in c["runs"])]
        else:
            waiting = ", ".join(f"{name}: {state}" for name, state in c["not_finished"].items())
            ours = ["no finished run" + (f" ({waiting})" if waiting else "")] + ["-"] * 6
        notes = scores.overlap_flag(c) + [f"{name} left out: {why}" for name, why in c.get("left_out", {}).items()]
        notes += [f"{name}: stale, its own data" for name in c.get("stale", [])]
        if c["n"] and c["not_finished"]:
            notes += [f"{name}: {state}" for name, state in c["not_finished"].items()]
        if notes:
            ours[-1] += " (" + "; ".join(notes) + ")"
        setting = c["column"] + (f" ({c['pool']})" if c.get("pool") else "")
        rows.append([PAPER_NAMES[c["variant"]], setting, paper, *ours])
    return header, rows


def _run_row(run: RunResult, out: Path) -> list[str]:
    """A run as the report's table of runs shows it: its state, seed, overrides, machine and Caffe."""
    env = run.record.get("environment") or {}
    build = env.get("build") or {}
    return [_link(run, out), ", ".join(run.tables) or "-", run.state + (f": {run.message}" if run.message else ""),
            str(run.spec.seed), ", ".join([f"recipe {run.spec.recipe}", *(f"{k} {v}" for k, v in run.spec.train)]),
            hardware(run.record),
            str(env.get("caffe", "-")), build.get("cuda_runtime") or "none", build.get("cudnn") or "none"]


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _days(seconds: float, runs: list[RunResult]) -> str:
    """Training wall time in days, as GPU-days where every run trained on a GPU (its campaign record names one),
    else CPU-days, so it stands beside the paper's days on a GTX 980 Ti without passing a CPU off as one."""
    on_gpu = bool(runs) and all((r.record.get("environment") or {}).get("gpu") for r in runs)
    return f"{seconds / 86400:.3g} {'GPU' if on_gpu else 'CPU'}-days"


def _scoring(runs: list[RunResult]) -> str:
    """Seconds per image the campaign took to score every val record with each run's trained model (LMDB reading
    included), the mean over the runs, with the batch and device; "-" for runs scored before this was recorded."""
    timed = [s for r in runs if (s := (r.evaluation or {}).get("scoring")) and s.get("images")]
    if not timed:
        return "-"
    where = ", ".join(sorted({f"batch {s['batch']}, {s['device']}" for s in timed}))
    return f"{statistics.fmean(s['seconds'] / s['images'] for s in timed):.3g} ({where})"


def _time_table(rows: list[dict], runs: list[RunResult], out: Path) -> tuple[list[str], list[list[str]]]:
    by_dir = {str(r.run_dir): r for r in runs}
    header = ["net", "paper: accuracy", "ours: accuracy", "training wall time", "training days", "iterations",
              "iterations/s", "images/s", "epochs", "test s per image, trained net over the val set",
              "test s per image, batch 1",
              "test s per image, throughput batch (now)",
              "paper: training time", "paper: test time (s per image, GTX 980 Ti)", "runs"]
    table = []
    for row in rows:
        paper = row["paper"] or ("not in Table 4", "not in Table 4")
        one = row["batch1"]
        test = ([f"{one['seconds']:.3g} ({'trained net' if one['weights'] == 'trained' else 'random weights'})",
                 f"{row['test']['ms_per_image'] / 1000:.3g}"] if row["test"] else ["not measured"] * 2)
        if "seconds" in row:
            trained = [_duration(row["seconds"]), _days(row["seconds"], [by_dir[d] for d in row["runs"]]),
                       f"{row['iterations']:,.0f}", f"{row['iterations_per_second']:.3g}",
                       f"{row['images_per_second']:.3g}", f"{row['epochs']:.3g}"]
        else:
            trained = ["-"] * 6
        accuracy = [_spread(*row["accuracy"], row["accuracy_n"]) if row["accuracy_n"] else
                    "-" if "seconds" in row else "no finished run"]
        scored = _scoring([by_dir[d] for d in row["runs"]])
        table.append([PAPER_NAMES[row["variant"]], _percent(row["paper_accuracy"]), *accuracy, *trained, scored,
                      *test, *paper,
                      ", ".join(_link(by_dir[d], out) for d in row["runs"]) or "-"])
    return header, table


def _build(build: dict) -> str:
    """The Caffe build a report was written with, in words: `{"blas": "OpenBLAS", "cuda": false, ...}` -> "OpenBLAS,
    no CUDA"."""
    cuda = (f"CUDA runtime {build.get('cuda_runtime') or 'unknown'}, cuDNN {build.get('cudnn') or 'none'}"
            if build.get("cuda") else "no CUDA")
    return f"{build.get('blas') or 'BLAS unknown'}, {cuda}"


def sections(report: dict, out: Path) -> list[Block]:
    """The report as blocks: ("h", text), ("p", text), ("table", header, rows), ("img", file, png, alt)."""
    runs = report["runs"]
    env = report["environment"]
    machines = sorted({h for row in report["table4"] for h in row["hardware"]})
    blocks: list[Block] = [
        Heading("ILGNet, the paper regenerated"),
        Paragraph(f"{len(runs)} runs, {sum(r.state == 'finished' for r in runs)} finished. Jin et al., arXiv "
              f"1610.02256 (WCSP 2016; the later versions add the BatchNorm and Inception-v3/v4 nets). Every "
              f"figure the paper prints in its Tables 2-4 stands beside ours (ilgnet.paper.paper_figures). Each of "
              f"our numbers links to the run folders it comes from.")]
    synthetic = [d["folder"] for d in report["data"] if d["synthetic"]]
    recipe = findings.closest_recipe(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, bool(synthetic))
    blocks += findings.summary(report["claims"], [c for t in ("table2", "table3") for c in report["tables"][t]],
                               bool(synthetic), recipe)
    for table in ("table2", "table3"):
        header, rows = _accuracy_table(report["tables"][table], runs, out)
        blocks += [Heading(TITLES[table]), Table(header, rows), *findings.prior_methods(table[-1])]
        if any(c.get("srcc") for c in report["tables"][table]):
            blocks.append(Paragraph(scores.CORRELATION_NOTE))
    blocks += scores.official_section(runs, out)
    header, rows = _time_table(report["table4"], runs, out)
    timed = next(iter(report["times"].values()), None)
    blocks += [Heading(TITLES["table4"]), Table(header, rows),
               Paragraph(f"Training time: Caffe's wall time in each run's train.log (start-up, training, test passes, "
                     f"snapshots; the pause of an interrupted run is not counted), the mean over the runs linked. "
                     f"Test time: measured now on {env['cpu']}" + (f" and {env['gpu']}" if env["gpu"] else "") +
                     (f", {timed['backend']}, the median of {timed['iterations']} forward passes of batch "
                      f"{timed['batch']} after a warm-up, for every net the same way, in seconds per image as the "
                      f"paper gives it, random weights standing in for the trained ones (a forward pass takes the "
                      f"same time). Batch 1: the trained net, timed by the campaign right after scoring the val "
                      f"set (the median of single-image forward passes, on the run's device), else measured now "
                      f"with random weights, as each cell says. The trained nets' own test time over the val set "
                      f"is the campaign's scoring of every val record with each run's final model. Training days: "
                      f"GPU-days where every run trained on a GPU, else CPU-days." if timed else ".") +
               (f" Runs trained on: {'; '.join(machines)}." if machines else ""))]
    figs = report["figures"]
    blocks.append(Heading("Fig. 3: photos labelled good and bad"))
    if "fig3" in figs:
        png, run = figs["fig3"]
        blocks += [Paragraph(f"The val records run {_link(run, out)} scores highest and lowest, as the net sees them "
                         f"(256 x 256 LMDB records), with the label AVA's votes give them."),
                   Figure("fig3.png", png, "Fig. 3")]
    else:
        blocks.append(Paragraph("no finished run"))
    blocks.append(Heading("Fig. 4: training loss against iteration and epoch"))
    if "fig4" in figs:
        png, chosen = figs["fig4"]
        nets, profiles = TABLE_RUNS["table4"]
        other = any(r.spec.variant not in nets or r.spec.profile not in profiles for r in chosen)
        blocks += [Paragraph("Epoch = iteration x training batch / training images; the paper's \"epoch\" axis "
                         "(0 to 10,000) fits neither reading, so both are drawn. Runs: " +
                         ", ".join(_link(r, out) for r in chosen) + "." + (
                             " No run of Table 4's nets on AVA1 (delta 0) has finished, so these are other runs: "
                             "not the paper's Fig. 4 setting." if other else "")), Figure("fig4.png", png, "Fig. 4")]
    else:
        blocks.append(Paragraph("no finished run"))
    blocks.append(Heading("Fig. 5: feature maps, and the density of the last layer's active features"))
    if "fig5" in figs:
        png, run = figs["fig5"]
        d = report["density"]
        verdict = ("cannot be tested: a class has no val record" if d["holds"] is None else
                   f"{'holds' if d['holds'] else 'does not hold'} at the {d['significance']:.0%} level")
        stats = ("" if d["holds"] is None else
                 f": median fraction of active units {d['median_high']:.3f} (high) against {d['median_low']:.3f} "
                 f"(low), means {d['mean_high']:.3f} and {d['mean_low']:.3f}; Mann-Whitney U = {d['u']:.1f}, "
                 f"one-sided p = {d['p_value']:.3g}")
        blocks += [Paragraph(f"Run {_link(run, out)}. Layers (1)-(7): " + ", ".join(figures.FIG5_LAYERS) +
                         " (channel means of the convolution maps; the 1,024 units of `temp` and `temp_cjy` as a "
                         "32 x 32 grid). The paper says only that its labels (1)-(7) mean the same as in its Fig. 2 "
                         "and that the connected layer comes last; these seven are this toolkit's reading. The "
                         "Claims section tests the density on `temp` and `temp_cjy`, and whether they are nearly "
                         "binary."),
                   Paragraph(f"The paper observes that the last layer's active features are denser for high-quality "
                         f"photos. On `{d['layer']}`, over all {d['high'] + d['low']:,} val records ({d['high']:,} "
                         f"high, {d['low']:,} low) of this run, the claim {verdict}{stats}."),
                   Figure("fig5.png", png, "Fig. 5")]
    else:
        blocks.append(Paragraph(f"no finished run of {' or '.join(figures.FIG5_VARIANTS)}"))
    blocks += findings.claims_section(report["claims"])
    blocks += findings.recipes_section(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, bool(synthetic), out)
    blocks += findings.differences_section(out)
    blocks += [Heading("Runs"), Table(["run", "tables", "state", "seed", "recipe, overrides", "machine", "Caffe",
                                     "CUDA runtime", "cuDNN"], [_run_row(r, out) for r in runs])]
    blocks += [Heading("Data folders"),
               Table(["folder", "partition", "seed", "delta", "synthetic", "resize", "train / val records",
                      "sha256 train.txt", "sha256 val.txt", "sha256 mean.binaryproto"],
                     [[d["folder"] + ("" if d["current"] else " (holds other data now)"),
                       *[_cell(d[key]) for key in ("partition", "seed", "delta")],
                       "yes" if d["synthetic"] else "no", _cell(d["resize"]),
                       " / ".join(map(_cell, d["records"].values())),
                       *[(v or "missing")[:16] for v in d["sha256"].values()]] for d in report["data"]]),
               Paragraph(f"Checksums: the first 16 hex digits (all 64 in report.json). This report was written on "
                     f"{env['host']}: {env['cpu']}" + (f", {env['gpu']}" if env["gpu"] else "") +
                     f"; Caffe {env['caffe']} ({_build(env['build'])}).")]
    return blocks
