"""What the report shows beside accuracy: SRCC and PLCC of p_high against AVA's mean vote, where the runs'
evaluations carry them (ilgnet.evaluation.results.against_means_and_training, the same as `ilgnet test`), and the
test images a model was trained on, flagged with their count; and AVA's official benchmark (`ilgnet split
official`, the built-in plan `official`) as a section of its own, since its test list is neither AVA1's nor AVA2's.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from ilgnet.paper.blocks import Block, Heading, Paragraph, Table
from ilgnet.fileio import read_json

CORRELATION_NOTE = ("SRCC and PLCC set p_high beside each val image's mean vote, as the score-predicting models "
                    "(NIMA, MUSIQ, TANet...) report them; ILGNet predicts a class (high or low), not a score "
                    "distribution, so its p_high is read as a score here. \"-\" where the val means are not known.")
OFFICIAL_PARTITION = "official"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean of `values` and their sample standard deviation (None for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def in_training(evaluation: dict) -> tuple[int, int]:
    """(test images the model was trained on, test images): the val list's count where the evaluation has it, else
    the scored records'; (0, 0) where the model's training list was not known."""
    overlap = evaluation.get("train_overlap") or {}
    counts = overlap.get("val_list") or overlap.get("scored") or {}
    return int(counts.get("in_training", 0)), int(counts.get("images", 0))


def cell_scores(evaluations: list[dict]) -> dict:
    """A report cell's SRCC and PLCC (mean, std over the evaluations; None unless every evaluation has them) and
    the most test images any of its models was trained on ("in_training", of "test_images")."""
    found = [e.get("correlations") for e in evaluations]
    known = bool(found) and all(found)
    overlap = max((in_training(e) for e in evaluations), default=(0, 0))
    return {"srcc": mean_std([c["srcc"] for c in found]) if known else None,
            "plcc": mean_std([c["plcc"] for c in found]) if known else None,
            "correlation_images": found[0]["images"] if known else None,
            "in_training": overlap[0], "test_images": overlap[1]}


def correlation_text(cell: dict) -> str:
    """SRCC / PLCC of a cell as a table shows them: "0.6123 / 0.6011" with their spread where N > 1, else "-"."""
    if not cell.get("srcc"):
        return "-"
    return " / ".join(f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")
                      for mean, std in (cell["srcc"], cell["plcc"]))


def overlap_flag(cell: dict) -> list[str]:
    """The flag of a cell whose models were trained on test images, with the count (none when they were not)."""
    if not cell.get("in_training"):
        return []
    return [f"**trained on {cell['in_training']:,} of the {cell['test_images']:,} test images**"]


def _partition(run) -> str | None:
    split = Path(run.record.get("data", "")) / "split.json"
    return (read_json(split) or {}).get("partition") if split.is_file() else None


def official_section(runs: list, out: Path) -> list[Block]:
    """The report's blocks for the finished runs on AVA's official split: one row per run with accuracy, balanced
    accuracy, SRCC, PLCC and the test images it was trained on; none when no run read that split."""
    rows = []
    for run in runs:
        if run.evaluation is None or _partition(run) != OFFICIAL_PARTITION:
            continue
        e = run.evaluation
        cell = cell_scores([e])
        rows.append([f"[{run.name}]({os.path.relpath(run.run_dir, out)})", run.spec.variant, str(run.spec.seed),
                     f"{e['images']:,}", f"{100 * e['accuracy']:.2f} %", f"{100 * e['balanced_accuracy']:.2f} %",
                     f"{100 * e['majority_baseline']['accuracy']:.2f} %", correlation_text(cell),
                     f"**{cell['in_training']:,} of {cell['test_images']:,}**" if cell["in_training"] else "none"])
    if not rows:
        return []
    return [Heading("AVA's official benchmark (generic_ls_train / generic_test)"),
            Table(["run", "net", "seed", "test images", "accuracy", "balanced accuracy", "majority baseline",
                   "SRCC / PLCC of p_high", "test images in its training list"], rows),
            Paragraph(CORRELATION_NOTE + " The paper reports no figure on this split; score-predicting models report "
                  "SRCC and PLCC on it.")]
