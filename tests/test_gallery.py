"""`ilgnet predict --html`: the gallery opened in a real browser, Debian's Chromium, headless. A copy of the page gets a
small script that records, once the page has loaded, each image's naturalWidth and whether the page scrolls sideways
on a phone-sized window; Chromium's --dump-dom then gives the DOM with those records, read here with html.parser.

Chromium comes from `make test` (the Makefile's test-tools step installs Debian's package); where it is absent
(`make test-fast` on a bare machine) these tests are skipped with the reason."""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet

PHONE = "390,844"       # CSS pixels of a common phone screen
PROBE = """<script>addEventListener("load", () => {
  for (const img of document.images) img.dataset.rendered = img.complete ? img.naturalWidth : 0;
  const page = document.documentElement;
  document.body.dataset.sideways = page.scrollWidth > page.clientWidth ? "yes" : "no";
});</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    return path


def chromium_args(chromium: str, profile: Path) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", f"--window-size={PHONE}"]


class Page(HTMLParser):
    """The cards (data attributes, and their image's recorded naturalWidth), the histogram's bars, the skipped
    table's rows and the body's attributes of a dumped DOM."""

    def __init__(self, dom: str):
        super().__init__()
        self.cards: list[dict] = []
        self.bars: list[str] = []
        self.skipped: list[list[str]] = []
        self.body: dict = {}
        self.sources: list[str] = []
        self._in: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "div" and "data-rank" in attrs:
            self.cards.append(attrs)
        elif tag == "img" and "data-full" in attrs:                   # a card's thumbnail (not the lightbox's)
            self.sources += [attrs["src"], attrs["data-full"]]
            self.cards[-1]["rendered"] = int(attrs.get("data-rendered", 0))
        elif (tag, self._in) in (("title", "rect"), ("td", "table")) or tag == "rect":
            self._in = tag
        elif tag == "table" and attrs.get("id") == "skipped":
            self._in = "table"
        elif tag == "tr" and self._in == "table":
            self.skipped.append([])

    def handle_data(self, data):
        if self._in == "title":
            self.bars.append(data)
        elif self._in == "td":
            self.skipped[-1].append(data)

    def handle_endtag(self, tag):
        if tag == "title" and self._in == "title":
            self._in = None
        elif tag == "td" and self._in == "td":
            self._in = "table"
        elif tag == "table":
            self._in = None

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)


def open_in_chromium(chromium: str, report: Path, work: Path) -> Page:
    """The report as Chromium renders it in a phone-sized window, from a copy with the PROBE script."""
    probed = work / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run([*chromium_args(chromium, work / "profile"), "--virtual-time-budget=10000",
                             "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return Page(result.stdout)


def test_gallery_renders_every_thumbnail_in_the_csvs_ranking(chromium, stand_in, tmp_path, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(stand_in["photos"], photos)
    first = min(p for p in photos.iterdir() if p.name != "broken.jpg")
    shutil.copy(first, photos / "<b>tom & \"jerry's\".jpg")          # markup in a file name stays text
    report, scores = tmp_path / "report" / "gallery.html", tmp_path / "scores.csv"
    assert ilgnet(["predict", str(photos), "--model", str(stand_in["weights"]), "--mean", str(stand_in["mean"]),
                   "--variant", SMALL, "--backend", "opencv", "--quiet", "--html", str(report),
                   "--out", str(scores)]) == 0
    assert f"gallery in {report}" in capsys.readouterr().err
    table = pd.read_csv(scores)
    page = open_in_chromium(chromium, report, tmp_path)

    ranked = table.sort_values("p_high", ascending=False, kind="stable")
    assert [card["data-path"] for card in page.cards] == list(ranked.path)
    assert [float(card["data-p-high"]) for card in page.cards] == pytest.approx(list(ranked.p_high), abs=1e-6)
    assert len(page.cards) == 7 and all(card["rendered"] > 0 for card in page.cards)
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.sources)        # nothing outside the file
    assert sum(int(bar.rsplit(": ", 1)[1]) for bar in page.bars) == 7 and len(page.bars) == 20
    assert page.skipped[1:] == [[str(photos / "broken.jpg"), "corrupt JPEG"]]
    assert page.body["data-sideways"] == "no"
    assert "<b>tom" not in report.read_text()


def test_gallery_of_the_top_photos(chromium, stand_in, tmp_path):
    report = tmp_path / "top.html"
    assert ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--mean",
                   str(stand_in["mean"]), "--variant", SMALL, "--backend", "opencv", "--quiet", "--top", "3",
                   "--html", str(report)]) == 0
    page = open_in_chromium(chromium, report, tmp_path)
    assert len(page.cards) == 3 and all(card["rendered"] > 0 for card in page.cards)
    assert sum(int(bar.rsplit(": ", 1)[1]) for bar in page.bars) == 6        # the histogram shows every score
    assert "the best 3 of 6" in report.read_text()


def test_a_gallery_that_cannot_be_written_is_named_before_scoring(stand_in, tmp_path, capsys):
    args = ["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--mean", str(stand_in["mean"]),
            "--variant", SMALL, "--backend", "opencv", "--quiet", "--out", str(tmp_path / "scores.csv")]
    (tmp_path / "file").write_text("")
    for html, message in [(tmp_path, f"argument --html: {tmp_path} is a folder; give a file name"),
                          (tmp_path / "file" / "report.html",
                           f"argument --html: {tmp_path / 'file' / 'report.html'}: {tmp_path / 'file'} is a file, "
                           f"not a folder")]:
        with pytest.raises(SystemExit) as stop:
            ilgnet([*args, "--html", str(html)])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "scores.csv").exists()                   # refused before any photo was scored

INTERACT = """<script>addEventListener("load", () => {
  const cards = [...document.querySelectorAll(".card")], body = document.body.dataset;
  body.boxes = JSON.stringify(cards.map(c => {
    const box = c.querySelector("img").getBoundingClientRect();
    return [Math.round(box.width), Math.round(box.height)];
  }));
  const lightbox = document.getElementById("lightbox"), full = lightbox.querySelector("img");
  body.before = lightbox.hidden;
  const thumbnail = cards[0].querySelector("img");
  thumbnail.click();
  const shown = lightbox.getBoundingClientRect();
  body.lightbox = JSON.stringify({hidden: lightbox.hidden, width: shown.width, height: shown.height,
                                  full: full.src === thumbnail.dataset.full,
                                  caption: lightbox.querySelector("p").textContent});
  lightbox.click();
  body.closed = lightbox.hidden;
  for (const show of ["high", "low", "all"]) {
    document.querySelector(`.filter button[data-show="${show}"]`).click();
    body[show] = JSON.stringify(cards.filter(c => c.offsetParent !== null).map(c => Number(c.dataset.rank)));
  }
});</script>"""


def test_gallery_opens_photos_full_size_and_filters_high_and_low(chromium, stand_in, tmp_path):
    """Portrait and landscape photos fill equal square boxes; a click opens the photo itself (embedded at up to
    FULL_SIDE pixels) in the lightbox and a click closes it; the filter shows only the high or only the low cards."""
    import base64
    import json

    import cv2
    import numpy as np

    from ilgnet.scoring.gallery import FULL_SIDE, write_gallery

    photos = sorted(p for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")[:3]
    image = cv2.imread(str(photos[0]))
    cv2.imwrite(str(tmp_path / "portrait.jpg"), cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    cv2.imwrite(str(tmp_path / "large.jpg"), cv2.resize(image, (2400, 1500)))
    paths = [tmp_path / "large.jpg", tmp_path / "portrait.jpg", *photos]
    table = pd.DataFrame({"path": [str(p) for p in paths], "p_high": [0.9, 0.7, 0.4, 0.55, 0.1]})
    report = write_gallery(tmp_path / "gallery.html", table, [], about={"model": "test"})
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", INTERACT + "</body>"))
    result = subprocess.run([*chromium_args(chromium, tmp_path / "profile"), "--virtual-time-budget=10000",
                             "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    body = Page(result.stdout).body

    boxes = json.loads(body["data-boxes"])
    assert len(boxes) == 5 and len(set(map(tuple, boxes))) == 1 and boxes[0][0] == boxes[0][1] > 100
    lightbox = json.loads(body["data-lightbox"])
    assert body["data-before"] == "true" and lightbox["hidden"] is False and lightbox["width"] > 300
    assert lightbox["full"] is True                                     # the photo itself, not the thumbnail
    full = next(card for card in Page(result.stdout).cards if card["data-rank"] == "1")
    sources = Page(result.stdout).sources
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(sources[1].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert full["data-path"] == str(paths[0]) and picture.shape[:2] == (1000, FULL_SIDE)   # 2400 x 1500, capped
    assert lightbox["caption"].startswith("#1  p_high 0.900") and str(paths[0]) in lightbox["caption"]
    assert body["data-closed"] == "true"
    assert json.loads(body["data-high"]) == [1, 2, 3] and json.loads(body["data-low"]) == [4, 5]
    assert json.loads(body["data-all"]) == [1, 2, 3, 4, 5]
    assert "http" not in report.read_text().replace("http-equiv", "")    # still one self-contained file

    shot = tmp_path / "gallery.png"
    result = subprocess.run([*chromium_args(chromium, tmp_path / "profile2"), f"--screenshot={shot}",
                             report.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and cv2.imread(str(shot)).shape[:2] == (844, 390)    # the phone-sized window
