"""What the Python API (ilgnet.scoring.scorer.Scorer) accepts, checked before anything is scored, so that a call
of the wrong shape is refused in one line naming the argument instead of scored wrong (docs/SCORING.md).

Images (`Scorer.score_images`): a list (or tuple, or an N x H x W x C uint8 array) of photos as `cv2.imread`
returns them, BGR uint8 0..255. Also scored right, converted as OpenCV's own decoder converts a file: a 2-D grey
array (H x W, or H x W x 1) is repeated into B, G and R; a 4-channel array is BGRA and its alpha is dropped; a
Pillow image is converted to RGB and reordered to BGR. Refused: float arrays of any range (TypeError: 0..1 and
0..255 floats cannot be told apart, and either guess scores some photos wrong), other integer types, empty arrays,
other channel counts, and a single array where the list belongs (TypeError: pass [image]).

Paths (`Scorer.score_files`): an iterable of str or os.PathLike. A single str, bytes or Path is refused (TypeError:
a string would be read character by character); any other item is refused naming its index. A missing or
unreadable file is not an error: it is returned among the skipped files, the rest scored.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import cv2
import numpy as np

ONE_IMAGE_DIMS = (2, 3)


def _is_pil(value) -> bool:
    return type(value).__module__.split(".")[0] == "PIL" and hasattr(value, "convert")


def as_bgr(image, where: str) -> np.ndarray:
    """`image` as an H x W x 3 BGR uint8 array (see the module docstring); TypeError or ValueError naming `where`
    (e.g. `images[2]`)."""
    if _is_pil(image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    if isinstance(image, (str, bytes, os.PathLike)):
        raise TypeError(f"{where} is a path ({image!r}); score files with score_files")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{where} is a {type(image).__name__}, not an image: give a BGR uint8 NumPy array as "
                        f"cv2.imread returns it (or a Pillow image)")
    if image.dtype != np.uint8:
        hint = (" (for values in 0..1: (image * 255).round().astype(np.uint8))"
                if np.issubdtype(image.dtype, np.floating) else "")
        raise TypeError(f"{where} is a {image.dtype} array: give BGR uint8 (0..255) as cv2.imread returns it{hint}")
    if image.size == 0:
        raise ValueError(f"{where} is empty (shape {image.shape})")
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else None
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"{where} has shape {image.shape}: expected H x W (grey), H x W x 3 (BGR) or H x W x 4 (BGRA)")


def check_images(images, argument: str = "images") -> list[np.ndarray]:
    """`images` as a list of BGR uint8 arrays (as_bgr); TypeError when `images` is one image instead of a
    sequence of them, or not a sequence."""
    if isinstance(images, np.ndarray) and images.ndim in ONE_IMAGE_DIMS or _is_pil(images):
        shape = f" of shape {images.shape}" if isinstance(images, np.ndarray) else ""
        raise TypeError(f"{argument} is one image{shape}, not a list of images: pass [image]")
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Iterable):
        raise TypeError(f"{argument} must be a list of images (BGR uint8 arrays), not a {type(images).__name__}")
    return [as_bgr(image, f"{argument}[{i}]") for i, image in enumerate(images)]


def check_paths(paths, argument: str = "paths") -> list:
    """`paths` as a list of str or os.PathLike (see the module docstring); TypeError for a single path or an item
    that is not a path."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"{argument} is one path ({paths!r}), not a list of paths: pass [{paths!r}]")
    if not isinstance(paths, Iterable):
        raise TypeError(f"{argument} must be a list of file paths, not a {type(paths).__name__}")
    found = list(paths)
    for i, path in enumerate(found):
        if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
            raise TypeError(f"{argument}[{i}] is a {type(path).__name__}, not a path (str or pathlib.Path)")
    return found
