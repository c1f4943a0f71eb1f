"""AVA fetched from a pinned mirror (ilgnet.data.mirrors) into the layout this toolkit reads:

    AVA_ROOT/AVA.txt, AVA_ROOT/images/<id>.jpg, AVA_ROOT/aesthetics_image_lists/*.jpgl (tags.txt, challenges.txt)

Steps, each resumable: room checked (`room_needed`) before any request; the archive downloaded by huggingface_hub
into AVA_ROOT/.ilgnet-download (its resume, revision pinning and metadata; the pins in pyproject.toml keep a
version that resumes a download another process left); its size and sha256 checked before anything is extracted
(a mismatch removes it); AVA.txt and the photos found wherever the archive puts them (`layout`: the mirrors do not
document theirs); each file extracted to NAME.partial and renamed, so a photo under its final name is whole, and
files already there at their size skipped after a Ctrl-C. The archive is removed after a complete extraction unless
kept. AVA_ROOT/.ilgnet-download/fetch.json records what is done.
"""
from __future__ import annotations

import os
import re
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ilgnet.data.mirrors import Mirror
from ilgnet.errors import BadInput, DownloadError, NoSpace, UserError
from ilgnet.fileio import CHUNK, atomic_write_json, mount_of, read_json, remove, size_of, size_text

DOWNLOAD_DIR = ".ilgnet-download"
STATE = "fetch.json"
PHOTO = re.compile(r"(\d+)\.jpe?g", re.IGNORECASE)
LISTS = "aesthetics_image_lists"
METADATA = {"ava.txt": "AVA.txt", "tags.txt": "tags.txt", "challenges.txt": "challenges.txt"}
# Room kept free beyond the estimate: file system blocks, the manifest, the LMDBs' first steps.
MARGIN = 1 << 30
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")       # a revision the Hub's resolve URL is documented to take as a commit


@dataclass
class Layout:
    """Where each archive member goes: `targets` maps a member's name to its path under AVA_ROOT; `sizes` the
    members' bytes; `duplicates` photo ids met twice (the first kept)."""
    targets: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    photos: int = 0
    duplicates: list[int] = field(default_factory=list)


def download_dir(root: Path) -> Path:
    """AVA_ROOT/.ilgnet-download: the archive while it downloads and until it is extracted, and fetch.json."""
    return Path(root) / DOWNLOAD_DIR


def read_state(root: Path) -> dict:
    """fetch.json ({} when absent)."""
    path = download_dir(root) / STATE
    return read_json(path) if path.is_file() else {}


def _write_state(root: Path, state: dict) -> None:
    download_dir(root).mkdir(parents=True, exist_ok=True)
    atomic_write_json(download_dir(root) / STATE, state)


def is_fetched(root: Path, mirror: Mirror) -> bool:
    """Whether `mirror`'s archive was verified and extracted into `root` whole, and AVA.txt is there."""
    state = read_state(root)
    return state.get("sha256") == mirror.sha256 and bool(state.get("extracted")) and (Path(root) / "AVA.txt").is_file()


def _downloaded_bytes(root: Path, mirror: Mirror) -> int:
    """Bytes of the archive already here: the finished file, or huggingface_hub's incomplete ones."""
    folder = download_dir(root)
    archive = folder / mirror.filename
    if archive.is_file():
        return archive.stat().st_size
    return sum(path.stat().st_size for path in folder.rglob("*.incomplete")) if folder.is_dir() else 0


def room_needed(root: Path, mirror: Mirror) -> int:
    """Bytes the fetch still writes under `root`: the rest of the archive, and its contents (estimated as the
    archive's size: JPEG photos do not compress) less the photos already extracted, plus MARGIN."""
    extracted = size_of(Path(root) / "images")
    return max(0, mirror.size - _downloaded_bytes(root, mirror)) + max(0, mirror.size - extracted) + MARGIN


