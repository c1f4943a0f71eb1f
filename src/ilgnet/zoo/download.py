"""Large files over HTTP(S) with requests: resumable, refusing HTML pages, through Google Drive's warning page.

A download goes to a `.part` file that only the caller renames, once its checks pass. An interrupted or cut-short
transfer leaves the `.part` file, which the next call resumes with a Range request (from the start again when the
server ignores it). Google Drive answers a large file with an HTML "can't scan this file for viruses" page whose
confirmation form (or, on older pages, `confirm=` link) leads to the file; any other HTML page (sign-in, quota
exceeded) is refused with its title, since saving it under a model's name would make a file Caffe reads as an
empty model.
"""
from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin

import requests
from tqdm import tqdm

from ilgnet.errors import DownloadError

CHUNK = 1 << 20
MAX_PAGE_BYTES = 4 << 20
MAX_PAGES = 3
USER_AGENT = "ilgnet-caffe weights fetcher (python-requests)"


class PageLinks(HTMLParser):
    """The forms (action and fields), links and title of an HTML page."""

    def __init__(self, page: str):
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.hrefs: list[str] = []
        self.title = ""
        self._in_form = self._in_title = False
        self.feed(page)
        self.title = " ".join(self.title.split())

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
    links = PageLinks(page)
    for action, fields in links.forms:
        if "confirm" in fields:
            return f"{urljoin(base_url, action)}?{urlencode(fields)}"
    for href in links.hrefs:
        if "confirm=" in href:
            return urljoin(base_url, href)
    return None


def looks_like_html(head: bytes, content_type: str = "") -> bool:
    """Whether a response (its first bytes and Content-Type) is an HTML page."""
    start = head[:512].lstrip().lower()
    return content_type.startswith("text/html") or start.startswith((b"<!doctype html", b"<html"))


class HtmlPageServed(DownloadError):
    """The server sent an HTML page instead of the file; `title` is the page's title."""

    def __init__(self, url: str, title: str):
        super().__init__(f"{url} served an HTML page ({title or 'untitled'!r})")
        self.url, self.title = url, title


def _append_body(response: requests.Response, head: bytes, partial: Path, start: int, size: int | None, label: str,
                 progress: bool) -> None:
    """Streams a response into `partial`, appending when the server honoured the Range request from `start`.
    Raises DownloadError, keeping what arrived, when the transfer ends before the Content-Length it announced or,
    without one, before `size` (the complete file's size, when known)."""
    resumed = start > 0 and response.status_code == 206 and \
        response.headers.get("Content-Range", "").startswith(f"bytes {start}-")
    start = start if resumed else 0
    length = response.headers.get("Content-Length", "")
    total = start + int(length) if length.isdigit() else size
    written = start
    with open(partial, "ab" if resumed else "wb") as out, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, disable=not progress,
                 file=sys.stderr) as bar:
        for block in (head, *response.iter_content(CHUNK)):
            out.write(block)
            written += len(block)
            bar.update(len(block))
    if total is not None and written < total:
        raise DownloadError(f"the connection closed after {written:,} of {total:,} bytes")


def download_part(url: str, partial: Path, *, size: int | None = None, label: str = "", progress: bool = True) -> str:
    """Fetches `url` into `partial`, resuming what is there. `size`, when known, is the complete file's size: a
    partial file of that size needs no request (a larger one is discarded), and a transfer without Content-Length
    that ends short of it is cut short. Returns the URL finally read.

    Raises HtmlPageServed for an HTML page that is not Google Drive's confirmation page, DownloadError for network
    errors and cut-short transfers; in both `partial` keeps what had arrived, for the next call to resume.
    """
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    partial.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_PAGES):
        start = partial.stat().st_size if partial.exists() else 0
        if size is not None and start >= size:
            if start == size:
                return url                              # complete already: only verification is left
            partial.unlink()
            start = 0
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            with session.get(url, headers=headers, stream=True, timeout=60) as response:
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
                    next_url = confirmation_url(page, response.url)
                    if next_url is None:
                        raise HtmlPageServed(response.url, PageLinks(page).title)
                    url = next_url
                    continue
                _append_body(response, head, partial, start, size, label, progress)
                return url
        except requests.RequestException as err:
            kept = partial.stat().st_size if partial.exists() else 0
            raise DownloadError(f"{url}: {err}" + (f"; {partial} ({kept:,} bytes) is kept, run again to resume"
                                                   if kept else "")) from err
        except DownloadError as err:
            if isinstance(err, HtmlPageServed) or not partial.exists():
                raise
            raise DownloadError(f"{url}: {err}; {partial} ({partial.stat().st_size:,} bytes) is kept, run again "
                                f"to resume") from None
    raise DownloadError(f"{url}: still an HTML page after {MAX_PAGES} confirmation steps; nothing was saved")
