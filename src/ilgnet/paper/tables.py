"""The paper's results as this toolkit reproduces them: which nets and solver profiles fill each table, the names the
paper gives them, and the paper's own figures where they are known.

Tables 2 and 3 compare ILGNet's inception trunks on AVA1 (delta 0 and 1) and AVA2; Table 4 compares the training and
test time of ILGNet-Inc.V1-BN with GoogLeNetV1-BN cut at a third, two thirds and in full (docs/NETS.md says how each
variant is built and why; docs/REPRODUCING.md what differs from the paper).

The paper's figures known here are the two that its published `caffe test` logs back (ilgnet.evaluation.reports.PAPER:
81.68 % on AVA1 with delta 0, 85.50 % on AVA2, both of ILGNet-Inc.V1). The other cells of the paper's tables could
not be read from any copy of the paper available to this toolkit (arXiv 1610.02256, versions 1 to 3): they are None,
and every report says "not known" there rather than a number.
"""
from __future__ import annotations

from ilgnet.evaluation.reports import PAPER

TABLES = ("table2", "table3", "table4")

# Table -> (net variants, solver profiles), each run being one variant with one profile.
TABLE_RUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "table2": (("ilgnet-noinc", "ilgnet", "ilgnet-bn", "ilgnet-inc3", "ilgnet-inc4"), ("ava1-delta0", "ava1-delta1")),
    "table3": (("ilgnet-noinc", "ilgnet", "ilgnet-bn", "ilgnet-inc3", "ilgnet-inc4"), ("ava2",)),
    "table4": (("ilgnet-bn", "googlenet-bn-third", "googlenet-bn-two-thirds", "googlenet-bn-full"), ("ava2",)),
}

TITLES = {
    "table2": "Table 2: accuracy on AVA1 (delta 0 and delta 1)",
    "table3": "Table 3: accuracy on AVA2",
    "table4": "Table 4: training and test time",
}

# The paper's name for each net variant.
PAPER_NAMES = {
    "ilgnet": "ILGNet-Inc.V1",
    "ilgnet-bn": "ILGNet-Inc.V1-BN",
    "ilgnet-noinc": "ILGNet without inception modules",
    "ilgnet-inc3": "ILGNet-Inc.V3",
    "ilgnet-inc4": "ILGNet-Inc.V4",
    "googlenet-bn-third": "GoogLeNetV1-BN, 1/3",
    "googlenet-bn-two-thirds": "GoogLeNetV1-BN, 2/3",
    "googlenet-bn-full": "GoogLeNetV1-BN, full",
}

# Which paper protocol (ilgnet.evaluation.reports.PAPER) and table column each solver profile trains for.
PROFILE_COLUMNS = {"ava1-delta0": ("ava1", "AVA1, delta 0"), "ava1-delta1": ("ava1", "AVA1, delta 1"),
                   "ava2": ("ava2", "AVA2"), "published-ava1": ("ava1", "AVA1, delta 0"),
                   "published-ava2": ("ava2", "AVA2")}

# (variant, column) -> the paper's accuracy, and where it is stated.
PAPER_ACCURACY: dict[tuple[str, str], tuple[float, str]] = {
    ("ilgnet", "AVA1, delta 0"): (PAPER["ava1"]["accuracy"], "the paper's Table 2 and the authors' AVA1 caffe test "
                                                             "log (50 iterations x batch 50)"),
    ("ilgnet", "AVA2"): (PAPER["ava2"]["accuracy"], "the paper's Table 3 and the authors' AVA2 caffe test log "
                                                    "(50 iterations x batch 48)"),
}

# variant -> (training time, test time per image) as the paper's Table 4 gives them: none is known here.
PAPER_TIMES: dict[str, tuple[str, str]] = {}

NOT_KNOWN = "not known"


def paper_accuracy(variant: str, column: str) -> tuple[float, str] | None:
    """(the paper's accuracy, its source) for a net and a table column, or None where this toolkit does not know the
    paper's figure."""
    return PAPER_ACCURACY.get((variant, column))
