"""Photos decoded as Caffe's convert_imageset decodes them, with damaged files refused instead of half stored;
encoded as `convert_imageset --encoded` stores them; and found in folders by their content."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ilgnet.errors import MissingFile
from ilgnet.fileio import LOCK_FILE, read_text


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


def read_image(path) -> np.ndarray:
    """The image at `path` at its own size, (height, width, 3) BGR uint8, decoded as convert_imageset decodes it.

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
    return image


def decode_image(path, resize: int) -> np.ndarray:
    """The image at `path` as convert_imageset reads it: (resize, resize, 3) BGR uint8 (read_image, then resized;
    BadImage as read_image raises it)."""
    # cv::resize's default interpolation, bilinear, as in Caffe's ReadImageToCVMat.
    return cv2.resize(read_image(path), (resize, resize), interpolation=cv2.INTER_LINEAR)


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


# Suffixes of the formats OpenCV reads: a file so named is tried even when its content is not recognised, so
# that a damaged photo is reported with the reason it cannot be read.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".pnm", ".jp2", ".gif", ".exr", ".hdr", ".pic", ".sr", ".ras", ".avif"}
# Files that are known not to be photos: macOS's AppleDouble companions (._NAME), folder metadata and the lock
# file of a folder the toolkit locks.
METADATA_FILES = {".DS_Store", "Thumbs.db", "desktop.ini", LOCK_FILE}
TEXT_SNIFF_BYTES = 4096


@dataclass
class FolderScan:
    """Files and folders sorted into photos to score, files that are not photos (each with the reason; an unreadable
    folder, a broken link) and counts of what was passed over: known non-photos (AppleDouble and metadata files,
    text files) and `repeated` names of a file or folder found already under another name (`./a` and `a`, a folder
    and a file in it, a hard link, a folder reached again through a symbolic link, a link loop), so that each file
    is scored once, under the first name it was found by."""
    photos: list[Path] = field(default_factory=list)
    not_photos: list[tuple[Path, str]] = field(default_factory=list)
    known_non_photos: int = 0
    repeated: int = 0
    _seen: set[tuple[int, int]] = field(default_factory=set, repr=False)

    def _first(self, identity: tuple[int, int]) -> bool:
        """Whether the file or folder (st_dev, st_ino) is met for the first time; counts it as repeated if not."""
        if identity in self._seen:
            self.repeated += 1
            return False
        self._seen.add(identity)
        return True

    def add_file(self, path: Path) -> None:
        """A file named by the user: a photo to score whatever it holds (so that an unreadable one is reported with
        its reason), unless it was found already."""
        info = os.stat(path)
        if self._first((info.st_dev, info.st_ino)):
            self.photos.append(Path(path))

    def add_folder(self, folder: Path) -> None:
        """Every file under `folder`, as `find -L` finds them: symbolic links to folders are followed, each folder
        once (a link back to a folder above it ends there), and files are taken in the order of their paths. A file
        is decided by content: what OpenCV can decode is a photo, whatever its suffix (.jfif, .gif, none); AppleDouble
        `._*` files, folder metadata and text files are counted as known non-photos; anything else is listed with
        why it is not a photo."""
        files: list[tuple[Path, tuple[int, int]]] = []
        info = os.stat(folder)
        pending = [(Path(folder), (info.st_dev, info.st_ino))]      # depth first, in the order of the names
        while pending:
            current, identity = pending.pop()
            if not self._first(identity):
                continue
            try:
                with os.scandir(current) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError as err:
                self.not_photos.append((current, f"unreadable folder: {err.strerror}"))
                continue
            folders = []
            for entry in entries:
                path = current / entry.name
                try:
                    if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
                        target = os.stat(path)          # through the link; a folder's own device (a mount point)
                        found, is_dir = (target.st_dev, target.st_ino), stat.S_ISDIR(target.st_mode)
                    else:
                        found, is_dir = (identity[0], entry.inode()), False
                except FileNotFoundError:
                    self.not_photos.append((path, "broken symbolic link (its target does not exist)"))
                    continue
                except OSError as err:
                    self.not_photos.append((path, f"unreadable: {err.strerror}"))
                    continue
                (folders if is_dir else files).append((path, found))
            pending.extend(reversed(folders))
        for path, identity in sorted(files, key=lambda item: str(item[0])):
            if self._first(identity):
                self._sort_file(path)

    def _sort_file(self, path: Path) -> None:
        """One file found in a folder: a photo, a known non-photo (counted) or another file (listed with why)."""
        if path.name.startswith("._") or path.name in METADATA_FILES:
            self.known_non_photos += 1
            return
        try:
            with open(path, "rb"):              # an unreadable file is listed with its reason, not tried by OpenCV
                pass
            if _recognised(path):
                self.photos.append(path)
            elif _is_text(path):
                self.known_non_photos += 1
            else:
                with open(path, "rb") as f:
                    self.not_photos.append((path, f"not an image OpenCV can read (starts with {f.read(12)!r})"))
        except OSError as err:
            self.not_photos.append((path, f"unreadable: {err.strerror}"))


