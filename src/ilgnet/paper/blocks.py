"""The report's blocks, typed: what ilgnet.paper.render builds from the report's model, and their two renderings,
Markdown (REPORT.md) and one self-contained HTML page (report.html).

Text is Markdown of a few kinds: [links](target), `code` and **bold**, which the HTML page renders as such.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str                   # the first heading of a page is its title (h1), the others sections (h2)


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]       # each as long as the header


@dataclass(frozen=True)
class Figure:
    file: str                   # the PNG's name beside REPORT.md; report.html embeds it
    png: bytes
    alt: str


Block = Heading | Paragraph | Bullets | Table | Figure


def _cell_md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        match block:
            case Heading(text):
                lines += ["", f"{'#' if not lines else '##'} {text}", ""]
            case Paragraph(text):
                lines += [text, ""]
            case Bullets(items):
                lines += [f"- {item}" for item in items] + [""]
            case Table(header, rows):
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows] + [""]
            case Figure(file, _, alt):
                lines += [f"![{alt}]({file})", ""]
    return "\n".join(lines).lstrip() + "\n"


LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


CODE = re.compile(r"`([^`]+)`")


BOLD = re.compile(r"\*\*([^*]+)\*\*")


STYLE = """body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px;color:#222}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top} th{background:#f0f0ee}
img{max-width:100%;height:auto} h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.4em} code{background:#f4f4f2}"""


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = CODE.sub(lambda m: f"<code>{m[1]}</code>", escaped)
    escaped = BOLD.sub(lambda m: f"<strong>{m[1]}</strong>", escaped)
    return LINK.sub(lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', escaped)


def html_page(blocks: list[Block]) -> str:
    """The blocks as one HTML page that needs no other file: figures as PNG data URIs, inline style."""
    parts: list[str] = []
    for block in blocks:
        match block:
            case Heading(text):
                tag = "h1" if not parts else "h2"
                parts.append(f"<{tag}>{_inline_html(text)}</{tag}>")
            case Paragraph(text):
                parts.append(f"<p>{_inline_html(text)}</p>")
            case Bullets(items):
                parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in items) + "</ul>")
            case Table(header, rows):
                head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in rows)
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            case Figure(file, png, alt):
                uri = "data:image/png;base64," + base64.b64encode(png).decode()
                parts.append(f'<img src="{uri}" alt="{html.escape(alt)}" data-figure="{html.escape(file)}">')
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width, initial-scale=1"><title>ILGNet, the paper regenerated</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
