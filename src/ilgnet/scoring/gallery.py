"""Scores as a gallery to look at: one self-contained HTML file with the photos ranked by p_high, each with its
score, a histogram of all scores, the model and mean used, and the files that were skipped with the reason.

Thumbnails and the photos themselves (at most FULL_SIDE pixels on the long side) are embedded as JPEG data URIs and
the histogram is inline SVG, so the file needs nothing beside it: it can be mailed, opened offline or on a phone (a
grid of cards that reflows to the screen's width). Every card shows its thumbnail in the same square box, cropped
to fill it (object-fit), so portrait and landscape photos keep the grid's rows even; a click opens the photo itself
over the page (a lightbox: a click or Escape closes it), and the page shows all photos, or only those labelled high
or low. A thumbnail takes 32 KB on average for the 87 AVA sample photos (9 to 61 KB), so a gallery of a thousand
photos is some 30 MB before the full-size photos, which add what their JPEGs take at FULL_SIDE.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ilgnet.fileio import atomic_write_text

THUMBNAIL_SIDE = 360        # long side of a thumbnail, pixels: sharp on a phone's two columns
FULL_SIDE = 1600            # long side of the photo the lightbox shows: a laptop screen's height, twice over
JPEG_QUALITY = 80
BINS = 20                   # histogram bars of width 0.05

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:12px;background:#f4f4f2;color:#222}
h1{font-size:1.3em;margin:.2em 0} h2{font-size:1.1em;margin:1em 0 .4em}
.about{font-size:.85em;color:#555;overflow-wrap:anywhere} .about dt{font-weight:600;float:left;margin-right:.4em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;align-items:start}
.card{background:#fff;border-radius:6px;overflow:hidden;box-shadow:0 1px 3px #0002}
.card img{display:block;width:100%;aspect-ratio:1;object-fit:cover;cursor:zoom-in;background:#ddd}
.filter{margin:.4em 0 .8em} .filter button{font:inherit;padding:4px 12px;margin-right:4px;border:1px solid #999;
border-radius:14px;background:#fff;cursor:pointer} .filter button[aria-pressed=true]{background:#2a7ae2;color:#fff}
.grid[data-show=high] .card.low,.grid[data-show=low] .card.high{display:none}
#lightbox{position:fixed;inset:0;background:#000d;display:flex;flex-direction:column;align-items:center;
justify-content:center;z-index:9;cursor:zoom-out;color:#eee;font-size:.9em}
#lightbox[hidden]{display:none} #lightbox img{max-width:96vw;max-height:88vh;object-fit:contain}
.card .meta{padding:6px 8px;font-size:.85em} .card .name{color:#666;overflow-wrap:anywhere;font-size:.8em}
.bar{height:5px;background:#ddd} .bar span{display:block;height:100%;background:#2a7ae2}
.high .score{color:#1a6b1a} .low .score{color:#a33}
svg{max-width:560px;width:100%;height:auto} table{border-collapse:collapse;font-size:.85em}
td{border-top:1px solid #ddd;padding:4px 6px;overflow-wrap:anywhere}
"""


def _jpeg_uri(image: np.ndarray, side: int) -> str | None:
    import cv2

    scale = side / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return f"data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}" if ok else None


def photo_uris(path: Path | str, sides: tuple[int, ...] = (THUMBNAIL_SIDE, FULL_SIDE)) -> list[str] | None:
    """The photo at `path` as data URIs of JPEGs at most each of `sides` pixels on its long side (aspect kept, never
    enlarged), or None when it cannot be read now."""
    import cv2

    try:
        image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    except (OSError, cv2.error):
        return None
    if image is None:
        return None
    uris = [_jpeg_uri(image, side) for side in sides]
    return None if None in uris else uris


FILTER = "".join(f'<button type="button" data-show="{show}" aria-pressed="{str(show == "all").lower()}">'
                 f'{label}</button>' for show, label in (("all", "all"), ("high", "high only"), ("low", "low only")))
# The filter buttons set the grid's data-show (the style hides the other cards); a click on a thumbnail shows its
# full-size photo in the lightbox, a click on the lightbox or Escape hides it.
SCRIPT = """
const grid = document.getElementById("ranking"), box = document.getElementById("lightbox");
for (const button of document.querySelectorAll(".filter button")) button.addEventListener("click", () => {
  grid.dataset.show = button.dataset.show;
  for (const other of document.querySelectorAll(".filter button")) other.setAttribute("aria-pressed", other === button);
});
grid.addEventListener("click", event => {
  const img = event.target.closest("img[data-full]");
  if (!img) return;
  const card = img.closest(".card");
  box.querySelector("img").src = img.dataset.full;
  box.querySelector("p").textContent = `#${card.dataset.rank}  p_high ${Number(card.dataset.pHigh).toFixed(3)}  ` +
    card.dataset.path;
  box.hidden = false;
});
box.addEventListener("click", () => { box.hidden = true; });
addEventListener("keydown", event => { if (event.key === "Escape") box.hidden = true; });
"""


