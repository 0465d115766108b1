"""The report as PDF: Typst (the PyPI `typst` package, 0.15) compiling reports/templates/report.typ
fed one JSON file, with the charts as SVG files beside it.

Why Typst: measured on this machine it gave the best-looking bilingual A4 pages in 0.14-0.5 s
with no system libraries (WeasyPrint 2.6-3 s; reportlab rejects the Noto CJK fonts). The
template uses no `@preview` packages (they download at compile time). Fonts come only from
/usr/share/fonts/opentype/noto (fonts-noto-cjk, Noto Sans CJK SC: one family for Latin and
Chinese, with bold), passed as font paths with the system's fonts ignored, so a page looks the
same on every machine that has the package.

Everything the template prints arrives as text in the report's language: the JSON carries
strings and the template inserts them as content, never as markup, so a tenant or host name
cannot break the document.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import i18n
from reports import render
from reports.data import Block, Report

FONT_DIR = Path("/usr/share/fonts/opentype/noto")
FONT = "Noto Sans CJK SC"
TEMPLATE = "report.typ"

# the columns a printed table shows (the XLSX holds them all); a block not named shows all
PDF_COLUMNS: dict[str, tuple[str, ...]] = {
    "ladder": ("owned_gpu_hours", "observed_gpu_hours", "available_gpu_hours", "allocated_gpu_hours",
               "busy_gpu_hours", "useful_gpu_hours", "no_data_gpu_hours", "util_pct"),
    "by_cluster": ("cluster", "owned_gpu_hours", "allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours",
                   "no_data_gpu_hours", "allocated_share_pct", "busy_share_pct", "util_pct"),
    "by_model": ("model", "owned_gpu_hours", "allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours",
                 "no_data_gpu_hours", "allocated_share_pct", "busy_share_pct", "util_pct"),
    "daily": ("bucket", "util_pct", "owned_gpu_hours", "allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours",
              "no_data_gpu_hours", "delivered_pflops", "energy_kwh"),
    "reclaim_devices": ("host", "gpu_index", "cluster", "tenant", "allocated_gpu_hours", "idle_allocated_gpu_hours",
                        "util_pct", "idle_cost_cny"),
    "energy": ("tenant", "board_kwh", "it_kwh", "facility_kwh", "energy_cny", "demand_cny", "cost_cny", "carbon_kg"),
    "tariff": ("site", "facility_kwh", "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh", "energy_cny", "demand_kw",
               "demand_cny", "cost_cny", "carbon_kg", "coal_kgce"),
    "pue": ("site", "pue", "category", "it_estimated", "facility_kwh", "it_kwh", "cooling_share_pct", "hours",
            "excluded_hours", "cue", "target", "grade"),
    "pue_daily": ("bucket", "site", "pue", "facility_kwh", "it_kwh", "cooling_share_pct", "hours", "excluded_hours",
                  "grade"),
    "ppue": ("site", "level", "part", "ppue", "it_kwh", "infrastructure_kwh", "category", "hours", "excluded_hours"),
    "devices": ("host", "gpu_index", "cluster", "allocated_gpu_hours", "busy_gpu_hours", "idle_allocated_gpu_hours",
                "util_pct", "energy_kwh"),
}
# where each chart goes: above the block of that name
CHART_AT = {"util_daily": "daily", "ladder": "ladder", "by_cluster": "by_cluster", "by_model": "by_model",
            "heatmap": "heatmap", "tenants": "usage", "tenant_daily": "daily", "incidents": "incidents",
            "pue_daily": "pue_daily", "tariff": "tariff", "exhaustion": "exhaustion"}
# tables the PDF leaves to the XLSX (their chart shows them)
PDF_SKIP = {"forecast", "measured"}


def _block_json(block: Block, lang: str, chart: str | None) -> dict[str, Any]:
    if block.name == "heatmap":
        headers, rows = heatmap_grid(block, lang)
        size = 6.0
    else:
        wanted = PDF_COLUMNS.get(block.name)
        table = block.table_for(lang)
        cols = [c for c in table.columns if wanted is None or c.name in wanted]
        # the same kind of table (a bill's keeps its programme headers), fewer columns
        sub = Block(block.name, block.title, dataclasses.replace(table, columns=tuple(cols)), block.words, block.note)
        headers, rows = render.cells(sub, lang)
        size = 7.5 if len(cols) <= 8 else 6.8
    return {"title": i18n.t(block.title, lang), "headers": headers, "rows": rows, "chart": chart,
            "note": block.note.render(lang) if block.note else None, "size": size}


def heatmap_grid(block: Block, lang: str) -> tuple[list[str], list[list[str]]]:
    """Utilisation by weekday (rows) and hour (columns), whole percent: the heatmap as a table."""
    df = block.table.rows
    grid = (df.pivot_table(index="weekday", columns="hour_of_day", values="util_pct", aggfunc="first")
            .reindex(index=range(1, 8), columns=range(24)))
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    headers = [i18n.t("reports.col.weekday_hour", lang), *(f"{h:02d}" for h in range(24))]
    rows = [[i18n.t(f"history.weekday.{days[i]}", lang),
             *("—" if render.missing(v) else f"{float(v):.0f}" for v in grid.iloc[i])] for i in range(7)]
    return headers, rows


def headline_rows(report: Report, lang: str) -> tuple[list[str], list[list[str]]]:
    """The headline as printed: figure (unit), value, target, last month and its change, the same
    month a year ago and its change."""
    headers = [i18n.t(k, lang) for k in ("reports.col.figure", "reports.col.value", "reports.col.target",
                                         "reports.col.last_month", "reports.col.change_last_month",
                                         "reports.col.last_year", "reports.col.change_last_year")]
    rows = []
    for r in report.headline.table.records():
        name = i18n.t(f"reports.figure.{r['figure']}", lang)
        if r.get("detail"):
            name = f"{name} ({figure_detail(str(r['detail']), lang)})"
        unit = r["unit"]

        def num(v: Any) -> str:
            return "—" if render.missing(v) else render.number(float(v))

        def change(v: Any, pp: bool = r["change_unit"] == "pp") -> str:
            return "—" if render.missing(v) else f"{float(v):+.1f} {'pp' if pp else '%'}"

        rows.append([f"{name} ({unit})" if unit else name, num(r["value"]), num(r["target"]), num(r["last_month"]),
                     change(r["change_last_month"]), num(r["last_year"]), change(r["change_last_year"])])
    return headers, rows


def figure_detail(detail: str, lang: str) -> str:
    """A headline figure's detail in words: a PUE's measurement categories ("1", "estimated")."""
    words = [i18n.t("reports.pue.below_3", lang) if d == "estimated"
             else i18n.t("reports.pue.category_n", lang, n=d) for d in detail.split(", ")]
    return ", ".join(words)


def payload(report: Report, lang: str, charts: dict[str, bytes]) -> dict[str, Any]:
    """The template's data.json for `report` in `lang`, given the charts drawn (name -> SVG)."""
    zone = ZoneInfo(report.tz)
    chart_for = {block: name for name, block in CHART_AT.items() if name in charts}
    sections = []
    head_headers, head_rows = headline_rows(report, lang)
    sections.append({"title": i18n.t("reports.section.headline", lang), "notes": [],
                     "blocks": [{"title": i18n.t("reports.headline.title", lang), "headers": head_headers,
                                 "rows": head_rows, "chart": None, "note": None, "size": 7.5}]})
    for s in report.sections:
        blocks = [_block_json(b, lang, chart_for.get(b.name)) for b in s.blocks if b.name not in PDF_SKIP]
        sections.append({"title": render.section_title(s.key, lang), "notes": [n.render(lang) for n in s.notes],
                         "blocks": blocks})
    last = report.end.astimezone(zone)
    first = report.start.astimezone(zone)
    facts = [
        [i18n.t("reports.fact.centre", lang), report.centre],
        [i18n.t("reports.fact.sites", lang), ", ".join(report.sites)],
        [i18n.t("reports.fact.month", lang), i18n.t("reports.fact.month_range", lang,
                                                    start=first.strftime("%Y-%m-%d %H:%M"),
                                                    end=last.strftime("%Y-%m-%d %H:%M"), tz=report.tz)],
        [i18n.t("reports.fact.generated", lang), report.generated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")],
    ]
    if report.tenant:
        facts.insert(1, [i18n.t("reports.fact.tenant", lang), report.tenant])
    notes = [n.render(lang) for n in report.notes]
    if not report.charts:
        notes.insert(0, i18n.t("reports.note.charts_left_out", lang))
    return {
        "lang": "zh" if lang == "zh-CN" else "en", "region": "cn" if lang == "zh-CN" else "gb",
        "font": FONT, "title": render.title(report, lang), "centre": report.centre,
        "subtitle": render.month_title(report, lang), "facts": facts, "notes": notes, "sections": sections,
        "labels": {"toc": i18n.t("reports.toc", lang), "notes": i18n.t("reports.cover.notes", lang),
                   "page_of": i18n.t("reports.page_of", lang), "no_rows": i18n.t("reports.no_rows", lang)},
    }


def template_text() -> str:
    return resources.files("reports").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def compile_pdf(data: dict[str, Any], charts: dict[str, bytes], *, timestamp: datetime | None = None) -> bytes:
    """Compile the template with `data` and the charts in a private folder; the PDF's bytes."""
    import typst

    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        root = Path(tmp)
        (root / TEMPLATE).write_text(template_text(), encoding="utf-8")
        (root / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        (root / "charts").mkdir()
        for name, svg in charts.items():
            (root / "charts" / f"{name}.svg").write_bytes(svg)
        out = typst.compile(str(root / TEMPLATE), root=str(root), font_paths=[str(FONT_DIR)],
                            ignore_system_fonts=True, timestamp=int(timestamp.timestamp()) if timestamp else None)
    if not isinstance(out, bytes):
        raise RuntimeError("typst returned no PDF")
    return out


def pdf(report: Report, lang: str, charts: dict[str, bytes]) -> bytes:
    return compile_pdf(payload(report, lang, charts), charts, timestamp=report.generated_at)
