"""Every figure the paper prints in its Tables 2, 3 and 4, and the two accuracies of the WCSP 2016 slides, as data.

The figures live in `paper_figures.csv` beside this module (shipped in the package), typed in from the text of
Jin et al., arXiv:1610.02256 (Tables 2-4) and from the authors' WCSP 2016 slides (an earlier ILGNet: 79.25 % on
AVA1, 85.62 % on AVA2). Columns: `table` (2, 3, 4 or `slides`), `method` as the paper prints it, `family`
(`ilgnet`: the paper's own nets, which this toolkit trains; `prior`: earlier methods the paper compares against,
shown for context and never run here), `database` (AVA1, AVA2), `delta` (AVA1's training margin, 0 or 1; empty for
AVA2), `accuracy_pct`, `training_days` and `test_seconds` (Table 4 only: days of training on AVA1 with delta 0, and
seconds per image averaged over AVA1's test set on an Nvidia GTX 980 Ti), `source`.

The paper's AVA1 test set has 19,930 images, its AVA2 test set 25,553 (Sec. 4.1).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

FILE = "paper_figures.csv"
SLIDES = "slides"


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


def _number(text: str, kind=float):
    return kind(text) if text.strip() else None


@cache
def figures() -> tuple[PaperFigure, ...]:
    """Every row of paper_figures.csv, in its order (47 rows: Tables 2-4 and the slides)."""
    text = resources.files("ilgnet.paper").joinpath(FILE).read_text(encoding="utf-8")
    return tuple(PaperFigure(row["table"], row["method"], row["family"], row["database"], _number(row["delta"], int),
                             float(row["accuracy_pct"]) / 100, _number(row["training_days"]),
                             _number(row["test_seconds"]), row["source"])
                 for row in csv.DictReader(io.StringIO(text)))


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
