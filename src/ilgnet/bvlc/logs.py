"""Caffe's glog output, read back: a training log as a table, and a `caffe test` log as its score.

A training log (`caffe train`, several runs appended when training was resumed) yields one row per iteration
at which Caffe logged something: the training loss, the learning rate, and the test accuracy and loss of the
test pass run at that iteration. ilgnet.training.curves writes them as CSV and PNG. `Health` reads the same lines
for where a run went wrong (a loss or output that is not finite, a loss stuck at SoftmaxWithLoss's clamp), both
while `caffe train` runs (ilgnet.training.monitor) and afterwards (`parse_train_log`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.bvlc.proto import NetParameter, parse_text
from ilgnet.bvlc.tools import GLOG_PREFIX
from ilgnet.errors import BadInput

# GLOG_PREFIX: glog 0.6+ (Debian 12) writes the year into the date (I20241124 ...); older glog (as in the authors'
# logs) not.
TRAIN_LOSS = re.compile(r"^Iteration (\d+)(?: \(.*\))?, loss = (\S+)$")
LEARNING_RATE = re.compile(r"^Iteration (\d+), lr = (\S+)$")
TESTING = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)$")
TEST_OUTPUT = re.compile(r"^Test net output #\d+: (\S+) = (\S+)(?: \(\* (\S+) = (\S+) loss\))?$")
TEST_LOSS = re.compile(r"^Test loss: (\S+)$")
TRAIN_OUTPUT = re.compile(r"^Train net output #\d+: (\S+) = (\S+)(?: \(\* (\S+) = (\S+) loss\))?$")
TRAIN_NET = "Creating training net"   # Caffe prints the TRAIN net after this message, its Data layer's batch in it
BATCH_SIZE = re.compile(r"^\s*batch_size: (\d+)\s*$")
COLUMNS = ["iteration", "seconds", "loss", "lr", "test_accuracy", "test_loss", "health"]
# SoftmaxWithLoss adds -log(max(p, FLT_MIN)) per image (caffe/src/caffe/layers/softmax_loss_layer.cpp), so an image
# whose true class gets p <= FLT_MIN (logits 87 or more apart) adds this and no more: 87.3365 as Caffe prints it.
SATURATED_LOSS = float(-np.log(np.finfo(np.float32).tiny))
# Displays in a row at the clamp that stop a run. One display there can be a single batch thrown to the extremes by
# one large step, which the next steps may pull back (the gradient at the clamp is still -1 on the true class's
# logit); three in a row -- at least three updates, 60 iterations at the profiles' display of 20 -- is a net that
# stays collapsed, as in BestiVictory/ILGnet#10 (87.3365 for hours of AVA1 training).
SATURATED_DISPLAYS = 3
# How far a displayed loss may lie from k x SATURATED_LOSS / batch and still be read as k clamped images (the rest at
# next to 0): Caffe prints 6 significant digits, and batches of 48 put the levels 1.8 apart.
SATURATED_TOLERANCE = 1e-4 * SATURATED_LOSS
CREATED = re.compile(r"^Log file created at: (\d{4})/")     # the first line of a log file glog itself writes
AVERAGE_LOSS = re.compile(r"^\s*average_loss: (\d+)\s*$")   # in the solver parameters `caffe train` prints
STAMP_FORMAT = "%Y%m%d %H:%M:%S.%f"
PROBE_YEAR = pd.Timedelta(days=366)         # year-less dates are first read as dates of 2000, a leap year
OUT_OF_ORDER = pd.Timedelta(hours=1)        # how far a line may be stamped before one logged ahead of it


def saturated_images(loss: float, batch: int) -> int:
    """How many of a batch's images sit at SoftmaxWithLoss's clamp, read from the batch's mean loss: k when `loss` is
    k x SATURATED_LOSS / batch (within SATURATED_TOLERANCE; the other images then add next to nothing, so every
    output of the net is at an extreme), else 0. A net learning anything never gets there: that needs logits 87
    apart."""
    k = round(loss * batch / SATURATED_LOSS) if math.isfinite(loss) else 0
    return k if 1 <= k <= batch and abs(loss - k * SATURATED_LOSS / batch) <= SATURATED_TOLERANCE else 0


class Health:
    """Reads `caffe train` output line by line (glog lines and the nets Caffe prints between them) for where the run
    went wrong, as it runs or from its log afterwards.

    diverged: (iteration, what) for the first training loss or output, test output or test loss that is not finite
    (a test pass counts at the iteration it tests). saturated: (first, last iteration, images, batch) for the first
    SATURATED_DISPLAYS displays in a row whose training loss output sits at the clamp (`saturated_images`, with the
    batch size of the TRAIN net Caffe printed). marks: iteration -> "diverged" or "saturated", each displayed or
    tested iteration that was so."""

    def __init__(self):
        self.diverged: tuple[int, str] | None = None
        self.saturated: tuple[int, int, int, int] | None = None
        self.marks: dict[int, str] = {}
        self.train_batch: int | None = None
        self._reading_train_net = False
        self._display: int | None = None
        self._display_saturated = False
        self._streak: list[int] = []
        self._testing: int | None = None

    def _not_finite(self, iteration: int | None, what: str, value: float) -> None:
        if iteration is None or math.isfinite(value):
            return
        self.marks[iteration] = "diverged"
        if self.diverged is None:
            self.diverged = (iteration, f"{what} became {value}")

    def feed(self, line: str) -> None:
        """One line of Caffe's output, as it was printed."""
        glog = GLOG_PREFIX.match(line.rstrip("\r\n"))
        if glog is None:
            if self._reading_train_net and (size := BATCH_SIZE.match(line)):
                self.train_batch, self._reading_train_net = int(size[1]), False
            return
        message = glog.group(2)
        if message.startswith(TRAIN_NET):
            self._reading_train_net = True
        elif match := TRAIN_LOSS.match(message):
            if self._display is not None and not self._display_saturated:
                self._streak.clear()
            self._display, self._display_saturated, self._testing = int(match[1]), False, None
            self._not_finite(self._display, "the training loss", float(match[2]))
        elif (match := TRAIN_OUTPUT.match(message)) and self._display is not None:
            value = float(match[2])
            self._not_finite(self._display, f"the training output {match[1]}", value)
            if match[3] is not None and not self._display_saturated and self.train_batch \
                    and (images := saturated_images(value, self.train_batch)):
                self._display_saturated = True
                self._streak.append(self._display)
                self.marks.setdefault(self._display, "saturated")
                if len(self._streak) >= SATURATED_DISPLAYS and self.saturated is None:
                    self.saturated = (self._streak[0], self._display, images, self.train_batch)
        elif match := TESTING.match(message):
            self._testing = int(match[1])
        elif match := TEST_OUTPUT.match(message):
            self._not_finite(self._testing, f"the test output {match[1]}", float(match[2]))
        elif match := TEST_LOSS.match(message):
            self._not_finite(self._testing, "the test loss", float(match[1]))

    def saturation(self) -> str:
        """The saturation found, in words (empty when none)."""
        if self.saturated is None:
            return ""
        first, last, images, batch = self.saturated
        return (f"the training loss sat at SoftmaxWithLoss's clamp, -log(FLT_MIN) = {SATURATED_LOSS:.4f} per image, "
                f"from iteration {first} to {last} ({SATURATED_DISPLAYS} displays in a row; at the last, {images} "
                f"of the batch's {batch} images there and the others at 0)")


