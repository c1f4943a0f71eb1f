"""The report's answers, as blocks for ilgnet.paper.report's rendering: the summary at the top, the Claims section,
the paper's prior methods as context, the Differences table, and flags on runs that did not learn.

Blocks are tuples: ("h", text), ("p", text), ("list", [items]), ("table", header, rows).
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from ilgnet.paper.blocks import Block, Bullets, Heading, Paragraph, Table
from ilgnet.paper import differences, paper_figures
from ilgnet.paper.claims import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE, Claim
from ilgnet.paper.timing import training_memory, training_time
from ilgnet.zoo.runfolder import RunFolder

SYNTHETIC_NOTE = ("**The data is synthetic** (generated photos in AVA's layout): every number below shows the "
                  "machinery at work, not how the nets do on AVA, and every verdict is the machinery's output on "
                  "synthetic data, not a finding about the paper. No \"ours - paper\" difference is shown: it would "
                  "compare nothing.")


def docs_link(name: str, out: Path) -> str:
    """A Markdown link from the report folder `out` to docs/`name` of the checkout the report is written from (the
    working directory), or the path as code where there is no such file."""
    target = Path.cwd() / "docs" / name
    return f"[docs/{name}]({os.path.relpath(target, out)})" if target.is_file() else f"`docs/{name}`"


def summary(claims: list[Claim], cells: list[dict], synthetic: bool, recipe: str | None = None) -> list[Block]:
    """The report's first section: which claims hold, which do not, which could not be tested, how far our
    accuracies are from the paper's (left out on synthetic data), and which fine-tuning recipe comes closest to the
    paper's figures (`recipe`, closest_recipe's words; left out where None)."""
    def named(verdict) -> str:
        chosen = [c.claim for c in claims if verdict(c.verdict)]
        return "; ".join(chosen) if chosen else "none"
    items = [f"Claims that hold: {named(lambda v: v == HOLDS)}.",
             f"Claims that do not hold: {named(lambda v: v == DOES_NOT_HOLD)}.",
             f"Claims that could not be tested (runs that did not learn, too few runs, or not measured): "
             f"{named(lambda v: v not in (HOLDS, DOES_NOT_HOLD))}."]
    differences_ = [c["difference"] for c in cells if c.get("difference") is not None]
    if synthetic:
        blocks = [Heading("Summary"), Paragraph(SYNTHETIC_NOTE)]
    else:
        blocks = [Heading("Summary")]
        if differences_:
            items.append(f"Our accuracies against the paper's, over {len(differences_)} cells: mean "
                         f"{100 * statistics.fmean(differences_):+.2f} points, from "
                         f"{100 * min(differences_):+.2f} to {100 * max(differences_):+.2f}.")
    if recipe is not None:
        items.append(f"Fine-tuning recipe closest to the paper's figures: {recipe}.")
    below = [f"{c['variant']} ({c['column']})" for c in cells if c.get("n") and not c.get("learned", True)]
    if below:
        items.append(f"Cells whose runs are at or below their majority baseline (they did not learn): "
                     f"{', '.join(below)}.")
    return blocks + [Bullets(items)]


def claims_section(claims: list[Claim]) -> list[Block]:
    """The Claims section: one row per claim."""
    return [Heading("Claims"),
            Paragraph(f"Each claim of the paper with the paper's evidence and ours (mean ± std over seeds, N). A "
                      f"verdict rests only on runs that learned (above their majority baseline); otherwise it reads "
                      f"\"{NOT_TESTABLE}\"."),
            Table(["claim", "the paper's evidence", "ours", "test", "verdict"],
                  [[c.claim, c.paper, c.ours, c.test, c.verdict] for c in claims])]


def prior_methods(table: str) -> list[Block]:
    """The earlier methods the paper's Table `table` ("2" or "3") compares against, as context (not run here), and
    the WCSP 2016 slides' earlier ILGNet."""
    rows = [[f.method, f.column, f"{100 * f.accuracy:.2f} %", f.source] for f in paper_figures.prior(table)]
    database = "AVA1" if table == "2" else "AVA2"
    rows += [[f.method, f.column, f"{100 * f.accuracy:.2f} %", f.source + " (an earlier version)"]
             for f in paper_figures.slides() if f.database == database]
    return [Paragraph(f"Context from the paper's Table {table}: methods it compares against, not run by this toolkit."),
            Table(["method", "setting", "the paper's accuracy", "source"], rows)]


