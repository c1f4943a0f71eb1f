"""Running `caffe train` and watching it: a progress bar over iterations, test scores and snapshots as they come,
train_log.csv and curves.png refreshed every minute, Ctrl-C passed on so Caffe snapshots and stops, and the run
stopped at once when it goes wrong (Caffe would go on for days printing NaN): a training loss or output, or a test
output, that is not finite, a training loss at SoftmaxWithLoss's clamp for several displays in a row
(ilgnet.bvlc.logs.Health), or a snapshot that a check refuses (ilgnet.training.snapshots: its weights, or its
outputs on a val batch, not finite).
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ilgnet.bvlc import logs
from ilgnet.bvlc.tools import run_logged
from ilgnet.errors import ToolFailed, UserError
from ilgnet.pools import ctrl_c_point
from ilgnet.training.curves import write_train_summary
from ilgnet.bvlc.io import snapshot_iteration

SUMMARY_EVERY_S = 60
SNAPSHOT_MODEL = "Snapshotting to binary proto file "           # Caffe, before it writes the .caffemodel
SNAPSHOT_STATE = "Snapshotting solver state to binary proto file "  # after it, before the .solverstate
ITERATION = re.compile(r"^Iteration (\d+)\b")


class Diverged(UserError):
    """The run went wrong at `iteration` (the first iteration known to be bad); the message says how, naming the
    iteration. Caffe was stopped."""

    def __init__(self, iteration: int, message: str):
        super().__init__(message)
        self.iteration = iteration


def run_caffe(command: list[str], log_path: Path, *, start_iter: int, max_iter: int, accuracy_blob: str | None,
              check_snapshot: Callable[[Path], str | None] | None = None, progress: bool = True) -> bool:
    """Runs `caffe train`, appending its output to log_path, with a progress bar over iterations (moved by every
    displayed loss, test pass and snapshot) and the test scores and snapshots shown as they come; train_log.csv and
    curves.png are refreshed every minute and at the end. `check_snapshot` receives each .caffemodel once Caffe has
    written it (when it starts on the .solverstate) and returns what is wrong with it, or None.
    Returns whether Caffe stopped early or was interrupted (SIGINT, passed on to it: one that lands after Caffe's
    last iteration, while a snapshot is checked, still counts, so a campaign stops instead of going on); raises
    Diverged (Caffe killed) when the run went wrong, ToolFailed (one line, naming log_path) when Caffe fails."""
    last_summary = time.monotonic()
    stopped_early = interrupted = False
    health = logs.Health()
    written: Path | None = None

    with tqdm(total=max_iter, initial=start_iter, unit="it", desc=log_path.parent.name, disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def on_line(line: str) -> None:
            nonlocal last_summary, stopped_early, written
            health.feed(line)
            if health.diverged:
                raise Diverged(health.diverged[0], f"{health.diverged[1]} at iteration {health.diverged[0]}")
            if health.saturated:
                raise Diverged(health.saturated[0], health.saturation())
            glog = logs.GLOG_PREFIX.match(line.rstrip("\n"))
            if not glog:
                return
            message = glog.group(2)
            if match := ITERATION.match(message):
                bar.update(max(0, int(match[1]) - bar.n))
                if message.endswith("Testing net (#0)"):     # the tests' Ctrl-C: in a test pass, where
                    ctrl_c_point("training")                # Caffe's snapshot comes before any further update
            if match := logs.TRAIN_LOSS.match(message):
                bar.set_postfix(loss=float(match[2]))
            elif message.startswith(SNAPSHOT_MODEL):
                written = Path(message[len(SNAPSHOT_MODEL):].strip())
                bar.update(max(0, snapshot_iteration(written) - bar.n))
            elif message.startswith(SNAPSHOT_STATE) and written is not None and check_snapshot is not None:
                bar.set_postfix_str(f"checking {written.name}")
                ctrl_c_point("snapshot check")
                if problem := check_snapshot(written):
                    at = snapshot_iteration(written)
                    raise Diverged(at, f"the snapshot of iteration {at}, {written.name}, {problem}")
            if logs.TEST_OUTPUT.match(message) or message.startswith(("Snapshotting to", "Resuming from")) \
                    or message == "Optimization stopped early." or line.startswith(("E", "F")):
                tqdm.write(message, file=sys.stderr)
            stopped_early |= message == "Optimization stopped early."
            if time.monotonic() - last_summary > SUMMARY_EVERY_S:
                write_train_summary(log_path, accuracy_blob=accuracy_blob)
                last_summary = time.monotonic()

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            tqdm.write("ilgnet train: interrupt: Caffe snapshots and stops after the current iteration",
                       file=sys.stderr)

        with open(log_path, "a") as log:
            log.write(f"{logs.RUN_MARKER} {' '.join(command)}\n")
        try:
            run_logged(command, log_path=log_path, on_line=on_line, on_sigint=on_sigint, keep=False)
        except Diverged:
            write_train_summary(log_path, accuracy_blob=accuracy_blob)
            raise
        except ToolFailed:
            if not interrupted:
                raise
            # The interrupt reached Caffe before its own handler was set (while it started): it ended without a
            # snapshot. An interruption, not a failure.
            write_train_summary(log_path, accuracy_blob=accuracy_blob)
            raise KeyboardInterrupt from None
    write_train_summary(log_path, accuracy_blob=accuracy_blob)
    return stopped_early or interrupted
