"""The errors a user can fix: `ilgnet` prints them in one line and exits 1; every other exception is a bug and
keeps its traceback. ILGNET_DEBUG=1 shows the traceback of these too.

Each is also the built-in exception it refines (a missing file is a FileNotFoundError), so library callers can
catch either. Messages name the file, line, layer or value at fault, never a command-line flag: the library does
not know how it was called. An error about one of its caller's inputs says which in `about`, in the library's own
words (`about="model"`); ilgnet.cli puts the command's flag for it in front (docs/ARCHITECTURE.md, refusals).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar


class UserError(Exception):
    """Something the user can fix: a bad input, a missing file, an unknown name, a tool that failed. `about`: the
    input it is about, named as the raising function names its parameter ("model", "gpu", "mirror"), else None."""

    def __init__(self, *args, about: str | None = None):
        super().__init__(*args)
        self.about = about


class UsageError(Exception):
    """A command line that argparse cannot refuse by itself (arguments needed together, a flag that contradicts
    another), raised by a command before it does any work; ilgnet.cli prints it as argparse's own errors: one line,
    exit status 2. The one error that names flags, so the library never raises it."""


class BadInput(UserError, ValueError):
    """An input that is malformed or out of range: the message names the file and line, or the value."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder that should exist does not."""


class UnknownName(BadInput):
    """A name (variant, solver profile, registry entry) that is not one of the known ones."""


class CaffeNotFoundError(UserError, RuntimeError):
    """Caffe's tools or pycaffe are missing."""


class MissingPackage(UserError, ImportError):
    """An optional Python package a feature needs is not installed; the message says how to install it."""


class ToolFailed(UserError, RuntimeError):
    """A Caffe tool or Docker exited with an error or was killed; one line with its last error line and its log."""


class InUse(UserError, BlockingIOError):
    """A folder another process is writing in (or reading from while this one would write): its lock is held."""


class DownloadError(UserError, OSError):
    """A download that could not be completed or verified; nothing incomplete is left under the final name."""


class FilesystemRefused(UserError, OSError):
    """The filesystem refused a read or a write (permission denied, a read-only or immutable file or folder, no space
    left, a quota): the message names the file, and for a full disk the device, its free space and what the step
    needed (ilgnet.fileio.refusal)."""


class NoSpace(FilesystemRefused):
    """A filesystem ran out of room (ENOSPC, a quota, an LMDB that could not grow): the message says which, how much
    the step needed and how much was free."""


T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str, *, about: str | None = None) -> T:
    """table[name], or UnknownName (with `about`) listing the known names: `lookup(VARIANTS, "ilgnet", "net
    variant")`."""
    try:
        return table[name]
    except KeyError:
        raise UnknownName(f"unknown {what} {name!r}; known: {', '.join(table)}", about=about) from None


@contextmanager
def about(source) -> Iterator[None]:
    """BadInput raised in the block names `source` (a file) first, unless its message names it already:
    `with about(deploy): check(read_prototxt(deploy))`. The file is then what is at fault, so the error is `about`
    no parameter any more (a variant named in a run's record is not the caller's variant)."""
    try:
        yield
    except BadInput as err:
        if str(source) in str(err):
            err.about = None
            raise
        raise type(err)(f"{source}: {err}") from None
