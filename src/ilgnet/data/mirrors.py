"""The pinned public mirrors of AVA: a repository on the Hub, one archive in it, the revision it is read at and the
archive's size and sha256 (the Hub's LFS metadata). The built-in ones are ava_mirrors.json beside this module; a
user adds one with a JSON file of the same form (`{"NAME": {"repo_id": ..., "filename": ..., "revision": ...,
"size": ..., "sha256": ...}}`). An archive whose sha256 differs is never extracted (ilgnet.data.ava_fetch).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ilgnet.errors import BadInput, lookup
from ilgnet.fileio import read_json

DEFAULT_MIRROR = "iqa-pytorch"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")


@dataclass(frozen=True)
class Mirror:
    """One archive of AVA on the Hub: `repo_id` (owner/name) of type `repo_type` (dataset or model), `filename` in
    it, read at `revision` (a commit), `size` in bytes and `sha256` (lower-case hex) of the archive."""
    name: str
    repo_id: str
    filename: str
    revision: str
    size: int
    sha256: str
    repo_type: str = "dataset"
    source: str = ""


def _mirror(name: str, entry, where: str) -> Mirror:
    """A Mirror from one JSON entry; BadInput naming `where` and the field at fault."""
    if not isinstance(entry, dict):
        raise BadInput(f"{where}: mirror {name!r} is not a JSON object")
    missing = [key for key in ("repo_id", "filename", "revision", "size", "sha256") if key not in entry]
    if missing:
        raise BadInput(f"{where}: mirror {name!r} lacks {', '.join(missing)}")
    unknown = sorted(set(entry) - {"repo_id", "repo_type", "filename", "revision", "size", "sha256", "source"})
    if unknown:
        raise BadInput(f"{where}: mirror {name!r} has unknown fields: {', '.join(unknown)}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(entry["sha256"])):
        raise BadInput(f"{where}: mirror {name!r}: sha256 is not 64 lower-case hex digits: {entry['sha256']!r}")
    if not isinstance(entry["size"], int) or isinstance(entry["size"], bool) or entry["size"] <= 0:
        raise BadInput(f"{where}: mirror {name!r}: size is not a positive number of bytes: {entry['size']!r}")
    if not str(entry["filename"]).lower().endswith(ARCHIVE_SUFFIXES):
        raise BadInput(f"{where}: mirror {name!r}: {entry['filename']} is none of the archive kinds read here "
                       f"({', '.join(ARCHIVE_SUFFIXES)})")
    if entry.get("repo_type", "dataset") not in ("dataset", "model"):
        raise BadInput(f"{where}: mirror {name!r}: repo_type is dataset or model, not {entry['repo_type']!r}")
    return Mirror(name=name, **{key: entry[key] for key in entry})


def mirrors(extra: Path | None = None) -> dict[str, Mirror]:
    """The built-in mirrors, plus those of the JSON file `extra` (which may not reuse a built-in name)."""
    text = resources.files("ilgnet.data").joinpath("ava_mirrors.json").read_text(encoding="utf-8")
    known = {name: _mirror(name, entry, "ava_mirrors.json") for name, entry in json.loads(text).items()}
    if extra is not None:
        added = read_json(extra)
        if not isinstance(added, dict):
            raise BadInput(f"{extra}: expected a JSON object of mirrors by name")
        for name, entry in added.items():
            if name in known:
                raise BadInput(f"{extra}: mirror {name!r} is a built-in name; give it another")
            known[name] = _mirror(name, entry, str(extra))
    return known


def get_mirror(name: str, extra: Path | None = None) -> Mirror:
    """The mirror called `name` (UnknownName listing the known ones otherwise)."""
    return lookup(mirrors(extra), name, "mirror", about="mirror")
