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

Tables show money, percentages and numbers as the data wrote them, right-aligned
with their headers, in columns as wide as their content (tools.documents.numbers);
`highlight` fills or emboldens rows or cells. `chart` draws the table's columns of
one unit, or the ones named, against its label column (tools.documents.tables).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.documents import numbers, tables
from tools.documents.tables import Highlight, no_defaults
from tools.registry import ToolError


class Slide(BaseModel):
    model_config = ConfigDict(json_schema_extra=lambda schema: no_defaults(schema))

    title: str
    subtitle: str = ""
    bullets: list[str] = Field([], description="Indent sub-points by two spaces.")
    table: list[list[Any]] = Field([], description="Header row first.")
    chart: bool | list[str] = Field(False, description="Chart the table instead: true or columns to plot.")
    highlight: list[Highlight] = []
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
    used, made = [], []
    for number, spec in enumerate(slides):
        layout = layouts.pick(spec, first=number == 0)
        used.append(layout.name)
        said = _fill(prs, prs.slides.add_slide(layout), spec)
        if said:
            made.append(f"slide {number + 1}: {said}")
    prs.save(str(path))
    names = ", ".join(dict.fromkeys(used))
    return (f"{len(slides)} slides; layouts {names}" + (f"; from the template {template.name}" if template else "")
            + "".join(f"; {m}" for m in made))


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


def _fill(prs: Any, slide: Any, spec: Slide) -> str:
    """Fill the slide's placeholders; returns what its chart or highlights did, if any."""
    from pptx.enum.shapes import PP_PLACEHOLDER as P
    from pptx.util import Emu, Inches

    title_ph = subtitle_ph = body_ph = None
    said = ""
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
        said = _chart(slide, spec, area) if spec.chart else ""
        if not said:
            said = _table(slide, spec.table, area, spec.highlight)
    elif spec.highlight:
        said = "highlights apply to a table; this slide has none"
    if spec.notes:
        slide.notes_slide.notes_text_frame.text = spec.notes
    for ph in list(slide.placeholders):  # no "Click to add text" left behind
        if ph.has_text_frame and not ph.text_frame.text.strip():
            ph._element.getparent().remove(ph._element)
    return said


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


def _table(slide: Any, rows: list[list[Any]], area: tuple[Any, ...], highlight: list[Highlight]) -> str:
    """The table: numbers shown as in the data and right-aligned with their header, columns
    as wide as their content needs, highlights filled; returns what was highlighted."""
    from pptx.dml.color import RGBColor
    from pptx.enum.text import PP_ALIGN
    from pptx.util import Emu, Pt

    width = max(len(r) for r in rows)
    rows = [list(r) + [None] * (width - len(r)) for r in rows]
    columns, cells = numbers.analyse(rows)
    styles, said = tables.marks(columns, cells, highlight)
    shown = [[col.show(x) if col.numeric else "" if x.value is None else str(rows[r + 1][c])
              for c, (col, x) in enumerate(zip(columns, row))] for r, row in enumerate(cells)]
    left, top, cx, cy = area
    shape = slide.shapes.add_table(len(rows), width, left, top, cx, min(cy, Pt(30) * len(rows)))
    for column, share in zip(shape.table.columns, tables.shares(tables.content_widths(columns, shown), int(cx))):
        column.width = Emu(share)
    size = Pt(16) if len(rows) <= 6 else Pt(13) if len(rows) <= 12 else Pt(10)
    for r in range(len(rows)):
        for c, col in enumerate(columns):
            cell = shape.table.cell(r, c)
            cell.text = col.header if r == 0 else shown[r - 1][c]
            style = styles.get((r - 1, c)) if r else None
            if style is not None and style.fill:
                cell.fill.solid()
                cell.fill.fore_color.rgb = RGBColor.from_string(style.fill)
            for para in cell.text_frame.paragraphs:
                para.alignment = PP_ALIGN.RIGHT if col.right else PP_ALIGN.LEFT
                for run in para.runs:
                    run.font.size = size
                    if style is not None:
                        run.font.bold = style.bold or None
                        if style.font:
                            run.font.color.rgb = RGBColor.from_string(style.font)
    return f"highlighted {said}" if said else ""


def _chart(slide: Any, spec: Slide, area: tuple[Any, ...]) -> str:
    """A chart of the table's comparable columns; "" when there is nothing to chart."""
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE, XL_LEGEND_POSITION

    width = max(len(r) for r in spec.table)
    rows = [list(r) + [None] * (width - len(r)) for r in spec.table]
    columns, cells = numbers.analyse(rows)
    plan = tables.plan_chart(columns, cells, spec.chart if isinstance(spec.chart, list) else [])
    if plan is None:
        return ""
    first = columns[plan.series[0]]
    chart_data = CategoryChartData(number_format=first.excel_format() or "General")
    chart_data.categories = [c if isinstance(c, str) else str(c) for c in plan.categories]
    for c, values in zip(plan.series, plan.values):
        chart_data.add_series(columns[c].header, values)
    kind = XL_CHART_TYPE.LINE_MARKERS if plan.time else XL_CHART_TYPE.COLUMN_CLUSTERED
    chart = slide.shapes.add_chart(kind, *area, chart_data).chart
    axis = tables.axis_format(first, [v for vs in plan.values for v in vs if v is not None])
    if axis:
        chart.value_axis.tick_labels.number_format = axis
        chart.value_axis.tick_labels.number_format_is_linked = False
    chart.has_legend = len(plan.series) > 1
    if chart.has_legend:
        chart.legend.position = XL_LEGEND_POSITION.BOTTOM
        chart.legend.include_in_layout = False
    said = plan.describe(columns, plan.time)
    return said + ("; highlights apply to tables, not charts" if spec.highlight else "")


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
