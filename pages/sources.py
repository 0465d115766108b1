"""Sources page: every scrape target, its newest attempt and its last error in words; the
collector's own state (last cycle, write spool, back-fill) and its jobs.

Everything here is read from the database (the `sources`, `owner_status` and
`job_runs_latest` named queries), never from in-process objects, so the page
shows the truth whichever process collects: this dashboard's server or a
headless `python -m collectors run`. Stored messages are rendered in the
reader's language from their keys. The collector's health (what /healthz says,
with its reasons) and the damaged spool batches it moved to quarantine (each
folder and why) come from its status document.

The meter upload never shows a traceback: whatever the file does to the parser
or the import is shown as a plain message, and the page goes on.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import streamlit as st

import i18n
from collectors.meter_csv import conflict_msg, parse_readings
from pages import context, ui
from pages.context import PageContext
from queries import audit, energy
from simulator import history as sim_history

BACKFILL_STATES = ("off", "running", "done", "paused", "failed")

log = logging.getLogger(__name__)


def owner_status(ctx: PageContext) -> dict[str, dict]:
    """The newest status document of each name, from the owner that wrote most recently."""
    df = ctx.store.query("owner_status")
    if df.empty:
        return {}
    df = df.sort_values("updated_at", ascending=False)
    newest = df.iloc[0]
    mine = df[(df["owner_site"] == newest["owner_site"]) & (df["owner_instance"] == newest["owner_instance"])]
    out = {}
    for r in mine.itertuples():
        if r.name not in out:
            out[r.name] = json.loads(r.value) if isinstance(r.value, str) else {}
    return out


def collector_state(ctx: PageContext, cols, status: dict[str, dict]) -> None:
    t = ctx.t
    backfill = status.get("backfill") or {}
    state = backfill.get("state") if backfill.get("state") in BACKFILL_STATES else "off"
    done, total = int(backfill.get("done") or 0), int(backfill.get("total") or 0)
    value = t(f"sources.backfill.{state}")
    if state in ("running", "paused") and total:
        value = f"{100 * done / total:.0f}%"
    cols[3].metric(t("sources.backfill"), value,
                   t("sources.backfill.steps", done=f"{done:,}", total=f"{total:,}") if state != "off" else None,
                   delta_color="off", delta_arrow="off", help=t("sources.backfill_help"))
    if state == "failed":
        st.warning(t("sources.backfill.failed_detail", error=ctx.render(None, backfill.get("error"))),
                   icon=":material/history:")
    collector = status.get("collector") or {}
    rep = collector.get("last_cycle")
    spool = collector.get("spool") or {}
    health(ctx, collector)
    quarantine(ctx, spool)
    if rep and rep.get("write_error"):
        st.error(t("sources.write_error", error=rep["write_error"]), icon=":material/database:")
    if spool.get("pending_batches"):
        st.warning(t("sources.backlog", batches=spool["pending_batches"], rows=f"{spool.get('pending_rows', 0):,}",
                     mib=f"{spool.get('disk_bytes', 0) / 2**20:,.1f}"), icon=":material/pending:")
    if spool.get("dropped_batches"):
        st.error(t("sources.dropped", batches=spool["dropped_batches"], rows=f"{spool.get('dropped_rows', 0):,}"),
                 icon=":material/delete_forever:")
    if collector and not collector.get("running", True):
        st.info(t("pages.collector_stopped"), icon=":material/pause_circle:")
    if rep:
        skipped = int(rep.get("skipped") or 0)
        st.caption(t("sources.last_cycle", targets=rep.get("targets", 0), ok=rep.get("ok", 0),
                     failed=rep.get("failed", 0), rows=f"{rep.get('rows', 0):,}",
                     scrape=f"{rep.get('scrape_s', 0):.2f}", write=f"{rep.get('write_s', 0):.2f}")
                   + (" " + t("sources.backing_off", n=skipped) if skipped else ""))


# health reasons this page shows in sections of their own (write error, quarantine, dropped batches)
SHOWN_APART = {"write_error", "quarantined", "spool_dropping"}


def health(ctx: PageContext, collector: dict) -> None:
    """The collector's health as /healthz states it, with each reason the page does not show
    elsewhere, when it is not ok."""
    state = collector.get("status")
    reasons = [r for r in collector.get("reasons") or [] if isinstance(r, dict) and r.get("code") not in SHOWN_APART]
    if state not in ("failed", "degraded") or not reasons or not collector.get("running", True):
        return
    lines = "\n".join(f"- {ctx.render(r.get('msg'), r.get('message'))}" for r in reasons)
    text = f"{ctx.t(f'sources.health.{state}')}\n{lines}"
    if state == "failed":
        st.error(text, icon=":material/error:")
    else:
        st.warning(text, icon=":material/warning:")


def quarantine(ctx: PageContext, spool: dict) -> None:
    """Damaged spool batches moved aside: how many, and each folder with the reason."""
    n = int(spool.get("quarantined_batches") or 0)
    if not n:
        return
    t = ctx.t
    st.error(t("sources.quarantine", n=n, rows=f"{int(spool.get('quarantined_rows') or 0):,}"),
             icon=":material/report:")
    rows = [{t("sources.quarantine.col.file"): q.get("file", ""),
             t("sources.quarantine.col.reason"): q.get("reason", ""),
             t("sources.quarantine.col.at"): ui.fmt_time(pd.Timestamp(q["at"], unit="s", tz="UTC"))
             if isinstance(q.get("at"), (int, float)) else "—"}
            for q in spool.get("quarantined") or [] if isinstance(q, dict)]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={t("sources.quarantine.col.reason"): st.column_config.TextColumn(width="large")})


def _job_name(ctx: PageContext, job: str) -> str:
    if job.startswith(IMPORT_JOB):
        return ctx.t("job.name.history-import", source=job[len(IMPORT_JOB):])
    return ctx.t(f"job.name.{job}") if i18n.has(f"job.name.{job}") else job


IMPORT_JOB = "history-import-"          # collectors/runtime.py names a Prometheus source's import so
IMPORT_STATES = ("running", "done", "failed")


def history_tiers(ctx: PageContext, status: dict[str, dict]) -> None:
    """The history tiers the rollup job builds: span, rows, size, and whether it is current."""
    t = ctx.t
    rollups = status.get("rollups") or {}
    tiers = rollups.get("tiers") or {}
    if not tiers:
        return
    st.subheader(t("tiers.title"))
    behind = float(rollups.get("behind_s") or 0)
    if rollups.get("state") == "catching_up":
        st.info(t("tiers.catching_up", hours=f"{int(rollups.get('dirty_hours') or 0):,}",
                  behind=f"{behind / 3600:,.1f}"), icon=":material/history:")
    rows = []
    for name, tier in tiers.items():
        first, last = (tier.get("span") or [None, None])[:2]
        size = tier.get("bytes")
        rows.append({
            t("tiers.col.tier"): t(f"tiers.name.{name}") if i18n.has(f"tiers.name.{name}") else name,
            t("tiers.col.first"): ui.fmt_time(first) if first else "—",
            t("tiers.col.last"): ui.fmt_time(last) if last else "—",
            t("tiers.col.rows"): ui.fmt_num(tier.get("rows")),
            t("tiers.col.size"): "—" if size is None else ui.fmt_num(size / 2**20, 1),
        })
    view = pd.DataFrame(rows)
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view)))
    generated_spans(ctx)


def generated_spans(ctx: PageContext) -> None:
    """Which span came which way: the simulated centre's older months are generated straight into
    the hourly tiers (and its meters' quarter hours into the energy tier); the raw back-fill and
    live collection cover the rest."""
    span = sim_history.generated_span(ctx.store)
    if span and span.get("start") and span.get("end"):
        st.caption(ctx.t("tiers.generated", start=ui.fmt_time(span["start"]), end=ui.fmt_time(span["end"])))
    meters_from = ctx.store.get_kv(energy.KV_HISTORY)
    if meters_from:
        st.caption(ctx.t("tiers.generated_meters", start=ui.fmt_time(meters_from)))


def history_imports(ctx: PageContext, status: dict[str, dict]) -> None:
    """Each Prometheus source's history import: state, hours done of total, samples, rate, error."""
    t = ctx.t
    imports = (status.get("history_imports") or {}).get("imports") or []
    if not imports:
        return
    st.subheader(t("imports.title"))
    rows = []
    for imp in imports:
        state = imp.get("state") if imp.get("state") in IMPORT_STATES else "running"
        rows.append({
            t("imports.col.source"): imp.get("source") or "—",
            t("imports.col.state"): t(f"imports.state.{state}"),
            t("imports.col.progress"): t("imports.progress", done=ui.fmt_num(imp.get("done")),
                                         total=ui.fmt_num(imp.get("total"))),
            t("imports.col.samples"): ui.fmt_num(imp.get("samples")),
            t("imports.col.rate"): ui.fmt_num(imp.get("rate")),
            t("imports.col.error"): "" if not imp.get("error") else ctx.render(imp.get("error_msg"), imp["error"]),
        })
    view = pd.DataFrame(rows)
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view)),
                 column_config={t("imports.col.error"): st.column_config.TextColumn(width="large")})


