"""PowerPoint decks (python-pptx), built from the owner's own template when given.

With a template (.pptx or .potx) the deck is the template: its masters, theme,
logos and layouts. Its own slides (usually examples) are removed, and each new
slide is made from one of its layouts with the placeholders filled - the title
into the title placeholder, the points into the body placeholder - so the result
looks like a deck the owner made by hand, not text boxes on a blank page.

Layouts are chosen by what their placeholders are, not by their names (names are
translated in a German or French Office, and renamed in corporate templates):
- the first slide, when it has no points, table or chart: the layout with a
  centred title and a subtitle ("Title Slide");
- a slide with points: title + one body placeholder ("Title and Content");
- a slide with a table or chart: "Title Only" when the template has it (the table
  fills the area under the title), else the content layout's body area.
A slide may name a layout (`layout`) to override this; an unknown name is an error
that lists the template's layouts. Placeholders left empty are removed, so no
"Click to add text" shows. Without a template, python-pptx's default layouts are
used, widened to 16:9.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.registry import ToolError

_TIME = re.compile(r"date|day|week|month|quarter|year|period|wk", re.I)
_TOTAL = re.compile(r"^(grand )?(total|sum|gesamt|summe)\b", re.I)


class Slide(BaseModel):
    title: str
    subtitle: str = ""
    bullets: list[str] = Field([], description="Indent sub-points by two spaces.")
    table: list[list[Any]] = Field([], description="Header row first.")
    chart: bool = Field(False, description="Chart the table's numbers instead.")
    notes: str = ""
    layout: str = Field("", description="Template layout name; empty picks one.")


def write_pptx(path: Path, slides: list[Slide], template: Path | None) -> str:
    import pptx

    if not slides:
        raise ToolError("slides is empty: give at least one slide.")
    prs = pptx.Presentation(str(template)) if template is not None else pptx.Presentation()
    if template is None:
        _widen(prs)
    else:
        _drop_slides(prs)
    layouts = _Layouts(prs)
    used = []
    for number, spec in enumerate(slides):
        layout = layouts.pick(spec, first=number == 0)
        used.append(layout.name)
        _fill(prs, prs.slides.add_slide(layout), spec)
    prs.save(str(path))
    names = ", ".join(dict.fromkeys(used))
    return f"{len(slides)} slides; layouts {names}" + (f"; from the template {template.name}" if template else "")


class _Layouts:
    def __init__(self, prs: Any) -> None:
        from pptx.enum.shapes import PP_PLACEHOLDER as P

        self.all = list(prs.slide_layouts)
        if not self.all:
            raise ToolError("The template has no slide layouts to build slides from.")
        kinds = {id(lay): {ph.placeholder_format.type for ph in lay.placeholders} for lay in self.all}
        ignore = {P.DATE, P.FOOTER, P.SLIDE_NUMBER}
        body = {P.BODY, P.OBJECT}
        title = {P.TITLE, P.CENTER_TITLE}

        def first(test: Any) -> Any:
            return next((lay for lay in self.all if test(kinds[id(lay)])), None)

        self.cover = first(lambda k: P.CENTER_TITLE in k and P.SUBTITLE in k) or first(
            lambda k: P.CENTER_TITLE in k) or self.all[0]
        count = {id(lay): sum(1 for ph in lay.placeholders if ph.placeholder_format.type in body) for lay in self.all}
        self.content = next((lay for lay in self.all if kinds[id(lay)] & title and count[id(lay)] == 1), None) or first(
            lambda k: bool(k & title and k & body)) or self.cover
        self.title_only = first(lambda k: bool(k & title) and not (k - title - ignore))

    def pick(self, spec: Slide, first: bool) -> Any:
        if spec.layout:
            want = spec.layout.strip().lower()
            for lay in self.all:
                if lay.name.lower() == want:
                    return lay
            for lay in self.all:
                if want in lay.name.lower():
                    return lay
            raise ToolError(f"The template has no layout called {spec.layout!r}; it has: "
                            + ", ".join(repr(lay.name) for lay in self.all) + ".")
        if first and not spec.bullets and not spec.table:
            return self.cover
        if spec.table and not spec.bullets:
            return self.title_only or self.content
        return self.content


def _fill(prs: Any, slide: Any, spec: Slide) -> None:
    from pptx.enum.shapes import PP_PLACEHOLDER as P
    from pptx.util import Emu, Inches

    title_ph = subtitle_ph = body_ph = None
    for ph in slide.placeholders:
        kind = ph.placeholder_format.type
        if kind in (P.TITLE, P.CENTER_TITLE) and title_ph is None:
            title_ph = ph
        elif kind == P.SUBTITLE and subtitle_ph is None:
            subtitle_ph = ph
        elif kind in (P.BODY, P.OBJECT) and body_ph is None:
            body_ph = ph
    if title_ph is not None:
        title_ph.text_frame.text = spec.title
    else:
        box = slide.shapes.add_textbox(Inches(0.5), Inches(0.3), prs.slide_width - Inches(1), Inches(1))
        box.text_frame.text = spec.title
    if spec.subtitle:
        target = subtitle_ph or (body_ph if not spec.bullets and not spec.table else None)
        if target is not None:
            target.text_frame.text = spec.subtitle
            body_ph = None if target is body_ph else body_ph
    if spec.bullets:
        if body_ph is None:
            raise ToolError(f"The layout of slide {spec.title!r} has no place for points; choose another layout.")
        _bullets(body_ph, spec.bullets)
        body_ph = None
    if spec.table:
        if body_ph is not None:  # the table takes the body placeholder's place
            area = (body_ph.left, body_ph.top, body_ph.width, body_ph.height)
            body_ph._element.getparent().remove(body_ph._element)
        else:
            anchor = title_ph
            top = (anchor.top + anchor.height + Inches(0.2)) if anchor is not None else Inches(1.5)
            left = anchor.left if anchor is not None else Inches(0.5)
            area = (left, top, prs.slide_width - 2 * left, prs.slide_height - top - Inches(0.5))
        area = tuple(Emu(int(v)) for v in area)
        if spec.chart and _chart(slide, spec.table, area):
            pass
        else:
            _table(slide, spec.table, area)
    if spec.notes:
        slide.notes_slide.notes_text_frame.text = spec.notes
    for ph in list(slide.placeholders):  # no "Click to add text" left behind
        if ph.has_text_frame and not ph.text_frame.text.strip():
            ph._element.getparent().remove(ph._element)


def _bullets(ph: Any, bullets: list[str]) -> None:
    from pptx.enum.text import MSO_AUTO_SIZE
    from pptx.util import Pt

    frame = ph.text_frame
    frame.clear()
    size = Pt(14) if len(bullets) > 9 else Pt(18) if len(bullets) > 6 else None
    for i, raw in enumerate(bullets):
        indent = len(raw) - len(raw.lstrip(" "))
        text = re.sub(r"^[-*•]\s+", "", raw.strip())
        para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        para.text = text
        para.level = min(indent // 2, 4)
        if size is not None:
            for run in para.runs:
                run.font.size = size
    frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE


def _table(slide: Any, rows: list[list[Any]], area: tuple[Any, ...]) -> None:
    from pptx.util import Pt

    width = max(len(r) for r in rows)
    left, top, cx, cy = area
    height = min(cy, Pt(30) * len(rows))
    shape = slide.shapes.add_table(len(rows), width, left, top, cx, height)
    from pptx.enum.text import PP_ALIGN

    size = Pt(16) if len(rows) <= 6 else Pt(13) if len(rows) <= 12 else Pt(10)
    shown = [_column_format(rows, c) for c in range(width)]
    for r, row in enumerate(rows):
        for c in range(width):
            value = row[c] if c < len(row) else None
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            cell = shape.table.cell(r, c)
            cell.text = "" if value is None else shown[c](value) if number and r else str(value)
            for para in cell.text_frame.paragraphs:
                if number and r:
                    para.alignment = PP_ALIGN.RIGHT
                for run in para.runs:
                    run.font.size = size


def _column_format(rows: list[list[Any]], c: int) -> Any:
    """How a column's numbers read: all with two decimals if any has a fraction,
    thousands separators from 10,000 up (so years and weeks stay as they are)."""
    nums = [r[c] for r in rows[1:] if c < len(r) and isinstance(r[c], (int, float)) and not isinstance(r[c], bool)]
    decimals = any(isinstance(v, float) and not v.is_integer() for v in nums)
    big = any(abs(v) >= 10_000 for v in nums)
    if decimals:
        return lambda v: f"{v:,.2f}"
    return (lambda v: f"{v:,.0f}") if big else (lambda v: f"{v:.0f}")


def _chart(slide: Any, rows: list[list[Any]], area: tuple[Any, ...]) -> bool:
    """A chart of the table's numeric columns; False when there is nothing to chart."""
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE, XL_LEGEND_POSITION

    header, data = rows[0], [r for r in rows[1:] if not _TOTAL.match(str(r[0] if r else ""))]
    numeric = [c for c in range(1, len(header))
               if data and all(c < len(r) and isinstance(r[c], (int, float)) for r in data)]
    if not numeric:
        return False
    chart_data = CategoryChartData()
    chart_data.categories = [str(r[0]) for r in data]
    for c in numeric:
        chart_data.add_series(str(header[c]), [r[c] for r in data])
    line = bool(_TIME.search(str(header[0])))
    kind = XL_CHART_TYPE.LINE_MARKERS if line else XL_CHART_TYPE.COLUMN_CLUSTERED
    chart = slide.shapes.add_chart(kind, *area, chart_data).chart
    chart.has_legend = len(numeric) > 1
    if chart.has_legend:
        chart.legend.position = XL_LEGEND_POSITION.BOTTOM
        chart.legend.include_in_layout = False
    return True


def _drop_slides(prs: Any) -> None:
    """Remove the template's own slides (examples); its layouts stay."""
    ids = prs.slides._sldIdLst
    for sld in list(ids):
        prs.part.drop_rel(sld.rId)
        ids.remove(sld)


def _widen(prs: Any) -> None:
    """python-pptx's default deck is 4:3; make it 16:9 and stretch its layouts to fit."""
    from pptx.oxml.ns import qn
    from pptx.util import Emu

    k = 12192000 / prs.slide_width
    for part in (*prs.slide_layouts, prs.slide_master):
        for shape in part.shapes:
            xfrm = shape._element.find(f"{qn('p:spPr')}/{qn('a:xfrm')}")
            if xfrm is None:
                continue  # inherits its place from the master, which is stretched too
            off, ext = xfrm.find(qn("a:off")), xfrm.find(qn("a:ext"))
            off.set("x", str(int(int(off.get("x")) * k)))
            ext.set("cx", str(int(int(ext.get("cx")) * k)))
    prs.slide_width = Emu(12192000)
