"""`ilgnet weights`: downloads and verifies the pretrained models listed in weights.json, the one registry.

Downloads go to `<file>.part` first and are renamed into place only once every check passed, so a file under
its final name is always complete. An interrupted download resumes from the `.part` file with an HTTP Range
request. Google Drive answers large files with an HTML "can't scan this file for viruses" page; its confirmation
form (or, on older pages, its `confirm=` link) is followed. Any other HTML page served instead of a model is
refused, as is a file whose size or checksum differs from the registry's. The ILGNet models have no published
checksum, so their size (as the authors' caffe test logs report it) is checked and the file must parse as a
Caffe NetParameter whose layers fit the deploy net of the registered variant.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin
from urllib.request import HTTPCookieProcessor, Request, build_opener

REGISTRY = Path(__file__).with_name("weights.json")
DEFAULT_DEST = Path("models")
CHUNK = 1 << 20
MAX_PAGE_BYTES = 4 << 20
MAX_PAGES = 3
USER_AGENT = "ilgnet-caffe weights fetcher (Python urllib)"


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
    companions: tuple[str, ...] = field(default=())


def load_registry(path: Path = REGISTRY) -> dict[str, Weights]:
    entries = json.loads(Path(path).read_text())
    return {name: Weights(name=name, companions=tuple(spec.pop("with", ())), **spec) for name, spec in entries.items()}


def _entry(name: str, registry: dict[str, Weights]) -> Weights:
    if name not in registry:
        raise ValueError(f"no weights named {name!r} in {REGISTRY}; known: {', '.join(registry)}")
    return registry[name]


# ---------------------------------------------------------------------------------------------------- checks

def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(entry: Weights, path: Path) -> None:
    """Size and checksums, whichever the registry gives: raises ValueError naming the file on a mismatch."""
    actual = path.stat().st_size
    if entry.size is not None and actual != entry.size:
        raise ValueError(f"{path}: {actual:,} bytes, but {entry.name} has {entry.size:,} bytes")
    for algorithm in ("sha1", "sha256"):
        expected = getattr(entry, algorithm)
        if expected and (got := _digest(path, algorithm)) != expected:
            raise ValueError(f"{path}: {algorithm} {got} does not match {entry.name}'s {expected}")


def _comparable(dims) -> tuple[int, ...]:
    """A shape without leading ones: legacy 4-d blob shapes pad with them, (1, 1, 2, 1024) ~ (2, 1024)."""
    dims = tuple(dims)
    while len(dims) > 1 and dims[0] == 1:
        dims = dims[1:]
    return dims


def _blob_shape(blob) -> tuple[int, ...]:
    """A BlobProto's shape; V1-era models store num/channels/height/width instead of `shape`."""
    return _comparable(blob.shape.dim if blob.HasField("shape") else
                       (blob.num, blob.channels, blob.height, blob.width))


def deploy_param_shapes(deploy_net) -> dict[str, list[tuple[int, ...]]]:
    """Parameter blob shapes per layer of a deploy NetParameter, as Caffe itself instantiates them."""
    import tempfile

    from ilgnet.caffe_tools import import_caffe

    caffe = import_caffe()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(str(deploy_net))
        f.flush()
        net = caffe.Net(f.name, caffe.TEST)
    return {name: [_comparable(b.data.shape) for b in blobs] for name, blobs in net.params.items()}