def histogram_svg(p_high: Sequence[float], bins: int = BINS) -> str:
    """An inline SVG bar chart of how many photos fall in each of `bins` equal bins of p_high over [0, 1], with the
    decision threshold 0.5 marked."""
    counts, _ = np.histogram(np.asarray(p_high, float), bins=bins, range=(0, 1))
    width, height, left, bottom = 400, 160, 30, 20
    top = max(1, int(counts.max()))
    bar = (width - left) / bins
    parts = [f'<svg viewBox="0 0 {width} {height + bottom}" role="img" aria-label="histogram of p_high">',
             f'<text x="2" y="12" font-size="10">{top}</text><text x="2" y="{height}" font-size="10">0</text>']
    for i, count in enumerate(counts):
        h = height * count / top
        parts.append(f'<rect x="{left + i * bar + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" fill="{"#2a7ae2" if i >= bins / 2 else "#c55"}"><title>{i / bins:.2f}-'
                     f'{(i + 1) / bins:.2f}: {count}</title></rect>')
    middle = left + (width - left) / 2
    parts.append(f'<line x1="{middle}" x2="{middle}" y1="0" y2="{height}" stroke="#333" stroke-dasharray="3"/>')
    for x, label in ((left, "0"), (middle, "0.5"), (width - 8, "1")):
        parts.append(f'<text x="{x}" y="{height + 14}" font-size="10">{label}</text>')
    return "".join(parts) + "</svg>"


def _card(rank: int, path: str, p_high: float, uris: list[str] | None) -> str:
    name = html.escape(Path(path).name)
    picture = (f'<img src="{uris[0]}" data-full="{uris[1]}" alt="{name}">' if uris else
               '<p class="meta">(the photo can no longer be read)</p>')
    kind = "high" if p_high > 0.5 else "low"
    return (f'<div class="card {kind}" data-rank="{rank}" data-path="{html.escape(path)}" data-p-high="{p_high:.6f}">'
            f'{picture}<div class="bar"><span style="width:{100 * p_high:.1f}%"></span></div>'
            f'<div class="meta">#{rank} <b class="score">{p_high:.3f}</b> {kind}'
            f'<div class="name" title="{html.escape(path)}">{name}</div></div></div>')


def gallery_html(table: pd.DataFrame, skipped: Sequence, *, about: dict[str, str], top: int | None = None,
                 jobs: int | None = None) -> str:
    """The gallery page: the rows of `table` (path, p_high) ranked by p_high, best first (ties keep their order, as
    `ilgnet predict --top` ranks), the best `top` of them when given; a histogram of every p_high in `table`;
    `about` (e.g. model, mean) as a list of facts; `skipped` (objects with path and reason) as a table.
    Thumbnails are made in `jobs` threads."""
    ranked = table.sort_values("p_high", ascending=False, kind="stable")
    if top is not None:
        ranked = ranked.head(top)
    with ThreadPoolExecutor(jobs) as pool:
        uris = list(pool.map(photo_uris, ranked.path))
    cards = "".join(_card(rank, str(path), float(p), uri)
                    for rank, (path, p, uri) in enumerate(zip(ranked.path, ranked.p_high, uris), 1))
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in about.items())
    shown = f"the best {len(ranked)} of {len(table)}" if len(ranked) < len(table) else f"all {len(table)}"
    rows = "".join(f"<tr><td>{html.escape(str(s.path))}</td><td>{html.escape(s.reason)}</td></tr>" for s in skipped)
    skipped_part = (f'<h2>Skipped ({len(skipped)})</h2><table id="skipped"><tr><th>file</th><th>reason</th></tr>'
                    f"{rows}</table>") if skipped else "<h2>Skipped (0)</h2>"
    high = int((table.p_high > 0.5).sum())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>ILGNet scores: {len(table)} photos</title><style>{STYLE}</style></head><body>"
            f"<h1>ILGNet aesthetic scores</h1>"
            f'<p>{len(table)} photos scored ({high} high, {len(table) - high} low), {len(skipped)} skipped; '
            f"p_high is the probability of high aesthetic quality. Ranked best first: {shown}.</p>"
            f'<dl class="about">{facts}</dl><h2>Scores</h2>{histogram_svg(table.p_high)}'
            f'<h2>Ranking</h2><div class="filter" role="group" aria-label="show">{FILTER}</div>'
            f'<div class="grid" id="ranking" data-show="all">{cards}</div>{skipped_part}'
            f'<div id="lightbox" hidden role="dialog" aria-label="photo"><img alt=""><p></p></div>'
            f"<script>{SCRIPT}</script></body></html>\n")


def write_gallery(path: Path, table: pd.DataFrame, skipped: Sequence, *, about: dict[str, str],
                  top: int | None = None) -> Path:
    """gallery_html written to `path` (atomically; its folder is made). FilesystemRefused naming the file (and for a
    full disk, the device and the page's size) when it cannot be written."""
    path = Path(path)
    page = gallery_html(table, skipped, about=about, top=top)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path
