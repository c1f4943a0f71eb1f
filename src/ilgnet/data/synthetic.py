"""Synthetic stand-ins for the demo, the tests and the benchmarks: a dataset in AVA's own layout (AVA.txt plus
images/<id>.jpg), and caffemodels of random weights for any net (`random_caffemodel`), made without Caffe.

Every row of AVA.txt is a vote histogram drawn around a hidden mean score; the photo of that row is rendered
with OpenCV at a quality that follows the same score. High-scoring photos are sharp, contrasty, saturated and
well exposed; low-scoring ones are blurred, flat, greyish, under- or over-exposed and noisy. The label that the
AVA rules derive from the votes is therefore visible in the pixels, so a net trained from scratch on CPU for a
few minutes learns it, which is what the demo needs to show the pipeline working end to end.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ilgnet.bvlc.proto import BlobProto, BlobShape, NetParameter
from ilgnet.bvlc.shapes import param_shapes
from ilgnet.data.ava import AVA_COLUMNS, COUNT_COLUMNS, SCORES, add_vote_stats
from ilgnet.fileio import atomic_write_json, atomic_write_text, read_json
from ilgnet.pools import ctrl_c_point

# AVA's mean scores average about 5.4 with a spread of about 0.75, so 70 % of AVA1 is high; the synthetic ones are
# centred on AVA1's cut instead, so its classes are about even: a toy run of a few iterations ranks the photos
# well long before it learns a 70/30 prior's threshold, and would sit at the baseline predicting "high".
MEAN_CENTRE, MEAN_SPREAD = 5.0, 0.8
QUALITY_CENTRE, QUALITY_SCALE = 5.0, 0.3   # quality_of: centred on the AVA1 cut, the label's own boundary
RENDERING = 3               # the version of the votes and rendering in the stamp: a set of another is made again
ASPECTS = [(4, 3), (3, 2), (1, 1), (2, 3), (3, 4)]
STAMP = "synthetic.json"    # written last by `generate`: {"images": N, "seed": S}; without it the set is unfinished


def vote_histograms(rng: np.random.Generator, n: int) -> np.ndarray:
    """n rows of 10 vote counts, each a discretised normal around a hidden mean, like AVA's (mostly unimodal) votes."""
    centres = np.clip(rng.normal(MEAN_CENTRE, MEAN_SPREAD, n), 2.0, 8.8)
    widths = rng.uniform(1.1, 1.8, n)
    votes = rng.integers(80, 300, n)
    probs = np.exp(-((SCORES[None, :] - centres[:, None]) ** 2) / (2 * widths[:, None] ** 2))
    probs /= probs.sum(axis=1, keepdims=True)
    return np.stack([rng.multinomial(v, p) for v, p in zip(votes, probs)])


def quality_of(mean_score: float) -> float:
    """Rendering quality in (0, 1), 0.5 at AVA1's cut (mean 5, delta 0) so the quality changes fastest where that
    label changes: 0.27 at 4.7 and 0.73 at 5.3; 0.04 at AVA2's low cut (about 4.0), 0.93 at its high one (5.9)."""
    return float(1.0 / (1.0 + np.exp(-(mean_score - QUALITY_CENTRE) / QUALITY_SCALE)))


