"""The checks of a plan file's values (ilgnet.paper.plans): training overrides, seeds, keys, paths, the recipe and
the [variant.NAME] tables. Each raises BadInput naming where in the plan the value is and what was expected."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from ilgnet import defaults
from ilgnet.errors import BadInput, lookup
from ilgnet.nets import get_variant
from ilgnet.nets.recipes import RECIPES

if sys.version_info >= (3, 11):
    import tomllib
else:                       # Python 3.10, which requires-python accepts: tomli is tomllib's origin, same API
    import tomli as tomllib

# TrainOptions fields a plan may set, with their type.
TRAIN_FIELDS = {"max_iter": int, "train_batch": int, "val_batch": int, "display": int, "test_interval": int,
                "snapshot": int, "base_lr": float}
# The smallest value of each: a count of iterations or images is at least 1; snapshot 0 means none on the way.
TRAIN_MINIMUM = {"max_iter": 1, "train_batch": 1, "val_batch": 1, "display": 1, "test_interval": 1, "snapshot": 0}


def toml_document(path: Path, text: str) -> dict:
    """The TOML document `text` of the plan file `path`; BadInput `PATH:LINE:COLUMN: not TOML: WHAT` on a syntax
    error, with tomllib (3.11 on) and tomli (3.10) alike: their `lineno`/`colno` where they have them (tomli 2.1 on),
    else read off the message (`(at line L, column C)`), and the document's end for `(at end of document)`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(getattr(err, "msg", "") or err)
        at = re.search(r" \(at (line (\d+), column (\d+)|end of document)\)$", message)
        line, column = getattr(err, "lineno", None), getattr(err, "colno", None)
        if at:
            message = message[:at.start()]
            if line is None and at[2]:
                line, column = int(at[2]), int(at[3])
            elif line is None:
                line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
        raise BadInput(f"{path}:{line}:{column}: not TOML: {message}" if line else f"{path}: not TOML: {message}") \
            from None


def check_train(train: dict, where: str) -> None:
    """BadInput unless every key of `train` is a TRAIN_FIELDS option with a value of its type and range."""
    for key, value in train.items():
        kind = lookup(TRAIN_FIELDS, key, f"training option of {where}")
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise BadInput(f"{where}: {key} = {value!r}: expected {'a number' if kind is float else 'an integer'}")
        if kind is float and not 0 < value < float("inf"):
            raise BadInput(f"{where}: {key} = {value!r}: expected a positive number")
        if kind is int and not TRAIN_MINIMUM[key] <= value <= defaults.INT32_MAX:
            raise BadInput(f"{where}: {key} = {value!r}: expected an integer from {TRAIN_MINIMUM[key]} to "
                           f"{defaults.INT32_MAX}")


def seeds(value, where: str) -> tuple[int, ...]:
    if not (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                      and 0 <= s <= defaults.INT32_MAX for s in value)):
        raise BadInput(f"{where}: seeds must be a list of integers from 0 to {defaults.INT32_MAX}, got {value!r}")
    if len(set(value)) < len(value):        # a seed twice would be one run, counted twice in a mean over seeds
        raise BadInput(f"{where}: seed {next(s for s in value if value.count(s) > 1)} is listed twice in {value!r}")
    return tuple(value)


def keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(allowed))}")


def path(value, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{where}: expected a path as a string, got {value!r}")
    return Path(value)


def recipe(value, where: str) -> str:
    if not isinstance(value, str) or value not in RECIPES:
        raise BadInput(f"{where}: recipe = {value!r}: expected one of {', '.join(RECIPES)}")
    return value


def by_variant(document: dict) -> dict[str, dict]:
    """The [variant.NAME] tables of a plan file, checked: NAME -> training overrides."""
    tables = document.get("variant", {})
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise BadInput("variant must hold tables of training options: [variant.NAME]")
    for name, train in tables.items():
        get_variant(name)
        check_train(train, f"[variant.{name}]")
    return tables
