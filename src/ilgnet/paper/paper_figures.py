"""Every figure the paper prints in its Tables 2, 3 and 4, and the two accuracies of the WCSP 2016 slides, as data.

The figures are `ROWS` below, typed in from the text of
Jin et al., arXiv:1610.02256 (Tables 2-4) and from the authors' WCSP 2016 slides (an earlier ILGNet: 79.25 % on
AVA1, 85.62 % on AVA2). Fields: `table` (2, 3, 4 or `slides`), `method` as the paper prints it, `family`
(`ilgnet`: the paper's own nets, which this toolkit trains; `prior`: earlier methods the paper compares against,
shown for context and never run here), `database` (AVA1, AVA2), `delta` (AVA1's training margin, 0 or 1; empty for
AVA2), `accuracy_pct`, `training_days` and `test_seconds` (Table 4 only: days of training on AVA1 with delta 0, and
seconds per image averaged over AVA1's test set on an Nvidia GTX 980 Ti), `source`.

The paper's AVA1 test set has 19,930 images, its AVA2 test set 25,553 (Sec. 4.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

SLIDES = "slides"

# (table, method, family, database, delta, accuracy %, training days, test s per image, source), as printed
ROWS = (
    ('2', 'Traditional method [10]', 'prior', 'AVA1', 0, 66.70, None, None, 'paper Table 2'),
    ('2', 'Traditional method [10]', 'prior', 'AVA1', 1, 67.00, None, None, 'paper Table 2'),
    ('2', 'RAPID [37]', 'prior', 'AVA1', 0, 69.91, None, None, 'paper Table 2'),
    ('2', 'RAPID [37]', 'prior', 'AVA1', 1, 71.26, None, None, 'paper Table 2'),
    ('2', 'RAPID-E [39]', 'prior', 'AVA1', 0, 74.46, None, None, 'paper Table 2'),
    ('2', 'RAPID-E [39]', 'prior', 'AVA1', 1, 73.70, None, None, 'paper Table 2'),
    ('2', 'Multi-patch [38]', 'prior', 'AVA1', 0, 75.41, None, None, 'paper Table 2'),
    ('2', 'AROD [51]', 'prior', 'AVA1', 0, 75.83, None, None, 'paper Table 2'),
    ('2', 'Multi-scene [41]', 'prior', 'AVA1', 0, 76.94, None, None, 'paper Table 2'),
    ('2', 'Comp.-prev. [12]', 'prior', 'AVA1', 0, 77.10, None, None, 'paper Table 2'),
    ('2', 'Comp.-prev. [12]', 'prior', 'AVA1', 1, 76.10, None, None, 'paper Table 2'),
    ('2', 'AADB [42]', 'prior', 'AVA1', 0, 77.33, None, None, 'paper Table 2'),
    ('2', 'BDN [44]', 'prior', 'AVA1', 0, 78.08, None, None, 'paper Table 2'),
    ('2', 'BDN [44]', 'prior', 'AVA1', 1, 77.27, None, None, 'paper Table 2'),
    ('2', 'Semantic-based [43]', 'prior', 'AVA1', 0, 79.08, None, None, 'paper Table 2'),
    ('2', 'Semantic-based [43]', 'prior', 'AVA1', 1, 76.04, None, None, 'paper Table 2'),
    ('2', 'A-Lamp [45]', 'prior', 'AVA1', 0, 82.50, None, None, 'paper Table 2'),
    ('2', 'ILGNet-without-Inc.', 'ilgnet', 'AVA1', 0, 75.29, None, None, 'paper Table 2'),
    ('2', 'ILGNet-without-Inc.', 'ilgnet', 'AVA1', 1, 73.25, None, None, 'paper Table 2'),
    ('2', '1/3 GoogLeNetV1-BN', 'ilgnet', 'AVA1', 0, 80.74, None, None, 'paper Table 2'),
    ('2', '1/3 GoogLeNetV1-BN', 'ilgnet', 'AVA1', 1, 79.09, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V1-BN', 'ilgnet', 'AVA1', 0, 81.68, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V1-BN', 'ilgnet', 'AVA1', 1, 80.71, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V3', 'ilgnet', 'AVA1', 0, 81.71, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V3', 'ilgnet', 'AVA1', 1, 80.65, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V4', 'ilgnet', 'AVA1', 0, 82.66, None, None, 'paper Table 2'),
    ('2', 'ILGNet-Inc.V4', 'ilgnet', 'AVA1', 1, 80.83, None, None, 'paper Table 2'),
    ('3', 'Subject-based [15]', 'prior', 'AVA2', None, 61.49, None, None, 'paper Table 3'),
    ('3', 'EfficientAssess [49]', 'prior', 'AVA2', None, 68.13, None, None, 'paper Table 3'),
    ('3', 'Generic-based [34]', 'prior', 'AVA2', None, 68.55, None, None, 'paper Table 3'),
    ('3', 'Compt.-based [13]', 'prior', 'AVA2', None, 68.67, None, None, 'paper Table 3'),
    ('3', 'High-level [14]', 'prior', 'AVA2', None, 71.06, None, None, 'paper Table 3'),
    ('3', 'Multi-level [40]', 'prior', 'AVA2', None, 78.92, None, None, 'paper Table 3'),
    ('3', 'Query-dependent [52]', 'prior', 'AVA2', None, 80.38, None, None, 'paper Table 3'),
    ('3', 'DCNN-Aesth-SP [50]', 'prior', 'AVA2', None, 83.52, None, None, 'paper Table 3'),
    ('3', 'Multi-scene [41]', 'prior', 'AVA2', None, 84.88, None, None, 'paper Table 3'),
    ('3', 'ILGNet-without-Inc.', 'ilgnet', 'AVA2', None, 79.64, None, None, 'paper Table 3'),
    ('3', '1/3 GoogLeNetV1-BN', 'ilgnet', 'AVA2', None, 82.26, None, None, 'paper Table 3'),
    ('3', 'ILGNet-Inc.V1-BN', 'ilgnet', 'AVA2', None, 85.50, None, None, 'paper Table 3'),
    ('3', 'ILGNet-Inc.V3', 'ilgnet', 'AVA2', None, 85.51, None, None, 'paper Table 3'),
    ('3', 'ILGNet-Inc.V4', 'ilgnet', 'AVA2', None, 85.53, None, None, 'paper Table 3'),
    ('4', 'Full GoogLeNetV1-BN', 'ilgnet', 'AVA1', 0, 82.36, 16, 0.84, 'paper Table 4'),
    ('4', '2/3 GoogLeNetV1-BN', 'ilgnet', 'AVA1', 0, 81.72, 11, 0.57, 'paper Table 4'),
    ('4', '1/3 GoogLeNetV1-BN', 'ilgnet', 'AVA1', 0, 80.74, 4, 0.33, 'paper Table 4'),
    ('4', 'ILGNet-Inc.V1-BN', 'ilgnet', 'AVA1', 0, 81.68, 4, 0.31, 'paper Table 4'),
    ('slides', 'Our ILGNet (WCSP 2016 slides)', 'ilgnet', 'AVA1', 0, 79.25, None, None, 'WCSP 2016 slides'),
    ('slides', 'Our ILGNet (WCSP 2016 slides)', 'ilgnet', 'AVA2', None, 85.62, None, None, 'WCSP 2016 slides'),
)


@dataclass(frozen=True)
class PaperFigure:
    """One printed row: `accuracy` as a fraction (0.8168 for 81.68 %), `delta` None for AVA2, `training_days` and
    `test_seconds` None outside Table 4, `table` "2", "3", "4" or "slides"."""
    table: str
    method: str
    family: str
    database: str
    delta: int | None
    accuracy: float
    training_days: float | None
    test_seconds: float | None
    source: str

    @property
    def column(self) -> str:
        """The report's column for the figure: "AVA1, delta 0", "AVA1, delta 1" or "AVA2"."""
        return self.database if self.delta is None else f"{self.database}, delta {self.delta}"


