"""The report as XLSX (xlsxwriter): one sheet per section, numbers as numbers, units in headers.

The cover sheet carries the facts and the measurement notes; the headline sheet the figures
against their targets; then one sheet per section, each table under its title with a header row
"<column> (<unit>)" and its values as the API gives them (numbers stay numbers, times are Excel
date-times in the site's time zone, keys become words in the sheet's language). Native Excel
charts are added where they help (utilisation by day, tenants' GPU-hours, GPU-hours lost per
incident kind), drawn by Excel from the cells, so they stay true if a reader edits a number.
openpyxl reads the file back in the tests.
"""

from __future__ import annotations

import io
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

import i18n
from reports import render
from reports.data import Block, Report

MAX_SHEET_NAME = 31


def sheet_name(key: str, lang: str, used: set[str]) -> str:
    name = i18n.t(f"reports.sheet.{key}", lang)[:MAX_SHEET_NAME]
    for ch in "[]:*?/\\":
        name = name.replace(ch, " ")
    base, n = name, 2
    while name in used:
        name = f"{base[:MAX_SHEET_NAME - 3]} {n}"
        n += 1
    used.add(name)
    return name


class _Book:
    def __init__(self, lang: str):
        self.buf = io.BytesIO()
        self.wb = xlsxwriter.Workbook(self.buf, {"in_memory": True, "nan_inf_to_errors": False})
        self.lang = lang
        self.used: set[str] = set()
        self.title = self.wb.add_format({"bold": True, "font_size": 13, "font_color": "#1f4e79"})
        self.bold = self.wb.add_format({"bold": True})
        self.head = self.wb.add_format({"bold": True, "bg_color": "#e8eef5", "bottom": 1, "text_wrap": True,
                                        "valign": "top"})
        self.when = self.wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        self.num = self.wb.add_format({"num_format": "#,##0.0###"})
        self.wrap = self.wb.add_format({"text_wrap": True, "valign": "top"})

    def sheet(self, key: str) -> Worksheet:
        ws = self.wb.add_worksheet(sheet_name(key, self.lang, self.used))
        ws.set_column(0, 0, 28)
        ws.set_column(1, 30, 15)
        return ws

    def write_block(self, ws: Worksheet, row: int, block: Block) -> tuple[int, int, int]:
        """The block's title, header and rows from `row`; (first data row, last data row, next free row)."""
        lang, t = self.lang, block.table_for(self.lang)
        ws.write_string(row, 0, i18n.t(block.title, lang), self.title)
        row += 1
        if block.note is not None:
            ws.write_string(row, 0, block.note.render(lang))
            row += 1
        for j, col in enumerate(t.columns):
            ws.write_string(row, j, render.header(col, lang, t), self.head)
        row += 1
        first = row
        zone = ZoneInfo(t.tz)
        data = t.rows
        for values in zip(*(data[c.name] if c.name in data else [None] * len(data) for c in t.columns)):
            for j, (col, v) in enumerate(zip(t.columns, values)):
                self._cell(ws, row, j, block, col, v, zone, t)
            row += 1
        if row == first:
            ws.write_string(row, 0, i18n.t("reports.no_rows", lang))
            row += 1
        return first, row - 1, row + 1

    def _cell(self, ws: Worksheet, r: int, c: int, block: Block, col: Any, v: Any, zone: ZoneInfo,
              table: Any) -> None:
        if render.missing(v):
            ws.write_blank(r, c, None)
            return
        words = render.word(Block(block.name, block.title, table, block.words), col, v, self.lang)
        if words is not None:
            ws.write_string(r, c, words)
        elif col.kind == "time":
            ws.write_datetime(r, c, pd.Timestamp(v).tz_convert(zone).tz_localize(None).to_pydatetime(), self.when)
        elif isinstance(v, bool):
            ws.write_string(r, c, i18n.t("reports.page.yes" if v else "reports.page.no", self.lang))
        elif isinstance(v, (int, float)) or hasattr(v, "dtype"):
            try:
                ws.write_number(r, c, float(v))
            except (TypeError, ValueError):
                ws.write_string(r, c, str(v))
        else:
            ws.write_string(r, c, str(v))

    def close(self) -> bytes:
        self.wb.close()
        return self.buf.getvalue()


