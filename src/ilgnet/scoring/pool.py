"""Scorers in several processes: on a CPU, what makes `ilgnet predict` fast.

Caffe's pooling, LRN and ReLU layers run on one thread, so a single net leaves the other cores idle for much of
each forward pass; a few processes, each with its own net and its share of the BLAS threads, fill them. The same
holds, less so, for OpenCV's dnn module (the opencv backend), whose thread pool is split the same way.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet import defaults
from ilgnet.bvlc.io import load_mean
from ilgnet.bvlc.tools import import_caffe
from ilgnet.errors import ToolFailed
from ilgnet.fileio import require
from ilgnet.pools import cpu_count, pool_size, process_pool, shutdown
from ilgnet.scoring.backends import pick_backend
from ilgnet.scoring.scorer import Scorer, Skipped, batched, check_weights, onnx_weights, score_table, scoring_model
from ilgnet.zoo.models import Model

_worker_scorer: Scorer | None = None


def default_workers(backend: str, ray: bool = False) -> int:
    """Processes a pool runs by default: one for onnxruntime, whose own threads fill the cores (one process scored
    11 % faster than two in tools/bench_predict.py, with half the memory), else the CPUs, at most
    defaults.MAX_SCORE_WORKERS; Ray actors take one CPU each, so as many of them whatever the backend."""
    return 1 if backend == "onnxruntime" and not ray else min(defaults.MAX_SCORE_WORKERS, cpu_count())


def _start_worker(options: dict, blas_threads: int) -> None:
    """Process-pool initializer: this process's own Scorer, with Caffe's BLAS and OpenCV's thread pool limited to its
    share of the cores (OpenBLAS reads the variable when pycaffe first loads it, which happens in Scorer())."""
    import cv2

    global _worker_scorer
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(blas_threads)
    cv2.setNumThreads(blas_threads)
    _worker_scorer = Scorer(**options, jobs=0)


def _score_chunk(paths: list[str]) -> tuple[list[tuple[str, float]], list[Skipped]]:
    table, skipped = _worker_scorer.score_files(paths)
    return list(zip(table.path, table.p_high)), skipped


class ScorerPool:
    """Scorer(**options) spread over `workers` processes, each with its own copy of the net and cores // workers
    BLAS threads (`backend` is the backend they run, auto resolved); `score_files` gives the same result as
    Scorer.score_files, faster on a CPU: Caffe runs pooling,
    LRN and ReLU layers on one thread, so one net leaves cores idle for much of each forward pass. Each process takes
    whole batches and decodes its own photos. With one worker, or on a GPU, it is a Scorer in this process.

    Processes are forked from a forkserver (ilgnet.pools: a Ctrl-C reaches this process only), so a script using
    more than one worker needs the usual `if __name__ == "__main__":` guard.

    >>> with ScorerPool(2, weights="my.caffemodel", mean="mean.binaryproto") as pool:
    ...     table, skipped = pool.score_files(paths)
    """

    def __init__(self, workers: int, **options):
        self.batch_size = options.get("batch_size", defaults.SCORE_BATCH)
        self.workers = max(1, workers)
        self._executor = self._scorer = None
        if self.workers == 1 or options.get("gpu") is not None:
            self._scorer = Scorer(**options)
            self.backend = self._scorer.backend
            return
        model = scoring_model(options.pop("weights"), mean=options.pop("mean", None),
                              variant=options.pop("variant", None))
        if options.get("deploy") is not None:
            require(options["deploy"], what="deploy file")
        self.backend = pick_backend(options.get("backend", "auto"), model.weights)
        options = {**options, "backend": self.backend}
        if self.backend == "caffe":
            import_caffe()                  # a missing Caffe is one error here, not a process dying in the pool
        if options.get("check", True):
            check_weights(model.weights, deploy=options.get("deploy"), variant=model.variant)
            options = {**options, "check": False}          # checked once here, not again in every process
        if self.backend == "onnxruntime":   # exported once here (or found from before), not in every process
            model = replace(model, weights=onnx_weights(model.weights, deploy=options.get("deploy"),
                                                        variant=model.variant))
        if not isinstance(model.mean, np.ndarray):
            load_mean(model.mean)           # a bad mean file is one error here; each process reads it again
        threads = max(1, cpu_count() // self.workers)
        self._executor = process_pool(self.workers, preload=["numpy", "cv2", __name__], initializer=_start_worker,
                                      initargs=({**options, "weights": model}, threads))

    @classmethod
    def from_model(cls, model: Model, workers: int | None = None, *, photos: int, backend: str = "auto",
                   **options) -> ScorerPool:
        """A pool scoring with a resolved `model` (ilgnet.zoo.models.resolve_model): its backend picked once, here
        (pick_backend), and `workers` processes (default: default_workers for that backend), never more than one
        per batch of `photos` nor what ilgnet.pools.pool_size allows. `pool.backend` says which backend runs."""
        backend = pick_backend(backend, model.weights)
        batches = -(-photos // options.get("batch_size", defaults.SCORE_BATCH))
        return cls(pool_size(workers or default_workers(backend), batches), weights=model, backend=backend, **options)

    def score_files(self, paths: Iterable[Path | str], *, progress: bool = False) -> tuple[pd.DataFrame, list[Skipped]]:
        """As Scorer.score_files: DataFrame (path, p_high, label) in input order, and the files skipped."""
        if self._scorer is not None:
            return self._scorer.score_files(paths, progress=progress)
        from concurrent.futures.process import BrokenProcessPool

        from tqdm import tqdm

        paths = [str(p) for p in paths]
        chunks = list(batched(paths, self.batch_size))
        rows: list[tuple[str, float]] = []
        skipped: list[Skipped] = []
        try:
            with tqdm(total=len(paths), unit="img", disable=not progress, desc="scoring") as bar:
                for chunk_rows, chunk_skipped in self._executor.map(_score_chunk, chunks):
                    rows.extend(chunk_rows)
                    skipped.extend(chunk_skipped)
                    bar.update(len(chunk_rows) + len(chunk_skipped))
        except BrokenProcessPool as err:
            raise ToolFailed(f"a scoring process died ({err}); Caffe's message is above. With one worker the "
                             f"problem shows in this process") from err
        return score_table(rows, self.backend), skipped

    def close(self) -> None:
        """Stops the worker processes once their running batches are done; batches not started are dropped."""
        if self._executor is not None:
            shutdown(self._executor)

    def __enter__(self) -> "ScorerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
