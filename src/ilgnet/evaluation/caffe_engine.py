"""`caffe test`, the binary itself, made to read every record of a val LMDB exactly once.

`caffe test -iterations K` reads batch x K records, wrapping around past the end of the LMDB. So the TEST batch is
one that divides the record count (ilgnet.nets.solvers.val_batch_for); where only a poor divisor exists (a prime count),
the first run reads batch x floor(N / batch) records and a second run reads the rest from a small LMDB holding
just those records. The net is the variant's train_val with two outputs added that `caffe test` logs element by
element: the Softmax probabilities and the labels (through an identity Power layer); the per-record results come
out of the log, in LMDB order, as the in-process engine (ilgnet.evaluation.in_process.score_lmdb) gives them.
A progress bar follows `caffe test`'s own output as it comes: the weights loading, then its `Batch N` lines.
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tqdm import tqdm

from ilgnet.bvlc.io import lmdb_size, load_mean
from ilgnet.bvlc.proto import to_text
from ilgnet.bvlc.tools import caffe_invocation, docker_image, require_gpus, run_logged
from ilgnet.errors import BadInput
from ilgnet.fileio import reading
from ilgnet.evaluation.results import results_table
from ilgnet.nets import deploy, get_variant, train_val
from ilgnet.nets.solvers import val_batch_for
from ilgnet.bvlc.fit import check_fits
from ilgnet.zoo.registry import trained_layers

PROB, LABEL = "record/prob", "record/label"
BATCH_LINE = re.compile(r"\] Batch (\d+), (\S+) = (\S+)\s*$", re.M)
FINAL_LINE = re.compile(r"caffe\.cpp:\d+\] ([^\s,]+) = (\S+)", re.M)
RUNNING = "Running for "        # `caffe test`, once the net and its weights are loaded


@dataclass(frozen=True)
class Coverage:
    """How `caffe test` covers N records: `iterations` batches of `batch`, then one batch of `remainder` (0: none)."""
    batch: int
    iterations: int
    remainder: int


def coverage(records: int, max_batch: int) -> Coverage:
    """The TEST batch (at most `max_batch`, dividing `records` where a good divisor exists) and runs covering every
    record once: coverage(25_553, 50) is 1,111 batches of 23; coverage(11, 8) one batch of 8, then one of 3."""
    batch = val_batch_for(records, max_batch)
    return Coverage(batch, records // batch, records % batch)


def test_net(variant: str, lmdb: Path, mean: Path, batch: int):
    """The variant's train_val reading `lmdb` at `batch` in its TEST phase, with the per-record outputs added."""
    net = train_val(variant, train_lmdb=lmdb, val_lmdb=lmdb, mean_file=mean, train_batch=batch, val_batch=batch)
    logits = deploy(variant).layer[-1].bottom[0]
    net.layer.add(name=PROB, type="Softmax", bottom=[logits], top=[PROB])
    net.layer.add(name=LABEL, type="Power", bottom=["label"], top=[LABEL])
    return net


def _run(net, weights: Path, iterations: int, work: Path, *, gpu: int | None, docker: bool, mounts: list[Path],
         progress: bool = True, label: str = "caffe test") -> str:
    """The log of one `caffe test` run of `net`, with a progress bar (`label`) over its batches as Caffe logs them,
    saying first that it loads the weights."""
    model = work / f"test_{len(list(work.glob('test_*.prototxt')))}.prototxt"
    model.write_text(to_text(net))
    args = ["test", "-model", model, "-weights", Path(weights).resolve(), "-iterations", iterations]
    command = caffe_invocation(args, gpu=None if gpu is None else str(gpu), docker=docker,
                               mounts=[work, *mounts])
    # mininterval 0: every batch Caffe logs is drawn (a batch takes tens of milliseconds at least; tqdm's default
    # would skip batches that come within 0.1 s of each other)
    with tqdm(total=iterations, desc=label, unit="batch", file=sys.stderr, disable=None if progress else True,
              dynamic_ncols=True, mininterval=0) as bar:
        bar.set_postfix_str(f"loading {Path(weights).name} ({Path(weights).stat().st_size / 1e6:,.0f} MB)")

        def on_line(line: str) -> None:
            if RUNNING in line:
                bar.set_postfix_str("")
            elif match := BATCH_LINE.search(line):
                bar.update(int(match[1]) + 1 - bar.n)

        return run_logged(command, on_line=on_line).stdout


def _check_engine(gpu: int | None, docker: bool, mounts: list[Path]) -> None:
    """Before any work: the Docker image is there and `mounts` can be mounted in it (for a run in Docker; Caffe here
    is not needed then), and the GPU is (for a GPU run)."""
    if docker:
        docker_image(gpu=gpu is not None, mounts=mounts)
    if gpu is not None:
        require_gpus(gpu, docker=docker)