def differences_section(out: Path) -> list[Block]:
    """The Differences from the paper table, the same as docs/REPRODUCING.md's."""
    return [Heading("Differences from the paper"),
            Paragraph(f"Each difference with the paper's words, the authors' release, what this toolkit does and the "
                  f"switch that changes it; the evidence is in {docs_link('REPRODUCING.md', out)}."),
            Table(differences.HEADER, differences.rows())]


NOT_SAID = "not said (synthetic data, or runs that did not learn)"


def _recipe_comparison(runs, names: dict[str, str], paper_accuracy, columns: dict[str, tuple[str, str]],
                       synthetic: bool) -> tuple[list[list[str]], str] | None:
    """The recipes table's rows and which recipe comes closest to the paper's figure per net and setting (NOT_SAID
    on synthetic data or where no recipe's runs all learned); None where the finished runs have one recipe only."""
    groups: dict[tuple[str, str, str], list] = {}
    for run in runs:
        if run.state == "finished" and run.spec.profile in columns:
            groups.setdefault((run.spec.variant, run.spec.profile, run.spec.recipe), []).append(run)
    if len({recipe for _, _, recipe in groups}) < 2:
        return None
    rows, closest = [], {}
    for (variant, profile, recipe), chosen in sorted(groups.items()):
        evaluations = [run.evaluation for run in chosen]
        times = [t["seconds"] for run in chosen if (t := training_time(RunFolder(run.run_dir).train_log))]
        memory = [m for run in chosen if (m := training_memory(RunFolder(run.run_dir).train_log))]
        column = columns[profile][1]
        paper = paper_accuracy(variant, column)
        values = [e["accuracy"] for e in evaluations]
        learned_all = all(e["accuracy"] > e["majority_baseline"]["accuracy"] for e in evaluations)
        mean = statistics.fmean(values)
        spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
        rows.append([names[variant], column, recipe, f"{100 * mean:.2f} %{spread} (N = {len(values)})" +
                     ("" if learned_all else ", did not learn"), f"{100 * paper[0]:.2f} %" if paper else "-",
                     f"{statistics.fmean(times):.0f} s" if times else "-",
                     f"{max(memory) / 2**20:.0f} MiB" if memory else "-"])
        if paper and learned_all and not synthetic:
            best = closest.get((variant, column))
            if best is None or abs(mean - paper[0]) < best[1]:
                closest[(variant, column)] = (recipe, abs(mean - paper[0]))
    said = "; ".join(f"{names[v]}, {c}: {recipe} ({100 * gap:.2f} points)" for (v, c), (recipe, gap) in
                     closest.items())
    return rows, said or NOT_SAID


def closest_recipe(runs, names: dict[str, str], paper_accuracy, columns: dict[str, tuple[str, str]],
                   synthetic: bool) -> str:
    """For the summary: which fine-tuning recipe comes closest to the paper's figures, per net and setting, in
    words ("paper (0.50 points)"); NOT_SAID on synthetic data or runs that did not learn; "not run" where the
    finished runs have one recipe only (the built-in plan `recipes` trains them all)."""
    compared = _recipe_comparison(runs, names, paper_accuracy, columns, synthetic)
    return "not run (the finished runs have one recipe; plan `recipes` trains each)" if compared is None \
        else compared[1]


def recipes_section(runs, names: dict[str, str], paper_accuracy, columns: dict[str, tuple[str, str]],
                    synthetic: bool, out: Path) -> list[Block]:
    """Accuracy per net, setting and fine-tuning recipe over the finished runs, beside the paper's figure, so the
    report can say which recipe comes closest to it (left out where the runs have one recipe only)."""
    compared = _recipe_comparison(runs, names, paper_accuracy, columns, synthetic)
    if compared is None:
        return []
    rows, said = compared
    return [Heading("Fine-tuning recipes"),
            Paragraph(f"The same net trained with each recipe ({docs_link('NETS.md', out)} says which layers each "
                  f"fixes). Closest to the paper: {said}."),
            Table(["net", "setting", "recipe", "ours", "paper", "training wall time (mean)",
                   "memory of the TRAIN net's blobs (Caffe)"], rows)]
