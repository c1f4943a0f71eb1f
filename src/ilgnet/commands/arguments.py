"""Argument types the commands share. Each checks one value while the command line is read, so a bad path or
number stops the command before it does any work, in one line that names the argument (argparse prefixes the
message with `argument --name:`; ilgnet.cli prints it as `ilgnet COMMAND: error: ...`, exit status 2)."""
from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from ilgnet.defaults import INT32_MAX


class UsageError(Exception):
    """A command line that argparse cannot refuse by itself (arguments needed together), raised by a command before
    it does any work; ilgnet.cli prints it as argparse's own errors: one line, exit status 2."""


def _fail(message: str):
    raise argparse.ArgumentTypeError(message)


def integer(minimum: int, maximum: int = INT32_MAX):
    """An integer from `minimum` to `maximum` (by default the largest int32, so that a count or seed Caffe stores
    in an int32 field never overflows it) as an argument type."""
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            _fail(f"expected an integer, got {text!r}")
        if not minimum <= value <= maximum:
            most = f" and at most {maximum}" if maximum < INT32_MAX or value > maximum else ""
            _fail(f"must be at least {minimum}{most}, got {value}")
        return value
    return check


def real(minimum: float, maximum: float = math.inf, *, above: bool = False):
    """A finite number from `minimum` (excluded when `above`) to `maximum` as an argument type."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            _fail(f"expected a number, got {text!r}")
        if not math.isfinite(value) or value < minimum or (above and value == minimum) or value > maximum:
            bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
            _fail(f"must be {bound}{f' and at most {maximum:g}' if maximum < math.inf else ''}, got {text}")
        return value
    return check


def gpus(text: str) -> str:
    """Caffe's -gpu value: a GPU id, ids separated by commas, or `all`."""
    if text != "all" and not re.fullmatch(r"\d+(,\d+)*", text):
        _fail(f"expected a GPU id, ids separated by commas (0,1) or all, got {text!r}")
    return text


def existing_file(text: str) -> Path:
    """A file that exists and can be read."""
    path = Path(text)
    if path.is_dir():
        _fail(f"{path} is a folder, not a file")
    if not path.is_file():
        _fail(f"{path} does not exist")
    if not os.access(path, os.R_OK):
        _fail(f"{path} cannot be read")
    return path