def _glog_lines(path: Path, facts: dict, health: Health):
    """(timestamp, message) for each glog line of a log; other lines (protobuf warnings, prototxt dumps) skipped,
    except that `facts` collects the year of glog's `Log file created at` line and the solver's average_loss.
    Every line goes to `health` too."""
    with open(path, errors="replace") as f:
        for line in f:
            health.feed(line)
            match = GLOG_PREFIX.match(line.rstrip("\r\n"))
            if match:
                yield match.group(1), match.group(2)
            elif fact := CREATED.match(line):
                facts.setdefault("year", int(fact[1]))
            elif fact := AVERAGE_LOSS.match(line):
                facts["average_loss"] = int(fact[1])


def _years_on(probe: pd.Series) -> list[int]:
    """For year-less stamps read as dates of one (leap) year, how many New Years each lies after the first: the
    earliest of last year's, this year's or next year's date that is not before the latest stamp so far, less a
    moment (lines of other threads can be stamped a little out of order)."""
    offsets, offset, latest = [], 0, None
    for time in probe:
        if latest is not None:
            fits = [k for k in (offset - 1, offset, offset + 1) if time + k * PROBE_YEAR >= latest - OUT_OF_ORDER]
            offset = fits[0] if fits else offset + 1
        offsets.append(offset)
        moment = time + offset * PROBE_YEAR
        latest = moment if latest is None else max(latest, moment)
    return offsets


