"""Reports page: pick a month and a language, preview the month's headline figures, generate the
PDF and XLSX, download them, and browse the archive of generated reports.

Everything comes from reports/ (the same `Report` the PDF and the XLSX are made of), which takes
its figures from the shared measures; the page holds no SQL. Generating on the page archives the
files (the next version of the month: earlier ones stay) when this process owns the database; a
dashboard that only reads the file makes them for download without archiving, and says so. A
signed-in tenant gets its own statement and never sees the archive, which holds the centre's
reports. The month and language live in the URL.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

import i18n
from pages import context, ui
from pages.context import PageContext
from queries import history
from reports import archive, data, pdf, render

RESULT_KEY = "reports_outputs"


PREVIEW_PAGE = 3            # the headline figures (after the cover and the contents)
PREVIEW_KEY = "reports_preview"
PREVIEW_TTL_S = 300.0


def _preview_png(pdf: bytes) -> bytes | None:
    """The PDF's headline page as PNG (pdftoppm, poppler-utils), or None without it."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="report-preview-") as tmp:
        src = Path(tmp) / "r.pdf"
        src.write_bytes(pdf)
        page = str(PREVIEW_PAGE)
        done = subprocess.run([tool, "-png", "-r", "70", "-f", page, "-l", page, "-singlefile", str(src),
                               str(Path(tmp) / "p")], capture_output=True, timeout=60)
        out = Path(tmp) / "p.png"
        return out.read_bytes() if done.returncode == 0 and out.exists() else None


@st.cache_data(show_spinner=False, max_entries=8, ttl=300)
def _preview_png_cached(pdf: bytes) -> bytes | None:
    return _preview_png(pdf)


def _controls(ctx: PageContext, months: list[str]) -> tuple[str, str]:
    t = ctx.t
    cols = st.columns([2, 2, 3])
    month = str(ui.url_select(cols[0], t("reports.page.month"), "month", months, months[0], key="reports_month"))
    langs: list[str] = [str(x) for x in ctx.cfg.reports.languages]
    lang = str(ui.url_select(cols[1], t("reports.page.language"), "report_lang", langs,
                             ctx.lang if ctx.lang in langs else langs[0], key="reports_lang",
                             format_func=lambda code: i18n.LANGUAGES.get(code, code), keep_default=True))
    return month, lang


def _report(ctx: PageContext, month: str) -> data.Report:
    """The month's report data for the preview, kept in the session for PREVIEW_TTL_S (a month's
    figures take seconds to gather at a thousand GPUs; a closed month's change only with late data)."""
    key = (month, ctx.scope.tenant)
    held = st.session_state.get(PREVIEW_KEY)
    now = ui.now()
    if held and held[0] == key and (now - held[1]).total_seconds() < PREVIEW_TTL_S:
        return held[2]
    report = data.gather(ctx.store, ctx.cfg, month, now, ctx.scope)
    st.session_state[PREVIEW_KEY] = (key, now, report)
    return report


def preview_section(ctx: PageContext, month: str, lang: str) -> None:
    """The month's headline figures and what each section holds, from the report's own data."""
    t = ctx.t
    report = _report(ctx, month)
    st.subheader(t("reports.page.preview", month=render.month_title(report, lang)))
    headers, rows = pdf.headline_rows(report, lang)          # as the PDF prints it
    st.dataframe(pd.DataFrame(rows, columns=headers), hide_index=True, width="stretch",
                 height=ui.table_height(len(rows), max_rows=16))
    for note in report.notes:
        st.caption(note.render(lang))
    parts = []
    for s in report.sections:
        state = t("reports.page.tables", n=len(s.blocks))
        parts.append({t("reports.page.section"): render.section_title(s.key, lang), t("reports.page.holds"): state})
    st.dataframe(pd.DataFrame(parts), hide_index=True, width="stretch")


