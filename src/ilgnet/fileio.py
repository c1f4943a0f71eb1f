"""Files written whole or not at all, folders one process writes at a time, filesystems' room, and checksums of
large files."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ilgnet.errors import BadInput, InUse, MissingFile, UserError

CHUNK = 1 << 20
LOCK_FILE = ".ilgnet.lock"      # in a locked folder; the lock is the kernel's (flock), gone with the process


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
def atomic_paths(paths: list[Path]) -> Iterator[list[Path]]:
    """Yields `path`.partial for each of `paths` (nothing there yet) to write files or build folders in; when the
    block ends without an error, each partial one that was made replaces its path, and only once all of them are in
    place are the ones they replaced removed (so a reader never sees a half-written path, and what was there stays
    until its replacement is complete). After an error every partial one is removed and the paths are untouched."""
    paths = [Path(path) for path in paths]
    partials = [path.with_name(path.name + ".partial") for path in paths]
    for partial in partials:
        remove(partial)
    try:
        yield partials
    except BaseException:
        for partial in partials:
            remove(partial)
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
def atomic_path(path: Path) -> Iterator[Path]:
    """atomic_paths for one path: yields `path`.partial, which replaces `path` when the block ends without an error
    and is removed after one."""
    with atomic_paths([path]) as (partial,):
        yield partial


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


def _lock_holders(path: Path) -> list[int]:
    """The processes holding a flock on `path`, from the kernel's table (/proc/locks: `N: FLOCK ADVISORY WRITE PID
    MAJ:MIN:INODE 0 EOF`, device numbers in hex); empty where it cannot be read."""
    try:
        stat = os.stat(path)
        with open("/proc/locks") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    node = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    return sorted({int(fields[4]) for line in lines if len(fields := line.split()) >= 6
                   and fields[1] == "FLOCK" and fields[5] == node})


def _process(pid: int) -> str:
    """`PID (its command line)`, shortened; the PID alone where the command line cannot be read."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"{pid} ({command[:120]}{'...' if len(command) > 120 else ''})" if command else str(pid)


@contextmanager
def folder_lock(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """Holds `folder`'s lock (the kernel's flock on folder/LOCK_FILE) for the block: exclusive for a process that
    writes the folder, `shared` for one that reads it and must not see it rewritten. Another process holding it
    otherwise is InUse, naming its PID and command line. The kernel lets go when the process ends, however it ends.
    A folder that does not exist is not locked (the caller says what is missing); a reader where the lock file
    cannot be made (a read-only folder: nobody writes there) goes on unlocked."""
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
            who = f"process {', '.join(_process(pid) for pid in holders)}" if holders else "another process"
            raise InUse(f"{folder} is in use by {who}; wait for it to end (or stop it) and try again") from None
        yield
    finally:
        os.close(fd)


def filesystem(path: Path) -> str:
    """The filesystem `path` is on, in words: `DEVICE mounted at MOUNT` (from /proc/mounts), else the mount point."""
    path = Path(path).resolve()
    mount = next(p for p in (path, *path.parents) if os.path.ismount(p))
    try:
        with open("/proc/mounts") as table:
            devices = {fields[1].encode().decode("unicode_escape"): fields[0]
                       for line in table if len(fields := line.split()) >= 2}
    except OSError:
        devices = {}
    return f"{devices[str(mount)]} mounted at {mount}" if str(mount) in devices else f"the filesystem at {mount}"


@contextmanager
def reading(path: Path, what: str = "loading", *, progress: bool = True) -> Iterator[None]:
    """A line on stderr while the block reads a large file, `loading NAME (604 MB)`, cleared when it is done;
    like the progress bars, only on a terminal and with `progress`."""
    from tqdm import tqdm

    size = Path(path).stat().st_size if Path(path).is_file() else 0
    with tqdm(total=0, desc=f"{what} {Path(path).name} ({size / 1e6:,.0f} MB)", bar_format="{desc} ...",
              leave=False, file=sys.stderr, disable=None if progress else True):
        yield
