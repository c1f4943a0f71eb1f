"""Large files over HTTP(S) with requests: resumable without ever splicing two files, refusing HTML pages, through
Google Drive's warning page.

A download goes to a `.part` file that only the caller renames, once its checks pass. Beside it, `.part.json`
keeps what identifies the file being fetched: the validator of the response its first byte came from (a strong
ETag, else Last-Modified; RFC 9110 section 8.8). An interrupted or cut-short transfer leaves both, and the next call
resumes with a Range request carrying that validator in If-Range (RFC 9110 section 13.1.5): a server whose file
changed in between answers with the whole new file (200), which is then written from byte 0 rather than appended to
the old bytes. A `.part` without a validator (a server that sent neither header, an older toolkit) is started again
from byte 0, and so is one whose ranged answer carries another validator (a server that ignores If-Range).

Google Drive answers a large file with an HTML "can't scan this file for viruses" page. gdown's parser of Drive's
pages (`gdown.download.get_url_from_gdrive_confirmation`, which follows Drive's changes of them) finds the file's
link in it, or Drive's reason for refusing (a download quota exceeded). Any other HTML page (a sign-in page) is
refused with its title: saved under a model's name, Caffe would read it as a model without layers.

gdown's own download function is not used for the transfer (checked in gdown 6.5.1): resuming a download across
runs, it takes the If-Range validator from the new response instead of the one the kept bytes came from, so a file
replaced on the server between two runs is still spliced; it treats a 200 answer to a ranged request as an error
instead of starting over; it saves an HTML page from any host but Drive as the file; and it does not give the caller
the response's headers, which the validator kept here needs.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from tqdm import tqdm

from ilgnet.errors import DownloadError, FilesystemRefused
from ilgnet.fileio import atomic_write_json, refusal, remove

CHUNK = 1 << 20
MAX_PAGE_BYTES = 4 << 20
MAX_PAGES = 3
USER_AGENT = "ilgnet-caffe weights fetcher (python-requests)"
GDOWN_NO_LINK = "Cannot retrieve the public link"      # how gdown's parser says a page holds no link to a file


def page_title(page: str) -> str:
    """The title of an HTML page, blanks collapsed ("" without one)."""
    from bs4 import BeautifulSoup

    title = BeautifulSoup(page, "html.parser").title
    return " ".join(title.get_text().split()) if title else ""


def confirmation_url(page: str, base_url: str) -> tuple[str | None, str]:
    """(where Google Drive's warning page leads, None for any other page; Drive's reason for refusing the file, ""
    when it gives none), read by gdown's parser of Drive's pages. A relative link is taken relative to `base_url`."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        return urljoin(base_url, get_url_from_gdrive_confirmation(page)), ""
    except FileURLRetrievalError as err:
        reason = " ".join(str(err).split())
        return None, "" if reason.startswith(GDOWN_NO_LINK) else reason


def looks_like_html(head: bytes, content_type: str = "") -> bool:
    """Whether a response (its first bytes and Content-Type) is an HTML page."""
    start = head[:512].lstrip().lower()
    return content_type.startswith("text/html") or start.startswith((b"<!doctype html", b"<html"))


class HtmlPageServed(DownloadError):
    """The server sent an HTML page instead of the file; `title` is the page's title, `reason` the host's reason
    for refusing the file where it gives one (Drive's quota page)."""

    def __init__(self, url: str, title: str, reason: str = ""):
        super().__init__(f"{url} served an HTML page ({title or 'untitled'!r}){f': {reason}' if reason else ''}")
        self.url, self.title, self.reason = url, title, reason


class HostUnreachable(DownloadError):
    """No answer from the host at all (refused, not resolved, timed out): `host` is HOST[:PORT], `why` the short
    reason ("Connection refused"), never requests' chain of retries."""

    def __init__(self, url: str, err: requests.RequestException, resume: str = ""):
        self.host = urlsplit(url).netloc or url
        found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
        timed_out = isinstance(err, requests.Timeout)
        self.why = "no answer in 60 s" if timed_out else found.group(1).strip() if found else type(err).__name__
        super().__init__(f"cannot reach {self.host} ({self.why}){resume}")


def part_record(partial: Path) -> Path:
    """The `.part.json` beside a `.part` file: the validator of the response its bytes came from."""
    return partial.with_name(partial.name + ".json")


def discard_part(partial: Path) -> None:
    """Removes a `.part` file and its record."""
    remove(partial)
    remove(part_record(partial))


def validator(response: requests.Response) -> dict[str, str]:
    """What identifies the version of the file a response carries: {"ETag": ...} for a strong ETag (a weak one may
    not be used in If-Range), else {"Last-Modified": ...}, else {}."""
    etag = response.headers.get("ETag", "")
    if etag and not etag.startswith("W/"):
        return {"ETag": etag}
    modified = response.headers.get("Last-Modified")
    return {"Last-Modified": modified} if modified else {}


