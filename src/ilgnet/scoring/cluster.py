"""Scoring on a Ray cluster (or a local Ray runtime) with Ray Data: the photo paths become a dataset, a pool of
actors each holding one Scorer scores it batch by batch as the batches stream through, and the rows come back to
the caller in input order, with the files that could not be read, as from Scorer.score_files.

Every node must see the photos, the caffemodel, the mean and the deploy file (if any) at the same paths (shared
storage) and have this package installed with its backend. The weights are checked against the net and the mean
read once, here, before any actor starts. Ray is an optional dependency: `pip install 'ilgnet[ray]'`.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.bvlc.io import load_mean
from ilgnet.defaults import RAY_INSTALL
from ilgnet.errors import BadInput, MissingPackage, ToolFailed, UserError
from ilgnet.scoring.backends import pick_backend
from ilgnet.scoring.scorer import Scorer, Skipped, check_weights, onnx_weights, score_table, scoring_model


def import_ray():
    """The ray module; MissingPackage, saying how to install it, when it is absent."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the `data` extra of ray)
    except ImportError as err:
        raise MissingPackage(f"scoring with Ray needs Ray Data ({err}): {RAY_INSTALL}") from None
    return ray


REACH_TIMEOUT_S = 5


def check_address(address: str | None) -> None:
    """BadInput (about "address") unless `address` is a Ray address: auto, HOST:PORT or ray://HOST:PORT (None or
    "" for a local Ray runtime)."""
    if address and not (address == "auto" or "://" in address or re.fullmatch(r"[\w.-]+:\d+", address)):
        raise BadInput(f"{address}: not a Ray address (auto, HOST:PORT or ray://HOST:PORT)", about="address")


def check_reachable(address: str | None, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """ToolFailed, in one line naming `address`, when a Ray address HOST:PORT or ray://HOST:PORT takes no TCP
    connection within `timeout_s` (Ray itself would retry for minutes); MissingPackage when a ray:// address (Ray
    Client) finds no grpcio, which Ray Client needs and the `ray` extra does not install (`ray[client]` does);
    nothing for a local runtime ("" or None) or "auto", which Ray resolves itself."""
    if not address or address == "auto":
        return
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise MissingPackage(f"{address}: a ray:// address is served by Ray Client, which needs grpcio: pip install "
                             f"'ray[client]', or give the head node's GCS address HOST:6379 instead")
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as err:
        why = "no answer" if isinstance(err, TimeoutError) else getattr(err, "strerror", None) or str(err)
        raise ToolFailed(f"cannot reach the Ray cluster at {address}: {why} (within {timeout_s:g} s); check the "
                         f"address and that the head node is up (`ray status` there)") from None


def connect(ray, address: str | None) -> bool:
    """Connects `ray` (the module) to the cluster at `address` (check_address, check_reachable first), or to a local
    runtime it starts for an empty `address`; True when it connected here (the caller then shuts Ray down), False
    when this process was connected already. ToolFailed, in one line, when Ray cannot connect."""
    if ray.is_initialized():
        return False
    check_address(address)
    check_reachable(address)
    try:
        ray.init(address=address or None, logging_level="WARNING", include_dashboard=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise ToolFailed(f"cannot reach {where}: {str(err).strip().splitlines()[0]}") from None
    return True


class ScorerActor:
    """A Ray actor's Scorer: made once when the actor starts, with `threads` for OpenCV's and OpenBLAS's pools (the
    CPUs Ray gives the actor), then called on batches {"path": array of str}. Returns {"path", "p_high" (NaN for a
    skipped file), "reason" ("" for a scored one)} in the batch's order."""

    def __init__(self, options: dict, threads: int):
        import cv2

        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)
        cv2.setNumThreads(threads)
        self.scorer = Scorer(**options, jobs=threads, check=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        table, skipped = self.scorer.score_files(paths)
        p_high = dict(zip(table.path, table.p_high))
        reasons = {item.path: item.reason for item in skipped}
        return {"path": np.array(paths, dtype=object),
                "p_high": np.array([p_high.get(p, np.nan) for p in paths], np.float64),
                "reason": np.array([reasons.get(p, "") for p in paths], dtype=object)}


def score_with_ray(paths: Iterable[Path | str], *, address: str | None = None, actors: int = 1,
                   actor_cpus: float = 1, actor_gpus: float = 0, batch_size: int = 16, progress: bool = False,
                   **options) -> tuple[pd.DataFrame, list[Skipped]]:
    """Scores image files with `actors` Ray actors, each holding Scorer(**options) (weights: a resolved Model or a
    file, mean, variant, deploy, backend, oversample; batch_size goes to both the Scorer and Ray's batches) with
    `actor_cpus` CPUs and `actor_gpus` GPUs (1: each actor runs the net on a GPU of its own; caffe or onnxruntime
    backend). The backend (auto by default) is chosen here, on the machine that calls, and every actor runs that
    one; table.attrs["backend"] names it.

    Connects to the Ray cluster at `address` ("auto", "ray://host:10001", ...) or, without one, to the runtime
    this process already started, else starts a local one (then shut down at the end). Returns what
    Scorer.score_files returns: DataFrame (path, p_high, label) in input order and the Skipped files. Raises
    MissingPackage without Ray, the Scorer's errors as they are (whichever actor met them) and ToolFailed when Ray
    itself fails or the cluster cannot be reached (an unreachable address may make Ray retry for minutes first)."""
    ray = import_ray()
    paths = [str(p) for p in paths]
    model = scoring_model(options.pop("weights"), mean=options.pop("mean", None), variant=options.pop("variant", None))
    check_weights(model.weights, deploy=options.get("deploy"), variant=model.variant)
    if not isinstance(model.mean, np.ndarray):
        load_mean(model.mean)
    backend = pick_backend(options.get("backend", "auto"), model.weights)
    if backend == "onnxruntime":        # exported once here (or found from before), not by every actor
        model = replace(model, weights=onnx_weights(model.weights, deploy=options.get("deploy"), variant=model.variant))
    options = {**options, "weights": model, "batch_size": batch_size, "gpu": 0 if actor_gpus else None,
               "backend": backend}
    started = connect(ray, address)
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    try:
        dataset = ray.data.from_items([{"path": p} for p in paths]).map_batches(
            ScorerActor, fn_constructor_kwargs={"options": options, "threads": max(1, int(actor_cpus))},
            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=actor_cpus, num_gpus=actor_gpus)
        rows, skipped = [], []
        for batch in dataset.iter_batches(batch_format="pandas", batch_size=None):
            for path, p_high, reason in zip(batch.path, batch.p_high, batch.reason):
                if reason:
                    skipped.append(Skipped(path, reason))
                else:
                    rows.append((path, float(p_high)))
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, UserError):
            raise cause from None
        raise ToolFailed(f"Ray failed: {str(err).strip().splitlines()[-1]}") from err
    finally:
        if started:
            ray.shutdown()
    return score_table(rows, backend), skipped
