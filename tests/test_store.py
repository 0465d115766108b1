"""Store: migrations, batch writes, idempotent delivery, ownership, every named query."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.dcgm import DcgmCollector
from collectors.targets import Target
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES
from queries import DatabaseOwned, Store, arrow_schema, migrate, query_names
from queries.store import migrations, named_query
from helpers import dcgm_text

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
TARGET = Target(url="http://node-a:9400/metrics", source="test", kind="dcgm", site="sh-lingang",
                cluster="train-a", host="node-a")


def scrape(cfg, ts, **kw):
    return DcgmCollector(cfg).from_text(dcgm_text(**kw), TARGET, ts)


def write(store, s):
    return store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)


def test_migrations_from_empty_and_rerun(tmp_path):
    path = tmp_path / "c.duckdb"
    s = Store(path)
    versions = [v for v, _, _ in migrations()]
    assert [r[0] for r in s.con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] == versions
    assert migrate(s.con) == []          # re-run applies nothing
    s.close()
    s2 = Store(path)                     # reopening an up-to-date file applies nothing either
    assert migrate(s2.con) == []
    tables = {r[0] for r in s2.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"devices", "device_samples", "device_events", "facility_samples", "collector_runs", "targets"} <= tables
    s2.close()



def test_writer_replaces_an_outdated_macro_on_open(tmp_path):
    """Macros live in queries/macros/, not in migrations: a file written by an older
    version (here: a device_state that calls every device 'stale') gets today's
    definition the next time the writer opens it, with no migration."""
    path = tmp_path / "c.duckdb"
    s = Store(path)
    s.con.execute("""CREATE OR REPLACE MACRO device_state(at_ts, stale_s) AS TABLE
                     SELECT device_id, 'stale' AS state FROM devices""").fetchall()
    s.close()
    s2 = Store(path)
    cols = [r[0] for r in s2.con.execute(
        "DESCRIBE SELECT * FROM device_state(now(), 60)").fetchall()]
    assert "state" in cols and "physical_id" in cols and "allocated" in cols
    assert migrate(s2.con) == []
    s2.close()

def test_schema_matches_canonical_model(store):
    cols = dict(store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'device_samples'").fetchall())
    for name, typ in SAMPLE_MEASURES.items():
        assert cols[name] == typ, name
    for name in SAMPLE_LABELS:
        assert cols[name] == "VARCHAR"
    assert cols["ts"] == "TIMESTAMP WITH TIME ZONE"


def test_batch_write_values(cfg, store):
    assert write(store, scrape(cfg, T0)) == 2
    rows = store.con.execute("""SELECT device_id, util_pct, power_w, mem_used_mib, energy_j, tenant, namespace, ts
                                FROM device_samples ORDER BY device_id""").fetchall()
    assert rows[0][:7] == ("GPU-0000", 87.0, 300.5, 1000.0, 5000.0, "moonlake", "moonlake-train")
    assert rows[1][:7] == ("GPU-0001", 0.0, 301.5, 2000.0, 5000.001, None, None)
    assert rows[0][7] == T0
    dev = store.con.execute("""SELECT device_id, catalogue_model, peak_dense_tflops, mem_total_mib, host, cluster,
                                      first_seen, last_seen FROM devices ORDER BY 1""").fetchall()
    assert dev[0] == ("GPU-0000", "H100-SXM", 989.0, 81559.0, "node-a", "train-a", T0, T0)


def test_retried_scrape_stores_each_sample_once(cfg, store):
    s = scrape(cfg, T0)
    assert write(store, s) == 2
    assert write(store, s) == 0          # the same scrape delivered again
    assert write(store, s) == 0          # and a third time
    later = scrape(cfg, T0 + timedelta(seconds=15))
    assert write(store, later) == 2
    assert store.con.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == 4


def test_unchanged_devices_are_not_rewritten_each_flush(cfg, store):
    """The devices upsert runs for a device only when its row would change: new, an
    attribute changed, or last_seen moved by SEEN_EVERY_S (DuckDB keeps memory from
    every UPDATE until close). Samples are stored every time."""
    every = timedelta(seconds=store._devices.SEEN_EVERY_S)
    col = DcgmCollector(cfg)
    write(store, col.from_text(dcgm_text(), TARGET, T0))
    assert store._devices.upserted == 2
    for k in range(1, 5):                # a minute of 15 s cycles: same devices, nothing to update
        assert write(store, col.from_text(dcgm_text(), TARGET, T0 + timedelta(seconds=15 * k))) == 2
    assert store._devices.upserted == 2
    assert store.con.execute("SELECT last_seen FROM devices WHERE device_id = 'GPU-0000'").fetchall()[0][0] == T0
    moved = col.from_text(dcgm_text(), Target(url="http://node-a:9401/metrics", source="test", kind="dcgm",
                                              site="sh-lingang", cluster="train-a", host="node-a"),
                          T0 + timedelta(seconds=75))
    write(store, moved)                  # another endpoint reports it now: written at once
    assert store._devices.upserted == 4
    assert store.con.execute("SELECT target, last_seen FROM devices WHERE device_id = 'GPU-0000'").fetchall()[0] \
        == ("http://node-a:9401/metrics", T0 + timedelta(seconds=75))
    write(store, col.from_text(dcgm_text(), TARGET, T0 + every + timedelta(seconds=75)))
    first, last, target = store.con.execute(
        "SELECT first_seen, last_seen, target FROM devices WHERE device_id = 'GPU-0000'").fetchall()[0]
    assert (first, last, target) == (T0, T0 + every + timedelta(seconds=75), TARGET.url)
    write(store, col.from_text(dcgm_text(), TARGET, T0 - timedelta(hours=1)))       # back-fill: first_seen moves
    assert store.con.execute("SELECT first_seen FROM devices WHERE device_id = 'GPU-0000'").fetchall()[0][0] \
        == T0 - timedelta(hours=1)


def test_events_are_stored_once(cfg, store):
    col = DcgmCollector(cfg)
    s1 = col.from_text(dcgm_text(xid=(0, 79)), TARGET, T0)
    write(store, s1)
    write(store, s1)
    ev = store.con.execute("SELECT device_id, kind, code FROM device_events").fetchall()
    assert ev == [("GPU-0001", "xid", 79)]


def test_out_of_order_delivery_keeps_newest_device_state(cfg, store):
    write(store, scrape(cfg, T0 + timedelta(minutes=5)))
    write(store, scrape(cfg, T0))        # a late back-fill batch
    first, last = store.con.execute(
        "SELECT first_seen, last_seen FROM devices WHERE device_id = 'GPU-0000'").fetchall()[0]
    assert (first, last) == (T0, T0 + timedelta(minutes=5))


def test_second_process_is_told_who_owns_the_file(tmp_path):
    path = tmp_path / "owned.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(__import__('config').PROJECT_ROOT)!r})
            from queries import Store
            s = Store({str(path)!r})
            print("ready", flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseOwned) as err:
            Store(path)
        msg = str(err.value)
        assert str(path) in msg and f"process {holder.pid}" in msg and "only one process" in msg
    finally:
        holder.kill()
        holder.wait()


def sql_parameters(text: str) -> set[str]:
    """The $names a query's SQL uses, comments left out."""
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", body))


