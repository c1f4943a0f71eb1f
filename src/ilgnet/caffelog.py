"""Caffe's glog output, read back: a training log as a table, and a `caffe test` log as its score.

A training log (`caffe train`, several runs appended when training was resumed) yields one row per iteration
at which Caffe logged something: the training loss, the learning rate, and the test accuracy and loss of the
test pass run at that iteration. ilgnet.curves writes them as CSV and PNG.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ilgnet.caffe_proto import NetParameter, parse_text
from ilgnet.errors import BadInput

# glog 0.6+ (Debian 12) writes the year into the date (I20241124 ...); older glog (as in the authors' logs) not.
GLOG_PREFIX = re.compile(r"^[IWEF]((?:\d{4})?\d{4} \d\d:\d\d:\d\d\.\d+)\s+\d+ [\w.]+:\d+\]\s+(.*)$")
TRAIN_LOSS = re.compile(r"^Iteration (\d+)(?: \(.*\))?, loss = (\S+)$")
LEARNING_RATE = re.compile(r"^Iteration (\d+), lr = (\S+)$")
TESTING = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)$")
TEST_OUTPUT = re.compile(r"^Test net output #\d+: (\S+) = (\S+)(?: \(\* (\S+) = (\S+) loss\))?$")
TEST_LOSS = re.compile(r"^Test loss: (\S+)$")
COLUMNS = ["iteration", "seconds", "loss", "lr", "test_accuracy", "test_loss"]


def _glog_lines(path: Path):
    """(timestamp, message) for each glog line of a log; other lines (protobuf warnings, prototxt dumps) skipped."""
    with open(path, errors="replace") as f:
        for line in f:
            match = GLOG_PREFIX.match(line.rstrip("\r\n"))
            if match:
                yield match.group(1), match.group(2)


def parse_train_log(path: Path, *, accuracy_blob: str | None = None):
    """The training log at `path` as a DataFrame with COLUMNS, one row per logged iteration.

    seconds: since the log's first line. test_accuracy: the test output named `accuracy_blob` (default: the first
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
    for stamp, message in _glog_lines(path):
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
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    stamps = pd.concat([pd.Series([first_stamp]), frame["stamp"]], ignore_index=True)
    times = pd.to_datetime(stamps.where(stamps.str.len() > 20, "2000" + stamps), format="%Y%m%d %H:%M:%S.%f")
    frame["seconds"] = (times.iloc[1:] - times.iloc[0]).dt.total_seconds().to_numpy()
    frame = frame.reindex(columns=COLUMNS).groupby("iteration", as_index=False).last().reindex(columns=COLUMNS)
    frame.attrs["diverged_at"] = diverged_at
    return frame


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
