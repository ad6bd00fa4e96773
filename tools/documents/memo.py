"""Word memos from Markdown (python-docx), optionally in the owner's own template.

The model writes Markdown, which it writes well; this turns the usual subset into
real Word structure rather than text that looks like Markdown:
`#`..`######` headings (Heading 1-6), `-`/`*` bullets and `1.` numbered lists
(two spaces of indent per level), `|` tables (header row bold, repeated on each
page; numbers right-aligned with their header unless the rule row says otherwise,
money and percentages with one currency and decimals per column, widths shared out
by content), `>` quotes, fenced code, and inline **bold**, *italic*, `code` and
[links](url). With a template (.docx or .dotx) the memo uses its styles, page
setup, headers and footers; its body text is replaced. A style the template lacks
falls back to the nearest plain one rather than failing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tools.documents import numbers, tables

_INLINE = re.compile(r"(\*\*[^*]+\*\*|__[^_]+__|\*[^*\s][^*]*\*|_[^_\s][^_]*_|`[^`]+`|\[[^\]]+\]\([^)]+\))")
_LIST = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def write_docx(path: Path, markdown: str, template: Path | None) -> str:
    import docx

    if template is not None:
        document = docx.Document(str(template))
        body = document.element.body
        for child in list(body):
            if not child.tag.endswith("}sectPr"):  # keep page setup, headers, footers
                body.remove(child)
    else:
        document = docx.Document()
    counts = {"headings": 0, "paragraphs": 0, "list items": 0, "tables": 0}
    lines = markdown.replace("\r\n", "\n").split("\n")
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            _paragraph(document, " ".join(s.strip() for s in para), None)
            counts["paragraphs"] += 1
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped in ("---", "***", "___"):
            flush()
            i += 1
            continue
        if stripped.startswith("```"):
            flush()
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                p = _paragraph(document, "", "No Spacing")
                run = p.add_run(lines[i])
                run.font.name = "Consolas"
                i += 1
            i += 1
            continue
        m = _HEADING.match(stripped)
        if m:
            flush()
            _paragraph(document, m.group(2), f"Heading {len(m.group(1))}")
            counts["headings"] += 1
            i += 1
            continue
        if stripped.startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            _table(document, block)
            counts["tables"] += 1
            continue
        m = _LIST.match(line)
        if m:
            flush()
            level = min(len(m.group(1).replace("\t", "  ")) // 2, 2)
            numbered = m.group(2)[0].isdigit()
            style = ("List Number" if numbered else "List Bullet") + (f" {level + 1}" if level else "")
            _paragraph(document, m.group(3), style, fallback_prefix="1. " if numbered else "• ")
            counts["list items"] += 1
            i += 1
            continue
        if stripped.startswith(">"):
            flush()
            _paragraph(document, stripped.lstrip("> "), "Quote")
            counts["paragraphs"] += 1
            i += 1
            continue
        para.append(line)
        i += 1
    flush()
    document.save(str(path))
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)


def _paragraph(document: Any, text: str, style: str | None, fallback_prefix: str = "") -> Any:
    try:
        p = document.add_paragraph(style=style) if style else document.add_paragraph()
    except KeyError:  # the template has no such style
        base = "Heading 1" if style and style.startswith("Heading") else None
        try:
            p = document.add_paragraph(style=base) if base else document.add_paragraph()
        except KeyError:
            p = document.add_paragraph()
        if style and style.startswith("List"):
            text = fallback_prefix + text
        elif style and style.startswith("Heading"):
            _runs(p, text, bold=True)
            return p
    _runs(p, text)
    return p


def _runs(p: Any, text: str, bold: bool = False) -> None:
    for part in _INLINE.split(text):
        if not part:
            continue
        if part.startswith(("**", "__")) and len(part) > 4:
            p.add_run(part[2:-2]).bold = True
        elif part.startswith("`"):
            run = p.add_run(part[1:-1])
            run.font.name = "Consolas"
        elif part.startswith("[") and "](" in part:
            label, url = part[1:-1].split("](", 1)
            p.add_run(f"{label} ({url})" if url != label else label)
        elif part[0] in "*_" and part[-1] == part[0] and len(part) > 2:
            p.add_run(part[1:-1]).italic = True
        else:
            run = p.add_run(part)
            run.bold = bold or None


def _table(document: Any, block: list[str]) -> None:
    """A Word table: numeric columns right-aligned (header too) unless the Markdown rule row
    says otherwise, money and percentages with one currency and decimals per column, and
    column widths shared out by content across the page."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    rules = [_cells(line) for line in block if _TABLE_RULE.match(line)]
    rows = [_cells(line) for line in block if not _TABLE_RULE.match(line)]
    if not rows:
        return
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    plain = [[_unwrapped(c)[1] for c in r] for r in rows]  # "**$1,200**" is an amount too
    columns, cells = numbers.analyse(plain)
    shown = [[_shown(columns[c], x, rows[r + 1][c]) for c, x in enumerate(row)] for r, row in enumerate(cells)]
    asked = (rules[0] if rules else []) + [""] * width
    align = [_alignment(asked[c], col.right) for c, col in enumerate(columns)]
    table = document.add_table(rows=len(rows), cols=width)
    for style in ("Light Grid Accent 1", "Table Grid"):
        try:
            table.style = style
            break
        except (KeyError, ValueError):
            continue
    section = document.sections[-1]
    usable = section.page_width - section.left_margin - section.right_margin
    table.autofit = False
    shares = tables.shares(tables.content_widths(columns, [[_unwrapped(t)[1] for t in r] for r in shown]),
                           int(usable))
    for c, share in enumerate(shares):  # Word reads the cells' widths, LibreOffice the grid's
        table.columns[c].width = share
        for cell in table.columns[c].cells:
            cell.width = share
    for r, row in enumerate([rows[0]] + shown):
        for c in range(width):
            paragraph = table.cell(r, c).paragraphs[0]
            _runs(paragraph, row[c], bold=r == 0)
            paragraph.alignment = align[c]
    header = table.rows[0]._tr.get_or_add_trPr()
    repeat = OxmlElement("w:tblHeader")  # the header row repeats on every page
    repeat.set(qn("w:val"), "true")
    header.append(repeat)


def _alignment(rule: str, numeric: bool) -> Any:
    """What the Markdown rule row asks (":---:" centre, "---:" right, ":---" left), else right for numbers."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH as ALIGN

    if rule.startswith(":") and rule.endswith(":"):
        return ALIGN.CENTER
    if rule.endswith(":"):
        return ALIGN.RIGHT
    if rule.startswith(":"):
        return ALIGN.LEFT
    return ALIGN.RIGHT if numeric else ALIGN.LEFT


def _unwrapped(text: str) -> tuple[str, str]:
    """A cell's emphasis marks and its text: ("**", "$1,200") for "**$1,200**"."""
    for mark in ("**", "__", "*", "_", "`"):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            return mark, text[len(mark):-len(mark)]
    return "", text


def _shown(column: numbers.Column, cell: numbers.Cell, raw: str) -> str:
    """Money and percentages with the column's currency and decimals, emphasis kept; the rest as written."""
    if column.kind not in ("money", "percent") or cell.kind not in numbers.NUMERIC:
        return raw
    mark, _ = _unwrapped(raw)
    return f"{mark}{column.show(cell)}{mark}"


def _cells(line: str) -> list[str]:
    inner = line.strip()
    if inner.startswith("|"):
        inner = inner[1:]
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]