def area_params() -> dict:
    """Typical values of the areas' query parameters: tests/fixtures/query_params/<area>.toml,
    one file an area (a name ending in "_none" there stands for None: TOML has no null)."""
    pool: dict = {}
    for path in sorted((Path(__file__).parent / "fixtures" / "query_params").glob("*.toml")):
        for key, value in tomllib.loads(path.read_text(encoding="utf-8")).items():
            if key.endswith("_none"):
                pool[key.removesuffix("_none")] = None
            else:
                pool[key] = value
    return pool


def test_every_named_query_runs_against_the_schema(cfg, store):
    """Each .sql declares on its first line exactly the parameters its SQL uses, and runs
    against the migrated schema with them (a pool of typical values, one per name)."""
    col = DcgmCollector(cfg)
    store.register_targets([TARGET.as_row()])
    write(store, col.from_text(dcgm_text(), TARGET, T0))
    write(store, col.from_text(dcgm_text(xid=(13, 0), throttle=(0, 0x40)), TARGET, T0 + timedelta(seconds=15)))
    store.record_job_run(job="reopen", started_at=T0, duration_s=0.5, ok=True, rows=0)
    store.put_status("cycle", {"ts": T0, "targets": 1})
    pool = dict(now=T0 + timedelta(seconds=20), stale_s=60, cluster=None, hours=24, minutes=60, owned=None,
                host="node-a", device_id=None,
                # the history reads (queries/history.py passes these)
                first_hour=T0, end_ts=T0 + timedelta(hours=1), start_label=T0, step="1h", tz="UTC", by="fleet",
                site=None, model=None, tenant=None, leases=None, unheld=False)
    pool.update(area_params())
    names = query_names()
    assert {"fleet_summary", "heatmap", "problems", "sources", "device_history", "owner_status",
            "job_runs_latest"} <= set(names)
    for name in names:
        q = named_query(name)
        assert set(q.params) == sql_parameters(q.text), name
        assert set(q.params) <= set(pool), f"{name}: add a typical value for its new parameter to the pool"
        df = store.query(name, **{p: pool[p] for p in q.params})
        assert df is not None, name
    hist = store.query("device_history", **{p: pool[p] for p in named_query("device_history").params})
    assert len(hist) == 4 and set(hist["util_pct"]) == {87.0, 0.0}
    assert len(store.query("owner_status")) == 1 and len(store.query("job_runs_latest", now=T0)) == 1


