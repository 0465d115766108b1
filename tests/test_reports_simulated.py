"""The simulated centre's last month as the monthly report, in both languages and both formats.

The simulator's floor (a smaller centre than `./manage start`'s: 2 nodes a cluster, 32 GPUs, its
tenants, contracts, vouchers and meters from config/*.toml) is back-filled for the month through
the same parse-and-write path the dashboard uses, then rolled up (rollup.build) and turned into
meter energy (energy.build), as the owner's jobs do. Then:

- the XLSX is read back (openpyxl) and its figures are the API's for the same month
  (/api/v1/utilisation step=all, /api/v1/tenants, the bills route's table);
- the PDF's text (pdftotext) holds the headline figures and the section titles in its language
  and none of the other language's;
- a page of each PDF is rendered to PNG (pdftoppm) under /tmp/shots/reports/ for a person to look
  at.
"""

from __future__ import annotations

import io
import shutil
import zipfile
import subprocess
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import openpyxl
import pytest

import config
from api import history as api_history
from queries import Store, energy, rollup
from queries.scope import EVERYTHING
from reports import archive, render
from helpers import backfill_job, config_dict

NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)       # 20:00 on 1 December in Shanghai
MONTH = "2026-11"
SHOTS = Path("/tmp/shots/reports")
TITLES = {"en": ["Contents", "Headline figures", "Utilisation", "Tenants", "Energy", "Reliability",
                 "Capacity outlook", "Voucher reconciliation"],
          "zh-CN": ["目录", "核心指标", "算力利用率", "租户", "能耗", "可靠性", "容量展望", "算力券核销"]}


def simulated_centre(tmp_path: Path) -> config.Config:
    d = config_dict()
    for area in config.AREAS:
        f = config.CONFIG_DIR / f"{area}.toml"
        if f.exists():
            d[area] = tomllib.loads(f.read_text(encoding="utf-8"))
    for c in d["clusters"]:
        c["nodes"] = 2
    d["simulator"] = {**d.get("simulator", {}), "backfill_days": 31, "backfill_step_s": 900,
                      "site_overhead_kw": 12.0}
    d["reports"] = {**d.get("reports", {}), "archive_dir": str(tmp_path / "archive")}
    return config.from_dict(d)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports-sim")
    cfg = simulated_centre(tmp)
    store = Store(tmp / "sim.duckdb")
    backfill_job(cfg, store)(end=NOW)
    rollup.build(store, cfg, NOW)
    energy.build(store, cfg, NOW, full=True)
    report, outputs = archive.produce(store, cfg, MONTH, now=NOW)
    yield cfg, store, report, {(o.lang, o.format): o for o in outputs}
    store.close()


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _sheet_blocks(ws) -> dict[str, list[list]]:
    """A section sheet's tables by title: the header row and the rows under it, to the blank line."""
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    out: dict[str, list[list]] = {}
    i = 0
    while i < len(rows):
        first = rows[i][0] if rows[i] else None
        if isinstance(first, str) and i + 1 < len(rows) and rows[i + 1] and rows[i + 1][0] is not None \
                and all(v is None for v in rows[i][1:]):
            j = i + 1
            block = []
            while j < len(rows) and any(v is not None for v in rows[j]):
                block.append(rows[j])
                j += 1
            out[first] = block
            i = j
        else:
            i += 1
    return out


