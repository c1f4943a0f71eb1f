"""Files written whole or not at all, and checksums of large files."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ilgnet.errors import BadInput, MissingFile

CHUNK = 1 << 20


def require(path: Path | str, *, folder: bool = False, what: str = "", hint: str = "") -> Path:
    """`path`, when it is a file (a folder with `folder`); else MissingFile (nothing there: `WHAT PATH does not
    exist`, then `hint`) or BadInput (`WHAT PATH is a folder, not a file`, or the reverse)."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    wanted = "folder" if folder else "file"
    if path.is_dir() if folder else path.is_file():
        return path
    if path.exists():
        there = "folder" if path.is_dir() else "file" if path.is_file() else "special file"
        raise BadInput(f"{name} is a {there}, not a {wanted}")
    raise MissingFile(f"{name} does not exist{hint}")


def remove(path: Path) -> None:
    """Removes a file, link or folder tree at `path`, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def read_text(path: Path | str, *, errors: str = "strict") -> str:
    """A text file's contents, UTF-8 with or without a byte-order mark (dropped); MissingFile, or BadInput naming
    the file (and, with strict `errors`, the line when it is not UTF-8)."""
    path = require(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8", errors).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise BadInput(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x})") from None


def read_json(path: Path | str):
    """A JSON file's value (read as read_text reads text); MissingFile, or BadInput naming the file and the line where
    it stops being JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise BadInput(f"{path}:{err.lineno}: not JSON ({err.msg} at column {err.colno})") from None


@contextmanager
def atomic_path(path: Path, *, keep_partial: bool = False) -> Iterator[Path]:
    """Yields `path`.partial (nothing there yet) to write a file or build a folder in; when the block ends without
    an error it replaces `path`. A reader never sees a half-written `path`. After an error the partial one is
    removed, or with `keep_partial` left for inspection (the next call removes it)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    remove(partial)
    try:
        yield partial
    except BaseException:
        if not keep_partial:
            remove(partial)
        raise
    if path.is_dir() and partial.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)


def atomic_write_text(path: Path, text: str) -> None:
    """`text` as UTF-8, written atomically; a file name in it that is not UTF-8 keeps its own bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def atomic_write_json(path: Path, payload) -> None:
    """`payload` as indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
