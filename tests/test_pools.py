"""Worker pools: their size, and how they stop on a Ctrl-C (ilgnet.pools)."""
import os
import signal
import threading
import time

import pytest

from ilgnet.pools import max_processes, pool_size, process_pool, shutdown


def test_a_pool_is_never_larger_than_its_work_nor_four_per_cpu():
    assert pool_size(100_000, 3) == 3
    assert pool_size(100_000, 10**9) == max_processes()
    assert pool_size(None, 1) == 1 and pool_size(2, 0) == 1


def test_workers_ignore_sigint_and_a_second_ctrl_c_does_not_cut_the_shutdown_short():
    """The command alone takes a Ctrl-C; a second one during shutdown is raised once the workers have stopped (cut
    short, the shutdown left them waiting for work and the command hanging at exit)."""
    pool = process_pool(1)
    worker = pool.submit(os.getpid).result()
    os.kill(worker, signal.SIGINT)                       # ignored: the worker still answers
    assert pool.submit(os.getpid).result() == worker
    running = pool.submit(time.sleep, 1.0)
    time.sleep(0.2)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        shutdown(pool)
    assert running.done() and running.exception() is None  # the running task finished
    with pytest.raises(ProcessLookupError):              # and the worker has exited
        os.kill(worker, 0)
