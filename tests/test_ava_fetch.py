"""`ilgnet ava fetch` and `ilgnet ava verify` against a local Hub (tests/hub_server.py) serving a small archive made
here from synthetic photos and an AVA.txt: fetch, a second run that downloads nothing, an interrupted download and an
interrupted extraction resumed, a corrupted byte and a missing AVA.txt refused before extraction, a full disk refused
before download, and verify's missing and corrupt ids."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from hub_server import Hub
from ilgnet.data import ava_fetch, manifest
from ilgnet.data.mirrors import get_mirror, mirrors
from ilgnet.data.synthetic import generate
from ilgnet.errors import BadInput, DownloadError, NoSpace

REPO = "datasets/tester/ava-mirror"
REVISION = "abc1234"


def _archive(source: Path, kind: str, *, with_ava_txt: bool = True, filler: int = 0) -> bytes:
    """source's AVA.txt, lists and photos packed as a mirror might: everything under a top folder, the photos
    one folder deeper, plus a file that is neither (`filler` random bytes, which do not compress)."""
    buffer = io.BytesIO()
    files = [(path, f"AVA_dataset/{path.relative_to(source)}") for path in sorted(source.rglob("*")) if path.is_file()
             and (with_ava_txt or path.name != "AVA.txt")]
    files = [(path, name.replace("images/", "images/images/")) for path, name in files]
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as zipped:
            for path, name in files:
                zipped.write(path, name)
            zipped.writestr("AVA_dataset/README", "not AVA")
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path, name in files:
                tar.add(path, name)
            if filler:
                info = tarfile.TarInfo("AVA_dataset/filler.bin")
                info.size = filler
                tar.addfile(info, io.BytesIO(os.urandom(filler)))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A small AVA: 12 AVA.txt rows and their photos, and an official list."""
    root = tmp_path_factory.mktemp("ava-source")
    rows = generate(root, n_images=12, seed=5, long_sides=(40, 60))
    (root / "aesthetics_image_lists").mkdir()
    (root / "aesthetics_image_lists" / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in rows.image_id[:4]))
    return root


def _registry(tmp_path: Path, data: bytes, filename: str, **changes) -> Path:
    entry = {"repo_id": "tester/ava-mirror", "filename": filename, "revision": REVISION, "size": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), **changes}
    path = tmp_path / "mirrors.json"
    path.write_text(json.dumps({"test": entry}))
    return path