def check_fits(model_path: Path, deploy_net) -> int:
    """Checks that `model_path` parses as a NetParameter holding, for every layer of `deploy_net` with
    parameters, blobs of the shapes that net expects. Returns how many layers were matched."""
    from ilgnet.caffe_tools import import_caffe

    caffe_pb2 = import_caffe().proto.caffe_pb2
    from google.protobuf.message import DecodeError

    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(Path(model_path).read_bytes())
    except DecodeError as err:
        raise ValueError(f"{model_path}: not a Caffe model (does not parse as a NetParameter: {err})") from err
    stored = {layer.name: [_blob_shape(b) for b in layer.blobs] for layer in [*model.layer, *model.layers]}
    problems = []
    expected = deploy_param_shapes(deploy_net)
    for name, shapes in expected.items():
        if name not in stored:
            problems.append(f"layer {name!r} is missing")
        elif stored[name] != shapes:
            problems.append(f"layer {name!r} has blobs {stored[name]}, the net expects {shapes}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"{model_path}: does not fit the {deploy_net.name or 'deploy'} net: {shown}")
    return len(expected)


def verify(entry: Weights, path: Path) -> None:
    """Every check the registry allows for `entry`: size, checksums and, for trained nets, the layer fit."""
    check_file(entry, path)
    if entry.fits_variant:
        from ilgnet.nets import VARIANTS, deploy

        check_fits(path, deploy(VARIANTS[entry.fits_variant]))


# ------------------------------------------------------------------------------------------------ downloads

class _PageLinks(HTMLParser):
    """The forms (action and fields), links and title of an HTML page."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.hrefs: list[str] = []
        self.title = ""
        self._in_form = self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append((attrs.get("action") or "", {}))
            self._in_form = True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.forms[-1][1][attrs["name"]] = attrs.get("value") or ""
        elif tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def confirmation_url(page: str, base_url: str) -> str | None:
    """Where Google Drive's large-file warning page leads: its form with a `confirm` field (current pages)
    or its `confirm=` link (older pages). None for any other page."""
    links = _PageLinks()
    links.feed(page)
    for action, fields in links.forms:
        if "confirm" in fields:
            return f"{urljoin(base_url, action)}?{urlencode(fields)}"
    for href in links.hrefs:
        if "confirm=" in href:
            return urljoin(base_url, href)
    return None


def _looks_like_html(head: bytes, content_type: str) -> bool:
    start = head[:512].lstrip().lower()
    return content_type.startswith("text/html") or start.startswith((b"<!doctype html", b"<html"))


def _html_refusal(entry: Weights, url: str, page: str, dest: Path) -> ValueError:
    links = _PageLinks()
    links.feed(page)
    title = " ".join(links.title.split()) or "untitled"
    hint = (f"download {entry.file} by hand (see {entry.source}), put it at {dest} and run "
            f"`ilgnet weights check {entry.name}`")
    return ValueError(f"{url} served an HTML page ({title!r}) instead of {entry.file}; nothing was saved. "
                      f"The host may be refusing the download (Google Drive does so when a file's download quota "
                      f"is exceeded); {hint}")


def _write_body(response, head: bytes, partial: Path, start: int, label: str, progress: bool) -> None:
    """Streams a response into `partial`, appending when the server honoured our Range request."""
    from tqdm import tqdm

    resumed = start > 0 and response.status == 206 and \
        (response.headers.get("Content-Range") or "").startswith(f"bytes {start}-")
    if not resumed:
        start = 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length and length.isdigit() else None
    with open(partial, "ab" if resumed else "wb") as out, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, disable=not progress,
                 file=sys.stderr) as bar:
        out.write(head)
        bar.update(len(head))
        for block in iter(lambda: response.read(CHUNK), b""):
            out.write(block)
            bar.update(len(block))


def download(entry: Weights, path: Path, *, progress: bool = True) -> Path:
    """Downloads `entry` to `path` through `path.part`, resuming a previous partial file, and renames it
    into place only after `verify` passed. A file failing verification is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    opener = build_opener(HTTPCookieProcessor(CookieJar()))
    url = entry.url
    for _ in range(MAX_PAGES):
        start = partial.stat().st_size if partial.exists() else 0
        if entry.size is not None and start >= entry.size:
            if start == entry.size:
                break                                   # complete already: only verification is left
            partial.unlink()
            start = 0
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={start}-"} if start else {})}
        try:
            response = opener.open(Request(url, headers=headers), timeout=60)
        except HTTPError as err:
            if err.code == 416 and start:               # nothing left to send: the partial file is whole
                break
            raise ValueError(f"{url}: HTTP {err.code} {err.reason} while fetching {entry.name}") from err
        except (URLError, OSError) as err:
            raise ValueError(f"{url}: {err} while fetching {entry.name}"
                             f"{f'; {partial} is kept, run again to resume' if start else ''}") from err
        with response:
            head = response.read(CHUNK)
            if _looks_like_html(head, response.headers.get("Content-Type", "")):
                page = (head + response.read(MAX_PAGE_BYTES)).decode("utf-8", "replace")
                url = confirmation_url(page, response.geturl()) or ""
                if not url:
                    raise _html_refusal(entry, response.geturl(), page, path)
                continue
            try:
                _write_body(response, head, partial, start, entry.file, progress)
            except OSError as err:
                raise ValueError(f"{entry.name}: download broke off ({err}); {partial} is kept, "
                                 f"run again to resume") from err
            break
    else:
        raise ValueError(f"{entry.url}: still an HTML page after {MAX_PAGES} confirmation steps; nothing was saved")
    try:
        verify(entry, partial)
    except ValueError as err:
        partial.unlink()
        raise ValueError(f"{err}; the download was deleted") from err
    os.replace(partial, path)
    return path


def fetch(name: str, dest: Path = DEFAULT_DEST, *, registry: dict[str, Weights] | None = None,
          progress: bool = True) -> Path:
    """The file of registry entry `name` under `dest`, downloaded and verified unless already there (then
    its size and checksums are checked). The entry's companions (a model's mean file) are fetched too."""
    registry = registry or load_registry()
    entry = _entry(name, registry)
    for companion in entry.companions:
        fetch(companion, dest, registry=registry, progress=progress)
    path = Path(dest) / entry.file
    if path.exists():
        try:
            check_file(entry, path)
        except ValueError as err:
            raise ValueError(f"{err}; delete it to download {entry.name} again") from err
        print(f"{entry.name}: {path} is present and checks out", file=sys.stderr)
        return path
    print(f"{entry.name}: downloading {entry.url} -> {path}", file=sys.stderr)
    download(entry, path, progress=progress)
    print(f"{entry.name}: {path} verified", file=sys.stderr)
    return path


PUBLISHED_MODELS = ("ilgnet-ava1", "ilgnet-ava2")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    caffemodel: Path
    mean: Path


def published_model(name: str, dest: Path = DEFAULT_DEST) -> PublishedModel:
    """One of the authors' trained models with the mean image it was trained and tested with, both fetched
    (downloaded when missing, as `fetch` does)."""
    registry = load_registry()
    entry = _entry(name, registry)
    if name not in PUBLISHED_MODELS:
        raise ValueError(f"{name} is not one of the published ILGNet models ({', '.join(PUBLISHED_MODELS)})")
    caffemodel = fetch(name, dest, registry=registry)
    return PublishedModel(name, caffemodel, Path(dest) / registry[entry.companions[0]].file)


# ------------------------------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    parser = subparsers.add_parser("weights", help="download and verify pretrained models (registry: weights.json)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the registry, and which files are present under --dest")
    fetching = actions.add_parser("fetch", help="download (resuming, verified, atomic) one or more registry entries")
    fetching.add_argument("names", nargs="+", metavar="NAME")
    checking = actions.add_parser("check", help="run every check on a file you downloaded yourself")
    checking.add_argument("name", metavar="NAME")
    checking.add_argument("--file", type=Path, help="the file to check (default: DEST/<registry file name>)")
    for sub in (listing, fetching, checking):
        sub.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="models folder (default: models/)")
    parser.set_defaults(func=run)


def run(args) -> int:
    registry = load_registry()
    if args.action == "list":
        for entry in registry.values():
            present = "present" if (args.dest / entry.file).exists() else "absent"
            checks = ", ".join(c for c, v in [("sha1", entry.sha1), ("sha256", entry.sha256),
                                               (f"{entry.size:,} bytes" if entry.size else "", entry.size),
                                               (f"fits {entry.fits_variant}", entry.fits_variant)] if v)
            print(f"{entry.name:18} {present:8} {args.dest / entry.file}\n{'':18} {entry.about}\n"
                  f"{'':18} {entry.url}\n{'':18} checks: {checks}")
        return 0
    if args.action == "fetch":
        for name in args.names:
            print(fetch(name, args.dest))
        return 0
    entry = _entry(args.name, registry)
    path = args.file or args.dest / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    verify(entry, path)
    print(f"{path}: OK as {entry.name}")
    return 0
