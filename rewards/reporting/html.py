"""One self-contained report page: sections of tables and images, as HTML (images inlined) and as markdown."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.note{color:#555}
.fail{color:#b00020;font-weight:bold}.pass{color:#087f23;font-weight:bold}"""


@dataclass
class Section:
    """A heading with optional text, one table (header + rows) and images (files next to the page)."""

    title: str
    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[object]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)


def fmt(value: object, digits: int = 3, missing: str = "n/a") -> str:
    """A value as a table cell: floats to ``digits`` places, dicts and lists as sorted JSON, None as ``missing``.

    The one formatter of reports, model cards, agreement tables and the ``runs`` table.
    """
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return missing if value is None else str(value)


def _image_tag(folder: Path, name: str, caption: str) -> str:
    path = folder / name
    if not path.exists():
        return f'<p class="note">({html.escape(caption)}: not available)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(caption)}</figcaption></figure>"


def render_html(title: str, subtitle: str, sections: list[Section], folder: Path) -> str:
    """The page, readable offline: every PNG from ``folder`` is embedded as a data URI."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
             f"<p class='note'>{html.escape(subtitle)}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.rows:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>"
                           for row in section.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        parts += [_image_tag(folder, name, caption) for name, caption in section.images]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_sections_markdown(sections: list[Section]) -> str:
    """The same sections as markdown (images as relative links)."""
    out: list[str] = []
    for section in sections:
        out.append(f"## {section.title}\n")
        if section.text:
            out.append(section.text + "\n")
        if section.rows:
            out.append("| " + " | ".join(section.header) + " |")
            out.append("|" + "---|" * len(section.header))
            out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in section.rows]
            out.append("")
        out += [f"![{caption}]({name})\n" for name, caption in section.images]
    return "\n".join(out) + "\n"