def _mounts(lmdb_path: Path, mean_file: Path, weights: Path) -> list[Path]:
    """The folders `caffe test` reads in the Docker image: those of the LMDB, the mean and the weights."""
    return [Path(path).resolve().parent for path in (lmdb_path, mean_file, weights)]


def _copy_tail(lmdb_path: Path, skip: int, dest: Path) -> None:
    """An LMDB of the records of `lmdb_path` after the first `skip`, keys and values as they are."""
    import lmdb

    with lmdb.open(str(lmdb_path), readonly=True, lock=False) as source, \
            lmdb.open(str(dest), map_size=1 << 30) as target, source.begin() as read, target.begin(write=True) as write:
        for i, (key, value) in enumerate(read.cursor()):
            if i >= skip:
                write.put(key, value)


def _keys(lmdb_path: Path) -> list[str]:
    import lmdb

    with lmdb.open(str(lmdb_path), readonly=True, lock=False) as env, env.begin() as txn:
        return [key.decode(errors="replace") for key in txn.cursor().iternext(keys=True, values=False)]


def _batches(log: str, name: str) -> list[float]:
    return [float(value) for _, output, value in BATCH_LINE.findall(log) if output == name]


def check_mean(mean_file: Path) -> None:
    """Caffe's Data layer reads a .binaryproto mean only, and aborts on any other; a NaN mean scores NaN."""
    load_mean(mean_file)
    if Path(mean_file).suffix == ".npy":
        raise BadInput(f"{mean_file}: `caffe test` reads a mean from a .binaryproto only (the pycaffe engine reads "
                       f".npy too)")


def score_lmdb(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, max_batch: int, *,
               gpu: int | None = None, docker: bool = False, progress: bool = True) -> pd.DataFrame:
    """Per-record results of `caffe test` over every record once: ilgnet.evaluation.results.results_table in LMDB
    order, as the pycaffe engine gives them (frame.attrs["batch"]: the TEST batch used), with a progress bar per
    run. The weights are checked against the net first (ilgnet.bvlc.fit); raises BadInput when the log does not
    account for every record."""
    v = get_variant(variant)
    records = lmdb_size(lmdb_path)
    mounts = _mounts(lmdb_path, mean_file, weights)
    _check_engine(gpu, docker, mounts)
    plan = coverage(records, max_batch)
    check_mean(mean_file)
    with reading(weights, "checking", progress=progress):
        check_fits(weights, test_net(v.name, lmdb_path, mean_file, 1), allowed_unused=trained_layers(v.name))
    work = Path(tempfile.mkdtemp(prefix="ilgnet-caffe-test-"))
    try:
        runs = [(lmdb_path.resolve(), plan.batch, plan.iterations)] if plan.iterations else []
        if plan.remainder:
            _copy_tail(lmdb_path, plan.batch * plan.iterations, work / "remainder_lmdb")
            runs.append((work / "remainder_lmdb", plan.remainder, 1))
        logs = [_run(test_net(v.name, source, Path(mean_file).resolve(), batch), weights, iterations, work,
                     gpu=gpu, docker=docker, mounts=mounts, progress=progress,
                     label=f"caffe test, {iterations:,} x {batch}") for source, batch, iterations in runs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    probs = np.array([p for log in logs for p in _batches(log, PROB)], np.float32)
    labels = [int(label) for log in logs for label in _batches(log, LABEL)]
    if len(labels) != records or len(probs) % records:
        raise BadInput(f"{lmdb_path}: caffe test reported {len(labels)} records of {records}")
    return results_table(_keys(lmdb_path), labels, probs, batch=plan.batch)


def paper_protocol(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, *, batch: int, iterations: int,
                   gpu: int | None = None, docker: bool = False, progress: bool = True) -> dict:
    """The authors' own measurement: `caffe test` for `iterations` at `batch` (the first batch x iterations
    records, wrapping around the LMDB), with a progress bar; returns the images read, Caffe's accuracy and loss."""
    v = get_variant(variant)
    check_mean(mean_file)
    mounts = _mounts(lmdb_path, mean_file, weights)
    _check_engine(gpu, docker, mounts)
    net = train_val(v.name, train_lmdb=lmdb_path.resolve(), val_lmdb=lmdb_path.resolve(),
                    mean_file=Path(mean_file).resolve(), train_batch=batch, val_batch=batch)
    work = Path(tempfile.mkdtemp(prefix="ilgnet-caffe-test-"))
    try:
        log = _run(net, weights, iterations, work, gpu=gpu, docker=docker, progress=progress, mounts=mounts,
                   label=f"paper protocol, {iterations} x {batch}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finals = dict(FINAL_LINE.findall(log))
    return {"batch": batch, "iterations": iterations, "images": batch * iterations,
            "records": lmdb_size(lmdb_path), "accuracy": float(finals[v.accuracy_blob]),
            "loss": float(finals[v.loss_blob]) if v.loss_blob in finals else None}