def _is_text(path: Path) -> bool:
    """Whether a file starts as UTF-8 text (no NUL byte; a character cut at the sniffed length is fine)."""
    with open(path, "rb") as f:
        head = f.read(TEXT_SNIFF_BYTES)
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return len(head) == TEXT_SNIFF_BYTES and err.start >= len(head) - 3
    return True


def _recognised(path: Path) -> bool:
    """Whether OpenCV has a decoder for the file's content (it reads the signature), or the name says image."""
    try:
        str(path).encode("utf-8")           # OpenCV crashes on a name that is not UTF-8 (Linux names are any bytes)
    except UnicodeEncodeError:
        return True                         # left to decode_image, which reads the file through Python
    return cv2.haveImageReader(str(path)) or path.suffix.lower() in IMAGE_SUFFIXES


def scan_folder(folder: Path) -> FolderScan:
    """Every file under `folder`, sorted as FolderScan.add_folder sorts them."""
    scan = FolderScan()
    scan.add_folder(folder)
    return scan


def named_paths(paths: list[str | Path]) -> Iterator[tuple[Path, str]]:
    """Each path given, and each of an @LIST's non-blank lines (UTF-8 or any bytes, a byte-order mark dropped), with
    where it was named: "" or `LIST:LINE: `. `@NAME` is a list file only when no file or folder is named `@NAME`
    itself (a photo may be named `@x.jpg`); `./@NAME` always names the file."""
    for text in map(str, paths):
        if not text.startswith("@") or os.path.lexists(text):
            yield Path(text), ""
            continue
        if not os.path.lexists(text[1:]):
            raise MissingFile(f"{text}: no file of that name, and no list file {text[1:]}")
        for number, line in enumerate(read_text(text[1:], errors="surrogateescape").splitlines(), 1):
            if line.strip():
                yield Path(line), f"{text[1:]}:{number}: "


def list_files(paths: list[str | Path]) -> list[Path]:
    """The @LIST files among `paths` (named_paths reads them)."""
    return [Path(str(text)[1:]) for text in paths if str(text).startswith("@") and not os.path.lexists(text)]


def collect_images(paths: list[str | Path]) -> FolderScan:
    """Files as given (whatever they hold, so an unreadable one is reported), and what FolderScan finds in
    folders (symbolic links followed): a FolderScan of them all, each file
    once. A path (or @LIST file) that does not exist is an error naming it (and the list's line)."""
    found = FolderScan()
    for path, where in named_paths(paths):
        if not path.exists():
            broken = " (a symbolic link whose target is missing)" if path.is_symlink() else ""
            raise MissingFile(f"{where}{path} does not exist{broken}")
        if path.is_dir():
            found.add_folder(path)
        else:
            found.add_file(path)
    return found
