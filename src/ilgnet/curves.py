"""Training curves: a Caffe training log as train_log.csv and curves.png (loss, test accuracy, learning rate)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ilgnet.caffelog import parse_train_log


def plot_curves(frame: pd.DataFrame, png: Path, *, title: str = "") -> Path:
    """Training loss with test loss, test accuracy and learning rate against iteration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(3, 1, figsize=(8, 8), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 2, 1]})
    for ax, column, label in [(ax_loss, "loss", "train loss (smoothed)"), (ax_loss, "test_loss", "test loss"),
                              (ax_acc, "test_accuracy", "test accuracy"), (ax_lr, "lr", "learning rate")]:
        points = frame[["iteration", column]].dropna()
        ax.plot(points["iteration"], points[column], marker="o", markersize=3, label=label)
        ax.set_ylabel(label if ax is not ax_loss else "loss")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_lr.set_xlabel("iteration")
    ax_loss.set_title(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def write_train_summary(log: Path, *, accuracy_blob: str | None = None, csv: Path | None = None,
                        png: Path | None = None) -> pd.DataFrame:
    """Parses `log` into `csv` and `png` (default: train_log.csv and curves.png beside it); returns the frame
    (ilgnet.caffelog.COLUMNS)."""
    frame = parse_train_log(log, accuracy_blob=accuracy_blob)
    frame.to_csv(csv or log.with_name("train_log.csv"), index=False)
    diverged = frame.attrs.get("diverged_at")
    title = log.parent.name + (f" -- DIVERGED at iteration {diverged} (loss not finite)" if diverged is not None else "")
    plot_curves(frame, png or log.with_name("curves.png"), title=title)
    return frame
