"""Worker processes: how many, and pools of them that a Ctrl-C does not reach.

A Ctrl-C sends SIGINT to the whole process group. Workers that received it would die each with its own traceback
(one still importing NumPy cannot even ignore it yet), so the pools here are forked from a forkserver started with
SIGINT ignored: it and every worker it forks ignore SIGINT from their first instruction. The command alone is
interrupted; it stops its pool (`stop_pool`) and reports the interruption once.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

PROCESSES_PER_CPU = 4       # at most this many worker processes per CPU, whatever is asked for


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def max_processes() -> int:
    """The most worker processes a pool is given: PROCESSES_PER_CPU per CPU."""
    return PROCESSES_PER_CPU * cpu_count()


def pool_size(requested: int | None, tasks: int) -> int:
    """Processes for `tasks` pieces of work: `requested` (default: one per CPU), never more than the tasks nor than
    max_processes(), at least 1."""
    return max(1, min(requested or cpu_count(), tasks, max_processes()))


@contextmanager
def _sigint_deferred() -> Iterator[None]:
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


def process_pool(workers: int, *, preload: Sequence[str] = (), initializer: Callable | None = None,
                 initargs: tuple = ()):
    """A ProcessPoolExecutor whose `workers` processes are all started here, forked from a clean forkserver (not
    from this process, which may hold threads) that imported `preload` (module names) once for them all. The
    forkserver is started with SIGINT ignored, which it and every worker it forks keep; a Ctrl-C while the workers
    start is raised once they are all started (and then stopped). A forkserver is one per process: the first pool's
    `preload` is the one imported."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    executor = None
    try:
        with _sigint_deferred():
            if threading.current_thread() is threading.main_thread():
                handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
                forkserver.ensure_running()   # an ignored signal stays ignored across fork and exec; Python keeps it
                signal.signal(signal.SIGINT, handler)
            executor = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)
            executor._launch_processes()      # all now (private, Python 3.11), not one per submit() as work comes
    except KeyboardInterrupt:
        if executor is not None:
            stop_pool(executor, at_once=True)
        raise
    return executor


def stop_pool(executor, *, at_once: bool = False) -> None:
    """Shuts `executor` down: queued work is dropped; with `at_once` (after an error or Ctrl-C) running work is too,
    by ending this process's worker processes, instead of waiting for it."""
    if at_once:
        workers = list((executor._processes or {}).values())   # no public way to reach them before Python 3.14
        executor.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
    executor.shutdown(cancel_futures=True)
