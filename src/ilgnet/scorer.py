"""Scoring photos with an ILGNet caffemodel, preprocessed exactly as the net saw its training and test data.

Training and `caffe test` read LMDBs written by convert_imageset (or `ilgnet lmdb`, which matches it): each photo
decoded by OpenCV as 3-channel BGR uint8 and resized to the mean image's size (256x256) with cv::resize's default
bilinear interpolation. Photos are decoded here by the LMDB builder's own decoder (ilgnet.lmdb_builder.decode_image),
so a file `ilgnet lmdb` would skip as unreadable is skipped here too. Caffe's Data layer then, in the TEST phase,
takes the centre crop (offset (256 - 227) / 2 = 14) and subtracts the mean image *at the same offset* (then scales,
for the variants that set transform_param.scale). The Scorer does the same in NumPy, so a photo gets the
probability `caffe test` would give it. `oversample` scores the ten crops of Caffe's classifier example instead
(four corners and the centre, each also mirrored; the mean is taken at each crop's offset and mirroring follows the
subtraction, as in the TRAIN-phase transform) and averages their probabilities.

A Scorer decodes in a pool of threads a few batches ahead of the net (OpenCV releases the GIL while it decodes and
resizes; pycaffe keeps it during a forward pass, so decoding happens between passes). A ScorerPool runs Scorers in
several processes, which on a CPU is what makes `ilgnet predict` fast: Caffe's pooling, LRN and ReLU layers run on
one thread, so a single net leaves the other cores idle for much of each pass.
"""
from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ilgnet.caffe_tools import import_caffe


@dataclass(frozen=True)
class Skipped:
    """A file that could not be scored, and why."""
    path: str
    reason: str


def load_mean(path: Path | str) -> np.ndarray:
    """The mean image (3, H, W) from a Caffe .binaryproto or a NumPy .npy; a .npy of 3 values is a per-channel mean."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean file {path} does not exist")
    if path.suffix == ".npy":
        mean = np.load(path, allow_pickle=False, encoding="latin1")
    else:
        caffe = import_caffe()
        blob = caffe.proto.caffe_pb2.BlobProto()
        try:
            blob.ParseFromString(path.read_bytes())
        except Exception as err:
            raise ValueError(f"{path} is not a Caffe BlobProto (.binaryproto): {err}") from err
        mean = caffe.io.blobproto_to_array(blob)
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.shape == (3,) or (mean.ndim == 3 and mean.shape[0] == 3):
        return mean
    raise ValueError(f"{path}: expected a mean image of shape (3, H, W) or 3 channel values, got {mean.shape}")


def _decode_job(path: str, size: int) -> np.ndarray | str:
    """Decoding task: the photo as `ilgnet lmdb` stores it (BGR uint8, size x size), or why it cannot be read."""
    from ilgnet.lmdb_builder import BadImage, decode_image

    try:
        return decode_image(path, size)
    except BadImage as err:
        return str(err)


def crop_offsets(height: int, width: int, crop: int, oversample: bool) -> list[tuple[int, int]]:
    """(row, column) offsets: the centre crop as Caffe's TEST phase takes it, or the four corners plus the centre."""
    centre = ((height - crop) // 2, (width - crop) // 2)
    if not oversample:
        return [centre]
    return [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop), centre]


def resolve_model(model: str | Path, mean: Path | str | None = None,
                  models: Path = Path("models")) -> tuple[Path, Path | str]:
    """(caffemodel, mean file) for `model`: `ilgnet-ava1` / `ilgnet-ava2` are the authors' models with, unless `mean`
    is given, the published mean image of the same split (both fetched into `models` by ilgnet.weights when
    missing); anything else is a .caffemodel file, and then `mean` is required."""
    from ilgnet import weights as registry

    if str(model) in registry.PUBLISHED_MODELS:
        published = registry.published_model(str(model), models)
        return published.caffemodel, mean or published.mean
    if not Path(model).is_file():
        raise FileNotFoundError(f"model {model}: not {' or '.join(registry.PUBLISHED_MODELS)}, and no such file")
    if mean is None:
        raise ValueError(f"--mean is needed with {model}: the mean image it was trained with "
                         f"(DATA/mean.binaryproto from `ilgnet lmdb`)")
    return Path(model), mean