def _line_chart(book: _Book, ws: Worksheet, name: str, cats: tuple[int, int, int], vals: tuple[int, int, int],
                title: str, y_title: str, at: str, kind: str = "line") -> None:
    """A native chart of one series: categories and values as (first row, last row, column)."""
    if vals[1] < vals[0]:
        return
    chart = book.wb.add_chart({"type": kind})
    chart.add_series({"name": title, "categories": [ws.get_name(), cats[0], cats[2], cats[1], cats[2]],
                      "values": [ws.get_name(), vals[0], vals[2], vals[1], vals[2]],
                      **({"marker": {"type": "circle", "size": 4}} if kind == "line" else {})})
    chart.set_title({"name": title})
    chart.set_y_axis({"name": y_title})
    chart.set_legend({"none": True})
    chart.set_size({"width": 760, "height": 300})
    ws.insert_chart(at, chart)


def _col(block: Block, name: str) -> int:
    return [c.name for c in block.table.columns].index(name)


def xlsx(report: Report, lang: str) -> bytes:
    """The workbook of `report` in `lang`."""
    book = _Book(lang)
    zone = ZoneInfo(report.tz)
    cover = book.sheet("cover")
    cover.write_string(0, 0, render.title(report, lang), book.title)
    facts = [("reports.fact.centre", report.centre), ("reports.fact.sites", ", ".join(report.sites)),
             ("reports.fact.month", report.month),
             ("reports.fact.generated", report.generated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"))]
    if report.tenant:
        facts.insert(1, ("reports.fact.tenant", report.tenant))
    row = 2
    for key, value in facts:
        cover.write_string(row, 0, i18n.t(key, lang), book.bold)
        cover.write_string(row, 1, value)
        row += 1
    row += 1
    cover.write_string(row, 0, i18n.t("reports.cover.notes", lang), book.bold)
    row += 1
    lines = [n.render(lang) for n in report.notes]
    if not report.charts:
        lines.insert(0, i18n.t("reports.note.charts_left_out_xlsx", lang))
    for line in lines:
        cover.write_string(row, 0, line)
        row += 1

    head = book.sheet("headline")
    book.write_block(head, 0, report.headline)

    for s in report.sections:
        ws = book.sheet(s.key)
        row = 0
        for n in s.notes:
            ws.write_string(row, 0, n.render(lang))
            row += 1
        if s.notes:
            row += 1
        spots: dict[str, tuple[int, int]] = {}
        for b in s.blocks:
            first, last, row = book.write_block(ws, row, b)
            spots[b.name] = (first, last)
        _charts(book, ws, s.key, s.blocks, spots, lang)
    return book.close()


def _charts(book: _Book, ws: Worksheet, key: str, blocks: list[Block], spots: dict[str, tuple[int, int]],
            lang: str) -> None:
    named = {b.name: b for b in blocks}
    right = len(max(blocks, key=lambda b: len(b.table.columns)).table.columns) + 1 if blocks else 2
    anchor = xlsxwriter.utility.xl_rowcol_to_cell(1, right)
    if key == "utilisation" and "daily" in named:
        b, (a, z) = named["daily"], spots["daily"]
        _line_chart(book, ws, "util", (a, z, _col(b, "bucket")), (a, z, _col(b, "util_pct")),
                    i18n.t("reports.util.daily", lang), "%", anchor)
    elif key in ("tenants", "statement") and "usage" in named:
        b, (a, z) = named["usage"], spots["usage"]
        _line_chart(book, ws, "tenants", (a, z, _col(b, "tenant")), (a, z, _col(b, "allocated_gpu_hours")),
                    i18n.t("history.col.allocated", lang), "GPU-h", anchor, kind="bar")
    elif key == "reliability" and "incidents" in named:
        b, (a, z) = named["incidents"], spots["incidents"]
        _line_chart(book, ws, "lost", (a, z, _col(b, "kind")), (a, z, _col(b, "gpu_hours_lost")),
                    i18n.t("reports.col.gpu_hours_lost", lang), "GPU-h", anchor, kind="column")