def test_every_language_and_format_is_made_with_charts(month):
    _, _, report, outs = month
    assert set(outs) == {(lang, fmt) for lang in ("en", "zh-CN") for fmt in ("pdf", "xlsx")}
    assert all(o.content for o in outs.values())
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        assert report.charts, [str(n) for n in report.notes]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_xlsx_figures_are_the_apis(month, lang):
    cfg, store, report, outs = month
    content = outs[(lang, "xlsx")].content
    charts = [n for n in zipfile.ZipFile(io.BytesIO(content)).namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 3                  # utilisation by day, tenants' GPU-hours, GPU-hours lost: native charts
    book = openpyxl.load_workbook(io.BytesIO(content))
    names = book.sheetnames
    assert names[:3] == [{"en": "Cover", "zh-CN": "封面"}[lang], {"en": "Headline", "zh-CN": "核心指标"}[lang],
                         {"en": "Utilisation", "zh-CN": "利用率"}[lang]]
    util_api = api_history.utilisation_table(store, cfg, {"from": _iso(report.start), "to": _iso(report.end),
                                                          "step": "all"}, NOW, EVERYTHING)[0].records()[0]
    sheet = _sheet_blocks(book[names[2]])
    ladder = sheet[render.i18n.t("reports.util.ladder", lang)]
    head = ladder[0]
    row = dict(zip(head, ladder[1]))
    for col in ("owned_gpu_hours", "observed_gpu_hours", "available_gpu_hours", "allocated_gpu_hours",
                "busy_gpu_hours", "useful_gpu_hours", "no_data_gpu_hours", "util_pct"):
        c = next(c for c in report.section("utilisation").block("ladder").table.columns if c.name == col)
        assert row[render.header(c, lang)] == pytest.approx(util_api[col]), col
    assert isinstance(row[render.header(c, lang)], float)                  # numbers as numbers
    # the headline's utilisation is the API's
    headline = _sheet_blocks(book[names[1]])[render.i18n.t("reports.headline.title", lang)]
    figures = {r[0]: r for r in headline[1:]}
    assert figures[render.i18n.t("reports.figure.util_pct", lang)][2] == pytest.approx(util_api["util_pct"])
    # tenants: every row is the API's /tenants row for the month
    tenants_api = {r["tenant"]: r for r in api_history.tenants_table(
        store, cfg, {"from": _iso(report.start), "to": _iso(report.end)}, NOW, EVERYTHING)[0].records()}
    usage = _sheet_blocks(book[names[3]])[render.i18n.t("reports.tenants.usage", lang)]
    names_of = {render.tenant_label(t, {x.id: x.name for x in cfg.tenants}, lang): t for t in tenants_api}
    assert len(usage) - 1 == len(tenants_api)
    for r in usage[1:]:
        api_row = tenants_api[names_of[r[0]]]
        assert r[1] == pytest.approx(api_row["allocated_gpu_hours"])
        assert r[2] == pytest.approx(api_row["busy_gpu_hours"])
        assert (r[4] is None and api_row["util_pct"] is None) or r[4] == pytest.approx(api_row["util_pct"])
    # quota use: one row per configured quota
    quota = _sheet_blocks(book[names[3]])[render.i18n.t("reports.tenants.quota", lang)]
    assert len(quota) - 1 == len(cfg.billing.quotas) > 0


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_pdf_text_holds_headline_figures_and_titles_in_its_language(month, lang, tmp_path):
    if shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils (pdftotext, pdftoppm) is not installed")
    _, _, report, outs = month
    src = tmp_path / f"report-{lang}.pdf"
    src.write_bytes(outs[(lang, "pdf")].content)
    text = subprocess.run(["pdftotext", "-layout", str(src), "-"], capture_output=True, check=True).stdout.decode()
    for title in TITLES[lang]:
        assert title in text, title
    other = "zh-CN" if lang == "en" else "en"
    for title in ("算力利用率", "可靠性", "目录") if other == "zh-CN" else ("Reliability", "Contents", "Voucher"):
        assert title not in text, title
    util = next(r for r in report.headline.table.records() if r["figure"] == "util_pct")
    assert render.number(util["value"]) in text
    pages = subprocess.run(["pdfinfo", str(src)], capture_output=True, text=True).stdout
    n = int(next(line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:")))
    assert n >= 8
    assert {"en": f"Page 1 of {n}", "zh-CN": f"第 1 页，共 {n} 页"}[lang].replace(" ", "") in text.replace(" ", "")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for page in (1, 3, 4):
        out = SHOTS / f"pdf-{lang}-p{page}"
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile", str(src),
                        str(out)], check=True)
        assert out.with_suffix(".png").stat().st_size > 10_000
