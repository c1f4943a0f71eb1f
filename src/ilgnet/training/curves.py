"""Training curves: a Caffe training log as train_log.csv and curves.png (loss, test accuracy, learning rate).

The training loss is plotted as Caffe displayed it, and said to be smoothed only when it is: by the solver's
average_loss (Caffe then displays the mean of the last average_loss iterations' losses), or by a window asked for
here (a rolling mean of that many displayed values, drawn beside the displayed ones).
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ilgnet.bvlc.logs import parse_train_log
from ilgnet.fileio import atomic_write_bytes, atomic_write_text


def loss_label(average_loss: int) -> str:
    """What the displayed training loss is: one iteration's loss, or Caffe's mean of the last average_loss."""
    if average_loss > 1:
        return f"train loss (Caffe's mean of the last {average_loss} iterations)"
    return "train loss"


def plot_curves(frame: pd.DataFrame, png: Path | io.BytesIO, *, title: str = "", smooth: int | None = None) -> Path:
    """Training loss with test loss, test accuracy and learning rate against iteration, as a PNG; `smooth` adds
    the rolling mean of that many displayed training losses. Where the run diverged or saturated
    (frame.attrs, ilgnet.bvlc.logs.parse_train_log), a dashed line marks the iteration and the title says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(3, 1, figsize=(8, 8), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 2, 1]})
    lines = [(ax_loss, frame["loss"], loss_label(frame.attrs.get("average_loss", 1))),
             (ax_loss, frame["test_loss"], "test loss"), (ax_acc, frame["test_accuracy"], "test accuracy"),
             (ax_lr, frame["lr"], "learning rate")]
    if smooth:
        losses = frame["loss"].dropna()
        lines.insert(1, (ax_loss, losses.rolling(smooth, min_periods=1).mean(),
                         f"train loss, rolling mean of {smooth} displayed values"))
    for ax, values, label in lines:
        points = pd.DataFrame({"iteration": frame["iteration"], "value": values}).dropna()
        ax.plot(points["iteration"], points["value"], marker="o", markersize=3, label=label)
        ax.set_ylabel(label if ax is not ax_loss else "loss")
        ax.grid(alpha=0.3)
    marks = [(frame.attrs.get("diverged_at"), "DIVERGED", "red"),
             (frame.attrs.get("saturated_at"), "SATURATED", "orange")]
    for at, word, colour in marks:
        if at is not None:
            for ax in (ax_loss, ax_acc, ax_lr):
                ax.axvline(at, color=colour, linestyle="--", label=f"{word.lower()} at iteration {at}"
                           if ax is ax_loss else None)
    ax_loss.legend()
    ax_lr.set_xlabel("iteration")
    ax_loss.set_title(title + "".join(f" -- {word} at iteration {at}" for at, word, _ in marks if at is not None))
    fig.tight_layout()
    fig.savefig(png, dpi=100, format="png")
    plt.close(fig)
    return png


def write_curves(frame: pd.DataFrame, csv: Path, png: Path, *, title: str = "", smooth: int | None = None) -> None:
    """parse_train_log's frame as CSV and as curves, each written whole or not at all (ilgnet.fileio)."""
    atomic_write_text(csv, frame.to_csv(index=False))
    image = io.BytesIO()
    plot_curves(frame, image, title=title, smooth=smooth)
    atomic_write_bytes(png, image.getvalue())


def summary_files(log: Path) -> tuple[Path, Path]:
    """train_log.csv and curves.png beside the `caffe train` log `log`: where its summary goes by default."""
    return log.with_name("train_log.csv"), log.with_name("curves.png")


def write_train_summary(log: Path, *, accuracy_blob: str | None = None, csv: Path | None = None,
                        png: Path | None = None) -> pd.DataFrame:
    """Parses `log` into `csv` and `png` (default: train_log.csv and curves.png beside it); returns the frame
    (ilgnet.bvlc.logs.COLUMNS)."""
    frame = parse_train_log(log, accuracy_blob=accuracy_blob)
    beside = summary_files(log)
    write_curves(frame, csv or beside[0], png or beside[1], title=log.parent.name)
    return frame
