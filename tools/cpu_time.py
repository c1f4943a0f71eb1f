"""Wall time and the CPU seconds of a command and of every process it starts, orphaned ones included.

`time` (and pytest's own timings) count a child's CPU only once its parent waits for it, so the forkserver that
ilgnet.pools starts, the pools it forks and any daemon a test leaves behind are missed. Here this process is made a
child subreaper (Linux prctl PR_SET_CHILD_SUBREAPER): every descendant that outlives its parent is handed to it and
reaped, so RUSAGE_CHILDREN counts them all. On a machine shared with other work, user+sys is the fairer figure;
wall time is what an idle machine would show only when it is idle. Prints one line on stderr; exits with the
command's status.

    .venv/bin/python tools/cpu_time.py make test-fast
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: cpu_time.py COMMAND [ARG ...]", file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"cpu_time.py: error: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)
        return 1
    start = time.monotonic()
    try:
        status = subprocess.run(argv).returncode
    except OSError as error:
        print(f"cpu_time.py: error: cannot run {argv[0]}: {error.strerror}", file=sys.stderr)
        return 1
    wall = time.monotonic() - start
    while True:                              # the orphans handed to this process, until none is left
        try:
            os.wait()
        except ChildProcessError:
            break
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"cpu_time.py: wall {wall:.1f} s, all descendants gone at {time.monotonic() - start:.1f} s; CPU of all "
          f"processes: user {used.ru_utime:.1f} s + sys {used.ru_stime:.1f} s = {used.ru_utime + used.ru_stime:.1f} s",
          file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