def _fetch(tmp_path, hub, registry, root, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1"}
    return subprocess.run([sys.executable, "-m", "ilgnet.cli", "ava", "fetch", "--to", str(root), "--mirror", "test",
                           "--mirrors", str(registry), "--workers", "2", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("kind", ["tgz", pytest.param("zip", marks=pytest.mark.slow)])
def test_fetch_lays_out_ava_and_a_second_run_downloads_nothing(tmp_path, source, kind):
    data = _archive(source, kind)
    filename = f"ava.{kind}"
    registry = _registry(tmp_path, data, filename)
    root = tmp_path / "AVA"
    with Hub({(REPO, REVISION, filename): data}) as hub:
        first = _fetch(tmp_path, hub, registry, root)
        assert first.returncode == 0, first.stderr
        assert len(hub.gets()) == 1
        second = _fetch(tmp_path, hub, registry, root)
        assert second.returncode == 0, second.stderr
        assert len(hub.gets()) == 1 and "nothing downloaded" in second.stdout
    assert (root / "AVA.txt").read_bytes() == (source / "AVA.txt").read_bytes()
    photos = sorted(p.name for p in (source / "images").iterdir())
    assert sorted(p.name for p in (root / "images").iterdir()) == photos
    for name in photos:
        assert (root / "images" / name).read_bytes() == (source / "images" / name).read_bytes()
    assert (root / "aesthetics_image_lists" / "generic_test.jpgl").is_file()
    assert not (root / ".ilgnet-download" / filename).exists()          # removed after a verified extraction
    table = pd.read_csv(root / "ava-manifest.csv")
    assert list(table.columns) == manifest.COLUMNS and len(table) == 12 and table["decodes"].all()
    sha = hashlib.sha256((source / "images" / photos[0]).read_bytes()).hexdigest()
    assert table.set_index("id").loc[int(photos[0].split(".")[0]), "sha256"] == sha
    assert "photos present: 12, decoding: 12; missing: 0" in second.stdout


@pytest.mark.slow
def test_interrupted_download_resumes_from_where_it_stopped(tmp_path, source):
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    # huggingface_hub writes in chunks of DOWNLOAD_CHUNK_SIZE: the cut comes after the first one
    data = _archive(source, "tgz", filler=DOWNLOAD_CHUNK_SIZE + (1 << 20))
    registry = _registry(tmp_path, data, "ava.tgz")
    root = tmp_path / "AVA"
    with Hub({(REPO, REVISION, "ava.tgz"): data}) as hub:
        hub.cut_at = DOWNLOAD_CHUNK_SIZE + 1000
        failed = _fetch(tmp_path, hub, registry, root)
        assert failed.returncode == 1
        error = failed.stderr.strip().splitlines()[-1]
        assert error.startswith("ilgnet ava fetch: error: ") and "run the same command again to resume" in error
        assert not (root / "images").exists()
        hub.down = False
        resumed = _fetch(tmp_path, hub, registry, root, "--keep-archive")
        assert resumed.returncode == 0, resumed.stderr
        assert hub.gets()[-1][2] == f"bytes={DOWNLOAD_CHUNK_SIZE}-"     # asked for the rest only
    assert (root / ".ilgnet-download" / "ava.tgz").read_bytes() == data
    assert len(list((root / "images").iterdir())) == 12


def test_interrupted_extraction_leaves_whole_photos_and_resumes(tmp_path, source, monkeypatch):
    data = _archive(source, "tgz")
    root = tmp_path / "AVA"
    folder = ava_fetch.download_dir(root)
    folder.mkdir(parents=True)
    (folder / "ava.tgz").write_bytes(data)
    mirror = get_mirror("test", _registry(tmp_path, data, "ava.tgz"))
    replaced = []
    real_replace = os.replace

    def interrupted(src, dst):
        if ".ilgnet-download" not in str(dst):        # the extracted files, not fetch.json
            if len(replaced) == 5:
                raise KeyboardInterrupt
            replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(ava_fetch.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ava_fetch.fetch(root, mirror, progress=False)
    monkeypatch.setattr(ava_fetch.os, "replace", real_replace)
    left = [p for p in root.rglob("*") if p.is_file() and ".ilgnet-download" not in p.parts]
    assert not [p for p in left if p.name.endswith(".partial")]
    for path in left:
        if path.parent.name == "images":
            assert path.read_bytes() == (source / "images" / path.name).read_bytes()
    assert not ava_fetch.is_fetched(root, mirror)
    done = ava_fetch.fetch(root, mirror, progress=False)
    assert done["kept"] == 5 and done["written"] == 14 - 5
    assert ava_fetch.is_fetched(root, mirror) and not (folder / "ava.tgz").exists()


def test_a_corrupted_byte_is_refused_before_extraction(tmp_path, source):
    data = _archive(source, "tgz")
    registry = _registry(tmp_path, data, "ava.tgz")
    damaged = bytearray(data)
    damaged[len(data) // 3] ^= 0xFF
    root = tmp_path / "AVA"
    with Hub({(REPO, REVISION, "ava.tgz"): bytes(damaged)}) as hub:
        result = _fetch(tmp_path, hub, registry, root)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("ilgnet ava fetch: error: ") and f"expected {hashlib.sha256(data).hexdigest()}" in line
    assert "nothing extracted" in line
    assert not (root / "images").exists() and not (root / "AVA.txt").exists()
    assert not (root / ".ilgnet-download" / "ava.tgz").exists()


def test_an_archive_without_ava_txt_is_refused_in_one_line(tmp_path, source):
    data = _archive(source, "zip", with_ava_txt=False)
    registry = _registry(tmp_path, data, "ava.zip")
    root = tmp_path / "AVA"
    with Hub({(REPO, REVISION, "ava.zip"): data}) as hub:
        result = _fetch(tmp_path, hub, registry, root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        "ava.zip: the archive holds no AVA.txt, so it is not AVA (nothing extracted)")
    assert not (root / "images").exists()
    with pytest.raises(BadInput, match="no AVA.txt and no photos"):
        empty = tmp_path / "empty.zip"
        with zipfile.ZipFile(empty, "w") as zipped:
            zipped.writestr("README", "nothing")
        ava_fetch.layout(empty)


def test_a_full_disk_is_refused_before_download(tmp_path, source):
    data = _archive(source, "tgz")
    registry = _registry(tmp_path, data, "ava.tgz", size=10**17)
    root = tmp_path / "AVA"
    with Hub({(REPO, REVISION, "ava.tgz"): data}) as hub:
        result = _fetch(tmp_path, hub, registry, root)
        assert hub.requests == []
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("ilgnet ava fetch: error: ") and " needs " in line and "B free" in line
    with pytest.raises(NoSpace):
        ava_fetch.check_room(root, get_mirror("test", registry))


def test_a_revision_the_mirror_lacks_is_a_download_error(tmp_path, source):
    data = _archive(source, "tgz")
    registry = _registry(tmp_path, data, "ava.tgz", revision="fffffff")
    with Hub({(REPO, REVISION, "ava.tgz"): data}) as hub:
        with pytest.raises(DownloadError, match="at fffffff could not be downloaded") as raised:
            ava_fetch.download(tmp_path / "AVA", get_mirror("test", registry), endpoint=hub.endpoint)
    # a short commit id is named as such, with what to do
    assert "fffffff is not a full 40-hex commit id, which the Hub may need" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_verify_lists_missing_and_corrupt_ids(tmp_path, source):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(source, root)
    ids = sorted(int(p.stem) for p in (root / "images").iterdir())
    for gone in ids[:2]:
        (root / "images" / f"{gone}.jpg").unlink()
    cut = root / "images" / f"{ids[5]}.jpg"
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "ava", "verify", str(root)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "AVA.txt: 12 rows; photos present: 10, decoding: 9; missing: 2" in result.stdout
    assert "corrupt: 1" in result.stdout
    assert (root / "ava-missing.txt").read_text().split() == [str(i) for i in ids[:2]]
    assert (root / "ava-corrupt.txt").read_text() == f"{ids[5]}\ttruncated JPEG (no end-of-image marker)\n"
    summary = json.loads((root / "ava-summary.json").read_text())
    assert (summary["photos_present"], summary["photos_decode"], summary["missing"]) == (10, 9, 2)
    again = manifest.verify(root, progress=False)
    assert again["reused"] == 9 and again["corrupt"] == 1

    # `ilgnet lmdb` on a list of all 12 says how many the manifest beside the photos marks, and skips them
    split = tmp_path / "split"
    split.mkdir()
    for name, part in (("train", ids[:8]), ("val", ids[8:])):
        (split / f"{name}.txt").write_text("".join(f"{i}.jpg {i % 2}\n" for i in part))
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", "lmdb", "--split", str(split), "--images",
                             str(root / "images"), "--resize", "16", "--jobs", "1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (f"ilgnet lmdb: 3 of the 12 listed photos are marked unreadable by {root / 'ava-manifest.csv'} (2 without "
            f"a photo, 1 that do not decode)") in result.stderr
    built = json.loads((split / "lmdb.json").read_text())
    assert (built["train"]["records"], built["val"]["records"], built["skipped"]) == (5, 4, 3)


def test_the_pinned_mirrors_say_their_revisions_are_short_commit_ids(capsys):
    from ilgnet.cli import main

    assert main(["ava", "mirrors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["iqa-pytorch", "aesdata"]
    assert all(" (a short commit id: the download may need the full 40-hex one; docs/DATA.md)" in line
               for line in lines)
    assert all("not the full 40-hex id" in mirror.source for mirror in mirrors().values())
