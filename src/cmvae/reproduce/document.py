"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML file.

Blocks: :class:`Heading`, :class:`Paragraph`, :class:`Bullets`, :class:`Table`, :class:`Figure`.
Inline text may use ``code`` and **bold**. Markdown refers to figures by their path relative to
the report; HTML embeds each PNG as base64, so the ``.html`` file needs nothing beside it.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "Bullets", "Figure", "Heading", "Paragraph", "Table", "to_html", "to_markdown", "write_atomic"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None

    def __post_init__(self) -> None:
        bad = [i for i, row in enumerate(self.rows) if len(row) != len(self.header)]
        if bad:
            raise ValueError(f"table rows {bad} do not have {len(self.header)} cells (header {self.header})")


@dataclass
class Figure:
    path: Path  # relative to the report's folder
    caption: str
    alt: str = field(default="")


Block = Heading | Paragraph | Bullets | Table | Figure


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                     "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            if block.caption:
                lines = [block.caption, ""] + lines
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            out.append(f"![{block.alt or block.caption}]({block.path.as_posix()})\n\n*{block.caption}*")
        else:  # pragma: no cover - a programming error
            raise TypeError(f"unknown block {block!r}")
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ html

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;border-bottom:2px solid #ddd;padding-bottom:.3rem}h2{font-size:1.3rem;margin-top:2rem;
border-bottom:1px solid #eee}h3{font-size:1.1rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}
caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.3rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-style:italic;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn ``code`` and **bold** into HTML."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part)))
    return "".join(out)


_NUMBER = re.compile(r"^[-+]?\d[\d.,]*(\s*(±|\+-)\s*\d[\d.]*)?(\s*\(.*\))?$")


def _td(text: str) -> str:
    """A table cell; numbers (``0.31``, ``0.31 ± 0.01``, ``38``) are right-aligned, text left."""
    return f'<td class="num">{_inline(text)}</td>' if _NUMBER.match(text.strip()) else f"<td>{_inline(text)}</td>"


def _image_data(path: Path) -> str:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file: the HTML report embeds PNG figures only")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def to_html(blocks: list[Block], base: Path, title: str) -> str:
    """One self-contained HTML page: figures (paths relative to ``base``) embedded as base64 PNG;
    a missing figure becomes a visible note instead of a broken link."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            file = base / block.path
            if file.is_file():
                img = f'<img src="{_image_data(file)}" alt="{html.escape(block.alt or block.caption)}">'
            else:
                img = f"<p><em>figure missing: {html.escape(block.path.as_posix())}</em></p>"
            body.append(f"<figure>{img}<figcaption>{_inline(block.caption)}</figcaption></figure>")
        else:  # pragma: no cover
            raise TypeError(f"unknown block {block!r}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