@cache
def figures() -> tuple[PaperFigure, ...]:
    """Every printed row, in ROWS' order (47 rows: Tables 2-4 and the slides)."""
    return tuple(PaperFigure(table, method, family, database, delta, pct / 100, days, seconds, source)
                 for table, method, family, database, delta, pct, days, seconds, source in ROWS)


def accuracy(method: str, column: str) -> PaperFigure | None:
    """The paper's accuracy of its net `method` (the paper's name) in a report column ("AVA1, delta 0", "AVA1,
    delta 1", "AVA2"), from Table 2 or 3; None where the paper prints none."""
    return next((f for f in figures() if f.table in ("2", "3") and f.method == method and f.column == column), None)


def timing(method: str) -> PaperFigure | None:
    """Table 4's row of `method` (accuracy on AVA1 delta 0, training days, test seconds per image); None where the
    paper's Table 4 has no such net."""
    return next((f for f in figures() if f.table == "4" and f.method == method), None)


def prior(table: str) -> list[PaperFigure]:
    """The earlier methods Table `table` ("2" or "3") compares against: context only, not run by this toolkit."""
    return [f for f in figures() if f.table == table and f.family == "prior"]


def slides() -> list[PaperFigure]:
    """The WCSP 2016 slides' two accuracies of an earlier ILGNet (AVA1 delta 0, AVA2)."""
    return [f for f in figures() if f.table == SLIDES]
