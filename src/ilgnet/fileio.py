"""Files written whole or not at all, folders one process writes at a time, checksums of large files, and the
filesystem's refusals (permission denied, a read-only file system, a full disk) as one-line errors."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ilgnet.errors import BadInput, FilesystemRefused, InUse, MissingFile, NoSpace, UserError

CHUNK = 1 << 20
LOCK_FILE = ".ilgnet.lock"      # in a locked folder; the lock is the kernel's (flock), gone with the process
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
        where = f"column {err.colno}" if err.msg.endswith(" at") else f"at column {err.colno}"   # "starting at"
        raise BadInput(f"{path}:{err.lineno}: not JSON ({err.msg} {where})") from None


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


def looks_like_html(head: bytes, content_type: str = "") -> bool:
    """Whether a response (its first bytes and Content-Type) is an HTML page."""
    start = head[:512].lstrip().lower()
    return content_type.startswith("text/html") or start.startswith((b"<!doctype html", b"<html"))


def page_title(page: str) -> str:
    """The title of an HTML page, blanks collapsed ("" without one)."""
    from bs4 import BeautifulSoup

    title = BeautifulSoup(page, "html.parser").title
    return " ".join(title.get_text().split()) if title else ""


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
        return NoSpace(f"{FULL[err.errno]} on {device} (mounted at {mount}, {size_text(free)} free) "
                       f"writing {name}{wanted}")
    if err.errno == errno.EROFS:
        return FilesystemRefused(f"cannot write {name}: {mount_of(name)[1]} is a read-only file system")
    return FilesystemRefused(f"{name}: {err.strerror or os.strerror(err.errno)}")


@contextmanager
def atomic_paths(paths: list[Path], *, needed: int | None = None) -> Iterator[list[Path]]:
    """Yields `path`.partial for each of `paths` (nothing there yet) to write files or build folders in; when the
    block ends without an error, each partial one that was made replaces its path, and only once all of them are in
    place are the ones they replaced removed (so a reader never sees a half-written path, and what was there stays
    until its replacement is complete). After an error every partial one is removed and the paths are untouched; a
    filesystem refusal (see `refusal`; `needed`: the bytes the block writes, for its message) is raised as
    FilesystemRefused naming the first path."""
    paths = [Path(path) for path in paths]
    partials = [path.with_name(path.name + ".partial") for path in paths]
    for partial in partials:
        remove(partial)
    try:
        yield partials
    except BaseException as err:
        written = sum(map(size_of, partials)) if isinstance(err, OSError) and err.errno in FULL else None
        for partial in partials:
            remove(partial)
        if isinstance(err, OSError) and (refused := refusal(err, paths[0], needed=needed, written=written)):
            raise refused from err
        raise
    replaced = []
    for path, partial in zip(paths, partials):
        if not (partial.exists() or partial.is_symlink()):
            continue
        if path.exists() or path.is_symlink():
            aside = path.with_name(path.name + ".replaced")
            remove(aside)
            os.replace(path, aside)
            replaced.append(aside)
        os.replace(partial, path)
    for aside in replaced:
        remove(aside)


@contextmanager
def atomic_path(path: Path, *, needed: int | None = None) -> Iterator[Path]:
    """atomic_paths for one path: yields `path`.partial, which replaces `path` when the block ends without an error
    and is removed after one."""
    with atomic_paths([path], needed=needed) as (partial,):
        yield partial


def size_of(path: Path) -> int:
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


def _lock_holders(path: Path, *, kind: str | None = None) -> list[int]:
    """The processes holding a flock on `path` (only those holding it as `kind`, WRITE or READ, when given), from
    the kernel's table (/proc/locks: `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`, device numbers in hex);
    empty where it cannot be read."""
    try:
        stat = os.stat(path)
        with open("/proc/locks") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    node = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    return sorted({int(fields[4]) for line in lines if len(fields := line.split()) >= 6
                   and fields[1] == "FLOCK" and fields[5] == node and kind in (None, fields[3])})


def _process(pid: int) -> str:
    """`PID (its command line)`, shortened; the PID alone where the command line cannot be read."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"{pid} ({command[:120]}{'...' if len(command) > 120 else ''})" if command else str(pid)


@contextmanager
def folder_lock(folder: Path, *, shared: bool = False,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Holds `folder`'s lock (the kernel's flock on folder/LOCK_FILE) for the block: exclusive for a process that
    writes the folder, `shared` for one that reads it and must not see it rewritten. Another process holding it
    otherwise is InUse, naming its PID and command line; with `on_wait`, a writer that finds only another writer
    there waits for it instead (two processes making the same thing: the second then finds the first's result, and
    re-checks it inside the block), after passing `on_wait` that writer's `PID (command line)`. The kernel lets go
    when the process ends, however it ends. A folder that does not exist is not locked (the caller says what is
    missing); a reader where the lock file cannot be made (a read-only folder: nobody writes there) goes on
    unlocked."""
    folder = Path(folder)
    if not folder.is_dir():
        yield
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        if shared and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            yield
            return
        raise UserError(f"cannot write in {folder}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = [pid for pid in _lock_holders(path) if pid != os.getpid()]
            writers = [pid for pid in _lock_holders(path, kind="WRITE") if pid != os.getpid()]
            who = f"process {', '.join(_process(pid) for pid in holders)}" if holders else "another process"
            if on_wait is None or shared or not writers or writers != holders:
                raise InUse(f"{folder} is in use by {who}; wait for it to end (or stop it) and try again") from None
            on_wait(who.removeprefix("process "))
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Holds the kernel's exclusive flock on the file `path` (made if missing, and left there: removing a lock file
    others may have opened would let two holders in) for the block, waiting while another process holds it: for
    two processes making the same cached file, the second then finds the first's (re-check it inside the block).
    OSError when the lock file cannot be made."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def filesystem(path: Path) -> str:
    """The filesystem `path` is on, in words: `DEVICE mounted at MOUNT` (mount_of)."""
    device, mount = mount_of(path)
    return f"{device} mounted at {mount}"


@contextmanager
def reading(path: Path, what: str = "loading", *, progress: bool = True) -> Iterator[None]:
    """A line on stderr while the block reads a large file, `loading NAME (604 MB)`, cleared when it is done;
    like the progress bars, only on a terminal and with `progress`."""
    from tqdm import tqdm

    size = Path(path).stat().st_size if Path(path).is_file() else 0
    with tqdm(total=0, desc=f"{what} {Path(path).name} ({size / 1e6:,.0f} MB)", bar_format="{desc} ...",
              leave=False, file=sys.stderr, disable=None if progress else True):
        yield

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
