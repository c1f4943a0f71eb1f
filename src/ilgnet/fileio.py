"""Files written whole or not at all, checksums of large files, and the filesystem's refusals (permission denied, a
read-only file system, a full disk) as one-line errors."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ilgnet.errors import BadInput, FilesystemRefused, MissingFile

CHUNK = 1 << 20
FULL = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded"}
REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS, *FULL}
"""The errno values of a filesystem refusing a read or write (Linux's open(2), write(2), rename(2)): refused to
the user in one line (`refusal`), never a traceback."""


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


def mount_of(path: Path | str) -> tuple[str, Path]:
    """(device, mount point) of the filesystem holding `path` or, when it does not exist, its nearest existing
    folder: the device as /proc/self/mounts names it (`/dev/sda1`, `tmpfs`), or the mount point where that file is
    missing."""
    place = Path(os.path.abspath(path))
    while not place.exists() and place != place.parent:
        place = place.parent
    place = place.resolve()
    while not os.path.ismount(place):
        place = place.parent
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = [line.split() for line in f]
    except OSError:
        mounts = []
    # The last line for a mount point is the one on top (mounts stack); names escape blanks as \040.
    devices = [fields[0] for fields in mounts if len(fields) > 1 and fields[1].replace("\\040", " ") == str(place)]
    return (devices[-1] if devices else str(place)), place


def size_text(count: int | float) -> str:
    """A byte count as tqdm prints it, in powers of 1000 (`size_text(12_345_678)` is `12.3MB`), and below 1 kB as
    whole bytes (`162B`)."""
    from tqdm import tqdm

    return f"{count:.0f}B" if count < 1000 else tqdm.format_sizeof(count, "B", 1000)


def refusal(err: OSError, path: Path | str | None = None, *, needed: int | None = None,
            written: int | None = None) -> FilesystemRefused | None:
    """The one-line error for a filesystem refusal (`err.errno` in REFUSED), else None, naming `path` (the file the
    user knows, where `err` is about a temporary one) or else the file `err` names. For a full disk: the device and
    mount point, their free space, and `needed` (the bytes the step writes) or else `written` (the bytes it had
    written when the disk filled): `no space left on /dev/sdb1 (mounted at /data, 0B free) writing out.csv, which
    needs 12.3MB`."""
    if err.errno not in REFUSED or isinstance(err, FilesystemRefused):
        return None
    name = path if path is not None else err.filename
    if name is None:                    # write(2) on an open file: the error names no file
        return FilesystemRefused(f"{err.strerror or os.strerror(err.errno)} (writing a file it does not name)")
    if err.errno in FULL:
        device, mount = mount_of(name)
        free = shutil.disk_usage(mount).free
        wanted = (f", which needs {size_text(needed)}" if needed is not None else
                  f" ({size_text(written)} written when it filled)" if written else "")
        return FilesystemRefused(f"{FULL[err.errno]} on {device} (mounted at {mount}, {size_text(free)} free) "
                                 f"writing {name}{wanted}")
    if err.errno == errno.EROFS:
        return FilesystemRefused(f"cannot write {name}: {mount_of(name)[1]} is a read-only file system")
    return FilesystemRefused(f"{name}: {err.strerror or os.strerror(err.errno)}")


@contextmanager
def atomic_path(path: Path, *, keep_partial: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Yields `path`.partial (nothing there yet) to write a file or build a folder in; when the block ends without
    an error it replaces `path`. A reader never sees a half-written `path`. After an error the partial one is
    removed, or with `keep_partial` left for inspection (the next call removes it), except after a full disk, where
    it would keep the disk full. A filesystem refusal (see `refusal`; `needed`: the bytes the block writes, for its
    message) is raised as FilesystemRefused naming `path`."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        remove(partial)
        yield partial
        if path.is_dir() and partial.is_dir():
            shutil.rmtree(path)
        os.replace(partial, path)
    except BaseException as err:
        full = isinstance(err, OSError) and err.errno in FULL
        written = _size(partial) if full else None
        if full or not keep_partial:
            remove(partial)
        if isinstance(err, OSError) and (refused := refusal(err, path, needed=needed, written=written)):
            raise refused from err
        raise


def _size(path: Path) -> int:
    """Bytes in a file, or in all files under a folder (0 when missing)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` written atomically (atomic_path; a full disk's message says how much it needed)."""
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """`text` as UTF-8, written atomically; a file name in it that is not UTF-8 keeps its own bytes."""
    atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a spreadsheet cell that it would read as a formula starts (CWE-1236; OWASP's CSV injection page)."""


def spreadsheet_csv(frame, **options) -> str:
    """A pandas DataFrame as CSV text (`frame.to_csv(index=False, **options)`) safe to open in a spreadsheet: a text
    cell starting with = + - @, a tab or a carriage return gets a leading `'`, which spreadsheets read as "this is
    text" (OWASP's advice against CSV injection, CWE-1236). Numbers are written as they are. Formats meant for
    programs (JSON lines, Parquet) keep the exact text instead. A carriage return inside a cell, which Python's csv
    writer leaves unquoted when lines end in a line feed, makes every text cell quoted, so the rows stay whole."""
    import csv

    import pandas as pd

    safe = frame.copy()
    carriage_return = False
    for column in [name for name, dtype in safe.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]:
        cells = [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell
                 for cell in safe[column]]
        carriage_return |= any(isinstance(cell, str) and "\r" in cell for cell in cells)
        # Kept as Python objects: pandas would make Arrow strings, which cannot hold a name that is not UTF-8.
        safe[column] = pd.Series(cells, index=safe.index, dtype=object)
    if carriage_return:
        options.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    return safe.to_csv(index=False, **options)
