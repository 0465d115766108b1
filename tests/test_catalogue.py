"""The table catalogue against the migrated database, and the upgrade to owner keys (011)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES
from queries import Store, migrate
from queries.catalogue import (INFORMATION_SCHEMA_TYPE, TABLES, arrow_schema, first_of_each_key, insert_params,
                               insert_sql)
from queries.store import connect

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def columns(con, table: str) -> dict[str, tuple[str, bool]]:
    return {name: (typ, nullable == "YES") for name, typ, nullable in con.execute(
        """SELECT column_name, data_type, is_nullable FROM information_schema.columns
           WHERE table_name = ?""", [table]).fetchall()}


def primary_key(con, table: str) -> tuple[str, ...] | None:
    rows = con.execute("""SELECT constraint_column_names FROM duckdb_constraints()
                          WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'""", [table]).fetchall()
    return tuple(rows[0][0]) if rows else None


def assert_as_catalogued(con) -> None:
    """Names, types, nullability (order aside: ALTER TABLE adds at the end) and the primary
    key where the catalogue declares one; no stored table is left out of the catalogue."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables - {"schema_migrations"} == set(TABLES)
    for t in TABLES.values():
        want = {c.name: (INFORMATION_SCHEMA_TYPE.get(c.type, c.type), c.nullable) for c in t.columns}
        assert columns(con, t.name) == want, t.name
        assert primary_key(con, t.name) == (t.key if t.primary_key else None), t.name


def test_every_migrated_table_is_as_the_catalogue_declares(store):
    assert_as_catalogued(store.con)
    for t in TABLES.values():
        assert set(t.key) <= set(t.names), t.name
        assert t.time_column is None or t.time_column in t.key, t.name
    assert {t.name for t in TABLES.values() if t.owned} == {"targets", "collector_runs", "kv", "job_runs",
                                                            "owner_status"}


def test_device_samples_take_their_measures_from_the_canonical_model():
    names = TABLES["device_samples"].names
    assert [n for n in names if n in SAMPLE_MEASURES] == list(SAMPLE_MEASURES)
    assert [n for n in names if n in SAMPLE_LABELS] == list(SAMPLE_LABELS)
    assert {TABLES["device_samples"].column(n).type for n in SAMPLE_LABELS} == {"VARCHAR"}


def test_arrow_schemas_keep_the_collectors_column_order():
    """The order collectors have built their batches in (collectors/batch.py and friends);
    columns added since (owner, message) come last."""
    samples = arrow_schema("device_samples")
    assert samples.names[:5] == ["ts", "device_id", "site", "cluster", "host"]
    assert samples.names[5:5 + len(SAMPLE_MEASURES)] == list(SAMPLE_MEASURES)
    assert samples.names[-len(SAMPLE_LABELS) - 2:] == ["tenant", *SAMPLE_LABELS, "source"]
    assert samples.field("ts").type == pa.timestamp("us", tz="UTC") and samples.field("xid_last").type == pa.int64()
    assert arrow_schema("device_events").names == ["ts", "device_id", "site", "cluster", "host", "gpu_index", "kind",
                                                   "code", "detail", "source"]
    assert arrow_schema("device_events").field("gpu_index").type == pa.int32()
    assert arrow_schema("facility_samples").names == ["ts", "site", "meter", "scope", "pue_category", "power_w",
                                                      "energy_kwh", "source"]
    runs = arrow_schema("collector_runs")
    assert runs.names == ["started_at", "source", "kind", "target", "duration_s", "rows", "lines_skipped", "ok",
                          "error", "sample_ts", "error_msg", "owner_site", "owner_instance"]
    assert runs.field("rows").type == pa.int32()
    assert arrow_schema("targets").names == ["target", "source", "kind", "site", "cluster", "host", "registered_at",
                                             "owner_site", "owner_instance"]
    assert arrow_schema("devices").names[0] == "device_id" and arrow_schema("devices").names[-2:] == [
        "first_seen", "last_seen"]


def test_the_derived_insert_bounds_the_probe_to_the_batch_time_range():
    """The big append-only tables have no index: the probe for stored keys must stay within
    the batch's time range so DuckDB's zone maps skip the older row groups."""
    sql = insert_sql("device_samples", "b1")
    assert "s.ts BETWEEN $lo AND $hi" in sql and "s.device_id = b.device_id" in sql
    later = T0.replace(minute=15)
    batch = pa.Table.from_pylist([dict(ts=later, device_id="a"), dict(ts=T0, device_id="b")],
                                 schema=arrow_schema("device_samples"))
    assert insert_params("device_samples", batch) == {"lo": T0, "hi": later}
    assert insert_params("facility_readings", batch) is None
    assert "s.device_id IS NOT DISTINCT FROM b.device_id" in insert_sql("device_events", "b2")
    assert "BETWEEN" not in insert_sql("facility_readings", "b3")


def test_first_of_each_key_keeps_order_and_the_first_copy():
    t = pa.table({"site": ["a", "a", "b", "a"], "meter": ["m", "m", "m", "n"],
                  "ts": [T0] * 4, "power_w": [1.0, 2.0, 3.0, 4.0]})
    assert first_of_each_key("facility_samples", t)["power_w"].to_pylist() == [1.0, 3.0, 4.0]
    unique = t.slice(1)
    assert first_of_each_key("facility_samples", unique) is unique


def database_at_010(path) -> None:
    """A file as the version before owners wrote it, with targets, runs and back-fill progress."""
    con = connect(path)
    migrate(con, upto=10)
    con.execute("INSERT INTO targets VALUES ('http://node-a:9400/metrics', 'dcgm', 'dcgm', 'sh-lingang', "
                "'train-a', 'node-a', ?)", [T0]).fetchall()
    con.execute("INSERT INTO collector_runs VALUES (?, 'dcgm', 'dcgm', 'http://node-a:9400/metrics', 0.1, 16, 0, "
                "TRUE, NULL, ?)", [T0, T0]).fetchall()
    con.execute("INSERT INTO kv VALUES ('backfill_done', '2026-11-20T07:00:00+00:00', ?)", [T0]).fetchall()
    con.close()


def test_a_database_at_010_upgrades_and_its_owner_adopts_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    database_at_010(path)
    store = Store(path, owner=("sh-lingang", "node-1"))
    assert store.get_kv("backfill_done") == "2026-11-20T07:00:00+00:00"
    assert store.con.execute("SELECT owner_site, owner_instance, target FROM targets").fetchall() == [
        ("sh-lingang", "node-1", "http://node-a:9400/metrics")]
    assert store.con.execute("SELECT owner_instance, error_msg FROM collector_runs").fetchall() == [("node-1", None)]
    sources = store.query("sources", now=T0)
    assert list(sources["rows"]) == [16] and list(sources["owner_instance"]) == ["node-1"]
    assert_as_catalogued(store.con)
    store.close()


def test_a_store_without_an_owner_leaves_the_upgraded_rows_to_the_default_owner(tmp_path):
    path = tmp_path / "old.duckdb"
    database_at_010(path)
    store = Store(path)
    assert store.owner == ("-", "local")
    assert store.get_kv("backfill_done") == "2026-11-20T07:00:00+00:00"
    store.set_kv("backfill_done", "2026-11-20T07:30:00+00:00")
    store.close()
    reader = Store(path, read_only=True, owner=("sh-lingang", "node-1"))     # a reader adopts nothing
    assert reader.con.execute("SELECT DISTINCT owner_instance FROM kv").fetchall() == [("local",)]
    reader.close()


def test_adopting_keeps_the_owners_own_row_where_both_have_one(tmp_path):
    path = tmp_path / "both.duckdb"
    mine = Store(path, owner=("sh-lingang", "node-1"))
    mine.set_kv("backfill_done", "mine")
    mine.close()
    anonymous = Store(path)
    anonymous.set_kv("backfill_done", "anonymous")
    anonymous.set_kv("import_done", "anonymous")
    anonymous.close()
    mine = Store(path, owner=("sh-lingang", "node-1"))
    assert (mine.get_kv("backfill_done"), mine.get_kv("import_done")) == ("mine", "anonymous")
    assert mine.con.execute("SELECT count(*) FROM kv").fetchall() == [(2,)]
    mine.close()


def test_arrow_schemas_equal_the_hand_written_ones_where_they_overlap():
    """Batches built with a collector's own schema and with arrow_schema() concatenate
    (the spool merges them): same types, every field nullable."""
    legacy = pa.schema([("started_at", pa.timestamp("us", tz="UTC")), ("source", pa.string()),
                        ("kind", pa.string()), ("target", pa.string()), ("duration_s", pa.float64()),
                        ("rows", pa.int32()), ("lines_skipped", pa.int32()), ("ok", pa.bool_()),
                        ("error", pa.string()), ("sample_ts", pa.timestamp("us", tz="UTC"))])
    runs = arrow_schema("collector_runs")
    assert pa.schema(list(runs)[:len(legacy)]) == legacy
    assert all(f.nullable for name in TABLES for f in arrow_schema(name))