def _stamp_times(stamps: pd.Series, year: int | None, path: Path) -> pd.Series:
    """glog stamps as datetimes. A stamp without a year (glog before 0.6) takes `year` (from the log's `Log file
    created at` line), else a year in which its date exists (a common one unless the log holds a 29 February),
    and moves on a year whenever the clock passed 31 December (`_years_on`)."""
    dated = stamps.str.len() > 20
    times = pd.Series(pd.NaT, index=stamps.index, dtype="datetime64[ns]")
    times[dated] = pd.to_datetime(stamps[dated], format=STAMP_FORMAT)
    bare = stamps[~dated]
    if bare.empty:
        return times
    years_on = pd.Series(_years_on(pd.to_datetime("2000" + bare, format=STAMP_FORMAT)), index=bare.index)
    for base in [year] if year else [2001, 2002, 2003, 2004]:
        try:
            times[~dated] = pd.to_datetime((base + years_on).astype(str) + bare, format=STAMP_FORMAT)
            return times
        except ValueError:
            continue
    raise BadInput(f"{path}: its stamps without a year hold dates that no year has (a 29 February in "
                   f"{year or 'a common year'})")


def parse_train_log(path: Path, *, accuracy_blob: str | None = None):
    """The training log at `path` as a DataFrame with COLUMNS, one row per logged iteration.

    seconds: since the log's first line (across New Year for a glog that writes no year). The solver's
    average_loss, when the log shows one, is in frame.attrs["average_loss"] (else 1: no smoothing).
    test_accuracy: the test output named `accuracy_blob` (default: the first
    output without a loss weight). test_loss: `Test loss:` when Caffe printed it, else the sum of the weighted
    loss outputs of that test pass (other threads' lines, like the data layers' "Restarting data prefetching",
    may come between a pass's outputs). A test pass with a non-finite output or loss has no accuracy: Caffe's
    Accuracy layer reports 1.0 on NaN scores. Iterations logged twice (a resumed run repeats its first one) keep the
    later values. health: "diverged" where a training loss or output, or the test pass, is not finite, "saturated"
    where the training loss sat at SoftmaxWithLoss's clamp (`Health`), else empty. frame.attrs: "diverged_at" and
    "diverged" (the first such iteration and what became what, else None), "saturated_at" and "saturated" (the
    first of SATURATED_DISPLAYS displays in a row at the clamp and those words, else None).
    """
    rows: list[dict] = []
    test: dict | None = None

    def close_test():
        nonlocal test
        if test is not None:
            outputs, loss = test.pop("outputs"), test.pop("test_loss", None)
            accuracy = [v for name, v, w in outputs if (name == accuracy_blob if accuracy_blob else w is None)]
            weighted = [v * w for name, v, w in outputs if w is not None]
            if loss is None and weighted:
                loss = sum(weighted)
            finite = all(math.isfinite(v) for _, v, _ in outputs) and (loss is None or math.isfinite(loss))
            rows.append({**test, "test_accuracy": accuracy[0] if accuracy and finite else None, "test_loss": loss})
            test = None

    first_stamp = None
    facts: dict = {}
    health = Health()
    for stamp, message in _glog_lines(path, facts, health):
        first_stamp = first_stamp or stamp
        if match := TRAIN_LOSS.match(message):
            close_test()
            rows.append({"iteration": int(match[1]), "stamp": stamp, "loss": float(match[2])})
        elif match := LEARNING_RATE.match(message):
            rows.append({"iteration": int(match[1]), "stamp": stamp, "lr": float(match[2])})
        elif match := TESTING.match(message):
            close_test()
            if match[2] == "0":                          # the first test net is the val set
                test = {"iteration": int(match[1]), "stamp": stamp, "outputs": []}
        elif test is not None and (match := TEST_OUTPUT.match(message)):
            test["outputs"].append((match[1], float(match[2]), float(match[3]) if match[3] else None))
        elif test is not None and (match := TEST_LOSS.match(message)):
            test["test_loss"] = float(match[1])
    close_test()
    if not rows:
        frame = pd.DataFrame(columns=COLUMNS)
    else:
        frame = pd.DataFrame(rows)
        stamps = pd.concat([pd.Series([first_stamp]), frame["stamp"]], ignore_index=True)
        times = _stamp_times(stamps, facts.get("year"), path)
        # glog stamps hold microseconds: rounded to them, 23.570157 is not written as 23.570157000000002
        frame["seconds"] = (times.iloc[1:] - times.iloc[0]).dt.total_seconds().round(6).to_numpy()
        frame = frame.reindex(columns=COLUMNS).groupby("iteration", as_index=False).last().reindex(columns=COLUMNS)
        frame["health"] = [health.marks.get(iteration, "") for iteration in frame["iteration"]]
    frame.attrs["average_loss"] = facts.get("average_loss", 1)
    frame.attrs["diverged_at"], frame.attrs["diverged"] = health.diverged or (None, None)
    frame.attrs["saturated_at"] = health.saturated[0] if health.saturated else None
    frame.attrs["saturated"] = health.saturation() or None
    return frame


