"""The one DuckDB file: connection, ownership, migrations, batch writes, reads.

DuckDB lets one process open a file for writing and then locks everyone else
out, readers included. `Store` is that owner's handle: one connection, a
`cursor()` per call (a DuckDB connection refuses concurrent use), one lock that
serialises writers (the scheduler and the back-fill thread) so device upserts
never conflict. A second process gets `DatabaseOwned`, which names the owner.

Batches arrive as pyarrow tables and are appended with `INSERT ... SELECT`
from the registered table, never row by row. A sample is identified by
(device_id, ts): the anti-join on insert makes a retried or overlapping
delivery store each sample once, without an index on the big table (its time
range filter lets DuckDB's zone maps skip all but the newest row groups).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pyarrow as pa

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MACROS_DIR = Path(__file__).resolve().parent / "macros"
SQL_DIR = Path(__file__).resolve().parent / "sql"

log = logging.getLogger(__name__)

_LOCK_RE = re.compile(r"PID (\d+)")


class DatabaseOwned(RuntimeError):
    """Another process holds the database file."""


class UnknownQuery(KeyError):
    pass


def _owner_description(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmd = " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)
        return f"process {pid} ({cmd[:160]})"
    except OSError:
        return f"process {pid}"


def connect(path: str | os.PathLike, *, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database file, turning DuckDB's lock error into a plain message."""
    target = str(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(target, read_only=read_only)
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" not in msg.lower():
            raise
        m = _LOCK_RE.search(msg)
        owner = _owner_description(int(m.group(1))) if m else "another process"
        raise DatabaseOwned(
            f"The database {target} is in use by {owner}. DuckDB lets only one process open it. "
            "Open the dashboard that process serves, or stop it first "
            "(for the headless collector: stop `python -m collectors run`; for the dashboard: stop `streamlit run app.py`)."
        ) from None
    con.execute("SET TimeZone = 'UTC'").fetchall()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'").fetchall()
    return con


def migrations() -> list[tuple[int, str, str]]:
    out = []
    for p in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version = int(p.name.split("_", 1)[0])
        out.append((version, p.stem, p.read_text()))
    return out


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT on `con`, ROLLBACK if the block raises."""
    con.execute("BEGIN").fetchall()
    try:
        yield con
        con.execute("COMMIT").fetchall()
    except Exception:
        con.execute("ROLLBACK").fetchall()
        raise


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply migrations not yet applied, each in its own transaction; return those applied."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)""").fetchall()
    done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        with transaction(con):
            for statement in _statements(sql):
                con.execute(statement).fetchall()
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name]).fetchall()
        applied.append(version)
    return applied


