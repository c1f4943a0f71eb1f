"""A model evaluated on a data folder's val LMDB: every record scored once, by either engine, and everything read
off the results (`evaluate` -> `Evaluation`). `ilgnet test`, a campaign's runs and `ilgnet demo` all evaluate with
it, so their evaluation.json files hold the same keys (`Evaluation.to_json`)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ilgnet import defaults
from ilgnet.bvlc.io import record_shape
from ilgnet.data.folder import DataFolder
from ilgnet.evaluation import caffe_engine, in_process
from ilgnet.evaluation.reports import PAPER
from ilgnet.evaluation.results import against_means_and_training, prefix_protocol, summarize
from ilgnet.fileio import require
from ilgnet.zoo.models import Model, check_mean_size, mean_name

ENGINES = ("pycaffe", "caffe")
PAPER_PROTOCOLS = ("prefix", "caffe")


@dataclass(frozen=True)
class Coverage:
    """The data folder's val list against its LMDB: images `listed` in `file`, how many of them are `not_in_lmdb`
    (ilgnet.data.folder.DataFolder.unreached)."""
    file: Path
    listed: int
    not_in_lmdb: int


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` measured. `summary` is ilgnet.evaluation.results.summarize's dict (what was scored and how,
    and ilgnet.evaluation.metrics.metrics); `frame` the per-record results table (key, label, predicted, p_k, in
    LMDB order). The optional parts are None where not measured or not known: `coverage` without a val list,
    `paper` (the paper's figure, reports.PAPER) without a protocol, `paper_protocol` (the authors' 50-iteration
    `caffe test` measure: read off the frame, or run) unless asked, `correlations` (SRCC/PLCC of p_high against
    val_means.csv; None also where fewer than 3 means are known, with `means` then set) and `train_overlap` (the
    val images in the model's training list) where the model's training list is unknown."""
    summary: dict
    engine: str
    seconds: float
    """Scoring time in seconds: the net loaded and every record read and forwarded."""
    device: str
    """"CPU" or "GPU <id>"."""
    backend: str | None
    """What ran the net in process (caffe, onnxruntime, opencv); None for the `caffe test` engine."""
    frame: pd.DataFrame = field(repr=False, compare=False)
    coverage: Coverage | None = None
    paper: dict | None = None
    paper_protocol: dict | None = None
    means: Path | None = None
    correlations: dict | None = None
    train_overlap: dict | None = None

    @property
    def images(self) -> int:
        return self.summary["images"]

    @property
    def accuracy(self) -> float:
        return self.summary["accuracy"]

    @property
    def balanced_accuracy(self) -> float:
        return self.summary["balanced_accuracy"]

    @property
    def roc_auc(self) -> float | None:
        return self.summary["roc_auc"]

    @property
    def majority_baseline(self) -> dict:
        """{"class": the most frequent label, "accuracy": always predicting it}."""
        return self.summary["majority_baseline"]

    def to_json(self) -> dict:
        """The JSON-ready dict of `ilgnet test --json` and a campaign's evaluation.json: the summary's keys, then
        engine, scoring (seconds, images, batch, device, backend), and where measured or known val_list, paper,
        paper_protocol, correlations and train_overlap."""
        result = {**self.summary, "engine": self.engine,
                  "scoring": {"seconds": self.seconds, "images": self.images, "batch": self.summary["batch"],
                              "device": self.device, "backend": self.backend}}
        if self.coverage is not None:
            result["val_list"] = {"file": str(self.coverage.file), "listed": self.coverage.listed,
                                  "not_in_lmdb": self.coverage.not_in_lmdb}
        optional = {"paper": self.paper, "paper_protocol": self.paper_protocol, "train_overlap": self.train_overlap}
        result.update({key: value for key, value in optional.items() if value is not None})
        if self.means is not None:
            result["correlations"] = self.correlations
        return result


def with_data_mean(model: Model, data: DataFolder) -> Model:
    """`model` with the mean image it is scored with: its own, else the data folder's mean.binaryproto."""
    return model if model.mean is not None else replace(model, mean=data.mean_binaryproto)