def test_a_named_query_names_a_missing_or_unknown_parameter(store):
    with pytest.raises(TypeError, match="'heatmap'.*missing parameter 'cluster'"):
        store.query("heatmap", now=T0, stale_s=60)
    with pytest.raises(TypeError, match="'sources'.*unknown parameter 'cluster'"):
        store.query("sources", now=T0, cluster=None)
    with pytest.raises(TypeError, match="'clusters'.*unknown parameter 'now'"):
        store.query("clusters", now=T0)
    assert store.query("heatmap", now=T0, stale_s=60, cluster=None).empty     # None is a value: SQL NULL


def test_a_query_without_its_parameter_line_is_refused(tmp_path, monkeypatch):
    import queries.store as qs

    (tmp_path / "bare.sql").write_text("-- Some devices.\nSELECT * FROM devices WHERE cluster = $cluster\n")
    monkeypatch.setattr(qs, "SQL_DIR", tmp_path)
    with pytest.raises(ValueError, match="'bare'.*first line must declare its parameters"):
        named_query("bare")


def test_in_batch_duplicates_are_stored_once(cfg, store):
    """Two copies of one (device, ts) in one batch (a spool replay merged with the live
    flush) store one sample; the first copy is the one kept. Events and facility rows
    likewise, by their natural keys."""
    s = scrape(cfg, T0)
    changed = scrape(cfg, T0, util=(50, 1))
    # 2 GPUs x (first copy + second copy with other values) -> 2 samples
    assert store.write_scrape(samples=pa.concat_tables([s.samples, changed.samples])) == 2
    assert store.con.execute("SELECT util_pct FROM device_samples ORDER BY device_id").fetchall() == [(87.0,), (0.0,)]
    ev = scrape(cfg, T0, xid=(0, 79)).events
    store.write_scrape(events=pa.concat_tables([ev, ev]))
    assert store.con.execute("SELECT count(*) FROM device_events").fetchall() == [(1,)]
    fac = pa.Table.from_pylist([dict(ts=T0, site="sh-lingang", meter="m1", scope="it", power_w=w)
                                for w in (100.0, 200.0)], schema=arrow_schema("facility_samples"))
    assert store.insert("facility_samples", fac) == 1
    assert store.insert("facility_samples", fac) == 0
    assert store.con.execute("SELECT power_w FROM facility_samples").fetchall() == [(100.0,)]


def test_an_event_without_a_device_is_stored_once(store):
    """device_events.device_id may be NULL (an event of the host): the key still matches."""
    ev = pa.Table.from_pylist([dict(ts=T0, device_id=None, host="node-a", kind="lost", code=None)] * 2,
                              schema=arrow_schema("device_events"))
    assert store.insert("device_events", ev) == 1
    assert store.insert("device_events", ev) == 0
    assert store.insert("device_events", ev.drop_columns(["device_id", "detail"])) == 0    # lacking: NULL


