"""Argument types the commands share, and the table (`Arg`) in which each command declares its inputs and outputs
once. Each type checks one value while the command line is read, so a bad path or number stops the command before
it does any work, in one line that names the argument (argparse prefixes the message with `argument --name:`;
ilgnet.cli prints it as `ilgnet COMMAND: error: ...`, exit status 2). Where the library checks a value (a GPU list,
a model, a Ray address, a run name), the type calls the library's check; an error the library raises later about
an input (`UserError.about`) is named by the command's flag for it (`flag_of`)."""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from ilgnet.defaults import INT32_MAX
from ilgnet.errors import UsageError, UserError


def _fail(message: str):
    raise argparse.ArgumentTypeError(message)


def _library(check, text: str):
    """`check(text)`, a library function that raises UserError for a bad value, as an argument type's check."""
    try:
        check(text)
    except UserError as err:
        _fail(str(err))
    return text


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
    """Caffe's -gpu value: a GPU id, ids separated by commas, or `all` (ilgnet.bvlc.tools.check_gpu_spec)."""
    from ilgnet.bvlc.tools import check_gpu_spec

    return _library(check_gpu_spec, text)


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


def _writable(place: Path, path: Path) -> None:
    """`place` (`path`, or the folder it goes in) must be writable by this process: os.access asks the kernel, which
    refuses root too on a read-only mount or an immutable (chattr +i) file or folder."""
    folder = place.is_dir()
    if not os.access(place, os.W_OK | (os.X_OK if folder else 0)):
        try:
            read_only = os.statvfs(place).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        _fail(f"{'' if place == path else f'{path}: '}cannot write {'in ' if folder else ''}{place} "
              f"({'a read-only file system' if read_only else 'permission denied'})")


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


INPUT, OUTPUT, REPLACED, VALUE = "input", "output", "replaced", "value"


class Arg(NamedTuple):
    """An argument naming an input or output, declared once in the command module's `ARGS` table (read by
    `refuse_overwrites`, and by `flag_of` to name a library error's `about`). flag: as typed (`--out`, a positional's
    metavar `LOG`); attribute: args.<attribute>; kind: INPUT (read), OUTPUT (a file written), REPLACED (a folder
    written as a whole, every file inside too) or VALUE (a name or number, no file); what: an input's description,
    an output's default when left out; about: the library's name for it in UserError.about, if not `attribute`."""
    flag: str
    attribute: str
    kind: str
    what: str = ""
    about: str = ""


def flag_of(command, about: str | None) -> str | None:
    """The flag of `command`'s ARGS (a command module) that gives the input a library error is `about`, else None."""
    for arg in getattr(command, "ARGS", ()):
        if about is not None and about in (arg.about, arg.attribute):
            return arg.flag
    return None


class Output(NamedTuple):
    """A path written, as refuse_overwrites checks it: `name` as given (`--out`, `--csv (default: ...)`); `whole`: a
    folder replaced as a whole (an LMDB), every file inside it written too."""
    name: str
    path: Path
    whole: bool = False


def refuse_overwrites(table: Iterable[Arg], args, *, paths: Mapping[str, object] | None = None,
                      inputs: Iterable[tuple[Path | str, str]] = (), images: Mapping[str, str] | None = None) -> None:
    """Before any work: UsageError when a declared output (`table`: the command's ARGS) would overwrite an input,
    another output, or an existing photo (`--out *.jpg`, expanded by the shell; outputs in `images` write images and
    may replace one of their format: `images={"--png": ".png"}`). A declared path is `args.<attribute>` unless
    `paths` gives it (a default filled in, or a list of the files it stands for); VALUEs and Nones are skipped.
    `inputs`: more (path, what it is) read. Paths are compared resolved (symbolic links, `..`), an existing output
    with hard links by its inode too, each with its `NAME.partial` (ilgnet.fileio.atomic_path). The message names
    the argument and what the output is: `argument --out: IMG_0.jpg is one of the photos to score`."""
    paths = paths or {}
    outputs, read = [], []
    for arg in table:
        given = getattr(args, arg.attribute, None)
        value = paths.get(arg.attribute, given)
        if value is None or arg.kind == VALUE:
            continue
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        if arg.kind == INPUT:
            read += [(path, arg.what) for path in values]
        else:
            name = arg.flag if given is not None else f"{arg.flag} (default: {arg.what})"
            outputs += [Output(name, Path(path), whole=arg.kind == REPLACED) for path in values]
    _refuse(outputs, [*read, *inputs], images or {})


def _refuse(outputs: list[Output], inputs: list[tuple[Path | str, str]], images: Mapping[str, str]) -> None:
    """refuse_overwrites' checks of the outputs against the inputs, each other and existing photos."""
    from ilgnet.data.images import IMAGE_SUFFIXES

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
        if suffix in IMAGE_SUFFIXES and path.is_file() and suffix != images.get(flag):
            raise UsageError(f"argument {output.name}: {path} is a photo (did the shell expand a pattern after "
                             f"{flag}?)")
        resolved = os.path.realpath(path)
        if resolved in written:
            raise UsageError(f"argument {output.name}: {path} is written as {written[resolved]} already")
        written[resolved] = flag


def run_name(text: str) -> str:
    """A run's name: one plain folder name inside the runs folder (ilgnet.training.plan.run_folder)."""
    from ilgnet.training.plan import run_folder

    return _library(lambda name: run_folder(Path("."), name), text)


def model(text: str) -> str:
    """A published model's registry name (ilgnet-ava1, ilgnet-ava2), or a path that exists
    (ilgnet.zoo.models.check_model_spec; resolve_model says what it may be)."""
    from ilgnet.zoo.models import check_model_spec

    return _library(check_model_spec, text)


def plan(text: str) -> str:
    """A campaign plan: a built-in plan's name or a plan file that exists (ilgnet.paper.plans.check_plan_spec)."""
    from ilgnet.paper.plans import check_plan_spec

    return _library(check_plan_spec, text)


def ray_address(text: str) -> str:
    """The address of a Ray cluster: auto, HOST:PORT or ray://HOST:PORT ("" for a local Ray runtime;
    ilgnet.scoring.cluster.check_address)."""
    from ilgnet.scoring.cluster import check_address

    return _library(check_address, text)
