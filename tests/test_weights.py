"""Weights: the registry, verified atomic downloads from a local HTTP server (127.0.0.1 only), Google Drive's
confirmation page, resumption, and the check that a caffemodel fits a deploy net."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ilgnet.zoo.download import confirmation_url, part_record
from ilgnet.zoo.fit import check_fits
from ilgnet.zoo.registry import Weights, check_file, download, fetch, install, load_registry, verify

pytest_plugins = ["caffe_data"]     # small_dataset and ilgnet_caffemodel, shared across test files

PAYLOAD = bytes(range(256)) * 4096 + b"tail"          # 1 MiB + 4 bytes, not a multiple of the read chunk
ETAG = '"payload-1"'
# Drive's pages as it serves them: the form on one line (gdown's parser reads the page line by line).
DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/download" method="get"><input type="submit" value="Download anyway"/>\
<input type="hidden" name="id" value="FILEID"><input type="hidden" name="export" value="download">\
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="1234-abcd"></form>
</body></html>"""
OLD_DRIVE_PAGE = """<html><head><title>Google Drive - Virus scan warning</title></head><body>
<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd&amp;id=FILEID">Download anyway</a>
</body></html>"""
QUOTA_PAGE = "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>\n" \
             "<p class=\"uc-error-subcaption\">Too many users have viewed or downloaded this file recently.</p>\n" \
             "</body></html>"