RUN_MARKER = "# ilgnet train:"     # the line ilgnet.training.monitor writes before each `caffe train` it starts


def train_segments(path: Path) -> list[dict]:
    """Each `caffe train` of a training log (a resumed run appends its own after an `# ilgnet train:` line): its
    first and last training iteration displayed, `seconds` from its first glog line to its last (start-up, training,
    test passes, snapshots) and `training_seconds` from its first displayed iteration to its last. Segments that
    display no iteration are left out."""
    segments: list[list[tuple[str, str]]] = [[]]
    year = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(RUN_MARKER):
                segments.append([])
            elif match := GLOG_PREFIX.match(line.rstrip("\r\n")):
                segments[-1].append((match.group(1), match.group(2)))
            elif fact := CREATED.match(line):
                year = year or int(fact[1])
    found = []
    for lines in segments:
        rows = [(i, int(m[1])) for i, (_, message) in enumerate(lines) if (m := TRAIN_LOSS.match(message))]
        if not rows:
            continue
        times = _stamp_times(pd.Series([stamp for stamp, _ in lines]), year, path)
        found.append({"first_iteration": rows[0][1], "last_iteration": rows[-1][1],
                      "seconds": (times.iloc[-1] - times.iloc[0]).total_seconds(),
                      "training_seconds": (times.iloc[rows[-1][0]] - times.iloc[rows[0][0]]).total_seconds()})
    return found


@dataclass(frozen=True)
class TestLogScore:
    """What a `caffe test` log says about its own run."""
    batch_size: int
    iterations: int
    source: str
    output: str
    score: float
    loss: float | None
    batch_scores: list[float]

    @property
    def images(self) -> int:
        """Images fed to the net: Caffe's Data layer reads batch_size records per iteration, wrapping around the
        LMDB at its end, so this may exceed (or fall short of) the records in the LMDB."""
        return self.batch_size * self.iterations


def parse_test_log(path: Path, *, output: str | None = None) -> TestLogScore:
    """Reads a `caffe test` log: the TEST net it printed (for the Data layer's batch size and source), the
    iteration count, the per-batch and final values of `output` (default: the first non-loss output)."""
    text = Path(path).read_text(errors="replace").replace("\r\n", "\n")
    net_text = re.search(r"Initializing net from parameters:[ \t]*\n(.*?)\n[IWEF]\d{4,8} ", text, re.S)
    iterations = re.search(r"\] Running for (\d+) iterations\.", text)
    if not (net_text and iterations):
        raise BadInput(f"{path}: not a `caffe test` log (no printed TEST net or no 'Running for N iterations.')")
    net = parse_text(net_text.group(1), NetParameter())
    data_layers = [layer for layer in net.layer if layer.type == "Data"]
    if not data_layers:
        raise BadInput(f"{path}: the TEST net it printed has no Data layer")
    finals = re.findall(r"caffe\.cpp:\d+\] ([^\s,]+) = (\S+)\s*$", text, re.M)
    losses = re.findall(r"caffe\.cpp:\d+\] Loss: (\S+)\s*$", text, re.M)
    if not finals:
        raise BadInput(f"{path}: the log ends before caffe test printed its scores")
    output = output or finals[0][0]
    scores = dict(finals)
    if output not in scores:
        raise BadInput(f"{path}: no final score named {output!r}; it has {', '.join(scores)}")
    batch_scores = [float(v) for v in re.findall(rf"\] Batch \d+, {re.escape(output)} = (\S+)\s*$", text, re.M)]
    return TestLogScore(batch_size=data_layers[0].data_param.batch_size, iterations=int(iterations.group(1)),
                        source=data_layers[0].data_param.source, output=output, score=float(scores[output]),
                        loss=float(losses[-1]) if losses else None, batch_scores=batch_scores)
