"""Making a month's report files and archiving them.

`produce` gathers the month once (reports/data.py), draws every chart of every language with one
kaleido server (reports/charts.py: started for this job, stopped after it) and renders each
language and format asked for. `generate` does that and archives the files: each goes under
`[reports] archive_dir`/<month>/ with the next version number of its month, language and format
(a month generated again keeps its earlier versions), and a row in `report_archive` names it.
The job, the page and the shell command all come through here.

A tenant's statement (scope.tenant set) is made on demand and never archived: the archive holds
the centre's reports, which a tenant may not read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import config
from config.reports import archive_path
from queries.catalogue import arrow_schema
from queries.scope import EVERYTHING, Scope
from queries.store import Store
from reports import charts, data
from reports.data import Report

log = logging.getLogger(__name__)

FORMATS = ("pdf", "xlsx")
LANGUAGES = ("en", "zh-CN")
MEDIA = {"pdf": "application/pdf", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_VERSION_LOCK = threading.Lock()        # one archiving at a time in this process: versions never collide


@dataclass
class Output:
    month: str
    lang: str
    format: str
    content: bytes
    charts: bool
    tenant: str | None = None

    @property
    def filename(self) -> str:
        who = f"statement-{self.tenant}" if self.tenant else "report"
        return f"{who}-{self.month}-{self.lang}.{self.format}"

    @property
    def media(self) -> str:
        return MEDIA[self.format]


def draw(report: Report, cfg: config.Config, langs: list[str]) -> dict[str, dict[str, bytes]]:
    """Every chart of every language as SVG (lang -> name -> bytes), with one kaleido server;
    sets `report.charts` False and adds the reason to its notes when they cannot be drawn."""
    figs = {f"{lang}/{name}": fig for lang in langs for name, fig in charts.figures(report, lang, cfg).items()}
    svgs, problem = charts.render_svgs(figs, cfg.reports.chromium, cfg.reports.chart_timeout_s)
    if problem is not None:
        report.charts = False
        report.notes.insert(0, problem)
    out: dict[str, dict[str, bytes]] = {lang: {} for lang in langs}
    for key, svg in svgs.items():
        lang, name = key.split("/", 1)
        out[lang][name] = svg
    return out


def produce(store: Store, cfg: config.Config, month: str, *, now: datetime | None = None,
            langs: list[str] | None = None, formats: list[str] | None = None,
            scope: Scope = EVERYTHING, with_charts: bool = True) -> tuple[Report, list[Output]]:
    """The month's report files (not archived): each language and format asked for."""
    from reports.pdf import pdf
    from reports.xlsx import xlsx

    langs = list(langs or cfg.reports.languages)
    formats = list(formats or cfg.reports.formats)
    report = data.gather(store, cfg, month, now, scope)
    svgs: dict[str, dict[str, bytes]] = {lang: {} for lang in langs}
    if "pdf" in formats:
        if with_charts:
            svgs = draw(report, cfg, langs)
        else:
            report.charts = False
    out: list[Output] = []
    for lang in langs:
        for fmt in formats:
            content = pdf(report, lang, svgs[lang]) if fmt == "pdf" else xlsx(report, lang)
            out.append(Output(month, lang, fmt, content, report.charts if fmt == "pdf" else True, report.tenant))
    return report, out


def archive_dir(cfg: config.Config) -> Path:
    return archive_path(cfg.reports, config.PROJECT_ROOT)


def archive(store: Store, cfg: config.Config, outputs: list[Output], *, trigger: str,
            now: datetime | None = None) -> list[dict[str, Any]]:
    """Store each output as the next version of its month, language and format; the rows added."""
    now = now or datetime.now(timezone.utc)
    root = archive_dir(cfg)
    rows: list[dict[str, Any]] = []
    with _VERSION_LOCK:
        for o in outputs:
            if o.tenant is not None:
                raise ValueError("a tenant's statement is not archived")
            held = store.query("reports_archive", month=o.month)
            same = held[(held["lang"] == o.lang) & (held["format"] == o.format)]
            version = int(same["version"].max()) + 1 if len(same) else 1
            rel = f"{o.month}/report-{o.month}-{o.lang}-v{version}.{o.format}"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            with open(tmp, "wb") as fh:
                fh.write(o.content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            row = {"month": o.month, "lang": o.lang, "format": o.format, "version": version, "generated_at": now,
                   "trigger": trigger, "path": rel, "bytes": len(o.content),
                   "sha256": hashlib.sha256(o.content).hexdigest(), "charts": o.charts}
            store.insert("report_archive", pa.Table.from_pylist([row], schema=arrow_schema("report_archive")))
            rows.append(row)
    return rows


def generate(store: Store, cfg: config.Config, month: str, *, trigger: str, now: datetime | None = None,
             langs: list[str] | None = None,
             formats: list[str] | None = None) -> tuple[Report, list[Output], list[dict]]:
    """Produce the centre's report of `month` and archive every file."""
    now = now or datetime.now(timezone.utc)
    report, outputs = produce(store, cfg, month, now=now, langs=langs, formats=formats)
    return report, outputs, archive(store, cfg, outputs, trigger=trigger, now=now)


def listing(store: Store, month: str | None = None) -> pd.DataFrame:
    """The archive, newest month first (reports_archive.sql)."""
    return store.query("reports_archive", month=month)


def read(cfg: config.Config, rel: str) -> bytes:
    """An archived file's bytes by its path relative to the archive folder (never outside it)."""
    root = archive_dir(cfg).resolve()
    path = (root / rel).resolve()
    if root not in path.parents:
        raise ValueError(f"{rel!r} is not in the report archive")
    return path.read_bytes()