class Server:
    """A local HTTP server: /model (`payload`, with its `validators` as headers; honours Range, and If-Range as RFC
    9110 says, unless told not to), /page, /drive (a warning page whose confirmation leads to /download) and /quota.
    It records each request's path and Range header, and the If-Range headers in `if_range`. With `cut`, it closes
    the connection once the file's first `cut` bytes are sent; without `announce_length`, it sends no
    Content-Length (the end of the body is then where the connection closes)."""

    def __init__(self):
        self.requests: list[tuple[str, str | None]] = []
        self.if_range: list[str | None] = []
        self.payload = PAYLOAD
        self.validators = {"ETag": ETAG}
        self.honour_range = True
        self.honour_if_range = True
        self.cut: int | None = None
        self.announce_length = True
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                owner.if_range.append(self.headers.get("If-Range"))
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path == "/model" or (url.path == "/download" and query.get("confirm") and
                                            query.get("id") == ["FILEID"]):
                    return self.send_payload()
                page = {"/page": "<html><head><title>Sign in</title></head><body>log in first</body></html>",
                        "/drive": DRIVE_PAGE, "/quota": QUOTA_PAGE}.get(url.path)
                if page is None:
                    return self.send_error(404)
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_payload(self):
                start, payload = 0, owner.payload
                ranged, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                current = if_range in owner.validators.values() or not owner.honour_if_range
                if ranged and owner.honour_range and (if_range is None or current):
                    start = int(ranged.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                for header, value in owner.validators.items():
                    self.send_header(header, value)
                if owner.announce_length:
                    self.send_header("Content-Length", str(len(payload) - start))
                self.end_headers()
                self.wfile.write(payload[start:owner.cut])
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def entry(url: str, **checks) -> Weights:
    return Weights(name="test-model", file="test.caffemodel", url=url, **checks)


SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def test_registry_holds_the_published_sources():
    registry = load_registry()
    assert registry["bvlc_googlenet"].sha1 == "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
    assert registry["bvlc_googlenet"].url == "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
    for name, drive_id, size in [("ilgnet-ava1", "0B-wWngvfWr7WekNRX04xSzJEWlE", 603_760_273),
                                 ("ilgnet-ava2", "0B-wWngvfWr7WRDl4YUFNTmJqenM", 603_761_325)]:
        model = registry[name]
        assert model.url.endswith(f"id={drive_id}") and model.size == size and model.fits_variant == "ilgnet"
        mean = registry[model.companions[0]]
        assert "eb297540f023861847cf85b603592cd7af4a94a7" in mean.url and mean.sha256


@pytest.mark.parametrize("name", ["ilgnet-ava1-mean", "ilgnet-ava2-mean"])
def test_registry_checksums_match_the_published_mean_files(shared_data, name):
    mean = load_registry()[name]
    check_file(mean, shared_data / "ilgnet-published" / "mean" / mean.file)


def test_download_verifies_and_renames_into_place(server, tmp_path):
    path = fetch("test-model", tmp_path, registry={"test-model": entry(server.url("/model"), sha256=SHA256,
                                                                       size=len(PAYLOAD))}, progress=False)
    assert path == tmp_path / "test.caffemodel" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.caffemodel"]
    # Present and correct: not downloaded again.
    server.requests.clear()
    fetch("test-model", tmp_path, registry={"test-model": entry(server.url("/model"), sha256=SHA256)}, progress=False)
    assert server.requests == []


@pytest.mark.parametrize("checks, message", [({"sha1": "0" * 40}, "sha1 .* does not match"),
                                             ({"size": len(PAYLOAD) + 1}, "bytes, but test-model has")])
def test_a_mismatch_is_refused_and_leaves_no_file(server, tmp_path, checks, message):
    with pytest.raises(ValueError, match=message):
        download(entry(server.url("/model"), **checks), tmp_path / "test.caffemodel", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_html_page_is_refused_with_a_clear_message(server, tmp_path):
    with pytest.raises(ValueError, match=r"served an HTML page \('Sign in'\) instead of test.caffemodel; "
                                         r"nothing was saved"):
        download(entry(server.url("/page"), sha256=SHA256), tmp_path / "test.caffemodel", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_drive_quota_page_is_refused(server, tmp_path):
    with pytest.raises(ValueError, match="Quota exceeded.*download quota"):
        download(entry(server.url("/quota")), tmp_path / "test.caffemodel", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_drive_confirmation_page_is_followed(server, tmp_path):
    path = download(entry(server.url("/drive"), sha256=SHA256), tmp_path / "test.caffemodel", progress=False)
    assert path.read_bytes() == PAYLOAD
    (first, _), (second, _) = server.requests
    assert first == "/drive"
    assert urlsplit(second).path == "/download" and parse_qs(urlsplit(second).query)["confirm"] == ["t"]


def test_drives_older_confirmation_link_is_read_by_gdown():
    """gdown's parser also knows Drive's older pages (a `confirm=` link, always on docs.google.com)."""
    assert confirmation_url(OLD_DRIVE_PAGE, "http://127.0.0.1/") == (
        "https://docs.google.com/uc?export=download&confirm=AbCd&id=FILEID", "")
    assert confirmation_url("<html><title>Sign in</title></html>", "http://127.0.0.1/") == (None, "")


def write_part(folder, data: bytes, validator: dict | None = None):
    """A .part file left by an interrupted download of PAYLOAD (ETAG), and its record."""
    part = folder / "test.caffemodel.part"
    part.write_bytes(data)
    part_record(part).write_text(json.dumps({"url": "unused", "validator": validator or {"ETag": ETAG}}))
    return part


@pytest.mark.parametrize("honour_range", [True, False])
def test_a_partial_download_resumes(server, tmp_path, honour_range):
    server.honour_range = honour_range
    kept = 300_000
    write_part(tmp_path, PAYLOAD[:kept])
    path = download(entry(server.url("/drive"), sha256=SHA256, size=len(PAYLOAD)), tmp_path / "test.caffemodel",
                    progress=False)
    assert path.read_bytes() == PAYLOAD                 # whether the server sent the rest or everything again
    assert server.requests[-1][1] == f"bytes={kept}-" and server.if_range[-1] == ETAG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.caffemodel"]


@pytest.mark.parametrize("announce_length", [True, False])
def test_an_early_close_keeps_the_part_and_the_next_run_resumes(server, tmp_path, announce_length):
    """Measured against the Content-Length, or without one against the registry's size."""
    server.cut, server.announce_length = 400_000, announce_length
    item = entry(server.url("/model"), sha256=SHA256, size=len(PAYLOAD))
    part = tmp_path / "test.caffemodel.part"
    with pytest.raises(OSError, match=re.escape(f"/model: the connection closed after 400,000 of 1,048,580 bytes; "
                                                f"{part} (400,000 bytes) is kept, run again to resume")):
        download(item, tmp_path / "test.caffemodel", progress=False)
    assert part.read_bytes() == PAYLOAD[:400_000] and not (tmp_path / "test.caffemodel").exists()
    server.cut = None
    assert download(item, tmp_path / "test.caffemodel", progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/model", "bytes=400000-") and server.if_range[-1] == ETAG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.caffemodel"]


NEW_PAYLOAD = PAYLOAD[::-1]                             # the file replaced on the server: same size, other bytes


@pytest.mark.parametrize("validators, sent", [
    ({"ETag": ETAG}, ETAG),
    ({"ETag": 'W/"weak"', "Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT"}, "Tue, 01 Oct 2024 10:00:00 GMT"),
    ({"Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT"}, "Tue, 01 Oct 2024 10:00:00 GMT"),
])
def test_a_file_changed_on_the_server_is_downloaded_again_from_byte_0(server, tmp_path, validators, sent):
    """Case 11: the resume carries the first response's validator (a strong ETag, else Last-Modified; a weak ETag
    may not be used) in If-Range, so a file replaced between two runs comes whole (200) and is written from byte 0,
    not appended to the old bytes."""
    server.validators, server.cut = validators, 400_000
    item = entry(server.url("/model"), size=len(PAYLOAD))
    with pytest.raises(OSError, match="is kept, run again to resume"):
        download(item, tmp_path / "test.caffemodel", progress=False)
    part = tmp_path / "test.caffemodel.part"
    assert json.loads(part_record(part).read_text())["validator"] == {next(k for k, v in validators.items()
                                                                           if v == sent): sent}
    server.payload, server.cut = NEW_PAYLOAD, None
    server.validators = {key: value.replace("1", "2").replace("10:00", "11:00") for key, value in validators.items()}
    got = download(item, tmp_path / "test.caffemodel", progress=False).read_bytes()
    assert got == NEW_PAYLOAD and got != PAYLOAD[:400_000] + NEW_PAYLOAD[400_000:]
    assert server.requests[-1] == ("/model", "bytes=400000-") and server.if_range[-1] == sent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.caffemodel"]


def test_a_server_ignoring_if_range_is_caught_by_the_validator_it_answers_with(server, tmp_path):
    """A server that sends the rest of its new file whatever If-Range says: the 206's ETag is not the one kept, so
    the kept bytes are dropped and the whole file is fetched again."""
    write_part(tmp_path, PAYLOAD[:400_000])
    server.payload, server.validators, server.honour_if_range = NEW_PAYLOAD, {"ETag": '"payload-2"'}, False
    got = download(entry(server.url("/model"), size=len(PAYLOAD)), tmp_path / "test.caffemodel", progress=False)
    assert got.read_bytes() == NEW_PAYLOAD
    assert server.requests == [("/model", "bytes=400000-"), ("/model", None)]


@pytest.mark.parametrize("record", [None, "not json", {"url": "u", "validator": {}}])
def test_a_part_without_a_validator_starts_again_from_byte_0(server, tmp_path, record):
    """Nothing tells whether the file changed since those bytes came (a server that sent no ETag nor Last-Modified,
    a .part left by an older toolkit, a damaged record): they are not trusted."""
    part = tmp_path / "test.caffemodel.part"
    part.write_bytes(NEW_PAYLOAD[:400_000])
    if record is not None:
        part_record(part).write_text(record if isinstance(record, str) else json.dumps(record))
    got = download(entry(server.url("/model"), size=len(PAYLOAD)), tmp_path / "test.caffemodel", progress=False)
    assert got.read_bytes() == PAYLOAD and server.requests == [("/model", None)]


def test_install_checks_a_hand_fetched_file_and_puts_a_copy_in_place(tmp_path):
    registry = {"test-model": entry("http://unused.invalid/", sha256=SHA256, size=len(PAYLOAD))}
    fetched = tmp_path / "Downloads" / "model (1).caffemodel"
    fetched.parent.mkdir()
    fetched.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.raises(ValueError, match=re.escape(f"{fetched}: sha256 ") + ".* does not match test-model's"):
        install("test-model", fetched, tmp_path / "models", registry=registry)
    assert not (tmp_path / "models").exists()
    fetched.write_bytes(PAYLOAD)
    path = install("test-model", fetched, tmp_path / "models", registry=registry)
    assert path == tmp_path / "models" / "test.caffemodel" and path.read_bytes() == PAYLOAD and fetched.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["test.caffemodel"]
    assert install("test-model", path, tmp_path / "models", registry=registry) == path     # already in place


def test_weights_install_command(shared_data, tmp_path, capsys):
    from ilgnet.cli import main

    published = shared_data / "ilgnet-published" / "mean"
    models = tmp_path / "models"
    assert main(["weights", "install", "ilgnet-ava2-mean", str(published / "AVA1_mean.binaryproto"),
                 "--dest", str(models)]) == 1
    assert "does not match ilgnet-ava2-mean's 4f5a4f5d" in capsys.readouterr().err and not models.exists()
    assert main(["weights", "install", "ilgnet-ava2-mean", str(published / "AVA2_mean.binaryproto"),
                 "--dest", str(models)]) == 0
    assert capsys.readouterr().out == (f"{published / 'AVA2_mean.binaryproto'}: OK as ilgnet-ava2-mean; installed "
                                       f"as {models / 'AVA2_mean.binaryproto'}\n")
    assert (models / "AVA2_mean.binaryproto").read_bytes() == (published / "AVA2_mean.binaryproto").read_bytes()


def test_a_complete_partial_file_needs_no_request(server, tmp_path):
    write_part(tmp_path, PAYLOAD)
    download(entry(server.url("/model"), sha256=SHA256, size=len(PAYLOAD)), tmp_path / "test.caffemodel",
             progress=False)
    assert server.requests == [] and (tmp_path / "test.caffemodel").read_bytes() == PAYLOAD


# ------------------------------------------------------------------------------ does a caffemodel fit a net

def small_deploy(caffe, width: int):
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.conv = caffe.layers.Convolution(n.data, num_output=4, kernel_size=3, weight_filler=dict(type="xavier"))
    n.fc = caffe.layers.InnerProduct(n.conv, num_output=width, weight_filler=dict(type="xavier"))
    n.prob = caffe.layers.Softmax(n.fc)
    return n.to_proto()


def saved_model(caffe, deploy, path):
    prototxt = path.with_suffix(".prototxt")
    prototxt.write_text(str(deploy))
    caffe.Net(str(prototxt), caffe.TEST).save(str(path))
    return path


def test_a_model_of_the_same_net_fits(caffe, tmp_path):
    deploy = small_deploy(caffe, 2)
    assert check_fits(saved_model(caffe, deploy, tmp_path / "same.caffemodel"), deploy) == 2


def test_a_model_of_another_net_does_not_fit(caffe, tmp_path):
    model = saved_model(caffe, small_deploy(caffe, 3), tmp_path / "other.caffemodel")
    with pytest.raises(ValueError, match=r"layer 'fc' has blobs \[\(3, 144\), \(3,\)\], the net expects "
                                         r"\[\(2, 144\), \(2,\)\]"):
        check_fits(model, small_deploy(caffe, 2))


def test_a_v1_era_model_with_legacy_blob_dims_fits(caffe, tmp_path):
    """The published ILGNet models predate Caffe's `layer` field: V1 `layers` whose blobs give num/channels/
    height/width, (1, 1, out, in) for an InnerProduct."""
    pb2 = caffe.proto.caffe_pb2
    deploy = small_deploy(caffe, 2)
    legacy = pb2.NetParameter(name="legacy")
    for name, shapes in [("conv", [(4, 3, 3, 3), (1, 1, 1, 4)]), ("fc", [(1, 1, 2, 144), (1, 1, 1, 2)])]:
        layer = legacy.layers.add(name=name)
        for num, channels, height, width in shapes:
            layer.blobs.add(num=num, channels=channels, height=height, width=width,
                            data=[0.0] * (num * channels * height * width))
    (tmp_path / "legacy.caffemodel").write_bytes(legacy.SerializeToString())
    assert check_fits(tmp_path / "legacy.caffemodel", deploy) == 2


def test_a_file_that_is_not_a_netparameter_is_refused(caffe, tmp_path):
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match="not a Caffe model"):
        check_fits(tmp_path / "junk.caffemodel", small_deploy(caffe, 2))


def test_the_ilgnet_check_accepts_an_ilgnet_model(ilgnet_caffemodel):
    """The registry's check for ilgnet-ava1/2, on a model of the ilgnet deploy net (about 600 MB, like theirs)."""
    verify(Weights(name="ilgnet-like", file=ilgnet_caffemodel.name, url="", fits_variant="ilgnet",
                   size=ilgnet_caffemodel.stat().st_size), ilgnet_caffemodel)


def test_case_11_a_download_resumed_after_the_file_changed_installs_the_new_file(caffe, bugcase, repo, tmp_path):
    """Case 11's own scripts: two stand-in caffemodels of one size (an upload and its replacement), a server that
    breaks off the first transfer half way and honours If-Range; their import adapted to ilgnet.zoo.registry."""
    import os
    import subprocess
    import sys

    case = bugcase("11-download-changed-remote")
    script = case / "mixed_resume.py"
    script.write_text(script.read_text().replace("from ilgnet.weights import", "from ilgnet.zoo.registry import"))
    subprocess.run([sys.executable, case / "make_models.py", repo, tmp_path], check=True)
    result = subprocess.run([sys.executable, script, tmp_path / "A.caffemodel", tmp_path / "B.caffemodel", tmp_path],
                            capture_output=True, text=True, env={**os.environ, "ILGNET_SRC": str(repo / "src")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ("equals old file: False | equals new file: True | = old[:half] + "
                                              "new[half:]: False")


def test_a_host_that_cannot_be_reached_is_one_line_saying_how_to_fetch_by_hand(tmp_path, capsys):
    """A port on 127.0.0.1 that nothing listens on (the host of a mean file or of Google Drive, as a machine
    without the network meets it): the host, the reason, the URL to fetch by hand and the install command, in one
    line, never requests' and urllib3's chain of retries; nothing left behind."""
    import socket

    from ilgnet.errors import DownloadError, UserError

    with socket.socket() as probe:                  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/uc?id=abc&export=download"
    model = Weights(name="test-model", file="test.caffemodel", url=url, source="https://example.org/the-model")
    with pytest.raises(DownloadError) as err:
        download(model, tmp_path / "models" / "test.caffemodel", progress=False)
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert message == (f"cannot reach 127.0.0.1:{port} (Connection refused): test.caffemodel was not downloaded. "
                       f"Fetch {url} by hand (a browser, or another machine); see https://example.org/the-model, then "
                       f"run `ilgnet weights install test-model FILE`")
    assert "Max retries" not in message and "HTTPConnectionPool" not in message
    assert list((tmp_path / "models").iterdir()) == []