def generate_section(ctx: PageContext, month: str, lang: str) -> None:
    t, cfg, store = ctx.t, ctx.cfg, ctx.store
    tenant = ctx.scope.tenant
    can_archive = tenant is None and not store.read_only
    if tenant is not None:
        st.caption(t("reports.page.tenant_note"))
    elif not can_archive:
        st.caption(t("reports.page.read_only_note"))
    if st.button(t("reports.page.generate"), icon=":material/description:", type="primary", key="reports_generate"):
        with st.spinner(t("reports.page.generating")):
            now = ui.now()
            if can_archive:
                report, outputs, _ = archive.generate(store, cfg, month, trigger="page", now=now)
            else:
                report, outputs = archive.produce(store, cfg, month, now=now, scope=ctx.scope)
        st.session_state[RESULT_KEY] = {"month": month, "tenant": tenant, "charts": report.charts,
                                        "outputs": [(o.lang, o.format, o.filename, o.media, o.content)
                                                    for o in outputs],
                                        "archived": can_archive}
    made = st.session_state.get(RESULT_KEY)
    if not made or made["month"] != month or made["tenant"] != tenant:
        return
    st.success(t("reports.page.done_archived" if made["archived"] else "reports.page.done", month=month),
               icon=":material/check_circle:")
    if not made["charts"]:
        st.warning(t("reports.note.charts_left_out"), icon=":material/warning:")
    cols = st.columns(4)
    i = 0
    for o_lang, fmt, filename, media, content in made["outputs"]:
        if o_lang != lang:
            continue
        cols[i % 4].download_button(t(f"reports.page.download_{fmt}"), content, file_name=filename, mime=media,
                                    key=f"dl_{o_lang}_{fmt}", icon=":material/download:")
        i += 1
    pdf_bytes = next((c for o_lang, fmt, _, _, c in made["outputs"] if o_lang == lang and fmt == "pdf"), None)
    if pdf_bytes is not None:
        png = _preview_png_cached(pdf_bytes)
        if png is not None:
            st.image(png, caption=t("reports.page.first_page"), width=620)


def archive_section(ctx: PageContext) -> None:
    t, cfg = ctx.t, ctx.cfg
    st.subheader(t("reports.page.archive"))
    df = archive.listing(ctx.store)
    if df.empty:
        st.caption(t("reports.page.archive_empty"))
        return
    tz = history.default_tz(cfg)
    shown = pd.DataFrame({
        t("reports.page.col.month"): df["month"],
        t("reports.page.col.language"): df["lang"],
        t("reports.page.col.format"): df["format"].str.upper(),
        t("reports.page.col.version"): df["version"].astype(int),
        t("reports.page.col.generated"): pd.to_datetime(df["generated_at"], utc=True).dt.tz_convert(tz)
        .dt.strftime("%Y-%m-%d %H:%M"),
        t("reports.page.col.trigger"): [t(f"reports.page.trigger.{x}") for x in df["trigger"]],
        t("reports.page.col.size"): [f"{b / 1024:,.0f} KiB" for b in df["bytes"]],
        t("reports.page.col.charts"): [t("reports.page.yes") if c else t("reports.page.no") for c in df["charts"]],
    })
    st.dataframe(shown, hide_index=True, width="stretch", height=ui.table_height(len(shown), max_rows=12))
    labels = {r.path: f"{r.month} · {r.lang} · {r.format.upper()} · v{int(r.version)}" for r in df.itertuples()}
    pick = st.selectbox(t("reports.page.archived_file"), list(labels), format_func=labels.__getitem__,
                        key="reports_archived")
    row = df[df["path"] == pick].iloc[0]
    try:
        content = archive.read(cfg, str(pick))
    except OSError:
        st.warning(t("reports.page.file_missing", path=str(pick)), icon=":material/warning:")
        return
    st.download_button(t("reports.page.download_archived"), content, file_name=Path(str(pick)).name,
                       mime=archive.MEDIA[str(row["format"])], key="dl_archived", icon=":material/download:")


def page(ctx: PageContext) -> None:
    t = ctx.t
    st.title(t("reports.page.title"))
    st.caption(t("reports.page.intro"))
    months = data.past_months(ctx.cfg, ui.now())
    month, lang = _controls(ctx, months)
    ui.guarded(generate_section)(ctx, month, lang)
    st.divider()
    ui.guarded(preview_section)(ctx, month, lang)
    if ctx.scope.tenant is None:
        st.divider()
        ui.guarded(archive_section)(ctx)


if __name__ == "__main__":          # st.navigation runs a page file as __main__
    page(context.current())