def evaluate(model: Model, data: DataFolder, *, batch: int = defaults.VAL_BATCH, engine: str = "pycaffe",
             backend: str = "caffe", gpu: int | None = None, docker: bool = False, protocol: str | None = None,
             paper_protocol: str | None = None, check: bool = True, progress: bool = True,
             on_batch: Callable | None = None) -> Evaluation:
    """Scores every record of `data`'s val LMDB once with a resolved `model` (ilgnet.zoo.models.resolve_model; its
    own mean, else the data folder's) at `batch`: in this process by `backend` (engine "pycaffe":
    ilgnet.evaluation.in_process, `check`ing the weights against the net first, `on_batch` called after each
    forward pass) or by the `caffe test` binary (engine "caffe": ilgnet.evaluation.caffe_engine, in Docker with
    `docker`), on the CPU or GPU `gpu`. `protocol` (ava1, ava2: reports.PAPER) sets the paper's figure beside it;
    `paper_protocol` also measures the authors' 50 `caffe test` iterations: "prefix" reads them off the results,
    "caffe" runs the binary (a .binaryproto mean). Adds the val list's coverage, SRCC/PLCC against the data
    folder's val_means.csv and the training-list overlap where those are known.

    Raises MissingFile (no val LMDB or mean), BadInput (a mean of another size than the records or than the
    model's training photos; a mean `caffe test` cannot read; a record the net cannot take) before anything is
    scored, ValueError for an unknown engine or a paper protocol without `protocol`, and whatever the engines
    raise."""
    if engine not in ENGINES or paper_protocol not in (None, *PAPER_PROTOCOLS):
        raise ValueError(f"engine {engine!r}, paper protocol {paper_protocol!r}: not among {ENGINES}, "
                         f"{PAPER_PROTOCOLS}")
    if paper_protocol is not None and protocol not in PAPER:
        raise ValueError(f"paper protocol {paper_protocol!r} needs a protocol among {', '.join(PAPER)}")
    model, lmdb = with_data_mean(model, data), data.lmdb("val")
    require(lmdb, folder=True)
    if isinstance(model.mean, Path):
        require(model.mean)
    check_mean_size(model, records=record_shape(lmdb), lmdb=lmdb)
    if "caffe" in (engine, paper_protocol):
        caffe_engine.check_mean(model.mean)        # before any scoring, not after the in-process pass
    started = time.perf_counter()
    if engine == "caffe":
        frame = caffe_engine.score_lmdb(model.variant, model.weights, lmdb, model.mean, batch, gpu=gpu, docker=docker)
    else:
        frame = in_process.score_lmdb(model, lmdb, batch, gpu=gpu, progress=progress, check=check,
                                      on_batch=on_batch, backend=backend)
    seconds = time.perf_counter() - started
    paper = PAPER.get(protocol or "")
    measured = None
    if paper_protocol == "prefix":
        measured = prefix_protocol(frame, batch=paper["batch"], iterations=paper["iterations"])
    elif paper_protocol == "caffe":
        measured = caffe_engine.paper_protocol(model.variant, model.weights, lmdb, model.mean, batch=paper["batch"],
                                               iterations=paper["iterations"], gpu=gpu, docker=docker)
    known = against_means_and_training(frame, data, model.train_list)
    unreached = data.unreached("val")
    return Evaluation(
        summarize(frame, variant=model.variant, weights=model.weights, lmdb_path=lmdb, mean_file=mean_name(model)),
        engine, seconds, "CPU" if gpu is None else f"GPU {gpu}", frame.attrs.get("backend"), frame,
        coverage=Coverage(data.list_file("val"), *unreached) if unreached else None,
        paper={"protocol": protocol, **paper} if paper else None, paper_protocol=measured,
        means=data.val_means if "correlations" in known else None, correlations=known.get("correlations"),
        train_overlap=known.get("train_overlap"))