def jobs_table(ctx: PageContext, at, status: dict[str, dict]) -> None:
    """Each job: schedule, last run (age, duration, result, rows), failures in 24 h, error, next run."""
    t = ctx.t
    runs = ctx.store.query("job_runs_latest", now=at)
    scheduled = {j["job"]: j for j in (status.get("jobs") or {}).get("jobs", [])}
    names = list(dict.fromkeys([*scheduled, *runs["job"]]))
    if not names:
        return
    by_job = {r["job"]: r for r in runs[runs["newest"]].to_dict("records")}
    rows = []
    for name in names:
        run, sched = by_job.get(name, {}), scheduled.get(name, {})
        ok = run.get("ok")
        rows.append({
            t("jobs.col.job"): _job_name(ctx, name),
            t("jobs.col.schedule"): ctx.render(sched.get("schedule"), None) or "—",
            t("jobs.col.last_run"): ui.fmt_age(run.get("started_at"), at),
            t("jobs.col.duration"): ui.fmt_num(run.get("duration_s"), 2, "s"),
            t("jobs.col.result"): ("—" if ui.missing(ok) else t("jobs.ok") if ok else t("jobs.failed")),
            t("jobs.col.rows"): ui.fmt_num(run.get("rows")),
            t("jobs.col.failures"): str(int(run.get("failures_24h") or 0)),
            t("jobs.col.error"): "" if ui.missing(run.get("error")) else ctx.render(run.get("error_msg"), run["error"]),
            t("jobs.col.next_run"): ui.fmt_time(sched.get("next_run")) if sched.get("next_run") else "—",
        })
    st.subheader(t("jobs.title"))
    view = pd.DataFrame(rows)
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view)),
                 column_config={t("jobs.col.error"): st.column_config.TextColumn(width="large")})