def test_runs_carry_the_store_owner(tmp_path):
    store = Store(tmp_path / "o.duckdb", owner=("sh-lingang", "node-1"))
    assert store.owner == ("sh-lingang", "node-1") and store.owner.instance == "node-1"
    run = dict(started_at=T0, source="test", kind="dcgm", target=TARGET.url, duration_s=0.1, rows=2,
               lines_skipped=0, ok=True, error=None, sample_ts=T0)
    store.write_scrape(runs=pa.Table.from_pylist([run, run]))      # no owner columns; twice in one batch
    store.write_scrape(runs=pa.Table.from_pylist([run]))           # delivered again
    assert store.con.execute("SELECT owner_site, owner_instance, count(*) FROM collector_runs GROUP BY ALL"
                             ).fetchall() == [("sh-lingang", "node-1", 1)]
    store.close()


def test_registering_targets_replaces_only_the_owners_own(tmp_path):
    """Two owners' targets in one file: each registration retires only that owner's
    targets, and both may name the same URL."""
    path = tmp_path / "t.duckdb"
    other = Target(url="http://node-b:9400/metrics", source="test", kind="dcgm", site="sh-lingang",
                   cluster="infer-b", host="node-b")
    a = Store(path, owner=("sh-lingang", "a"))
    a.register_targets([TARGET.as_row(), other.as_row()])
    a.close()
    b = Store(path, owner=("sh-lingang", "b"))
    b.register_targets([TARGET.as_row()])
    b.register_targets([TARGET.as_row()])                          # a restart: unchanged
    stored = b.con.execute("SELECT owner_instance, target FROM targets ORDER BY 1, 2").fetchall()
    assert stored == [("a", TARGET.url), ("a", other.url), ("b", TARGET.url)]
    b.close()
    a = Store(path, owner=("sh-lingang", "a"))
    a.register_targets([other.as_row()])                           # a's config drops node-a
    stored = a.con.execute("SELECT owner_instance, target FROM targets ORDER BY 1, 2").fetchall()
    assert stored == [("a", other.url), ("b", TARGET.url)]
    a.close()


def test_key_value_state_is_the_owners_own(tmp_path):
    path = tmp_path / "kv.duckdb"
    a = Store(path, owner=("sh-lingang", "a"))
    a.set_kv("backfill_done", "2026-11-20T08:00:00+00:00")
    a.set_kv("backfill_done", "2026-11-20T09:00:00+00:00")        # replaced, not added
    a.close()
    b = Store(path, owner=("sh-lingang", "b"))
    assert b.get_kv("backfill_done") is None
    b.set_kv("backfill_done", "2026-11-19T00:00:00+00:00")
    b.close()
    a = Store(path, owner=("sh-lingang", "a"))
    assert a.get_kv("backfill_done") == "2026-11-20T09:00:00+00:00"
    assert a.con.execute("SELECT count(*) FROM kv").fetchall() == [(2,)]
    a.close()


def test_job_runs_and_status_round_trip(store):
    store.record_job_run(job="reopen", started_at=T0, duration_s=1.5, ok=True, rows=0)
    store.record_job_run(job="reopen", started_at=T0, duration_s=1.5, ok=True, rows=0)     # recorded again
    store.record_job_run(job="rollup", started_at=T0, duration_s=2.0, ok=False, rows=None,
                         error="database is locked", error_msg='[["jobs.failed", {}]]', detail="hourly")
    store.record_job_run(job="rollup", started_at=T0 + timedelta(hours=1), duration_s=3.0, ok=True, rows=120)
    store.record_job_run(job="rollup", started_at=T0 - timedelta(days=2), duration_s=3.0, ok=False, rows=None,
                         error="old failure")
    assert store.con.execute("SELECT count(*) FROM job_runs").fetchall() == [(4,)]
    latest = store.query("job_runs_latest", now=T0 + timedelta(hours=2))
    rows = [(r.job, r.started_at, r.ok, r.newest, r.failures_24h) for r in latest.itertuples()]
    # reopen: its one run; rollup: the newest (ok) and the failure an hour before it; the
    # failure two days back is outside the 24 h
    assert rows == [("reopen", T0, True, True, 0), ("rollup", T0 + timedelta(hours=1), True, True, 1),
                    ("rollup", T0, False, False, 1)]
    assert latest.iloc[2]["error_msg"] == '[["jobs.failed", {}]]' and latest.iloc[2]["detail"] == "hourly"
    assert set(latest["owner_instance"]) == {"local"}

    assert store.get_status("cycle") is None
    store.put_status("cycle", {"ts": T0, "targets": 1000, "ok": 998, "note": "上次"}, at=T0)
    store.put_status("cycle", {"ts": T0 + timedelta(seconds=15), "targets": 1000, "ok": 1000},
                     at=T0 + timedelta(seconds=15))
    assert store.get_status("cycle") == {"ts": "2026-11-20T08:00:15+00:00", "targets": 1000, "ok": 1000}
    status = store.query("owner_status")
    assert list(status["name"]) == ["cycle"] and status.iloc[0]["updated_at"] == T0 + timedelta(seconds=15)
    with pytest.raises(TypeError, match="JSON-encodable"):
        store.put_status("cycle", {"when": object()})


