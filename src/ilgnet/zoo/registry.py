"""The registry of pretrained weights (weights.json): where each file comes from, how to tell that what arrived is
the right file, and fetching it through ilgnet.zoo.download.

A file is renamed into place only once every check passed, so a file under its final name is always complete.
The ILGNet models have no published checksum, so their size (as the authors' caffe test logs report it) is
checked and the file must parse as a Caffe NetParameter whose layers fit the deploy net of the registered variant
(ilgnet.bvlc.fit); an ImageNet model without one must fit the trunk of the variant it initialises.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ilgnet import defaults, nets
from ilgnet.bvlc.fit import check_finetuning, check_fits
from ilgnet.bvlc.shapes import param_shapes
from ilgnet.errors import BadInput, DownloadError, lookup
from ilgnet.fileio import atomic_path, file_digest
from ilgnet.zoo.download import HostUnreachable, HtmlPageServed, discard_part, download_part

REGISTRY = Path(__file__).with_name("weights.json")
PUBLISHED_MODELS = ("ilgnet-ava1", "ilgnet-ava2")


@dataclass(frozen=True)
class Weights:
    """One registry entry: where a file comes from and how to tell that what arrived is the right file."""
    name: str
    file: str
    url: str
    about: str = ""
    source: str = ""
    sha1: str | None = None
    sha256: str | None = None
    size: int | None = None
    fits_variant: str | None = None
    """A trained model of this variant: its layers must fit the variant's deploy net exactly."""
    trunk_of: str | None = None
    """An ImageNet model that variant fine-tunes from: its layers must fit that variant's trunk."""
    mean: str | None = None
    """A trained model's mean image: the registry entry of the .binaryproto it was trained and tested with."""
    train_list: str | None = None
    """A trained model's training list: the registry entry of the list file of the images it was trained on."""
    resize: int | None = None
    """A trained model's input size: the side of the square its training photos were resized to (the size of the
    published mean image it was trained with)."""

    @property
    def companions(self) -> tuple[str, ...]:
        """The entries fetched with this one: its mean image and training list."""
        return tuple(name for name in (self.mean, self.train_list) if name)


def load_registry(path: Path = REGISTRY) -> dict[str, Weights]:
    """name -> Weights for every entry of weights.json (its keys are the fields of Weights)."""
    entries = json.loads(Path(path).read_text())
    return {name: Weights(name=name, **spec) for name, spec in entries.items()}


def check_file(entry: Weights, path: Path) -> None:
    """Size and checksums, whichever the registry gives: raises BadInput naming the file on a mismatch."""
    actual = path.stat().st_size
    if entry.size is not None and actual != entry.size:
        raise BadInput(f"{path}: {actual:,} bytes, but {entry.name} has {entry.size:,} bytes")
    for algorithm in ("sha1", "sha256"):
        expected = getattr(entry, algorithm)
        if expected and (got := file_digest(path, algorithm)) != expected:
            raise BadInput(f"{path}: {algorithm} {got} does not match {entry.name}'s {expected}")


def verify(entry: Weights, path: Path) -> None:
    """Every check the registry allows for `entry`: the layer fit (ilgnet.bvlc.fit) of a trained model to its variant's
    deploy net or of an ImageNet model to the trunk of the variant it initialises (first: it says what a wrong file
    is, an HTML page say), then size and checksums."""
    if entry.fits_variant:
        check_fits(path, nets.deploy(entry.fits_variant), allowed_unused=trained_layers(entry.fits_variant))
    if entry.trunk_of:
        check_finetuning(path, nets.training_net(entry.trunk_of), nets.fresh_layers(entry.trunk_of))
    check_file(entry, path)


def trained_layers(variant: str) -> set[str]:
    """Layers with weights in a caffemodel trained as `variant`: its training net's (a deploy net leaves out the
    auxiliary classifiers of googlenet-bn-*, which such a caffemodel still holds)."""
    return set(param_shapes(nets.training_net(variant)))


def download(entry: Weights, path: Path, *, progress: bool = True) -> Path:
    """Downloads `entry` to `path` through `path.part` (resuming a previous partial file) and renames it into
    place only after `verify` passed; a file failing verification is deleted. Raises DownloadError (network; a
    host that does not answer in one line naming it and how to fetch by hand and `ilgnet weights install`) or
    BadInput (an HTML page, a file failing a check)."""
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    try:
        download_part(entry.url, partial, size=entry.size, label=entry.file, progress=progress)
    except HtmlPageServed as err:
        said = f" saying {err.reason!r}" if err.reason else ""
        raise BadInput(
            f"{err.url} served an HTML page ({err.title or 'untitled'!r}){said} instead of {entry.file}; nothing was "
            f"saved. The host may be refusing the download (Google Drive does so when a file's download quota is "
            f"exceeded); download {entry.file} by hand (see {entry.source}), put it at {path} and run "
            f"`ilgnet weights check {entry.name}`") from None
    except HostUnreachable as err:
        raise DownloadError(f"{err}: {entry.file} was not downloaded. Fetch {entry.url} by hand (a browser, or "
                            f"another machine){f'; see {entry.source}' if entry.source else ''}, then run `ilgnet "
                            f"weights install {entry.name} FILE`") from None
    try:
        verify(entry, partial)
    except BadInput as err:
        discard_part(partial)
        raise BadInput(f"{err}; the download was deleted") from None
    os.replace(partial, path)
    discard_part(partial)               # its record
    return path


def get_entry(name: str, registry: dict[str, Weights] | None = None) -> Weights:
    """The entry called `name` (of `registry`, by default the package's); UnknownName (about "entry") otherwise."""
    return lookup(registry or load_registry(), name, f"weights entry of {REGISTRY.name}", about="entry")


def fetch(name: str, dest: Path = defaults.MODELS_DIR, *, registry: dict[str, Weights] | None = None,
          progress: bool = True) -> Path:
    """The file of registry entry `name` under `dest`: downloaded and verified when missing, else checked (size and
    checksums). The entry's companions (a model's mean file) are fetched first."""
    registry = registry or load_registry()
    entry = get_entry(name, registry)
    for companion in entry.companions:
        fetch(companion, dest, registry=registry, progress=progress)
    path = Path(dest) / entry.file
    if path.exists():
        try:
            check_file(entry, path)
        except BadInput as err:
            raise BadInput(f"{err}; delete it to download {entry.name} again") from None
        return path
    return download(entry, path, progress=progress)


def install(name: str, file: Path, dest: Path = defaults.MODELS_DIR, *,
            registry: dict[str, Weights] | None = None) -> Path:
    """A file fetched by hand, put in place as registry entry `name`: every check of `verify` first, then a copy
    under the registry's file name in `dest`, renamed into place only when whole. `file` itself is left as it is.
    Returns the installed path."""
    registry = registry or load_registry()
    entry = get_entry(name, registry)
    verify(entry, Path(file))
    path = Path(dest) / entry.file
    if path.exists() and path.samefile(file):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, needed=Path(file).stat().st_size) as partial:
        shutil.copyfile(file, partial)
    return path
