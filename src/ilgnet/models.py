"""Which caffemodel and mean a model name means: the authors' published models by registry name, or a file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ilgnet import defaults
from ilgnet.errors import BadInput, MissingFile
from ilgnet.weights import PUBLISHED_MODELS, check_file, load_registry


@dataclass(frozen=True)
class Model:
    """A trained model ready to score: its caffemodel and the mean image it was trained with (None: not known)."""
    caffemodel: Path
    mean: Path | None
    published: str | None = None
    """The registry name of a published model, else None."""


def published_model(name: str, models: Path = defaults.MODELS_DIR, *, mean: Path | str | None = None) -> Model:
    """The authors' model `name` (ilgnet-ava1 / ilgnet-ava2) in `models`, with `mean` or else its published mean
    image. What is used must have been fetched (`ilgnet weights fetch NAME`; nothing is downloaded here); its size
    and checksums are checked."""
    registry = load_registry()
    entry = registry[name]
    mean_entry = registry[entry.companions[0]]
    caffemodel = Path(models) / entry.file
    needed = [(entry, caffemodel)] + ([] if mean else [(mean_entry, Path(models) / mean_entry.file)])
    for item, path in needed:
        if not path.is_file():
            raise MissingFile(f"{path} is missing: run `ilgnet weights fetch {name}` first")
        check_file(item, path)
    return Model(caffemodel, Path(mean) if mean else needed[-1][1], published=name)


def resolve_model(spec: str | Path, *, mean: Path | str | None = None, models: Path = defaults.MODELS_DIR) -> Model:
    """`spec` as a Model: ilgnet-ava1 / ilgnet-ava2 are the authors' models with, unless `mean` is given, the
    published mean image of the same split; anything else is a .caffemodel file, with `mean` (None when not
    given: the caller must ask for it)."""
    if str(spec) in PUBLISHED_MODELS:
        return published_model(str(spec), models, mean=mean)
    if Path(spec).is_dir():
        raise BadInput(f"model {spec} is a folder, not a .caffemodel")
    if not Path(spec).is_file():
        raise MissingFile(f"model {spec}: not {' or '.join(PUBLISHED_MODELS)}, and no such file")
    return Model(Path(spec), Path(mean) if mean else None)
