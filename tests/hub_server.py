"""A local HTTP server on 127.0.0.1 speaking just enough of the Hub's API for huggingface_hub's hf_hub_download:

    HEAD /{datasets/}OWNER/NAME/resolve/REVISION/FILE   X-Repo-Commit, ETag, Content-Length, Accept-Ranges
    GET  the same, whole or from `Range: bytes=N-` (206 with Content-Range)

A revision other than the pinned one is a 404 with X-Error-Code RevisionNotFound. `cut_at` makes the next GET send
that many bytes and drop the connection, and every request after it fail with 500 until `down` is cleared: a
download interrupted. `requests` records (method, path, Range header) of each request.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, files: dict[tuple[str, str, str], bytes]):
        """`files`: (repo path as in the URL, e.g. `datasets/owner/name`, revision, file name) -> its bytes."""
        self.files = files
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut_at: int | None = None
        self.down = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _lookup(self):
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                if hub.down:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                head, sep, rest = self.path.partition("/resolve/")
                revision, _, filename = rest.partition("/")
                repo = head.lstrip("/")
                data = hub.files.get((repo, revision, filename)) if sep else None
                if data is None:
                    self.send_response(404)
                    known = any(key[0] == repo for key in hub.files)
                    self.send_header("X-Error-Code", "RevisionNotFound" if known else "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return data

            def _headers(self, status: int, data: bytes, start: int) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self):
                data = self._lookup()
                if data is not None:
                    self._headers(200, data, 0)

            def do_GET(self):
                data = self._lookup()
                if data is None:
                    return
                wanted = self.headers.get("Range")
                start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
                self._headers(206 if start else 200, data, start)
                body = data[start:]
                if hub.cut_at is not None:
                    body, hub.cut_at, hub.down = body[:hub.cut_at], None, True
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [request for request in self.requests if request[0] == "GET"]
