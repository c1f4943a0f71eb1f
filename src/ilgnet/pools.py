"""Worker processes: how many, and pools of them that a Ctrl-C does not reach.

A Ctrl-C sends SIGINT to the whole process group. Workers that received it would die each with its own traceback
(one still importing NumPy cannot even ignore it yet), so the pools here are forked from a forkserver started with
SIGINT ignored: it and every worker it forks ignore SIGINT from their first instruction. The command alone is
interrupted; it shuts its pool down and reports the interruption once.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# The tests' Ctrl-C at a known point of a long step (ctrl_c_point): the step's name, in the environment.
CTRL_C_AT = "ILGNET_CTRL_C_AT"
PROCESSES_PER_CPU = 4       # at most this many worker processes per CPU, whatever is asked for
WORKER_START_SECONDS = 120  # how long process_pool waits for a worker to start before going on without knowing


def _quota_in(folder: Path) -> float | None:
    """A cgroup folder's CPU limit in CPUs: v2's cpu.max (`QUOTA PERIOD`, or `max`), v1's cpu.cfs_quota_us (-1: none)
    over cpu.cfs_period_us; None without one."""
    try:
        if (folder / "cpu.max").exists():
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        else:
            quota, period = ((folder / f"cpu.cfs_{name}_us").read_text().strip() for name in ("quota", "period"))
        return int(quota) / int(period) if quota not in ("max", "-1") else None
    except (OSError, ValueError, ZeroDivisionError):
        return None


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup and its parents allow, the smallest of their quotas (a
    container's `--cpus 1.5` is 1.5): cgroup v2 (`0::PATH` in /proc/self/cgroup, cpu.max under `root`) or v1 (the
    `cpu` controller's PATH, cpu.cfs_quota_us under `root`/cpu); None where no limit is set or none is readable."""
    try:
        lines = [line.split(":", 2) for line in cgroup.read_text().splitlines() if line.count(":") >= 2]
    except OSError:
        return None
    places = [(root, path) for number, _, path in lines if number == "0"]
    places += [(root / "cpu", path) for number, names, path in lines if number != "0" and "cpu" in names.split(",")]
    limits = []
    for base, path in places:
        folder = base / path.strip().lstrip("/")
        while True:
            if (limit := _quota_in(folder)) is not None:
                limits.append(limit)
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return min(limits) if limits else None


def cpu_count() -> int:
    """The CPUs this process may use: those it may run on (os.sched_getaffinity: taskset, cpusets), fewer where
    its cgroup's quota allows less time than that (cpu_quota, rounded up), at least 1."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def max_processes() -> int:
    """The most worker processes a pool is given: PROCESSES_PER_CPU per CPU."""
    return PROCESSES_PER_CPU * cpu_count()


def pool_size(requested: int | None, tasks: int) -> int:
    """Processes for `tasks` pieces of work: `requested` (default: one per CPU), never more than the tasks nor than
    max_processes(), at least 1."""
    return max(1, min(requested or cpu_count(), tasks, max_processes()))


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """A Ctrl-C during the block is a KeyboardInterrupt at its end, so that it cannot cut a step in two (only the
    main thread receives signals; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _start_forkserver_ignoring_sigint(forkserver) -> None:
    """Starts the forkserver with SIGINT ignored, a disposition that survives fork and exec and that Python keeps,
    so that it and every worker it forks ignore SIGINT from their first instruction. Meanwhile SIGINT is blocked in
    this thread: Linux keeps a blocked signal pending even while it is ignored, and it reaches the handler that was
    in place once unblocked. Only the main thread may change a disposition; elsewhere the forkserver just starts."""
    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, handler)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_forkserver(preload: Sequence[str] = ()) -> None:
    """Starts this process's forkserver, if it is not running, with SIGINT ignored; it imports `preload` (module
    names) in the background, so a command that calls this first has its workers' imports done alongside its own
    by the time process_pool forks them. Only the first start's `preload` counts."""
    from multiprocessing import forkserver

    with sigint_deferred():
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))
        _start_forkserver_ignoring_sigint(forkserver)


def process_pool(workers: int, *, preload: Sequence[str] = (), initializer: Callable | None = None,
                 initargs: tuple = ()):
    """A ProcessPoolExecutor whose `workers` processes are all started and initialised here, forked from a clean
    forkserver (not from this process, which may hold threads) that imported `preload` (module names) once for
    them all, and started with SIGINT ignored, which it and every worker it forks keep. A forkserver is one per
    process: the first pool's `preload` is the one imported.

    A Ctrl-C while the pool starts is raised once every worker has run `initializer`, and the pool is then shut
    down: shut down earlier, it would remove its queues' semaphores under workers still starting (which die with a
    traceback) or leave workers waiting for work forever. Shut it down with `shutdown`."""
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    start_forkserver(preload)
    ready = context.Semaphore(0)
    executor = None
    try:
        with sigint_deferred():
            executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                           initargs=(ready, initializer, initargs))
            # All workers now, not one per submit() as work comes, and the thread that tells them to stop at
            # shutdown, which submit() would start (both private, Python 3.11).
            executor._launch_processes()
            executor._start_executor_manager_thread()
            for _ in range(workers):
                if not ready.acquire(timeout=WORKER_START_SECONDS):
                    break                   # a worker that died starting breaks the pool; its first task says so
    except KeyboardInterrupt:
        if executor is not None:
            shutdown(executor)
        raise
    return executor


def shutdown(executor) -> None:
    """Shuts `executor` down: queued tasks are dropped, running ones finish (a worker ended mid-task could leave
    half a result in the pool's pipe, which its manager thread would wait on forever). A Ctrl-C meanwhile (a second
    one) is raised once it is done: cut short, the shutdown would leave the workers waiting for work, and Python's
    exit waiting on them."""
    with sigint_deferred():
        executor.shutdown(cancel_futures=True)


def _start_worker(ready, initializer: Callable | None, initargs: tuple) -> None:
    """In a worker: `initializer(*initargs)`, then tells process_pool that this worker has started."""
    try:
        if initializer is not None:
            initializer(*initargs)
    finally:
        ready.release()


def ctrl_c_point(step: str) -> None:
    """A point in the middle of `step` (a campaign's "synthetic AVA", "split", "LMDBs", "training", "snapshot
    check", "scoring", "Fig. 5 maps", "report") where the environment's CTRL_C_AT naming it sends SIGINT to this
    process's group, as a terminal's Ctrl-C does (Caffe, run by this process, receives it too). Nothing otherwise:
    the tests interrupt each step at a known point this way instead of racing the clock."""
    if os.environ.get(CTRL_C_AT) == step:
        os.killpg(os.getpgrp(), signal.SIGINT)