def sources_view(ctx: PageContext) -> None:
    ui.end_if_expired(ctx)             # a signed-in session's fragment reruns end with it
    t = ctx.t
    at = ui.now()
    df = ctx.store.query("sources", now=at)
    status = owner_status(ctx)
    total = len(df)
    failing = int((df["ok"] == False).sum()) if total else 0  # noqa: E712 (NA-aware)
    never = int(df["last_scrape"].isna().sum()) if total else 0
    cols = st.columns(4)
    cols[0].metric(t("sources.targets"), f"{total:,}")
    cols[1].metric(t("sources.answering"), f"{total - failing - never:,}")
    cols[2].metric(t("sources.failing"), f"{failing:,}")
    collector_state(ctx, cols, status)
    if total == 0:
        st.info(t("sources.none"))
    else:
        targets_table(ctx, df, at, failing)
    jobs_table(ctx, at, status)
    history_imports(ctx, status)
    history_tiers(ctx, status)
    st.caption(t("sources.updated", time=ui.fmt_time(at)))


def targets_table(ctx: PageContext, df: pd.DataFrame, at, failing: int) -> None:
    t = ctx.t
    if failing:
        st.error(t("sources.failing_banner", n=failing), icon=":material/error:")

    def status(row: pd.Series) -> str:
        if ui.missing(row["ok"]):
            return t("sources.status.never")
        return t("sources.status.ok") if row["ok"] else t("sources.status.failing")

    def error(row: pd.Series) -> str:
        if ui.missing(row["last_error"]):
            return ""
        return f"{ctx.render(row.get('last_error_msg'), row['last_error'])} ({ui.fmt_age(row['last_error_at'], at)})"

    view = pd.DataFrame({
        t("sources.col.status"): df.apply(status, axis=1),
        t("sources.col.kind"): df["kind"].map(lambda k: t(f"sources.kind.{k}")),
        t("sources.col.cluster"): df["cluster"].fillna("—"),
        t("sources.col.host"): df["host"].fillna("—"),
        t("sources.col.last_scrape"): df["last_scrape"].map(lambda v: ui.fmt_age(v, at)),
        t("sources.col.duration"): df["duration_s"].map(
            lambda v: ui.fmt_num(None if ui.missing(v) else v * 1000, 0, "ms")),
        t("sources.col.rows"): df["rows"].map(lambda v: ui.fmt_num(v)),
        t("sources.col.failures"): df.apply(lambda r: f"{int(r['failures_1h'])} / {int(r['attempts_1h'])}", axis=1),
        t("sources.col.last_ok"): df["last_ok"].map(lambda v: ui.fmt_age(v, at)),
        t("sources.col.error"): df.apply(error, axis=1),
        t("sources.col.target"): df["target"],
    })
    st.dataframe(view, hide_index=True, width="stretch", height=ui.table_height(len(view), max_rows=17),
                 column_config={t("sources.col.error"): st.column_config.TextColumn(width="large"),
                                t("sources.col.target"): st.column_config.TextColumn(width="medium")})
    st.download_button(t("sources.download"), df.to_csv(index=False).encode(), file_name="sources.csv",
                       mime="text/csv")


