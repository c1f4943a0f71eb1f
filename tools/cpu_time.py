"""Wall time and the CPU seconds of a command and of every process it starts, orphaned ones included.

`time` (and pytest's own timings) count a child's CPU only once its parent waits for it, so the forkserver that
ilgnet.pools starts, the pools it forks and any daemon a test leaves behind are missed. A child subreaper (Linux's
prctl PR_SET_CHILD_SUBREAPER) is handed every descendant that outlives its parent and reaps it, so RUSAGE_CHILDREN
counts them all. On a machine shared with other work, user+sys is the fairer figure; wall time is what an idle
machine would show only when it is idle. The command line prints one line on stderr and exits with the command's
status; tools/bench_lmdb.py uses the same helpers.

    .venv/bin/python tools/cpu_time.py make test-fast
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphaned descendants are reparented to this process, which waits for them


def become_subreaper() -> None:
    """Makes this process the reaper of its orphaned descendants. Raises OSError where Linux refuses."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def children_cpu() -> float:
    """user + sys seconds of every descendant reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_all(timeout: float = 60) -> None:
    """Waits for every descendant left (a forkserver ends soon after the process that started it). Raises
    SystemExit when one is still running `timeout` seconds on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    raise SystemExit(f"a process the command started has not ended {timeout:g} s after it")
                time.sleep(0.01)
        except ChildProcessError:           # none left
            return


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: cpu_time.py COMMAND [ARG ...]", file=sys.stderr)
        return 2
    try:
        become_subreaper()
        start = time.monotonic()
        status = subprocess.run(argv).returncode
    except OSError as error:
        print(f"cpu_time.py: error: {argv[0]}: {error.strerror}", file=sys.stderr)
        return 1
    wall = time.monotonic() - start
    reap_all()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"cpu_time.py: wall {wall:.1f} s, all descendants gone at {time.monotonic() - start:.1f} s; CPU of all "
          f"processes: user {used.ru_utime:.1f} s + sys {used.ru_stime:.1f} s = {used.ru_utime + used.ru_stime:.1f} s",
          file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
