"""Photos decoded as Caffe's convert_imageset decodes them, with damaged files refused instead of half stored,
and encoded as `convert_imageset --encoded` stores them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class BadImage(Exception):
    """An image that cannot be stored; the message says why."""


def _jpeg_is_cut_short(data: bytes) -> bool:
    """Whether a JPEG ends before its end-of-image marker.

    Walks the header segments to the first start-of-scan marker. From there an FF D9 can only be the
    end-of-image marker (in entropy-coded data an FF is always followed by 00 or a restart marker), so a file
    without one after that point was cut short. Decoders differ here: OpenCV 4 fills the rest with grey.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a well-formed header: left to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
        elif marker == 0xDA:
            return data.rfind(b"\xff\xd9", pos) < 0
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return True


def decode_image(path, resize: int) -> np.ndarray:
    """The image at `path` as convert_imageset reads it: (resize, resize, 3) BGR uint8.

    Decoding goes by content, not by name (a PNG named .jpg is a PNG); grayscale and CMYK become BGR.
    Raises BadImage for a file that is missing, empty, cut short or not a decodable image.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage("missing file") from None
    except OSError as err:
        raise BadImage(f"unreadable: {err.strerror}") from None
    if not data:
        raise BadImage("empty file")
    is_jpeg = data[:2] == b"\xff\xd8"
    if is_jpeg and _jpeg_is_cut_short(data):
        raise BadImage("truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. dimensions over OpenCV's limits
        raise BadImage(f"not decodable: {err.err}") from None
    if image is None:
        raise BadImage("corrupt JPEG" if is_jpeg else f"not a decodable image (starts with {data[:12]!r})")
    # cv::resize's default interpolation, bilinear, as in Caffe's ReadImageToCVMat.
    return cv2.resize(image, (resize, resize), interpolation=cv2.INTER_LINEAR)


def encode_image(image: np.ndarray, encoding: str) -> tuple[bytes, np.ndarray]:
    """A decoded image as `convert_imageset --encoded --encode_type ENCODING` stores it: cv::imencode with OpenCV's
    default parameters (JPEG quality 95). Returns the bytes and the pixels a reader decodes from them (the image
    itself for lossless PNG), which is what compute_image_mean averages."""
    ok, buffer = cv2.imencode(f".{encoding}", image)
    if not ok:
        raise BadImage(f"OpenCV could not encode it as {encoding}")
    data = buffer.tobytes()
    if encoding == "png":
        return data, image
    return data, cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)

