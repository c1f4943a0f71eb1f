"""The paper's tables as this toolkit reproduces them: which nets and solver profiles fill each table, the names the
paper prints for them, and the paper's own figures for each cell (ilgnet.paper.paper_figures).

Tables 2 and 3 hold the paper's five nets (Sec. 4.2): ILGNet-without-Inc. (built on ILGNet-Inc.V1-BN),
1/3 GoogLeNetV1-BN, ILGNet-Inc.V1-BN, ILGNet-Inc.V3 and ILGNet-Inc.V4, on AVA1 (delta 0 and 1) and AVA2; beside them
one row for the authors' released model, the LRN net `ilgnet` trained with the released recipe. The paper prints
81.68 % and 85.50 % for ILGNet-Inc.V1-BN; the authors' published `caffe test` logs show the released net, which has
no batch normalization, at the same figures, so the released row shows them as the logs' figures. Table 4 compares
ILGNet-Inc.V1-BN with GoogLeNetV1-BN cut at a third, two thirds and in full, on AVA1 with delta 0 ("in AVA1
database"), with their accuracy, training days and test seconds per image (docs/NETS.md says how each net is built;
docs/REPRODUCING.md what differs from the paper).
"""
from __future__ import annotations

from ilgnet.paper import paper_figures

TABLES = ("table2", "table3", "table4")

RELEASED = "ilgnet"
"""The authors' released net (GoogLeNet v1 with LRN, no batch normalization), its own row in Tables 2 and 3."""
PAPER_NETS = ("ilgnet-noinc", "googlenet-bn-third", "ilgnet-bn", "ilgnet-inc3", "ilgnet-inc4")
"""The five nets of the paper's Tables 2 and 3, in its order."""

# Table -> (net variants, solver profiles), each run being one variant with one profile (less the cells of
# NO_CELL).
TABLE_RUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "table2": ((*PAPER_NETS, RELEASED), ("ava1-delta0", "ava1-delta1")),
    "table3": ((*PAPER_NETS, RELEASED), ("ava2",)),
    "table4": (("ilgnet-bn", "googlenet-bn-third", "googlenet-bn-two-thirds", "googlenet-bn-full"), ("ava1-delta0",)),
}
# (variant, profile) left out of the tables: the authors released no model, and published no log, for delta 1.
NO_CELL = {(RELEASED, "ava1-delta1")}

TITLES = {
    "table2": "Table 2: accuracy on AVA1 (delta 0 and delta 1; the test set keeps delta 0)",
    "table3": "Table 3: accuracy on AVA2",
    "table4": "Table 4: accuracy, training and test time on AVA1 (delta 0)",
}

# Each net variant as the report names it: the paper's own name where the paper has the net.
PAPER_NAMES = {
    "ilgnet": "released model (ILGNet, LRN, no BN)",
    "ilgnet-bn": "ILGNet-Inc.V1-BN",
    "ilgnet-noinc": "ILGNet-without-Inc.",
    "ilgnet-inc3": "ILGNet-Inc.V3",
    "ilgnet-inc4": "ILGNet-Inc.V4",
    "googlenet-bn-third": "1/3 GoogLeNetV1-BN",
    "googlenet-bn-two-thirds": "2/3 GoogLeNetV1-BN",
    "googlenet-bn-full": "Full GoogLeNetV1-BN",
}

# The paper's method whose printed figures a variant's cells are compared with.
PAPER_METHOD = {variant: name for variant, name in PAPER_NAMES.items() if variant != RELEASED}
PAPER_METHOD[RELEASED] = "ILGNet-Inc.V1-BN"

# Which paper protocol (ilgnet.evaluation.reports.PAPER) and table column each solver profile trains for.
PROFILE_COLUMNS = {"ava1-delta0": ("ava1", "AVA1, delta 0"), "ava1-delta1": ("ava1", "AVA1, delta 1"),
                   "ava2": ("ava2", "AVA2"), "published-ava1": ("ava1", "AVA1, delta 0"),
                   "published-ava2": ("ava2", "AVA2")}

RELEASED_SOURCE = ("printed by the paper for ILGNet-Inc.V1-BN ({source}); the authors' published caffe test log shows "
                   "the released model, which has no batch normalization, at the same figure")

NOT_KNOWN = "not printed by the paper"


def table_cells(table: str) -> list[tuple[str, str]]:
    """(variant, profile) of each cell of a table, by profile then in the paper's row order."""
    variants, profiles = TABLE_RUNS[table]
    return [(v, p) for p in profiles for v in variants if (v, p) not in NO_CELL]


def paper_accuracy(variant: str, column: str) -> tuple[float, str] | None:
    """(the paper's accuracy as a fraction, where it is printed) for a net and a table column ("AVA1, delta 0",
    "AVA1, delta 1", "AVA2"), or None where the paper prints no figure for that net there (the GoogLeNetV1-BN cuts
    outside Table 4's AVA1 delta 0 column)."""
    method = PAPER_METHOD.get(variant)
    figure = paper_figures.accuracy(method, column) if method else None
    if figure is None and method:
        figure = next((f for f in [paper_figures.timing(method)] if f and f.column == column), None)
    if figure is None:
        return None
    if variant == RELEASED:
        return figure.accuracy, RELEASED_SOURCE.format(source=figure.source)
    return figure.accuracy, figure.source


def paper_times(variant: str) -> tuple[str, str] | None:
    """(training time, test time per image) as the paper's Table 4 prints them (days of training on AVA1 delta 0,
    seconds per image over AVA1's test set on a GTX 980 Ti), or None for a net Table 4 does not have."""
    figure = paper_figures.timing(PAPER_METHOD.get(variant, ""))
    if figure is None:
        return None
    return f"{figure.training_days:g} days", f"{figure.test_seconds:g} s"


# variant -> (training time, test time per image) as the paper's Table 4 prints them.
PAPER_TIMES: dict[str, tuple[str, str]] = {v: t for v in PAPER_NAMES if (t := paper_times(v))}