def create_macros(con: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re-)create the shared macros (queries/macros/*.sql) in one transaction; return their files.
    They are definitions, not schema history: the writer replaces them on every open, so a
    changed macro takes effect without a migration restating it."""
    names = []
    with transaction(con):
        for p in sorted(MACROS_DIR.glob("*.sql")):
            for statement in _statements(p.read_text()):
                con.execute(statement).fetchall()
            names.append(p.stem)
    return names


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (migrations hold no ';' inside strings)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def sql_text(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise UnknownQuery(f"no query named {name!r} (expected {path})")
    return path.read_text()


def query_names() -> list[str]:
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def run(cur: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pd.DataFrame:
    """Run queries/sql/<name>.sql with $named parameters; return a DataFrame."""
    text = sql_text(name)
    used = {k: v for k, v in params.items() if f"${k}" in text}
    return cur.execute(text, used).df()


class Store:
    """The owner's handle on the database (see module docstring)."""

    def __init__(self, path: str | os.PathLike = ":memory:", *, read_only: bool = False,
                 memory_limit: str | None = None):
        self.path = str(path)
        self.read_only = read_only
        self.memory_limit = memory_limit
        self.con: duckdb.DuckDBPyConnection | None = None
        self._open()
        if not read_only:
            migrate(self.con)
            create_macros(self.con)
        self.write_lock = threading.Lock()
        self._devices = _DeviceRows()
        self._closed = False
        self._gate = threading.Condition()     # cursors in use vs. reopen()
        self._in_use = 0
        self._reopening = False

    def _open(self) -> None:
        self.con = connect(self.path, read_only=self.read_only, memory_limit=self.memory_limit)
        self.opened_at = time.monotonic()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._gate:
            self._gate.wait_for(lambda: not self._reopening)
            if self.con is None:               # a reopen could not connect: try again now
                self._open()
            cur = self.con.cursor()
            self._in_use += 1
        try:
            yield cur
        finally:
            cur.close()
            with self._gate:
                self._in_use -= 1
                self._gate.notify_all()

    def reopen(self, wait_s: float = 30.0) -> bool:
        """Close the connection and open the file again; True when it was reopened.

        DuckDB keeps memory for the data appended while a database is open (about
        7 MiB an hour at 1,000 exporters, after the first hours' warm-up; see
        docs/benchmarks.md) and gives it back only when the database is closed; the
        collector reopens it every few hours so its memory stays bounded. Waits for
        running writes and for cursors in use (up to `wait_s`, else gives up and
        returns False); new cursors wait until it is done. If the file cannot be
        opened again (another process took it in between), the next cursor tries."""
        if self.path == ":memory:" or self._closed:
            return False
        with self.write_lock, self._gate:
            self._reopening = True
            try:
                if not self._gate.wait_for(lambda: self._in_use == 0, timeout=wait_s):
                    return False
                if self.con is not None:
                    self.con.close()
                    self.con = None
                try:
                    self._open()
                except (DatabaseOwned, duckdb.Error) as exc:
                    log.error("could not reopen the database %s, will try again at the next use: %s", self.path, exc)
                    return False
                return True
            finally:
                self._reopening = False
                self._gate.notify_all()

    def query(self, name: str, **params: Any) -> pd.DataFrame:
        with self.cursor() as cur:
            return run(cur, name, **params)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.con is not None:
                self.con.close()

    # ---- writes -------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.write_lock, self.cursor() as cur, transaction(cur):
            yield cur

    def write_scrape(self, *, samples: pa.Table | None = None, devices: pa.Table | None = None,
                     events: pa.Table | None = None, facility: pa.Table | None = None,
                     runs: pa.Table | None = None) -> int:
        """Write one or more scrapes' batches in one transaction; return samples stored."""
        steps = [(devices, "batch_devices", _UPSERT_DEVICES), (samples, "batch_samples", _INSERT_SAMPLES),
                 (events, "batch_events", _INSERT_EVENTS), (facility, "batch_facility", _INSERT_FACILITY),
                 (runs, "batch_runs", _INSERT_RUNS)]
        stored = 0
        written: list[dict] = []
        with self._tx() as cur:
            for table, name, sql in steps:
                if name == "batch_devices" and table is not None:
                    table = self._devices.changed(cur, table)
                if table is None or not table.num_rows:
                    continue
                cur.register(name, table)
                result = cur.execute(sql).fetchall()
                if name == "batch_devices":
                    written = cur.sql(_DEVICES_WRITTEN).to_arrow_table().to_pylist()
                cur.unregister(name)
                if name == "batch_samples":
                    stored = result[0][0]
        self._devices.remember(written)          # only once committed
        return stored

    def register_targets(self, rows: list[dict]) -> None:
        """Make `rows` the current scrape targets; targets no longer configured are retired
        (their collector_runs history stays). The simulator's URLs change port on every
        start, so without this the sources page would fill with dead endpoints."""
        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "registered_at": now} for r in rows],
                                     schema=pa.schema([("target", pa.string()), ("source", pa.string()),
                                                       ("kind", pa.string()), ("site", pa.string()),
                                                       ("cluster", pa.string()), ("host", pa.string()),
                                                       ("registered_at", pa.timestamp("us", tz="UTC"))]))
        with self._tx() as cur:
            cur.register("batch_targets", table)
            cur.execute("DELETE FROM targets WHERE target NOT IN (SELECT target FROM batch_targets)").fetchall()
            cur.execute("""INSERT INTO targets BY NAME SELECT * FROM batch_targets
                ON CONFLICT (target) DO UPDATE SET source = excluded.source, kind = excluded.kind,
                site = excluded.site, cluster = excluded.cluster, host = excluded.host""").fetchall()
            cur.unregister("batch_targets")

    def import_facility_readings(self, rows: list[dict]) -> dict[str, list]:
        """Insert meter readings; one already stored with the same value is unchanged, one with a
        different value is a conflict (never overwritten). Returns inserted/unchanged/conflicts rows."""
        out: dict[str, list] = {"inserted": [], "unchanged": [], "conflicts": []}
        if not rows:
            return out
        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "imported_at": now} for r in rows])
        with self._tx() as cur:
            cur.register("batch_readings", table)
            existing = cur.execute("""
                SELECT b.source_line, f.energy_kwh FROM batch_readings b JOIN facility_readings f
                  ON f.site = b.site AND f.meter = b.meter
                 AND f.period_start = b.period_start AND f.period_end = b.period_end""").fetchall()
            cur.execute("""INSERT INTO facility_readings BY NAME SELECT * FROM batch_readings
                           ON CONFLICT DO NOTHING""").fetchall()
            cur.unregister("batch_readings")
        stored = dict(existing)
        for r in rows:
            if r["source_line"] not in stored:
                out["inserted"].append(r)
            elif abs(stored[r["source_line"]] - r["energy_kwh"]) < 1e-9:
                out["unchanged"].append(r)
            else:
                out["conflicts"].append({**r, "stored_kwh": stored[r["source_line"]]})
        return out

    def get_kv(self, key: str) -> str | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return row[0] if row else None

    def set_kv(self, key: str, value: str) -> None:
        with self._tx() as cur:
            cur.execute("""INSERT INTO kv VALUES (?, ?, now())
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at""",
                        [key, value]).fetchall()


class _DeviceRows:
    """What `devices` holds, so a flush upserts only the device rows that would change it.

    Every scrape carries every device it saw, but a device's attributes rarely change:
    upserting them all with each flush (about ten a cycle) UPDATEs the same rows again
    and again, and DuckDB keeps memory from every UPDATE until the database is closed
    (duckdb/duckdb#9263): about 10 MiB an hour per 1,000 devices, measured with
    benchmarks/bench_collect.py. So a row is written when the device is new, an
    attribute changes (as the upsert merges it: the coalesced columns only when the new
    value is not NULL), it was seen earlier than first_seen (back-fill), it moves to
    another endpoint, or last_seen would move by SEEN_EVERY_S or more. devices.last_seen
    is therefore up to SEEN_EVERY_S behind the newest sample; the device_state macro
    takes the last time a device was carried from its samples, not from last_seen.
    Used under the store's write lock."""

    SEEN_EVERY_S = 600.0
    _MERGED = ("model", "pci_bus_id", "mem_total_mib", "driver_version")    # coalesce(new, old)
    _SET = ("vendor", "catalogue_model", "peak_dense_tflops", "host", "cluster", "site", "gpu_index",
            "uuid", "mig_parent", "mig_profile", "source")

    def __init__(self) -> None:
        self.rows: dict[str, dict] | None = None       # device_id -> the stored row
        self.upserted = 0                               # device rows written since the store opened

    def changed(self, cur: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
        if self.rows is None:
            self.rows = {r["device_id"]: r for r in cur.sql("SELECT * FROM devices").to_arrow_table().to_pylist()}
        rows = table.to_pylist()
        # one row per device: two endpoints may report it in one flush (NVML and dcgm-exporter
        # on one host), and the upsert applies only one of them; keep the newest, with the
        # earliest first_seen, as separate flushes would have left it
        newest: dict[str, int] = {}
        for i, row in enumerate(rows):
            j = newest.get(row["device_id"])
            if j is None:
                newest[row["device_id"]] = i
                continue
            if row["last_seen"] >= rows[j]["last_seen"]:
                row["first_seen"] = min(row["first_seen"], rows[j]["first_seen"])
                newest[row["device_id"]] = i
            else:
                rows[j]["first_seen"] = min(row["first_seen"], rows[j]["first_seen"])
        keep = [i for i in newest.values() if self._differs(rows[i])]
        if len(keep) == table.num_rows:
            return table
        out = table.take(pa.array(keep, pa.int64()))
        first = pa.array([rows[i]["first_seen"] for i in keep], table.schema.field("first_seen").type)
        return out.set_column(out.schema.get_field_index("first_seen"), "first_seen", first)

    def _differs(self, new: dict) -> bool:
        old = self.rows.get(new["device_id"])
        if old is None:
            return True
        if any(new[c] != old[c] for c in self._SET if c in new):
            return True
        if any(new[c] is not None and new[c] != old[c] for c in self._MERGED if c in new):
            return True
        if old["first_seen"] is None or old["last_seen"] is None:
            return True
        if new["first_seen"] < old["first_seen"]:
            return True
        if new["target"] != old["target"] and new["last_seen"] >= old["last_seen"]:
            return True
        return (new["last_seen"] - old["last_seen"]).total_seconds() >= self.SEEN_EVERY_S

    def remember(self, written: list[dict]) -> None:
        self.upserted += len(written)
        if self.rows is not None:
            self.rows.update((r["device_id"], r) for r in written)


_DEVICES_WRITTEN = "SELECT * FROM devices WHERE device_id IN (SELECT device_id FROM batch_devices)"

_UPSERT_DEVICES = """
INSERT INTO devices BY NAME SELECT * FROM batch_devices
ON CONFLICT (device_id) DO UPDATE SET
    vendor = excluded.vendor, model = coalesce(excluded.model, devices.model),
    catalogue_model = excluded.catalogue_model, peak_dense_tflops = excluded.peak_dense_tflops,
    host = excluded.host, cluster = excluded.cluster, site = excluded.site,
    gpu_index = excluded.gpu_index, uuid = excluded.uuid,
    pci_bus_id = coalesce(excluded.pci_bus_id, devices.pci_bus_id),
    mig_parent = excluded.mig_parent, mig_profile = excluded.mig_profile,
    mem_total_mib = coalesce(excluded.mem_total_mib, devices.mem_total_mib),
    driver_version = coalesce(excluded.driver_version, devices.driver_version),
    source = excluded.source,
    target = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.target ELSE devices.target END,
    first_seen = least(devices.first_seen, excluded.first_seen),
    last_seen = greatest(devices.last_seen, excluded.last_seen)
"""

# Only samples whose (device_id, ts) is not stored yet; the ts range filter
# keeps the probe to the row groups that can overlap this batch.
_INSERT_SAMPLES = """
INSERT INTO device_samples BY NAME
SELECT b.* FROM batch_samples b
WHERE NOT EXISTS (
    SELECT 1 FROM device_samples s
    WHERE s.ts BETWEEN (SELECT min(ts) FROM batch_samples) AND (SELECT max(ts) FROM batch_samples)
      AND s.device_id = b.device_id AND s.ts = b.ts)
"""

_INSERT_RUNS = "INSERT INTO collector_runs BY NAME SELECT * FROM batch_runs"

_INSERT_EVENTS = """
INSERT INTO device_events BY NAME
SELECT b.* FROM batch_events b
WHERE NOT EXISTS (
    SELECT 1 FROM device_events e
    WHERE e.ts BETWEEN (SELECT min(ts) FROM batch_events) AND (SELECT max(ts) FROM batch_events)
      AND e.device_id IS NOT DISTINCT FROM b.device_id AND e.ts = b.ts AND e.kind = b.kind)
"""

_INSERT_FACILITY = """
INSERT INTO facility_samples BY NAME
SELECT b.* FROM batch_facility b
WHERE NOT EXISTS (
    SELECT 1 FROM facility_samples f
    WHERE f.ts BETWEEN (SELECT min(ts) FROM batch_facility) AND (SELECT max(ts) FROM batch_facility)
      AND f.site = b.site AND f.meter = b.meter AND f.ts = b.ts)
"""


_shared: Store | None = None


def set_shared_store(store: Store | None) -> None:
    """Publish the owner process's store to the pages running in the same process."""
    global _shared
    _shared = store


def shared_store() -> Store | None:
    return _shared