def _scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random composition: a two-colour gradient, shapes with hard edges, and one finely striped patch."""
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(rng.integers(8, 20)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(width, height) // 20, min(width, height) // 4))
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.circle(img, (x, y), size, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.5, 2))), colour, -1)
        elif kind == 2:
            points = rng.integers(-size, size, (int(rng.integers(3, 7)), 2)) + (x, y)
            cv2.fillPoly(img, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (x + int(rng.integers(-size, size)) * 3, y + int(rng.integers(-size, size)) * 3),
                     colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
    period = int(rng.integers(3, 7))
    patch = img[y0:y0 + height // 4, x0:x0 + width // 4]
    stripes = (np.indices(patch.shape[:2]).sum(axis=0) // period) % 2 == 0
    patch[stripes] = rng.integers(0, 256, 3)
    return img


def render_photo(rng: np.random.Generator, quality: float, width: int, height: int) -> np.ndarray:
    """A BGR uint8 photo whose sharpness, contrast, colour and exposure all grow with `quality` (0..1), with jitter."""
    flaw = 1.0 - float(np.clip(quality + rng.normal(0, 0.08), 0, 1))
    img = _scene(rng, width, height)
    sigma = 5.0 * flaw ** 1.5 * max(width, height) / 400
    if sigma > 0.5:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    # One affine colour transform: desaturate towards each pixel's grey, flatten contrast towards the image's
    # mean level, and shift the exposure up or down.
    saturation, contrast = 1.0 - 0.85 * flaw, 1.0 - 0.6 * flaw
    exposure = rng.choice([-1, 1]) * 70 * flaw
    colour = saturation * np.eye(3) + (1 - saturation) / 3
    level = float(np.mean(cv2.mean(img)[:3]))
    offset = (1 - contrast) * level + exposure
    img = cv2.transform(img, np.hstack([contrast * colour, np.full((3, 1), offset)]).astype(np.float32))
    if flaw > 0.2:                                                          # sensor noise
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(10 * flaw)
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
    return img


def _write_photo(path: Path, seed: int, quality: float, long_sides: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    aspect_w, aspect_h = ASPECTS[rng.integers(0, len(ASPECTS))]
    long_side = int(rng.integers(*long_sides))
    scale = long_side / max(aspect_w, aspect_h)
    img = render_photo(rng, quality, round(aspect_w * scale), round(aspect_h * scale))
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    path.write_bytes(data.tobytes())


def generate(out_dir: Path, *, n_images: int = 3000, seed: int = 1, long_sides: tuple[int, int] = (300, 400),
             jobs: int | None = None) -> pd.DataFrame:
    """Writes out_dir/AVA.txt (AVA's 15 integer columns) and out_dir/images/<id>.jpg; returns the rows with their
    votes, mean and std (ilgnet.data.ava.add_vote_stats). Photos have a long side in [long_sides[0], long_sides[1]);
    the default keeps them small and quick to make (AVA's own run to about 800 pixels).

    Rendering runs in threads (OpenCV releases the GIL); each photo has its own seed, so the output does not
    depend on `jobs`.
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    (out_dir / STAMP).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    counts = vote_histograms(rng, n_images)
    rows = pd.DataFrame(counts, columns=COUNT_COLUMNS)
    rows.insert(0, "image_id", rng.choice(np.arange(10_000, 1_000_000), n_images, replace=False))
    rows.insert(0, "index", np.arange(1, n_images + 1))
    rows["tag1"] = rng.integers(0, 67, n_images)
    rows["tag2"] = rng.integers(0, 67, n_images)
    rows["challenge"] = rng.integers(1, 1399, n_images)
    listing = rows[AVA_COLUMNS].to_csv(sep=" ", header=False, index=False)

    rows = add_vote_stats(rows)
    photo_seeds = rng.integers(0, 2**63, n_images)
    with ThreadPoolExecutor(jobs) as pool:
        # In two halves, the tests' Ctrl-C (ctrl_c_point) landing with half the photos made.
        for part in (range(n_images // 2), range(n_images // 2, n_images)):
            list(pool.map(lambda i: _write_photo(images / f"{rows.image_id[i]}.jpg", int(photo_seeds[i]),
                                                 quality_of(rows["mean"][i]), long_sides), part))
            ctrl_c_point("synthetic AVA")
    # AVA.txt after its photos, and the stamp last: an interrupted set has neither, so it is made again.
    atomic_write_text(out_dir / "AVA.txt", listing)
    atomic_write_json(out_dir / STAMP, {"images": n_images, "seed": seed, "long_sides": list(long_sides),
                                        "rendering": RENDERING})
    return rows


def is_complete(out_dir: Path, *, n_images: int, seed: int) -> bool:
    """Whether out_dir holds a synthetic AVA that `generate` finished with these `n_images` and `seed` and today's
    rendering (its stamp says so); an interrupted one, or one of other settings or rendering, is not."""
    stamp = Path(out_dir) / STAMP
    try:
        made = read_json(stamp) if stamp.is_file() else {}
    except ValueError:
        return False
    return (isinstance(made, dict) and made.get("images") == n_images and made.get("seed") == seed
            and made.get("rendering") == RENDERING)


def _packed_floats(values: np.ndarray) -> bytes:
    """BlobProto's `data` field (number 5, packed float32) as protobuf encodes it: the tag, the byte length as a
    varint, the little-endian floats. Filling the field value by value through protobuf takes about 0.4 s per
    million, a minute for ILGNet's 150 M weights; parsing these bytes is a copy."""
    data = np.ascontiguousarray(values, "<f4").tobytes()
    length, varint = len(data), bytearray()
    while length > 0x7F:
        varint.append(0x80 | (length & 0x7F))
        length >>= 7
    varint.append(length)
    return b"\x2a" + bytes(varint) + data


def _random_blobs(kind: str, shapes: list[tuple[int, ...]], rng: np.random.Generator) -> list[np.ndarray]:
    """Weights of plausible scale for one layer (float32): He-normal weights and small biases, so activations keep
    their size through a deep net; BatchNorm statistics with a positive variance and a scale factor of 1."""
    def normal(shape, std):
        return rng.standard_normal(shape, np.float32) * np.float32(std)

    if kind == "BatchNorm":
        return [normal(shapes[0], 0.5), rng.uniform(0.5, 2, shapes[1]), np.ones(shapes[2])]
    if kind == "Scale":
        return [rng.uniform(0.8, 1.2, shapes[0]), *(normal(s, 0.1) for s in shapes[1:])]
    return [normal(shapes[0], np.sqrt(2 / np.prod(shapes[0][1:]))), *(normal(s, 0.01) for s in shapes[1:])]


def random_caffemodel(net, path: Path, *, seed: int = 0, input_range: float = 64) -> Path:
    """Writes a caffemodel for `net` (a NetParameter) with random weights, as Caffe would save it: every layer with
    parameters gets blobs of the shapes Caffe gives it (ilgnet.bvlc.shapes), so it passes ilgnet.bvlc.fit's check. The
    weights are random but of trained scale (see _random_blobs), so scores spread across (0, 1) instead of piling
    up at 0 or 1. About 1 s per 100 M parameters; `seed` makes the same file again."""
    rng = np.random.default_rng(seed)
    shapes = param_shapes(net)
    model = NetParameter(name=net.name)
    for layer in net.layer:
        if layer.name not in shapes:
            continue
        stored = model.layer.add(name=layer.name, type=layer.type)
        blobs = _random_blobs(layer.type, shapes[layer.name], rng)
        if len(model.layer) == 1:
            blobs[0] /= np.float32(input_range)
        for values, shape in zip(blobs, shapes[layer.name]):
            header = BlobProto(shape=BlobShape(dim=shape)).SerializeToString()
            stored.blobs.append(BlobProto.FromString(header + _packed_floats(values)))
    Path(path).write_bytes(model.SerializeToString())
    return Path(path)