def check_room(root: Path, mirror: Mirror) -> int:
    """room_needed, or NoSpace naming the device, what it has free and what is needed (before any download)."""
    needed = room_needed(root, mirror)
    device, mount = mount_of(root)
    free = shutil.disk_usage(mount).free
    if needed > free:
        raise NoSpace(f"{root} needs {size_text(needed)} for the {mirror.name} archive ({size_text(mirror.size)}) "
                      f"and its photos; {device} (mounted at {mount}) has {size_text(free)} free")
    return needed


def download(root: Path, mirror: Mirror, *, endpoint: str | None = None) -> Path:
    """The mirror's archive under AVA_ROOT/.ilgnet-download, by huggingface_hub (resumed where a download stopped;
    `endpoint` overrides HF_ENDPOINT); DownloadError in one line when it fails."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id=mirror.repo_id, filename=mirror.filename, repo_type=mirror.repo_type,
                               revision=mirror.revision, local_dir=download_dir(root), endpoint=endpoint)
    except UserError:
        raise
    except Exception as err:            # huggingface_hub's and its HTTP client's errors differ between versions
        reason = " ".join(str(err).split()) or type(err).__name__
        short = "" if FULL_COMMIT.fullmatch(mirror.revision) else (
            f"; {mirror.revision} is not a full 40-hex commit id, which the Hub may need: give the full one in a "
            f"file of mirrors (docs/DATA.md)")
        raise DownloadError(f"{mirror.repo_id}/{mirror.filename} at {mirror.revision} could not be downloaded "
                            f"({reason[:300]}){short}; run the same command again to resume") from err
    return Path(path)


def verify_archive(root: Path, archive: Path, mirror: Mirror, *, progress: bool = True) -> None:
    """Checks the archive's size and sha256 against the mirror's (once: fetch.json remembers a verified file by its
    size and modification time). A mismatch removes the archive and raises DownloadError: nothing is extracted."""
    import hashlib

    from tqdm import tqdm

    stat = archive.stat()
    seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    state = read_state(root)
    if state.get("sha256") == mirror.sha256 and state.get("verified") == seen:
        return
    problem = None
    if stat.st_size != mirror.size:
        problem = f"has {stat.st_size:,} bytes, expected {mirror.size:,}"
    else:
        digest = hashlib.sha256()
        with open(archive, "rb") as f, tqdm(total=stat.st_size, unit="B", unit_scale=True, disable=not progress,
                                            desc=f"sha256 {archive.name}") as bar:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
                bar.update(len(block))
        if digest.hexdigest() != mirror.sha256:
            problem = f"has sha256 {digest.hexdigest()}, expected {mirror.sha256}"
    if problem:
        remove(archive)
        remove(download_dir(root) / ".cache")       # huggingface_hub's record of it: the next run downloads anew
        raise DownloadError(f"{archive} {problem} (mirror {mirror.name}): removed, nothing extracted; run the "
                            f"same command again to download it anew")
    _write_state(root, {"mirror": mirror.name, "sha256": mirror.sha256, "verified": seen})


def _members(archive: Path) -> Iterator[tuple[str, int, object]]:
    """(name, bytes, handle) of each regular file of a tar (any compression) or zip archive, in archive order (a
    tar member's handle is readable until the next one is asked for); BadInput for a file that is neither."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, (zipped, info)
        return
    try:
        with tarfile.open(archive, "r|*") as tar:           # a stream: no table of 255,000 members kept
            for member in tar:
                if member.isfile():
                    yield member.name, member.size, (tar, member)
    except tarfile.ReadError as err:
        raise BadInput(f"{archive}: neither a tar nor a zip archive ({err})") from None


def _open_member(handle):
    container, member = handle
    return container.open(member) if isinstance(container, zipfile.ZipFile) else container.extractfile(member)


def layout(archive: Path) -> Layout:
    """Where AVA.txt, the official lists and the photos are in `archive`, wherever it puts them: AVA.txt (and
    tags.txt, challenges.txt) by name, the shallowest copy kept; the lists as the .jpgl and .txt files of a folder
    named aesthetics_image_lists; the photos as every `<digits>.jpg`. BadInput naming what is missing when the
    archive holds no AVA.txt or no photo."""
    found = Layout()
    depth: dict[str, int] = {}
    seen_ids: set[int] = set()
    for name, size, _ in _members(archive):
        path = PurePosixPath(name)
        if any(part in ("..", "") for part in path.parts) or path.name.startswith("._"):
            continue
        lowered = path.name.lower()
        if lowered in METADATA:
            target = METADATA[lowered]
            if target in depth and depth[target] <= len(path.parts):
                continue
            found.targets = {k: v for k, v in found.targets.items() if v != target}
            depth[target] = len(path.parts)
            target_path = target
        elif path.parent.name.lower() == LISTS and path.suffix.lower() in (".jpgl", ".txt"):
            target_path = f"{LISTS}/{path.name}"
        elif (match := PHOTO.fullmatch(path.name)):
            image_id = int(match.group(1))
            if image_id in seen_ids:
                found.duplicates.append(image_id)
                continue
            seen_ids.add(image_id)
            target_path = f"images/{image_id}.jpg"
        else:
            continue
        found.targets[name], found.sizes[name] = target_path, size
    found.photos = len(seen_ids)
    missing = [what for what, present in (("AVA.txt", "AVA.txt" in depth), ("photos (<id>.jpg)", found.photos))
               if not present]
    if missing:
        raise BadInput(f"{archive}: the archive holds no {' and no '.join(missing)}, so it is not AVA "
                       f"(nothing extracted)")
    return found


def extract(root: Path, archive: Path, found: Layout, *, progress: bool = True) -> dict:
    """Writes each member `found` places to its path under `root`, through NAME.partial and a rename; a file already
    there with the member's size is kept (an extraction resumed). Returns {"written", "kept"} counts."""
    from tqdm import tqdm

    root = Path(root)
    written = kept = 0
    total = sum(found.sizes.values())
    with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc=f"extract {archive.name}") as bar:
        for name, size, handle in _members(archive):
            target = found.targets.get(name)
            if target is None:
                continue
            final = root / target
            if final.is_file() and final.stat().st_size == size:
                kept += 1
                bar.update(size)
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(final.name + ".partial")
            try:
                with _open_member(handle) as source, open(partial, "wb") as sink:
                    for block in iter(lambda: source.read(CHUNK), b""):
                        sink.write(block)
                        bar.update(len(block))
                os.replace(partial, final)
            finally:
                if partial.exists():
                    partial.unlink()
            written += 1
    return {"written": written, "kept": kept}


def fetch(root: Path, mirror: Mirror, *, keep_archive: bool = False, endpoint: str | None = None,
          progress: bool = True) -> dict:
    """Room checked, archive downloaded, verified, laid out and extracted into `root` (each step skipped when done);
    returns what was done: {"downloaded", "already_fetched", "photos", "duplicates", "written", "kept",
    "archive_kept"}. The caller holds `root`'s lock."""
    root = Path(root)
    if is_fetched(root, mirror):
        return {"already_fetched": True, "downloaded": False}
    check_room(root, mirror)
    archive = download_dir(root) / mirror.filename
    downloaded = not archive.is_file()
    if downloaded:
        archive = download(root, mirror, endpoint=endpoint)
    verify_archive(root, archive, mirror, progress=progress)
    found = layout(archive)
    counts = extract(root, archive, found, progress=progress)
    state = {**read_state(root), "extracted": True}
    _write_state(root, state)
    if not keep_archive:
        remove(archive)
        remove(download_dir(root) / ".cache")
    return {"already_fetched": False, "downloaded": downloaded, "photos": found.photos,
            "duplicates": len(found.duplicates), **counts, "archive_kept": archive if keep_archive else None}
