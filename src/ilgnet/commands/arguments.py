"""Argument types the commands share. Each checks one value while the command line is read, so a bad path or
number stops the command before it does any work, in one line that names the argument (argparse prefixes the
message with `argument --name:`; ilgnet.cli prints it as `ilgnet COMMAND: error: ...`, exit status 2)."""
from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

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
    """A folder that exists."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"{path} is a file, not a folder")
    if not path.is_dir():
        _fail(f"folder {path} does not exist")
    return path


def _writable_place(path: Path) -> None:
    """The nearest existing folder above `path` must be a folder this process can write in."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                _fail(f"{path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                _fail(f"{path}: cannot write in {parent}")
            return


def output_file(text: str) -> Path:
    """A file to write (made with the folders above it when missing): not a folder."""
    path = Path(text)
    if path.is_dir():
        _fail(f"{path} is a folder; give a file name")
    _writable_place(path)
    return path


def output_folder(text: str) -> Path:
    """A folder to write into (made when missing): not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        _fail(f"{path} is a file, not a folder")
    _writable_place(path)
    return path


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
