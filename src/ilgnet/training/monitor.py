"""Running `caffe train` and watching it: a progress bar over iterations, test scores and snapshots as they come,
train_log.csv and curves.png refreshed every minute, Ctrl-C passed on so Caffe snapshots and stops, and a training
loss that turns NaN or infinite stopping the run at once (Caffe would go on for days printing NaN).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ilgnet.bvlc import logs
from ilgnet.bvlc.tools import run_logged
from ilgnet.errors import UserError
from ilgnet.training.curves import write_train_summary

SUMMARY_EVERY_S = 60


class Diverged(UserError):
    """The training loss became NaN or infinite at `iteration`; Caffe was stopped without a snapshot."""

    def __init__(self, iteration: int, loss: float, message: str = ""):
        super().__init__(message or f"the training loss became {loss} at iteration {iteration}")
        self.iteration, self.loss = iteration, loss


def run_caffe(command: list[str], log_path: Path, *, start_iter: int, max_iter: int, accuracy_blob: str | None,
              progress: bool = True) -> bool:
    """Runs `caffe train`, appending its output to log_path, with a progress bar over iterations and the test
    scores and snapshots shown as they come; train_log.csv and curves.png are refreshed every minute and at the end.
    Returns whether Caffe stopped early (on SIGINT, which is passed on to it); raises Diverged (Caffe killed, no
    snapshot written) when the training loss is not finite, ToolFailed (one line, naming log_path) when Caffe fails."""
    last_summary = time.monotonic()
    stopped_early = False

    with tqdm(total=max_iter, initial=start_iter, unit="it", desc=log_path.parent.name, disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def on_line(line: str) -> None:
            nonlocal last_summary, stopped_early
            glog = logs.GLOG_PREFIX.match(line.rstrip("\n"))
            if not glog:
                return
            message = glog.group(2)
            if match := logs.TRAIN_LOSS.match(message):
                iteration, loss = int(match[1]), float(match[2])
                if not math.isfinite(loss):
                    raise Diverged(iteration, loss)
                bar.update(iteration - bar.n)
                bar.set_postfix(loss=loss)
            elif logs.TEST_OUTPUT.match(message) or message.startswith(("Snapshotting to", "Resuming from")) \
                    or message == "Optimization stopped early." or line.startswith(("E", "F")):
                tqdm.write(message, file=sys.stderr)
            stopped_early |= message == "Optimization stopped early."
            if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                write_train_summary(log_path, accuracy_blob=accuracy_blob)
                last_summary = time.monotonic()

        def on_sigint() -> None:
            tqdm.write("ilgnet train: interrupt: Caffe snapshots and stops after the current iteration",
                       file=sys.stderr)

        with open(log_path, "a") as log:
            log.write(f"{logs.RUN_MARKER} {' '.join(command)}\n")
        try:
            run_logged(command, log_path=log_path, on_line=on_line, on_sigint=on_sigint, keep=False)
        except Diverged:
            write_train_summary(log_path, accuracy_blob=accuracy_blob)
            raise
    write_train_summary(log_path, accuracy_blob=accuracy_blob)
    return stopped_early
