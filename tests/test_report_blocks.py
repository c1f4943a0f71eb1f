"""The report's typed blocks (ilgnet.paper.blocks) rendered as REPORT.md and report.html: one of each kind."""
from __future__ import annotations

import base64

from ilgnet.paper.blocks import Bullets, Figure, Heading, Paragraph, Table, html_page, markdown

BLOCKS = [Heading("Title"), Paragraph("See [NETS](../docs/NETS.md), `code`, **bold**."), Heading("Section"),
          Bullets(["one", "two | three"]), Table(["a", "b"], [["1", "x | y"]]), Figure("fig.png", b"\x89PNG", "Fig.")]


def test_markdown_of_each_block():
    assert markdown(BLOCKS) == ("# Title\n\nSee [NETS](../docs/NETS.md), `code`, **bold**.\n\n\n## Section\n\n"
                                "- one\n- two | three\n\n| a | b |\n|---|---|\n| 1 | x \\| y |\n\n![Fig.](fig.png)\n\n")


def test_html_of_each_block_links_lists_and_embeds():
    page = html_page(BLOCKS)
    assert "<h1>Title</h1>" in page and "<h2>Section</h2>" in page
    assert '<p>See <a href="../docs/NETS.md">NETS</a>, <code>code</code>, <strong>bold</strong>.</p>' in page
    assert "<ul><li>one</li><li>two | three</li></ul>" in page
    assert "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>x | y</td></tr></table>" in page
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG").decode()
    assert f'<img src="{uri}" alt="Fig." data-figure="fig.png">' in page
