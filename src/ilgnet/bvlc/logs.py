"""Caffe's glog output, read back: a training log as a table, and a `caffe test` log as its score.

A training log (`caffe train`, several runs appended when training was resumed) yields one row per iteration
at which Caffe logged something: the training loss, the learning rate, and the test accuracy and loss of the
test pass run at that iteration. ilgnet.training.curves writes them as CSV and PNG.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

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
COLUMNS = ["iteration", "seconds", "loss", "lr", "test_accuracy", "test_loss"]
CREATED = re.compile(r"^Log file created at: (\d{4})/")     # the first line of a log file glog itself writes
AVERAGE_LOSS = re.compile(r"^\s*average_loss: (\d+)\s*$")   # in the solver parameters `caffe train` prints
STAMP_FORMAT = "%Y%m%d %H:%M:%S.%f"
PROBE_YEAR = pd.Timedelta(days=366)         # year-less dates are first read as dates of 2000, a leap year
OUT_OF_ORDER = pd.Timedelta(hours=1)        # how far a line may be stamped before one logged ahead of it


def _glog_lines(path: Path, facts: dict):
    """(timestamp, message) for each glog line of a log; other lines (protobuf warnings, prototxt dumps) skipped,
    except that `facts` collects the year of glog's `Log file created at` line and the solver's average_loss."""
    with open(path, errors="replace") as f:
        for line in f:
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
    later values. frame.attrs["diverged_at"] is the first iteration whose training loss is not finite (else None).
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

    first_stamp, diverged_at = None, None
    facts: dict = {}
    for stamp, message in _glog_lines(path, facts):
        first_stamp = first_stamp or stamp
        if match := TRAIN_LOSS.match(message):
            close_test()
            rows.append({"iteration": int(match[1]), "stamp": stamp, "loss": float(match[2])})
            if diverged_at is None and not math.isfinite(rows[-1]["loss"]):
                diverged_at = rows[-1]["iteration"]
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
        frame["seconds"] = (times.iloc[1:] - times.iloc[0]).dt.total_seconds().to_numpy()
        frame = frame.reindex(columns=COLUMNS).groupby("iteration", as_index=False).last().reindex(columns=COLUMNS)
    frame.attrs["average_loss"] = facts.get("average_loss", 1)
    frame.attrs["diverged_at"] = diverged_at
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