def test_a_device_two_endpoints_report_in_one_flush_is_written_once(cfg, store):
    """NVML and dcgm-exporter on one host report the same GPU: one flush carries it twice. The
    newest report names the endpoint, the earliest first_seen stays, and the next flush with
    the same two reports writes nothing."""
    col = DcgmCollector(cfg)
    other = Target(url="http://node-a:9401/metrics", source="test", kind="dcgm", site="sh-lingang",
                   cluster="train-a", host="node-a")
    for k in range(3):
        t = T0 + timedelta(seconds=15 * k)
        a = col.from_text(dcgm_text(), TARGET, t)
        b = col.from_text(dcgm_text(), other, t + timedelta(seconds=1))
        store.write_scrape(samples=a.samples, devices=pa.concat_tables([a.devices, b.devices]))
        assert store.con.execute("SELECT target, first_seen FROM devices WHERE device_id = 'GPU-0000'"
                                 ).fetchall()[0] == (other.url, T0)
    assert store._devices.upserted == 2          # both GPUs once, on the first flush


def devices(store):
    with store.cursor() as cur:
        return cur.execute("SELECT count(*) FROM devices").fetchone()[0]


def test_reopen_keeps_everything_and_waits_for_cursors_in_use(cfg, tmp_path):
    """The collector reopens the file every few hours (DuckDB frees what it holds for
    appended data only on close). Data, macros and the device cache survive; a cursor
    in use holds the reopen back, a cursor asked for meanwhile waits for the new
    connection; an in-memory store is never reopened (that would empty it)."""
    import threading
    import time

    store = Store(tmp_path / "r.duckdb")
    try:
        write(store, scrape(cfg, T0))
        opened = store.opened_at
        assert store.reopen()
        assert store.opened_at > opened
        assert write(store, scrape(cfg, T0)) == 0                      # still recognised as stored
        assert write(store, scrape(cfg, T0 + timedelta(seconds=15))) == 2
        assert devices(store) == 2
        assert store._devices.upserted == 2                            # unchanged devices not rewritten

        done = []
        with store.cursor() as cur:
            assert not store.reopen(wait_s=0.2)                        # a cursor in use: gives up
            worker = threading.Thread(target=lambda: done.append(store.reopen(wait_s=10)))
            worker.start()
            time.sleep(0.2)
            assert worker.is_alive() and not done                       # waits for the cursor
            reader = threading.Thread(target=lambda: done.append(
                devices(store)))
            reader.start()
            time.sleep(0.2)
            assert cur.execute("SELECT count(*) FROM device_samples").fetchone()[0] == 4
        worker.join(10)
        reader.join(10)
        assert done == [True, 2]                                        # reopened first, then read
    finally:
        store.close()
    assert not Store(":memory:").reopen()


def test_a_failed_reopen_connects_at_the_next_use(cfg, tmp_path, monkeypatch):
    import queries.store as qs

    store = Store(tmp_path / "r.duckdb")
    write(store, scrape(cfg, T0))
    real = qs.connect

    def taken(*a, **kw):
        raise DatabaseOwned("The database is in use by process 4242")
    monkeypatch.setattr(qs, "connect", taken)
    assert not store.reopen()
    assert store.con is None
    with pytest.raises(DatabaseOwned):                                  # still taken: the caller hears why
        devices(store)
    monkeypatch.setattr(qs, "connect", real)
    assert devices(store) == 2
    store.close()