def meter_import(ctx: PageContext) -> None:
    t = ctx.t
    st.subheader(t("meters.title"))
    st.caption(t("meters.caption"))
    upload = st.file_uploader(t("meters.file"), type=["csv"], key="meter_csv")
    if upload is None or not st.button(t("meters.import"), key="meter_import"):
        return
    if ctx.store.read_only:
        st.error(t("pages.read_only"))
        return
    try:
        import_readings(ctx, upload.getvalue(), upload.name)
    except Exception as exc:              # a file must never show the reader a traceback
        log.error("meter import of %s failed", upload.name, exc_info=exc)
        st.error(t("meters.failed", error=f"{type(exc).__name__}: {exc}"), icon=":material/error:")


def _said(ctx: PageContext, m: object, english: object) -> str:
    """A message of the meter import in the reader's language (its English when it has no key)."""
    return m.render(ctx.lang) if isinstance(m, i18n.Msg) else str(english)


def import_readings(ctx: PageContext, data: bytes, name: str) -> None:
    t = ctx.t
    parsed = parse_readings(data, ctx.cfg, source_file=name)
    if parsed.error:
        st.error(_said(ctx, parsed.error_msg, parsed.error))
        return
    result = ctx.store.import_facility_readings(parsed.rows)
    audit.record(ctx.store, ctx.scope, "meter_import", name,
                 {"inserted": len(result["inserted"]), "unchanged": len(result["unchanged"]),
                  "conflicts": len(result["conflicts"]), "rejected": len(parsed.rejected)})
    st.success(t("meters.result", imported=len(result["inserted"]), unchanged=len(result["unchanged"]),
                 conflicts=len(result["conflicts"]), rejected=len(parsed.rejected)))
    problems = [{t("meters.col.line"): r.line, t("meters.col.reason"): _said(ctx, r.msg, r.reason)}
                for r in parsed.rejected]
    problems += [{t("meters.col.line"): r["source_line"],
                  t("meters.col.reason"): conflict_msg(r).render(ctx.lang)}
                 for r in result["conflicts"]]
    if problems:
        st.warning(t("meters.rejected_note"))
        st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")


def page(ctx: PageContext) -> None:
    st.title(ctx.t("sources.title"))
    st.caption(ctx.t("sources.caption"))
    st.fragment(ui.guarded(sources_view), run_every=ctx.cfg.ui.refresh_s)(ctx)
    if ctx.scope.role in (None, "admin"):           # meter imports are the admin's (docs/access.md)
        meter_import(ctx)


if __name__ == "__main__":          # st.navigation runs a page file as __main__; tests import its functions
    page(context.current())
