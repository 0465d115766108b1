"""Sources page: every scrape target, its newest attempt and its last error in words."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collectors.meter_csv import parse_readings
from collectors.runtime import current
from pages import ui

t = ui.t
C = ui.cfg()

st.title(t("sources.title"))
st.caption(t("sources.caption"))


@st.fragment(run_every=C.ui.refresh_s)
def sources_view() -> None:
    at = ui.now()
    df = ui.store().query("sources", now=at)
    total = len(df)
    failing = int((df["ok"] == False).sum()) if total else 0  # noqa: E712 (NA-aware)
    never = int(df["last_scrape"].isna().sum()) if total else 0
    cols = st.columns(4)
    cols[0].metric(t("sources.targets"), f"{total:,}")
    cols[1].metric(t("sources.answering"), f"{total - failing - never:,}")
    cols[2].metric(t("sources.failing"), f"{failing:,}")
    runtime = current()
    if runtime is not None:
        state = runtime.backfill_state
        value = t(f"sources.backfill.{state}")
        if state in ("running", "paused") and runtime.backfill_total:
            value = f"{100 * runtime.backfill_done / runtime.backfill_total:.0f}%"
        cols[3].metric(t("sources.backfill"), value,
                       t("sources.backfill.steps", done=f"{runtime.backfill_done:,}", total=f"{runtime.backfill_total:,}")
                       if state != "off" else None, delta_color="off", delta_arrow="off",
                       help=t("sources.backfill_help"))
        if state == "failed":
            st.warning(t("sources.backfill.failed_detail", error=ui.message(runtime.backfill_error)), icon=":material/history:")
        rep = runtime.scheduler.last_report if runtime.scheduler else None
        spool = runtime.scheduler.spool.stats if runtime.scheduler else None
        if rep is not None and rep.write_error:
            st.error(t("sources.write_error", error=rep.write_error), icon=":material/database:")
        if spool is not None and spool.pending_batches:
            st.warning(t("sources.backlog", batches=spool.pending_batches, rows=f"{spool.pending_rows:,}",
                         mib=f"{spool.disk_bytes / 2**20:,.1f}"), icon=":material/pending:")
        if spool is not None and spool.dropped_batches:
            st.error(t("sources.dropped", batches=spool.dropped_batches, rows=f"{spool.dropped_rows:,}"),
                     icon=":material/delete_forever:")
        if rep is not None:
            st.caption(t("sources.last_cycle", targets=rep.targets, ok=rep.ok, failed=rep.failed,
                         rows=f"{rep.rows:,}", scrape=f"{rep.scrape_s:.2f}", write=f"{rep.write_s:.2f}")
                       + (" " + t("sources.backing_off", n=rep.skipped) if rep.skipped else ""))
    if total == 0:
        st.info(t("sources.none"))
        return
    if failing:
        st.error(t("sources.failing_banner", n=failing), icon=":material/error:")

    def status(row: pd.Series) -> str:
        if ui.missing(row["ok"]):
            return t("sources.status.never")
        return t("sources.status.ok") if row["ok"] else t("sources.status.failing")

    view = pd.DataFrame({
        t("sources.col.status"): df.apply(status, axis=1),
        t("sources.col.kind"): df["kind"].map(lambda k: t(f"sources.kind.{k}")),
        t("sources.col.cluster"): df["cluster"].fillna("—"),
        t("sources.col.host"): df["host"].fillna("—"),
        t("sources.col.last_scrape"): df["last_scrape"].map(lambda v: ui.fmt_age(v, at)),
        t("sources.col.duration"): df["duration_s"].map(lambda v: ui.fmt_num(None if ui.missing(v) else v * 1000, 0, "ms")),
        t("sources.col.rows"): df["rows"].map(lambda v: ui.fmt_num(v)),
        t("sources.col.failures"): df.apply(lambda r: f"{int(r['failures_1h'])} / {int(r['attempts_1h'])}", axis=1),
        t("sources.col.last_ok"): df["last_ok"].map(lambda v: ui.fmt_age(v, at)),
        t("sources.col.error"): df.apply(
            lambda r: "" if ui.missing(r["last_error"]) else f"{ui.message(r['last_error'])} ({ui.fmt_age(r['last_error_at'], at)})",
            axis=1),
        t("sources.col.target"): df["target"],
    })
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view), max_rows=17),
                 column_config={t("sources.col.error"): st.column_config.TextColumn(width="large"),
                                t("sources.col.target"): st.column_config.TextColumn(width="medium")})
    st.download_button(t("sources.download"), df.to_csv(index=False).encode(), file_name="sources.csv",
                       mime="text/csv")
    st.caption(t("sources.updated", time=ui.fmt_time(at)))


sources_view()


def meter_import() -> None:
    st.subheader(t("meters.title"))
    st.caption(t("meters.caption"))
    upload = st.file_uploader(t("meters.file"), type=["csv"], key="meter_csv")
    if upload is None or not st.button(t("meters.import"), key="meter_import"):
        return
    parsed = parse_readings(upload.getvalue(), C, source_file=upload.name)
    if parsed.error:
        st.error(parsed.error)
        return
    result = ui.store().import_facility_readings(parsed.rows)
    st.success(t("meters.result", imported=len(result["inserted"]), unchanged=len(result["unchanged"]),
                 conflicts=len(result["conflicts"]), rejected=len(parsed.rejected)))
    problems = [{t("meters.col.line"): r.line, t("meters.col.reason"): r.reason} for r in parsed.rejected]
    problems += [{t("meters.col.line"): r["source_line"],
                  t("meters.col.reason"): t("meters.conflict", stored=f"{r['stored_kwh']:g}", given=f"{r['energy_kwh']:g}")}
                 for r in result["conflicts"]]
    if problems:
        st.warning(t("meters.rejected_note"))
        st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")


meter_import()
