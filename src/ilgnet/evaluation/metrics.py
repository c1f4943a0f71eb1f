"""The metrics of a binary aesthetics classifier scored on every val image: accuracy beside what it should be read
against (the majority-class baseline: AVA1's val set is 80 % "high"), balanced accuracy, ROC AUC, the confusion
matrix and per-class accuracy."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve of `scores` for label 1 (Mann-Whitney U / n0 n1, ties counted half); None when
    only one class is present."""
    labels = np.asarray(labels)
    positives, negatives = (labels == 1).sum(), (labels != 1).sum()
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def correlations(scores, means) -> dict | None:
    """SRCC (Spearman, ties ranked by their mean rank) and PLCC (Pearson) of `scores` against `means`, as the
    aesthetics literature reports them against AVA's mean vote (NIMA, MUSIQ, TANet...): {"images", "srcc", "plcc"};
    None with fewer than 3 pairs or where either side is constant (no correlation is defined). For ILGNet `scores`
    is p_high: it predicts a class, not a score distribution."""
    from scipy.stats import pearsonr, spearmanr

    scores, means = np.asarray(scores, float), np.asarray(means, float)
    if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(means) == 0:
        return None
    return {"images": len(scores), "srcc": float(spearmanr(scores, means).statistic),
            "plcc": float(pearsonr(scores, means).statistic)}


def metrics(frame: pd.DataFrame) -> dict:
    """Accuracy, balanced accuracy, majority baseline, confusion matrix, ROC AUC and per-class accuracy of a frame
    with columns label, predicted and p_0 .. p_k (one row per image), as a JSON-ready dict."""
    classes = sorted(set(frame["label"]) | set(frame["predicted"]) |
                     set(range(sum(c.startswith("p_") for c in frame.columns))))
    confusion = pd.crosstab(frame["label"], frame["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    counts = confusion.sum(axis=1)
    present = [c for c in classes if counts[c] > 0]
    per_class = {str(c): float(confusion.loc[c, c] / counts[c]) for c in present}
    majority = int(counts.idxmax())
    correct = int(sum(confusion.loc[c, c] for c in classes))
    return {
        "images": len(frame),
        "correct": correct,
        "accuracy": correct / len(frame),
        "balanced_accuracy": sum(per_class.values()) / len(per_class),
        "majority_baseline": {"class": majority, "accuracy": float(counts[majority] / len(frame))},
        "class_counts": {str(c): int(counts[c]) for c in classes},
        "per_class_accuracy": per_class,
        "confusion_matrix": {"rows": "true label", "columns": "predicted label", "labels": classes,
                             "counts": confusion.to_numpy().tolist()},
        "roc_auc": roc_auc(frame["label"], frame["p_1"]) if "p_1" in frame and len(classes) == 2 else None,
    }
