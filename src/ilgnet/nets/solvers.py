"""Solver profiles: the paper's Table 1 and the two solver files published with ILGNet.

All profiles use SGD with momentum 0.9, weight decay 2e-4 and the "step" policy (lr = base_lr x 0.96^floor(iter /
stepsize)). The Table 1 profiles test and snapshot every max_iter/100 iterations, and their test_iter is derived
so that one test pass reads each val image once: ceil(val_size / val_batch), exact when val_batch divides
val_size (`val_batch_for` picks such a batch). The published profiles keep the published values; `solver()` warns
when their test_iter x val_batch does not match the val set.

The published files name separate train_net/test_net files; ours point `net` at one train_val.prototxt.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ilgnet.bvlc.proto import SolverParameter
from ilgnet.errors import BadInput, lookup

# Sizes of the published val lists (BestiVictory/ILGnet data/AVA1/val.txt and data/AVA2/val.txt), used when a
# caller gives no val_size.
REFERENCE_VAL_SIZE = {"ava1": 20_000, "ava2": 25_553}


@dataclass(frozen=True)
class Profile:
    """One solver profile: a row of Table 1, or a published solver file's values."""
    name: str
    source: str
    dataset: str
    base_lr: float
    stepsize: int
    max_iter: int
    published_test_iter: int | None = None
    """Fixed test_iter of a published solver; None derives it from the val set."""
    test_interval: int | None = None
    snapshot: int | None = None
    gamma: float = 0.96
    momentum: float = 0.9
    weight_decay: float = 2e-4
    display: int = 20

    @property
    def interval(self) -> int:
        """Iterations between test passes: the published value, else max_iter / 100."""
        return self.test_interval or self.max_iter // 100

    @property
    def snapshot_every(self) -> int:
        """Iterations between snapshots: the published value, else max_iter / 100."""
        return self.snapshot or self.max_iter // 100


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("ava1-delta0", "Table 1, AVA1 with delta = 0", "ava1", base_lr=1e-4, stepsize=100_000, max_iter=475_000),
    Profile("ava1-delta1", "Table 1, AVA1 with delta = 1", "ava1", base_lr=1e-5, stepsize=19_000, max_iter=760_000),
    Profile("ava2", "Table 1, AVA2", "ava2", base_lr=1e-5, stepsize=13_325, max_iter=533_000),
    Profile("published-ava1", "ILGnet solver/AVA1_solver.prototxt", "ava1", base_lr=1e-4, stepsize=115_000,
            max_iter=475_000, published_test_iter=400, test_interval=4_750, snapshot=4_750),
    Profile("published-ava2", "ILGnet solver/AVA2_solver.prototxt", "ava2", base_lr=1e-5, stepsize=13_325,
            max_iter=533_000, published_test_iter=533, test_interval=533, snapshot=5_330),
]}


def get_profile(profile: str | Profile) -> Profile:
    """A Profile, or the one named `profile`; UnknownName for any other name."""
    return profile if isinstance(profile, Profile) else lookup(PROFILES, profile, "solver profile", about="profile")


def val_batch_for(val_size: int, max_batch: int) -> int:
    """The largest val batch up to `max_batch` that divides `val_size`, so a test pass reads each image exactly
    once (25,553 AVA2 val images, max 50 -> 23). When the best divisor is under max_batch / 4 (a prime-ish
    val_size), testing would crawl, so `max_batch` is returned and a pass wraps around into a few images twice."""
    if val_size < 1 or max_batch < 1:
        raise BadInput(f"val_size and max_batch must be positive (got {val_size}, {max_batch})")
    divisor = max(d for d in range(1, min(val_size, max_batch) + 1) if val_size % d == 0)
    return divisor if divisor * 4 >= min(val_size, max_batch) else max_batch


def coverage(test_iter: int, val_batch: int, val_size: int) -> str:
    """One line saying how a test pass of test_iter x val_batch images covers a val set of val_size."""
    read = test_iter * val_batch
    line = f"test_iter {test_iter} x val batch {val_batch} = {read:,} images per test pass"
    if read == val_size:
        return f"{line}: each of the {val_size:,} val images once"
    if read < val_size:
        return f"{line}: {read / val_size:.1%} of the {val_size:,} val images"
    return f"{line}: all {val_size:,} val images, {read - val_size:,} of them twice"


def periods(profile: str | Profile, max_iter: int | None = None) -> tuple[int, int]:
    """(test_interval, snapshot) of a run of `max_iter` iterations (default: the profile's own length): the
    profile's periods scaled to the run's length, so that a shortened run tests and snapshots as often, relative to
    its length, as the full one (2,000 iterations of ava2: every 20). The test interval is at least 1; a snapshot
    period of 0 leaves only the snapshot at the end."""
    p = get_profile(profile)
    max_iter = p.max_iter if max_iter is None else max_iter
    return max(1, p.interval * max_iter // p.max_iter), p.snapshot_every * max_iter // p.max_iter


def solver(profile: str | Profile, *, net, snapshot_prefix, val_size: int | None = None,
           val_batch: int | None = None, mode: str = "GPU", max_iter: int | None = None):
    """A caffe SolverParameter (ilgnet.bvlc.proto) for `profile` training `net` (a train_val.prototxt path).

    val_size defaults to the published val list of the profile's dataset. Table 1 profiles need val_batch (the
    train_val's TEST batch) to derive test_iter; published profiles use it only to warn about coverage. max_iter
    shortens (or lengthens) the run, and with it the test and snapshot periods (`periods`).
    """
    p = get_profile(profile)
    if mode not in ("GPU", "CPU"):
        raise BadInput(f"solver mode must be GPU or CPU, not {mode!r}")
    if max_iter is not None and max_iter < 1:
        raise BadInput(f"max_iter must be positive, got {max_iter}")
    val_size = val_size or REFERENCE_VAL_SIZE[p.dataset]
    if p.published_test_iter:
        test_iter = p.published_test_iter
    elif val_batch:
        test_iter = math.ceil(val_size / val_batch)
    else:
        raise BadInput(f"solver profile {p.name} derives test_iter from the val set: give val_batch")
    if val_batch and test_iter * val_batch != val_size:
        warnings.warn(f"{p.name}: {coverage(test_iter, val_batch, val_size)}", stacklevel=2)
    test_interval, snapshot = periods(p, max_iter)
    return SolverParameter(
        net=str(net), test_iter=[test_iter], test_interval=test_interval, base_lr=p.base_lr, lr_policy="step",
        gamma=p.gamma, stepsize=p.stepsize, max_iter=max_iter or p.max_iter, momentum=p.momentum,
        weight_decay=p.weight_decay, display=p.display, snapshot=snapshot,
        snapshot_prefix=str(snapshot_prefix), type="SGD", solver_mode=mode)
