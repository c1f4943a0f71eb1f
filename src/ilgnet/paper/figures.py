"""The paper's figures, regenerated from runs as PNG images (matplotlib):

  Fig. 3  the top- and bottom-scored val photos of one run, as the net saw them (the val LMDB's records);
  Fig. 4  the training loss of several nets against the epoch (iteration x batch / training images);
  Fig. 5  feature maps of ILGNet at seven layers along its data flow for a few high and low photos, and the paper's
          observation that the last layer's active features are denser for high-quality photos, measured over
          every val record: the fraction of active units (above 0, after the ReLU) of `temp_cjy`, the last layer
          before the classifier, high against low, with a one-sided Mann-Whitney U test (scipy.stats). Both are
          collected while the campaign scores the val set (FeatureCollector), so the report needs no model.

The seven layers (FIG5_LAYERS) are the stations of ILGNet-Inc.V1's data flow that the paper's net description
names: the two convolution stages, the local features (inception 3a, 3b), the global one (inception 4a), the
connected layer of local and global features and the fully connected layer on it. Which seven layers the paper's
own Fig. 5 shows as (1)-(7) could not be read from the copies of the paper available here; these are our reading.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.bvlc.io import lmdb_records
from ilgnet.pools import ctrl_c_point
from ilgnet.scoring.scorer import Scorer

FIG5_LAYERS = ("conv1/7x7_s2", "conv2/3x3", "inception_3a/output", "inception_3b/output", "inception_4a/output",
               "temp", "temp_cjy")
LAST_LAYER = "temp_cjy"
CONNECTED = "temp"                          # the connected layer of local and global features (1,024-d)
FIG5_VARIANTS = ("ilgnet-bn", "ilgnet")     # the nets that have these layers, by these names; the paper's first
SIGNIFICANCE = 0.05
NEAR_MAX = 0.05                             # "nearly binary": an activation at 0 or within 5 % of the record's maximum
# val_scores.csv columns a FeatureCollector adds, per layer: the share of active units (above 0) and the share of
# units at 0 or within NEAR_MAX of the record's maximum of that layer.
ACTIVE_COLUMNS = {LAST_LAYER: "active_fraction", CONNECTED: "active_fraction_temp"}
BINARY_COLUMNS = {LAST_LAYER: "binary_fraction", CONNECTED: "binary_fraction_temp"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return buffer.getvalue()


def records(lmdb: Path, keys: set[str]) -> dict[str, np.ndarray]:
    """The images (H x W x 3, BGR) of the val LMDB records named in `keys`."""
    return {key: image for key, image, _ in lmdb_records(lmdb) if key in keys}


def photo_grid(rows: list[tuple[str, list[tuple[np.ndarray, str]]]]) -> bytes:
    """Fig. 3: rows of (row title, [(BGR image, caption)]) as a PNG grid."""
    plt = _pyplot()
    columns = max(len(items) for _, items in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 2.3 * len(rows)), squeeze=False)
    for r, (title, items) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(items):
                image, caption = items[c]
                ax.imshow(image[:, :, ::-1])
                ax.set_title(caption, fontsize=8)
        axes[r][0].text(-0.1, 0.5, title, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=10)
    fig.tight_layout()
    return _png(fig)


def loss_curves(curves: dict[str, pd.DataFrame]) -> bytes:
    """Fig. 4: label -> frame(iteration, epoch, loss) as two plots of training loss, against iteration and against
    epoch (the paper's x axis, 0 to 10,000 "epochs", fits neither reading: docs/REPRODUCING.md)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for x, ax, title in (("iteration", axes[0], "iteration"),
                         ("epoch", axes[1], "epoch (iteration x batch / training images)")):
        for label, frame in curves.items():
            ax.plot(frame[x], frame["loss"], marker="o", markersize=2, label=label)
        ax.set_xlabel(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (as Caffe displays it)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


class FeatureCollector:
    """Called by ilgnet.evaluation.in_process.score_lmdb after each forward pass of a FIG5_VARIANTS net: keeps
    per record, for LAST_LAYER and CONNECTED, the fraction of active units (above 0) and the fraction at 0 or within
    NEAR_MAX of the record's maximum there (`columns`: val_scores.csv column -> key -> value), and the maps at
    FIG5_LAYERS, drawn as `map_image`, of the first `photos` records of each label in LMDB order."""

    def __init__(self, photos: int):
        self.photos = photos
        self.columns: dict[str, dict[str, float]] = {c: {} for c in [*ACTIVE_COLUMNS.values(),
                                                                     *BINARY_COLUMNS.values()]}
        self.maps: dict[str, tuple[int, list[np.ndarray]]] = {}

    @property
    def active(self) -> dict[str, float]:
        """key -> fraction of LAST_LAYER's active units."""
        return self.columns[ACTIVE_COLUMNS[LAST_LAYER]]

    def __call__(self, scorer: Scorer, keys: tuple, labels: tuple) -> None:
        blobs = scorer.net.caffe_net.blobs
        for layer in (LAST_LAYER, CONNECTED):
            values = blobs[layer].data.reshape(len(keys), -1)
            top = values.max(axis=1, keepdims=True)
            near = (values <= 0) | ((top > 0) & (values >= (1 - NEAR_MAX) * top))
            for i, key in enumerate(keys):
                self.columns[ACTIVE_COLUMNS[layer]][key] = float((values[i] > 0).mean())
                self.columns[BINARY_COLUMNS[layer]][key] = float(near[i].mean())
        for i, (key, label) in enumerate(zip(keys, labels)):
            if sum(kept_label == label for kept_label, _ in self.maps.values()) < self.photos:
                self.maps[key] = (int(label), [map_image(blobs[layer].data[i]) for layer in FIG5_LAYERS])

    def save(self, path: Path) -> None:
        """The kept maps as one .npz: keys, labels, and layer<j> (records x H x W) per layer of FIG5_LAYERS."""
        keys = list(self.maps)
        arrays = {f"layer{j}": np.stack([self.maps[k][1][j] for k in keys]) for j in range(len(FIG5_LAYERS))}
        with open(path, "wb") as f:
            np.savez_compressed(f, keys=np.array(keys), labels=np.array([self.maps[k][0] for k in keys]), **arrays)
        ctrl_c_point("Fig. 5 maps")


def read_maps(path: Path) -> list[tuple[str, int, list[np.ndarray]]]:
    """(key, label, maps at FIG5_LAYERS) of the records a FeatureCollector saved."""
    with np.load(path) as saved:
        layers = [saved[f"layer{j}"] for j in range(len(FIG5_LAYERS))]
        return [(str(key), int(label), [layer[i] for layer in layers])
                for i, (key, label) in enumerate(zip(saved["keys"], saved["labels"]))]


def density_test(frame: pd.DataFrame, layer: str = LAST_LAYER) -> dict:
    """The paper's density observation as a statistic on `layer` (LAST_LAYER or CONNECTED): the fraction of active
    units of high (label 1) against low (label 0) records, medians and means, and the one-sided Mann-Whitney U test
    that high is larger; `holds` when its p-value is under SIGNIFICANCE. None values where a class has no record.
    `binary`: the mean share of the layer's units at 0 or within NEAR_MAX of the record's maximum (None where the
    scores have no such column)."""
    from scipy.stats import mannwhitneyu

    column = ACTIVE_COLUMNS[layer]
    high = frame.loc[frame["label"] == 1, column].to_numpy()
    low = frame.loc[frame["label"] == 0, column].to_numpy()
    binary = BINARY_COLUMNS[layer]
    result = {"layer": layer, "binary": float(frame[binary].mean()) if binary in frame else None,
              "high": len(high), "low": len(low), "significance": SIGNIFICANCE,
              "median_high": None, "median_low": None, "mean_high": None, "mean_low": None, "u": None,
              "p_value": None, "holds": None}
    if len(high) and len(low):
        test = mannwhitneyu(high, low, alternative="greater")
        result.update(median_high=float(np.median(high)), median_low=float(np.median(low)),
                      mean_high=float(high.mean()), mean_low=float(low.mean()), u=float(test.statistic),
                      p_value=float(test.pvalue), holds=bool(test.pvalue < SIGNIFICANCE))
    return result


def map_image(values: np.ndarray) -> np.ndarray:
    """A feature map as a 2-D image: the mean over channels of a C x H x W map, a vector as a near-square grid."""
    if values.ndim == 3:
        return values.mean(axis=0)
    flat = values.reshape(-1)
    side = int(np.ceil(np.sqrt(flat.size)))
    return np.pad(flat, (0, side * side - flat.size)).reshape(side, side)


def feature_maps(photos: list[tuple[str, np.ndarray, list[np.ndarray]]], density: dict,
                 active: pd.DataFrame) -> bytes:
    """Fig. 5: one row per photo (its title, the image, its maps at FIG5_LAYERS as map_image draws them), and the
    distribution of LAST_LAYER's active fraction for high and low records."""
    plt = _pyplot()
    columns = 1 + len(FIG5_LAYERS)
    fig = plt.figure(figsize=(1.6 * columns, 1.7 * len(photos) + 2.6))
    grid = fig.add_gridspec(len(photos) + 1, columns, height_ratios=[1] * len(photos) + [1.6])
    for r, (title, image, maps) in enumerate(photos):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(image[:, :, ::-1])
        ax.set_ylabel(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        for c, layer in enumerate(FIG5_LAYERS, 1):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(maps[c - 1], cmap="viridis")
            ax.axis("off")
            if r == 0:
                ax.set_title(f"({c}) {layer}", fontsize=7)
    ax = fig.add_subplot(grid[len(photos), :])
    for label, name in ((1, "high"), (0, "low")):
        values = active.loc[active["label"] == label, "active_fraction"]
        ax.hist(values, bins=30, alpha=0.6, label=f"{name} ({len(values)} val records)")
    p = density["p_value"]
    ax.set_title(f"active units of {LAST_LAYER}: Mann-Whitney U one-sided p = {p:.3g}" if p is not None else
                 f"active units of {LAST_LAYER}", fontsize=9)
    ax.set_xlabel("fraction of units above 0")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