def _kept_validator(partial: Path) -> dict[str, str]:
    """The validator recorded beside `partial`, or {} (no record, or one that does not read)."""
    try:
        kept = json.loads(part_record(partial).read_text())["validator"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return kept if isinstance(kept, dict) and len(kept) == 1 else {}


def _append_body(response: requests.Response, head: bytes, partial: Path, start: int, size: int | None, label: str,
                 progress: bool) -> None:
    """Streams a response into `partial`, appended at `start` (0: the whole file, from byte 0, first recording the
    response's validator beside it). Raises DownloadError, keeping what arrived, when the transfer ends before the
    Content-Length it announced or, without one, before `size` (the complete file's size, when known);
    FilesystemRefused, removing the partial file, when the disk is full or refuses the write."""
    length = response.headers.get("Content-Length", "")
    total = start + int(length) if length.isdigit() else size
    written = start
    try:
        if not start:                                   # the first byte of a new file: record whose it is
            atomic_write_json(part_record(partial), {"url": response.url, "validator": validator(response)})
        with open(partial, "ab" if start else "wb") as out, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, disable=not progress,
                     file=sys.stderr) as bar:
            for block in (head, *response.iter_content(CHUNK)):
                out.write(block)
                written += len(block)
                bar.update(len(block))
    except OSError as err:
        cause = err.__cause__ if isinstance(err, FilesystemRefused) else err    # the record's, from atomic_path
        if (refused := refusal(cause, partial, needed=total)) is None:
            raise
        discard_part(partial)
        raise refused from err
    if total is not None and written < total:
        raise DownloadError(f"the connection closed after {written:,} of {total:,} bytes")


def download_part(url: str, partial: Path, *, size: int | None = None, label: str = "", progress: bool = True) -> str:
    """Fetches `url` into `partial`, resuming what is there when its recorded validator still matches (see the module
    docstring). `size`, when known, is the complete file's size: a partial file of that size needs no request (a
    larger one is discarded), and a transfer without Content-Length that ends short of it is cut short. Returns the
    URL finally read; `partial` and its record (`part_record`) are the caller's to rename or discard.

    Raises HtmlPageServed for an HTML page that is not Google Drive's confirmation page, HostUnreachable when the
    host does not answer at all (one line naming it), DownloadError for other network errors and cut-short
    transfers; in all of them `partial` keeps what had arrived, for the next call to resume.
    """
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    partial.parent.mkdir(parents=True, exist_ok=True)
    pages = 0
    while pages <= MAX_PAGES:
        start = partial.stat().st_size if partial.exists() else 0
        kept = _kept_validator(partial) if start else {}
        if start and not kept:
            discard_part(partial)                       # nothing tells whether the file changed since
            start = 0
        if size is not None and start >= size:
            if start == size:
                return url                              # complete already: only verification is left
            discard_part(partial)
            start = 0
        headers = {"Range": f"bytes={start}-", "If-Range": next(iter(kept.values()))} if start else {}
        reached = False
        try:
            with session.get(url, headers=headers, stream=True, timeout=60) as response:
                reached = True
                if response.status_code == 416 and start:  # nothing left to send: the partial file is whole
                    return url
                if response.status_code >= 400:
                    raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
                # A body cut short ends like a whole one, so that every byte that arrived is kept (urllib3 would
                # drop the last block read); _append_body compares the length with the one announced.
                response.raw.enforce_content_length = False
                head = next(response.iter_content(CHUNK), b"")
                if looks_like_html(head, response.headers.get("Content-Type", "")):
                    page = (head + response.raw.read(MAX_PAGE_BYTES, decode_content=True)).decode("utf-8", "replace")
                    next_url, reason = confirmation_url(page, response.url)
                    if next_url is None:
                        raise HtmlPageServed(response.url, page_title(page), reason)
                    url, pages = next_url, pages + 1
                    continue
                answered = validator(response)
                if start and response.status_code == 206 and not (
                        answered == kept and response.headers.get("Content-Range", "").startswith(f"bytes {start}-")):
                    discard_part(partial)               # the rest of another version (If-Range ignored): start over
                    continue
                start = start if response.status_code == 206 else 0     # 200: the whole file, from byte 0
                _append_body(response, head, partial, start, size, label, progress)
                return url
        except requests.RequestException as err:
            kept_bytes = partial.stat().st_size if partial.exists() else 0
            resume = f"; {partial} ({kept_bytes:,} bytes) is kept, run again to resume" if kept_bytes else ""
            if not reached and isinstance(err, (requests.ConnectionError, requests.Timeout)):
                raise HostUnreachable(url, err, resume) from None       # one line, not urllib3's retries
            raise DownloadError(f"{url}: {err}{resume}") from err
        except DownloadError as err:
            if isinstance(err, HtmlPageServed) or not partial.exists():
                raise
            raise DownloadError(f"{url}: {err}; {partial} ({partial.stat().st_size:,} bytes) is kept, run again "
                                f"to resume") from None
    raise DownloadError(f"{url}: still an HTML page after {MAX_PAGES} confirmation steps; nothing was saved")