def existing_folder(text: str) -> Path:
    """A folder that exists and whose files can be listed and read."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"{path} is a file, not a folder")
    if not path.is_dir():
        _fail(f"folder {path} does not exist")
    if not os.access(path, os.R_OK | os.X_OK):
        _fail(f"folder {path} cannot be read")
    return path


def _why_not_writable(place: Path) -> str:
    """Why this process cannot write in or to `place`: a read-only file system, or permission (mode bits, an
    immutable flag, which even root cannot pass)."""
    try:
        read_only = os.statvfs(place).f_flag & os.ST_RDONLY
    except OSError:
        read_only = False
    return "a read-only file system" if read_only else "permission denied"


def _writable(place: Path, path: Path) -> None:
    """`place` (`path`, or the folder it goes in) must be writable by this process: os.access asks the kernel, which
    refuses root too on a read-only mount or an immutable (chattr +i) file or folder."""
    folder = place.is_dir()
    if not os.access(place, os.W_OK | (os.X_OK if folder else 0)):
        _fail(f"{'' if place == path else f'{path}: '}cannot write {'in ' if folder else ''}{place} "
              f"({_why_not_writable(place)})")


def _writable_place(path: Path) -> None:
    """`path` when it exists (and the folder of an existing file, which is replaced by a rename), else the nearest
    existing folder above it, must be writable."""
    if path.exists():
        _writable(path, path)
        if not path.is_dir():
            _writable(path.parent, path)
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                _fail(f"{path}: {parent} is a file, not a folder")
            _writable(parent, path)
            return


def output_file(text: str) -> Path:
    """A file to write (made with the folders above it when missing): not a folder (nor a name ending in /), and
    where it exists, one this process may replace."""
    path = Path(text)
    if path.is_dir() or text.endswith("/"):
        _fail(f"{text} is a folder; give a file name")
    _writable_place(path)
    return path


class Format(NamedTuple):
    """What an output flag writes: `what` names it in a refusal ("a CSV table"), `suffixes` are the names it may
    have (lower case, with the dot)."""
    what: str
    suffixes: tuple[str, ...]


CSV = Format("a CSV table", (".csv",))
PNG = Format("a PNG image", (".png",))
JSON = Format("JSON", (".json",))
MARKDOWN = Format("a markdown table", (".md", ".markdown"))
HTML = Format("an HTML page", (".html", ".htm"))
ONNX = Format("an ONNX model", (".onnx",))
# The table of `ilgnet predict --out`: its format is chosen by the suffix or by --format (commands.predict).
TABLE = Format("a table (CSV, JSON lines or Parquet)", (".csv", ".txt", ".jsonl", ".json", ".parquet", ""))
# Suffixes no output of a command may take but the one of that format: each is a file of another kind.
_OTHER_FILES = {".caffemodel": "a caffemodel", ".binaryproto": "a mean image", ".npy": "a NumPy array",
                ".prototxt": "a net or solver definition", ".mdb": "an LMDB file", ".log": "a log",
                ".pdf": "a PDF document", ".svg": "an SVG image"}


def _kind(suffix: str) -> str | None:
    """What a file named with `suffix` holds, where it is one the toolkit or a viewer knows by its name."""
    from ilgnet.data.images import IMAGE_SUFFIXES

    for known in (CSV, JSON, MARKDOWN, HTML, ONNX, PNG):
        if suffix in known.suffixes:
            return known.what
    return "an image" if suffix in IMAGE_SUFFIXES else _OTHER_FILES.get(suffix)


def _check_suffix(path: Path, fmt: Format, *, closed: bool) -> None:
    """Refuses `path` for an output of `fmt`: an existing photo (the shell expanded a pattern), a name of another
    known kind, or (`closed`) any name not ending in one of `fmt.suffixes`."""
    from ilgnet.data.images import IMAGE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in fmt.suffixes:
        return
    if suffix in IMAGE_SUFFIXES and path.is_file():
        _fail(f"{path} is a photo, not {fmt.what} (did the shell expand a pattern?)")
    kind = _kind(suffix)
    if closed or kind is not None:
        names = ", ".join(s for s in fmt.suffixes if s)
        named = f"{path} is the name of {kind}" if kind else f"{path} does not end in {names.replace(', ', ' or ')}"
        _fail(f"{named}; this writes {fmt.what}" + (f" ({names})" if kind else ""))


def output_of(fmt: Format, *, closed: bool = True):
    """An argument type: a file to write (`output_file`) of format `fmt`, checked by its name at argument time, so
    that a CSV under an image's name, an image under .csv or a slip of the shell naming the caffemodel, the mean or a
    photo is refused before any work. `closed`: the name must end in one of `fmt.suffixes`; otherwise only the
    suffixes of other known kinds (images, HTML, markdown, models, means) are refused."""
    def check(text: str) -> Path:
        path = output_file(text)
        _check_suffix(path, fmt, closed=closed)
        return path
    return check


def output_folder(text: str) -> Path:
    """A folder to write into (made when missing): not a file, not a new name of a known file kind (report.html, a
    photo's name), and where it exists, one this process may write in."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"{path} is a file, not a folder")
    kind = None if path.is_dir() else _kind(path.suffix.lower())
    if kind is not None:
        _fail(f"{path} is the name of {kind}; give a folder")
    _writable_place(path)
    return path


class Output(NamedTuple):
    """A path a command writes, for `refuse_overwrites`: `name` is how the user gave it (`--out`, or
    `--csv (default: train_log.csv beside LOG)`); with `whole`, a folder the command replaces as a whole (an LMDB),
    so that every file inside it is written too."""
    name: str
    path: Path
    whole: bool = False


def weights_input(weights: Path) -> tuple[Path, str]:
    """A model's weights file as `refuse_overwrites` takes an input: its caffemodel, or the ONNX file given instead."""
    return weights, f"the model's {'ONNX file' if Path(weights).suffix.lower() == '.onnx' else 'caffemodel'}"


def refuse_overwrites(outputs: Iterable[Output], inputs: Iterable[tuple[Path | str, str]], *,
                      images: Mapping[str, str] | None = None) -> None:
    """Before any work: UsageError when an output would overwrite one of the command's inputs, another of its
    outputs, or an existing photo (`--out *.jpg`, which the shell expands to the photos; outputs named in `images`
    write images themselves may replace one of their own format: `images={"--png": ".png"}`).

    `inputs` are (path, what it is: "one of the photos to score"). Paths are compared resolved (`./a`, `a`, symbolic
    links and `..` are one path), and an existing output with several hard links by its inode too. Each output is
    checked with its temporary `NAME.partial` (ilgnet.fileio.atomic_path). The message names the argument and what
    the output is: `argument --out: IMG_0.jpg is one of the photos to score`."""
    from ilgnet.data.images import IMAGE_SUFFIXES

    outputs = [output for output in outputs if output.path is not None]
    known: dict[str, str] = {}
    for path, what in inputs:
        known.setdefault(os.path.realpath(path), what)
    written: dict[str, str] = {}
    for output in outputs:
        path = Path(output.path)
        for target in (path, path.with_name(path.name + ".partial")):
            what = known.get(os.path.realpath(target))
            if what is None and output.whole:
                inside = [p for p in known if Path(p).is_relative_to(os.path.realpath(target))]
                what = f"a folder holding {inside[0]}, {known[inside[0]]}" if inside else None
            if what is not None:
                temporary = f" (its temporary file {target.name})" if target is not path else ""
                raise UsageError(f"argument {output.name}: {path}{temporary} is {what}")
        if path.is_file() and os.stat(path).st_nlink > 1:
            inode = os.stat(path)[1:3]
            for other, what in known.items():
                if os.path.exists(other) and os.stat(other)[1:3] == inode:
                    raise UsageError(f"argument {output.name}: {path} is a hard link to {other}, {what}")
        flag = output.name.split()[0]
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES and path.is_file() and suffix != (images or {}).get(flag):
            raise UsageError(f"argument {output.name}: {path} is a photo (did the shell expand a pattern after "
                             f"{flag}?)")
        resolved = os.path.realpath(path)
        if resolved in written:
            raise UsageError(f"argument {output.name}: {path} is written as {written[resolved]} already")
        written[resolved] = flag


def run_name(text: str) -> str:
    """A run's name: one plain folder name inside the runs folder (ilgnet.training.runs.run_folder)."""
    from ilgnet.errors import BadInput
    from ilgnet.training.runs import run_folder

    try:
        run_folder(Path("."), text)
    except BadInput as err:
        _fail(str(err))
    return text


def model(text: str) -> str:
    """A published model's registry name (ilgnet-ava1, ilgnet-ava2), or a path that exists (ilgnet.zoo.models says
    what it may be)."""
    from ilgnet.zoo.registry import PUBLISHED_MODELS

    if text not in PUBLISHED_MODELS and not Path(text).exists():
        _fail(f"{text}: not {' or '.join(PUBLISHED_MODELS)}, and no such file")
    return text


def plan(text: str) -> str:
    """A campaign plan: a built-in plan's name (ilgnet.paper.plans.BUILT_IN) or a plan file that exists."""
    from ilgnet.paper.plans import BUILT_IN

    if text not in BUILT_IN:
        path = Path(text)
        if path.is_dir():
            _fail(f"{path} is a folder, not a plan file")
        if not path.is_file():
            _fail(f"{text}: not a built-in plan ({', '.join(BUILT_IN)}) and no such file")
    return text


def ray_address(text: str) -> str:
    """The address of a Ray cluster: auto, HOST:PORT or ray://HOST:PORT ("" for a local Ray runtime)."""
    if text and not (text == "auto" or "://" in text or re.fullmatch(r"[\w.-]+:\d+", text)):
        _fail(f"{text}: not a Ray address (auto, HOST:PORT or ray://HOST:PORT)")
    return text