class Scorer:
    """An ILGNet model ready to score photos: p_high is the softmax probability of class 1 (high aesthetic quality).

    >>> scorer = Scorer.from_model("ilgnet-ava2")           # or Scorer("my.caffemodel", mean="mean.binaryproto")
    >>> table, skipped = scorer.score_files(["a.jpg", "photos/b.jpg"])   # DataFrame(path, p_high, label), [Skipped]
    """

    def __init__(self, weights: Path | str, *, mean: Path | str | np.ndarray, deploy: Path | str | None = None,
                 variant: str = "ilgnet", batch_size: int = 16, oversample: bool = False, jobs: int | None = None,
                 resize: int | None = None, gpu: int | None = None):
        """weights: a .caffemodel. mean: the mean image (file or array) it was trained with. deploy: a deploy prototxt
        (default: the deploy net of `variant`, from ilgnet.nets); `variant` also gives the pixel scale Caffe applies
        after the mean (transform_param.scale). batch_size: net inputs per forward pass (photos; with oversample,
        10 crops per photo). resize: side of the square photos are resized to when the mean is per-channel (a mean
        image fixes it; default: the variant's LMDB size). jobs: decoding threads (default: CPU count; 0 decodes
        inline). gpu: a GPU id, or None for the CPU."""
        from ilgnet import nets

        caffe = import_caffe()
        if gpu is None:
            caffe.set_mode_cpu()
        else:
            caffe.set_device(gpu)
            caffe.set_mode_gpu()
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"weights file {weights} does not exist")
        known = nets.VARIANTS.get(variant)
        if known is None and deploy is None:
            raise ValueError(f"unknown net variant {variant!r} and no deploy prototxt; "
                             f"known: {', '.join(nets.VARIANTS)}")
        self.batch_size = batch_size
        self.oversample = oversample
        self.jobs = os.cpu_count() if jobs is None else jobs
        self.scale = known.input_scale if known else 1.0
        self.mean = load_mean(mean) if not isinstance(mean, np.ndarray) else np.asarray(mean, np.float32)
        side = resize or (known.resize if known else 256)
        self.image_size = tuple(self.mean.shape[1:]) if self.mean.ndim == 3 else (side, side)
        if self.image_size[0] != self.image_size[1]:
            raise ValueError(f"the mean image is {self.image_size[1]}x{self.image_size[0]}; photos are resized to "
                             f"a square, as `ilgnet lmdb --resize` does, so the mean must be square")
        self.net, self.prob_blob = self._load_net(caffe, weights, deploy, known)
        self.input_blob = self.net.inputs[0]
        self.crop = self.net.blobs[self.input_blob].data.shape[-1]
        if self.image_size[0] < self.crop:
            raise ValueError(f"the mean image is {self.image_size[0]}x{self.image_size[0]}, smaller than the net's "
                             f"{self.crop}x{self.crop} input")
        self.offsets = crop_offsets(*self.image_size, self.crop, oversample)
        self.crops_per_image = len(self.offsets) * (2 if oversample else 1)

    @classmethod
    def from_model(cls, model: str | Path, *, mean: Path | str | None = None, models: Path = Path("models"),
                   **options) -> "Scorer":
        """A Scorer for `model`, resolved by resolve_model: ilgnet-ava1 / ilgnet-ava2 or a .caffemodel file."""
        weights, mean = resolve_model(model, mean, models)
        return cls(weights, mean=mean, **options)

    @staticmethod
    def _load_net(caffe, weights: Path, deploy: Path | str | None, variant):
        """The net with the weights, and the name of its softmax blob: the variant's, or a deploy file's one output."""
        if deploy is not None:
            if not Path(deploy).is_file():
                raise FileNotFoundError(f"deploy prototxt {deploy} does not exist")
            net = caffe.Net(str(deploy), caffe.TEST, weights=str(weights))
            if len(net.outputs) != 1:
                raise ValueError(f"{deploy}: expected one output (the softmax), found {', '.join(net.outputs)}")
            return net, net.outputs[0]
        from ilgnet import nets

        with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as handle:
            handle.write(str(nets.deploy(variant, batch=1)))
            handle.flush()
            net = caffe.Net(handle.name, caffe.TEST, weights=str(weights))
        return net, variant.prob_blob

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """A decoded BGR uint8 image at the mean's size -> the net's input crops (n_crops, 3, crop, crop), float32."""
        if image.shape[:2] != self.image_size:
            image = cv2.resize(image, (self.image_size[1], self.image_size[0]), interpolation=cv2.INTER_LINEAR)
        chw = image.transpose(2, 0, 1).astype(np.float32)
        if self.mean.ndim == 1:
            chw -= self.mean[:, None, None]
        else:
            chw -= self.mean
        if self.scale != 1:
            chw *= self.scale
        c = self.crop
        crops = [chw[:, y:y + c, x:x + c] for y, x in self.offsets]
        if self.oversample:
            crops += [crop[:, :, ::-1] for crop in crops]
        return np.stack(crops)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, classes) for preprocessed inputs (N, 3, crop, crop)."""
        blob = self.net.blobs[self.input_blob]
        if blob.data.shape[0] != len(batch):
            blob.reshape(len(batch), *blob.data.shape[1:])
            self.net.reshape()
        blob.data[...] = batch
        return self.net.forward()[self.prob_blob].reshape(len(batch), -1).copy()

    def score_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """p_high for decoded BGR uint8 images (any size: they are resized to the mean's size). A forward pass takes
        batch_size net inputs: batch_size images, or with oversample batch_size // 10 images of 10 crops each."""
        p_high = []
        per_pass = max(1, self.batch_size // self.crops_per_image)
        for start in range(0, len(images), per_pass):
            inputs = np.concatenate([self.preprocess(img) for img in images[start:start + per_pass]])
            probs = self.forward(inputs)
            p_high.append(probs[:, 1].reshape(-1, self.crops_per_image).mean(axis=1))
        return np.concatenate(p_high) if p_high else np.empty(0, np.float32)

    def decoded(self, paths: Iterable[Path | str]) -> Iterator[tuple[str, np.ndarray | str]]:
        """(path, image or reason it is unreadable) in input order, decoded `jobs` threads wide a few batches ahead."""
        size = self.image_size[0]
        if self.jobs == 0:
            for path in paths:
                yield str(path), _decode_job(str(path), size)
            return
        window = max(4 * self.batch_size, 2 * self.jobs)
        with ThreadPoolExecutor(self.jobs) as pool:
            pending: deque[tuple[str, Future]] = deque()
            for path in paths:
                pending.append((str(path), pool.submit(_decode_job, str(path), size)))
                if len(pending) >= window:
                    name, future = pending.popleft()
                    yield name, future.result()
            while pending:
                name, future = pending.popleft()
                yield name, future.result()

    def score_files(self, paths: Iterable[Path | str], *, progress: bool = False) -> tuple[pd.DataFrame, list[Skipped]]:
        """Scores image files in batches; unreadable ones are returned as Skipped and the rest still scored.

        Returns a DataFrame (path, p_high, label) in input order, label = 1 when p_high > 0.5, and the skipped files.
        """
        from tqdm import tqdm

        paths = list(paths)
        rows: list[tuple[str, float]] = []
        skipped: list[Skipped] = []
        names: list[str] = []
        images: list[np.ndarray] = []

        def flush() -> None:
            rows.extend(zip(names, self.score_images(images).tolist()))
            names.clear()
            images.clear()

        for name, image in tqdm(self.decoded(paths), total=len(paths), unit="img", disable=not progress,
                                desc="scoring"):
            if isinstance(image, str):
                skipped.append(Skipped(name, image))
                continue
            names.append(name)
            images.append(image)
            if len(images) == self.batch_size:
                flush()
        if images:
            flush()
        return _table(rows), skipped


def _table(rows: list[tuple[str, float]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["path", "p_high"])
    table["label"] = (table.p_high > 0.5).astype(int)
    return table


_worker_scorer: Scorer | None = None


def _start_worker(options: dict, blas_threads: int) -> None:
    """Process-pool initializer: this process's own Scorer, with Caffe's BLAS limited to its share of the cores
    (OpenBLAS reads the variable when pycaffe first loads it, which happens in Scorer())."""
    global _worker_scorer
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(blas_threads)
    _worker_scorer = Scorer(**options, jobs=0)


def _score_chunk(paths: list[str]) -> tuple[list[tuple[str, float]], list[Skipped]]:
    table, skipped = _worker_scorer.score_files(paths)
    return list(zip(table.path, table.p_high)), skipped


class ScorerPool:
    """Scorer(**options) spread over `workers` processes, each with its own copy of the net and cores // workers
    BLAS threads; `score_files` gives the same result as Scorer.score_files, faster on a CPU: Caffe runs pooling,
    LRN and ReLU layers on one thread, so one net leaves cores idle for much of each forward pass. Each process takes
    whole batches and decodes its own photos. With one worker, or on a GPU, it is a Scorer in this process.

    Processes are started with `spawn`, so a script using more than one worker needs the usual
    `if __name__ == "__main__":` guard.

    >>> with ScorerPool(2, weights="my.caffemodel", mean="mean.binaryproto") as pool:
    ...     table, skipped = pool.score_files(paths)
    """

    def __init__(self, workers: int, **options):
        self.batch_size = options.get("batch_size", 16)
        self.workers = max(1, workers)
        self._executor = self._scorer = None
        if self.workers == 1 or options.get("gpu") is not None:
            self._scorer = Scorer(**options)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        for name in ("weights", "deploy"):
            if options.get(name) is not None and not Path(options[name]).is_file():
                raise FileNotFoundError(f"{name} file {options[name]} does not exist")
        if not isinstance(options["mean"], np.ndarray):
            options = {**options, "mean": load_mean(options["mean"])}
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(options, threads))

    def score_files(self, paths: Iterable[Path | str], *, progress: bool = False) -> tuple[pd.DataFrame, list[Skipped]]:
        """As Scorer.score_files: DataFrame (path, p_high, label) in input order, and the files skipped."""
        if self._scorer is not None:
            return self._scorer.score_files(paths, progress=progress)
        from concurrent.futures.process import BrokenProcessPool

        from tqdm import tqdm

        paths = [str(p) for p in paths]
        chunks = [paths[i:i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        rows: list[tuple[str, float]] = []
        skipped: list[Skipped] = []
        try:
            with tqdm(total=len(paths), unit="img", disable=not progress, desc="scoring") as bar:
                for chunk_rows, chunk_skipped in self._executor.map(_score_chunk, chunks):
                    rows.extend(chunk_rows)
                    skipped.extend(chunk_skipped)
                    bar.update(len(chunk_rows) + len(chunk_skipped))
        except BrokenProcessPool as err:
            raise ValueError(f"a scoring process died ({err}); Caffe's message is above. With one worker the "
                             f"problem shows in this process") from err
        return _table(rows), skipped

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()

    def __enter__(self) -> "ScorerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
