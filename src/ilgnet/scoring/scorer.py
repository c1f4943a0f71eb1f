"""Scoring photos with an ILGNet caffemodel, preprocessed exactly as the net saw its training and test data.

Training and `caffe test` read LMDBs written by convert_imageset (or `ilgnet lmdb`, which matches it): each photo
decoded by OpenCV as 3-channel BGR uint8 and resized to the mean image's size (256x256) with cv::resize's default
bilinear interpolation. Photos are decoded here by the LMDB builder's own decoder (ilgnet.data.images.decode_image),
so a file `ilgnet lmdb` would skip as unreadable is skipped here too. Caffe's Data layer then, in the TEST phase,
takes the centre crop (offset (256 - 227) / 2 = 14) and subtracts the mean image *at the same offset* (then scales,
for the variants that set transform_param.scale). The Scorer does the same in NumPy, so a photo gets the
probability `caffe test` would give it. `oversample` scores the ten crops of Caffe's classifier example instead
(four corners and the centre, each also mirrored; the mean is taken at each crop's offset and mirroring follows the
subtraction, as in the TRAIN-phase transform) and averages their probabilities.

The net runs in pycaffe, in onnxruntime (exported to ONNX) or in OpenCV's dnn module (ilgnet.scoring.backends; the
last two need no Caffe build); the preprocessing, batching and weight check here are the same for all. A Scorer
decodes, resizes, crops and subtracts the mean in a pool of threads a few batches ahead of the net (OpenCV and NumPy
release the GIL, and so do onnxruntime and OpenCV's dnn during a forward pass, so the next batch is made ready while
the net runs; pycaffe keeps the GIL, so with it this work happens between passes). ilgnet.scoring.pool runs Scorers
in several processes.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pandas as pd

from ilgnet import defaults
from ilgnet.bvlc.io import load_mean, read_prototxt
from ilgnet.bvlc.shapes import param_shapes
from ilgnet.data.images import BadImage, decode_image
from ilgnet.errors import BadInput, about
from ilgnet.fileio import require
from ilgnet.nets import VARIANTS
from ilgnet.nets import deploy as deploy_net
from ilgnet.pools import cpu_count
from ilgnet.scoring.backends import open_net, pick_backend
from ilgnet.scoring.inputs import check_images, check_paths
from ilgnet.bvlc.fit import check_fits
from ilgnet.export.cache import cached_export
from ilgnet.zoo.models import Model, known_variant, require_mean, resolve_model
from ilgnet.zoo.onnx_metadata import check_exported, is_onnx
from ilgnet.zoo.registry import trained_layers

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items, the last one shorter (itertools.batched, which Python 3.11 lacks)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclass(frozen=True)
class Skipped:
    """A file that could not be scored, and why."""
    path: str
    reason: str


def _decode_job(path: str, size: int) -> np.ndarray | str:
    """Decoding task: the photo as `ilgnet lmdb` stores it (BGR uint8, size x size), or why it cannot be read."""
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


def preprocess(image: np.ndarray, mean: np.ndarray, *, image_size: tuple[int, int], crop: int,
               offsets: Sequence[tuple[int, int]], scale: float = 1.0, mirror: bool = False) -> np.ndarray:
    """Caffe's TEST-phase transform of one decoded BGR uint8 image (H, W, 3): resized to `image_size` (rows,
    columns) where it differs (bilinear), minus `mean` (the mean image (3, rows, columns), or per channel (3,)),
    times `scale`, cropped crop x crop at each (row, column) of `offsets` (crop_offsets), and with `mirror` each crop
    also flipped left to right after them. Returns (n_crops, 3, crop, crop) float32. Thread-safe: the Scorer runs it
    in its decoding threads."""
    if image.shape[:2] != tuple(image_size):
        image = cv2.resize(image, (image_size[1], image_size[0]), interpolation=cv2.INTER_LINEAR)
    chw = image.transpose(2, 0, 1).astype(np.float32)
    chw -= mean[:, None, None] if mean.ndim == 1 else mean
    if scale != 1:
        chw *= scale
    crops = [chw[:, y:y + crop, x:x + crop] for y, x in offsets]
    if mirror:
        crops += [piece[:, :, ::-1] for piece in crops]
    return np.stack(crops)


def check_weights(weights: Path, *, deploy: Path | str | None = None, variant: str | None = "ilgnet") -> int:
    """Checks that `weights` fit the net a Scorer would load (ilgnet.bvlc.fit): every layer of the deploy file, or of
    the variant's deploy net, gets its blobs, and the caffemodel holds no layer the variant's training net lacks
    (any unused layer, for a deploy file of no known variant). Returns the layers matched; BadInput otherwise, naming
    the variant the weights are of (about "variant") where its run or the registry records it (known_variant).
    An ONNX file (checked when it was exported) must be one `ilgnet export` wrote of `variant`'s net; it holds
    its own net, so no deploy file goes with it. Returns 0 for it."""
    if is_onnx(weights):
        if deploy is not None:
            raise BadInput(f"{weights} is an ONNX model, which holds its own net; a deploy prototxt goes with a "
                           f"caffemodel")
        check_exported(weights, variant)
        return 0
    allowed = trained_layers(variant) if variant in VARIANTS else frozenset()
    if deploy is not None:
        with about(deploy):                 # the net's own faults (an unknown layer type, ...) name the file
            param_shapes(net := read_prototxt(deploy))
    try:
        if deploy is None:
            return check_fits(weights, deploy_net(variant), allowed_unused=allowed)
        return check_fits(weights, net, allowed_unused=allowed, source=deploy)
    except BadInput as err:
        known = known_variant(weights) if "does not fit" in str(err) else None
        if known is None or known[0] == variant:
            raise
        raise BadInput(f"{err}. These weights are of the {known[0]} net ({known[1]} says so): give variant "
                       f"{known[0]}, or none", about="variant") from None


def scoring_model(weights: Path | str | Model, *, mean: Path | str | np.ndarray | None = None,
                  variant: str | None = None) -> Model:
    """The Model a Scorer runs: `weights` when it is one (resolved, so its files were found then), else the file
    `weights` (MissingFile when absent); `mean` and `variant` replace what it records; variant ilgnet by default.
    BadInput without a mean (zoo.models.require_mean)."""
    if not isinstance(weights, Model):
        require(Path(weights), what="weights file")
        weights = Model(Path(weights), None, None, name=str(weights))
    model = replace(weights, variant=variant or weights.variant or "ilgnet", name=weights.name or str(weights.weights),
                    mean=weights.mean if mean is None else mean)
    require_mean(model)
    return model


class Scorer:
    """An ILGNet model ready to score photos: p_high is the softmax probability of class 1 (high aesthetic quality).

    >>> scorer = Scorer.from_model("ilgnet-ava2")           # or Scorer("my.caffemodel", mean="mean.binaryproto")
    >>> table, skipped = scorer.score_files(["a.jpg", "photos/b.jpg"])   # DataFrame(path, p_high, label), [Skipped]
    """

    def __init__(self, weights: Path | str | Model, *, mean: Path | str | np.ndarray | None = None,
                 deploy: Path | str | None = None, variant: str | None = None, batch_size: int = defaults.SCORE_BATCH,
                 oversample: bool = False, jobs: int | None = None, resize: int | None = None, gpu: int | None = None,
                 check: bool = True, backend: str = "auto"):
        """weights: a resolved ilgnet.zoo.models.Model (its weights, variant and mean; `mean` and `variant`, when
        given, replace its own), or a .caffemodel (or exported .onnx) file with `mean`, the mean image (file or array)
        it was trained with, and `variant` (default ilgnet). deploy: a deploy prototxt (default: the deploy net of
        the variant, from ilgnet.nets); the variant also gives the pixel scale Caffe applies after the mean
        (transform_param.scale). batch_size: net inputs per forward pass (photos; with oversample, 10 crops per
        photo). resize: side of the square photos are resized to when the mean is per-channel (a mean image fixes
        it; default: the variant's LMDB size). jobs: decoding threads (default: CPU count; 0 decodes inline). gpu: a
        GPU id, or None for the CPU. check: test weights against the net first (ilgnet.bvlc.fit); off only where the
        caller already did. backend: "caffe" (pycaffe), "onnxruntime" (the net exported to ONNX), "opencv" (OpenCV's
        dnn module, CPU only) or "auto" (the default: the first of them this machine has;
        ilgnet.scoring.backends.pick_backend, called here once). `backend` is then the one chosen.

        Raises BadInput (no mean, weights that do not fit the net, a mean that does not fit the photos, a GPU the
        backend cannot use, a layer OpenCV lacks), MissingFile (a file given by path; a Model was found when it was
        resolved), CaffeNotFoundError for the caffe backend without pycaffe and MissingPackage for onnxruntime
        without it, before the backend loads anything."""
        self.model = model = scoring_model(weights, mean=mean, variant=variant)
        weights = self.weights = model.weights
        variant, mean = model.variant, model.mean
        known = VARIANTS.get(variant)
        if known is None and deploy is None:
            raise BadInput(f"unknown net variant {variant!r} and no deploy prototxt; known: {', '.join(VARIANTS)}")
        self.batch_size = batch_size
        self.oversample = oversample
        self.jobs = cpu_count() if jobs is None else jobs
        self.scale = known.input_scale if known else 1.0
        is_file = not isinstance(mean, np.ndarray)
        self.mean = load_mean(mean) if is_file else np.asarray(mean, np.float32)
        about_mean = f"the mean image {mean}" if is_file else "the mean image"
        side = resize or (known.resize if known else 256)
        self.image_size = tuple(self.mean.shape[1:]) if self.mean.ndim == 3 else (side, side)
        if self.image_size[0] != self.image_size[1]:
            raise BadInput(f"{about_mean} is {self.image_size[1]}x{self.image_size[0]}; photos are resized to "
                           f"a square, as `ilgnet lmdb` does, so the mean must be square")
        if check:
            check_weights(weights, deploy=deploy, variant=known.name if known else None)
        self.backend = pick_backend(backend, weights)
        net, output = net_of(deploy, known)
        self.net = open_net(self.backend, net, weights, output=output, gpu=gpu, variant=variant)
        self.crop = self.net.input_shape[-1]
        if self.image_size[0] < self.crop:
            raise BadInput(f"{about_mean} is {self.image_size[0]}x{self.image_size[0]}, smaller than the net's "
                           f"{self.crop}x{self.crop} input")
        self.offsets = crop_offsets(*self.image_size, self.crop, oversample)
        self.crops_per_image = len(self.offsets) * (2 if oversample else 1)

    @classmethod
    def from_model(cls, model: str | Path | Model, *, mean: Path | str | None = None,
                   models: Path = defaults.MODELS_DIR, variant: str | None = None, **options) -> Scorer:
        """A Scorer for `model`: a Model already resolved, or a name ilgnet.zoo.models.resolve_model resolves here
        (ilgnet-ava1 / ilgnet-ava2, fetched; a run folder of `ilgnet train`; an ONNX file `ilgnet export` wrote,
        which carries its mean; a .caffemodel file, which needs `mean`)."""
        if not isinstance(model, Model):
            model = resolve_model(model, variant=variant, mean=mean, models=models)
            mean = variant = None
        return cls(model, mean=mean, variant=variant, **options)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """A decoded BGR uint8 image at the mean's size -> the net's input crops (n_crops, 3, crop, crop), float32."""
        return preprocess(image, self.mean, image_size=self.image_size, crop=self.crop, offsets=self.offsets,
                          scale=self.scale, mirror=self.oversample)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, classes) for preprocessed inputs (N, 3, crop, crop)."""
        probs = self.net.forward(batch)
        if not np.isfinite(probs).all():
            raise BadInput(f"{self.weights}: the net's outputs are not finite (NaN or infinite): a broken model, "
                           f"such as the snapshot of a diverged training run")
        return probs

    def score_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """p_high (N,) for N decoded BGR uint8 images (any size: they are resized to the mean's size). A forward pass
        takes batch_size net inputs: batch_size images, or with oversample batch_size // 10 images of 10 crops each.
        Grey, BGRA and Pillow images are converted; floats and single images are refused (TypeError/ValueError
        naming the argument: ilgnet.scoring.inputs)."""
        images = check_images(images)
        p_high = []
        for chunk in batched(images, max(1, self.batch_size // self.crops_per_image)):
            probs = self.forward(np.concatenate([self.preprocess(img) for img in chunk]))
            p_high.append(probs[:, 1].reshape(-1, self.crops_per_image).mean(axis=1))
        return np.concatenate(p_high) if p_high else np.empty(0, np.float32)

    def decoded(self, paths: Iterable[Path | str]) -> Iterator[tuple[str, np.ndarray | str]]:
        """(path, image or reason it is unreadable) in input order, decoded `jobs` threads wide a few batches ahead."""
        return self._ahead(paths, _decode_job, self.image_size[0])

    def prepared(self, paths: Iterable[Path | str]) -> Iterator[tuple[str, np.ndarray | str]]:
        """(path, the net's input crops of the photo (preprocess) or why it is unreadable) in input order: decoded,
        resized, cropped and the mean subtracted `jobs` threads wide, a few batches ahead of the net, so that this
        work overlaps the forward pass (OpenCV and NumPy release the GIL, as do onnxruntime and OpenCV's dnn)."""
        return self._ahead(paths, self._prepare_job)

    def _prepare_job(self, path: str) -> np.ndarray | str:
        image = _decode_job(path, self.image_size[0])
        return image if isinstance(image, str) else self.preprocess(image)

    def _ahead(self, paths: Iterable[Path | str], job, *args) -> Iterator[tuple[str, np.ndarray | str]]:
        """(path, job(path, *args)) in input order, `jobs` threads wide, a window of a few batches ahead."""
        if self.jobs == 0:
            for path in paths:
                yield str(path), job(str(path), *args)
            return
        window = max(4 * self.batch_size // self.crops_per_image, 2 * self.jobs)
        with ThreadPoolExecutor(self.jobs) as pool:
            pending: deque[tuple[str, Future]] = deque()
            for path in paths:
                pending.append((str(path), pool.submit(job, str(path), *args)))
                if len(pending) >= window:
                    name, future = pending.popleft()
                    yield name, future.result()
            while pending:
                name, future = pending.popleft()
                yield name, future.result()

    def score_files(self, paths: Iterable[Path | str], *, progress: bool = False) -> tuple[pd.DataFrame, list[Skipped]]:
        """Scores image files in batches; unreadable ones are returned as Skipped and the rest still scored. The
        next batches' photos are decoded and preprocessed while the net runs the current one (prepared).

        Returns a DataFrame (path, p_high, label) in input order, label = 1 when p_high > 0.5, and the skipped files.
        """
        from tqdm import tqdm

        paths = check_paths(paths)            # TypeError for one str or Path, which would be read per character
        skipped: list[Skipped] = []

        def readable() -> Iterator[tuple[str, np.ndarray]]:
            for name, crops in tqdm(self.prepared(paths), total=len(paths), unit="img", disable=not progress,
                                    desc="scoring"):
                if isinstance(crops, str):
                    skipped.append(Skipped(name, crops))
                else:
                    yield name, crops

        rows: list[tuple[str, float]] = []
        for chunk in batched(readable(), max(1, self.batch_size // self.crops_per_image)):
            names, crops = zip(*chunk)
            probs = self.forward(np.concatenate(crops))
            rows.extend(zip(names, probs[:, 1].reshape(-1, self.crops_per_image).mean(axis=1).tolist()))
        return score_table(rows, self.backend), skipped


def net_of(deploy: Path | str | None, variant) -> tuple:
    """(net, output blob) a Scorer loads: the deploy file and its one output, or the Variant's deploy net at batch 1
    and its softmax blob."""
    if deploy is not None:
        return deploy, None
    return deploy_net(variant, batch=1), variant.prob_blob


def onnx_weights(weights: Path | str, *, deploy: Path | str | None = None, variant: str = "ilgnet") -> Path:
    """The ONNX file the onnxruntime backend runs for `weights`: itself when it is one, else the caffemodel's export
    (made now unless kept from before; ilgnet.export.cache.cached_export). ScorerPool and score_with_ray call it
    once before their processes start, so that they do not each export it. Check the weights first."""
    if is_onnx(weights):
        return Path(weights)
    net, output = net_of(deploy, VARIANTS.get(variant))
    return cached_export(net, Path(weights), variant=variant, output=output)


def score_table(rows: list[tuple[str, float]], backend: str | None = None) -> pd.DataFrame:
    """DataFrame(path, p_high, label) from (path, p_high) rows; label 1 when p_high > 0.5; table.attrs["backend"] the
    backend that scored them, when given. Paths stay Python strings (pandas would store them as Arrow strings where
    pyarrow is installed, which cannot hold a file name that is not UTF-8)."""
    paths, p_high = zip(*rows) if rows else ((), ())
    table = pd.DataFrame({"path": pd.Series(paths, dtype=object), "p_high": pd.Series(p_high, dtype=float)})
    table["label"] = (table.p_high > 0.5).astype(int)
    table.attrs["backend"] = backend
    return table
