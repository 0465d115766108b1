"""The one DuckDB file: connection, ownership, migrations, batch writes, reads.

DuckDB lets one process open a file for writing and then locks everyone else
out, readers included. `Store` is that owner's handle: one connection, a
`cursor()` per call (a DuckDB connection refuses concurrent use), one lock that
serialises writers (the scheduler and the back-fill thread) so device upserts
never conflict. A second process gets `DatabaseOwned`, which names the owner.

Batches arrive as pyarrow tables and are appended with `INSERT ... SELECT`
from the registered table, never row by row. Every table's natural key is
declared in queries/catalogue.py, and the insert derived from it stores a row
only when its key is not stored yet and not repeated earlier in the batch: a
retried or overlapping delivery stores each sample once, without an index on
the big tables (the probe is bounded by the batch's time range, so DuckDB's
zone maps skip all but the newest row groups).

Rows that belong to an owner process (targets, collector runs, job runs, key-
value state, owner status) carry its identity (`owner_site`, `owner_instance`),
so files of several owners can be combined later. A store writes as its
`owner`; the writer adopts rows left with the default owner (written before
migration 011, or by a store opened without one) when it opens the file.

Every read is a named query: queries/sql/<name>.sql, whose first line declares
its parameters (`-- params: now, cluster` or `-- params: none`); a call that
misses one or passes one not declared is an error naming both.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from config import DUCKDB_MAGIC, database_problem
from queries import catalogue
from queries.catalogue import (DEFAULT_OWNER, OWNER_COLUMNS, arrow_schema, first_of_each_key, insert_params,
                               insert_sql)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MACROS_DIR = Path(__file__).resolve().parent / "macros"
SQL_DIR = Path(__file__).resolve().parent / "sql"

log = logging.getLogger(__name__)

_LOCK_RE = re.compile(r"PID (\d+)")


class DatabaseUnavailable(RuntimeError):
    """The database file cannot be opened; the message says why and what to do."""


class DatabaseOwned(DatabaseUnavailable):
    """Another process holds the database file: `pid` and its `command` line when known, and
    `owner_kind` ("dashboard", "collector" or "other") for advice that fits the owner."""

    def __init__(self, message: str, *, pid: int | None = None, command: str | None = None):
        super().__init__(message)
        self.pid = pid
        self.command = command

    @property
    def owner_kind(self) -> str:
        return _owner_kind(self.command)


class DatabaseDamaged(DatabaseUnavailable):
    """The database file is damaged (truncated, empty, not a DuckDB file, a bad checksum).
    Nothing was written to it."""


class DatabaseUnusable(DatabaseUnavailable):
    """The path cannot hold the database: a folder, an unwritable place, a file DuckDB
    refuses for another reason (a newer format)."""


class UnknownQuery(KeyError):
    pass


class OwnerKey(NamedTuple):
    """Who writes: the owner process's site and instance name."""

    site: str
    instance: str


def owner_key(owner: Any) -> OwnerKey:
    """A `(site, instance)` tuple, or anything with `.site` and `.instance` (config.Owner);
    None is the default owner."""
    if owner is None:
        return OwnerKey(*DEFAULT_OWNER)
    if isinstance(owner, tuple):
        site, instance = owner
    else:
        site, instance = owner.site, owner.instance
    if not site or not instance:
        raise ValueError(f"an owner needs a site and an instance name, got {owner!r}")
    return OwnerKey(str(site), str(instance))


def _command_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p) or None


def _owner_kind(command: str | None) -> str:
    if not command:
        return "other"
    if "streamlit" in command or "app.py" in command:
        return "dashboard"
    if "collectors" in command and " run" in command:
        return "collector"
    return "other"


_OWNER_ADVICE = {
    "dashboard": "That is the dashboard: use it (its pages read and write this file), or stop it first.",
    "collector": ("That is the headless collector (`python -m collectors run`), and while it runs no other "
                  "process can open the file, the dashboard included: stop it (Ctrl-C, or kill -TERM {pid}), "
                  "do what you meant to, and start it again."),
    "other": "Stop that process first (or wait until it ends).",
}


def owned_error(target: str, pid: int | None) -> DatabaseOwned:
    """The DatabaseOwned error for `target` held by process `pid`: names the owner and its
    command line, and advises what fits that owner."""
    command = _command_of(pid) if pid is not None else None
    owner = "another process" if pid is None else f"process {pid}" + (f" ({command[:160]})" if command else "")
    advice = _OWNER_ADVICE[_owner_kind(command)].format(pid=pid)
    return DatabaseOwned(f"The database {target} is in use by {owner}. DuckDB lets only one process open it. "
                         + advice, pid=pid, command=command)


# what DuckDB says when a file is not a whole database (tried on truncated, zero-length,
# random and bit-flipped files with DuckDB 2.0; it refuses them at connect and writes nothing)
_DAMAGE_WORDS = ("not a valid duckdb database file", "could not read enough bytes", "corrupt database file",
                 "checksum", "file is too small")


def _is_damage(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in _DAMAGE_WORDS)


def damaged_error(target: str, detail: str) -> DatabaseDamaged:
    return DatabaseDamaged(
        f"The database {target} is damaged: {detail}. Nothing was written to it. Stop every process that uses "
        f"it, move the file aside (e.g. mv {target} {target}.damaged) and restore a copy from your backups; "
        "or, to start with an empty database, just move it aside (history is then lost).")


def _looks_damaged(p: Path) -> bool:
    """A file that is there but is not a DuckDB database (empty, or its header is not one)."""
    try:
        if not p.is_file():
            return False
        with p.open("rb") as fh:
            return fh.read(12)[8:12] != DUCKDB_MAGIC
    except OSError:
        return False


# a DuckDB file: two 4 KiB main headers and a 4 KiB file header, then `total_blocks` blocks
_HEADERS_BYTES = 3 * 4096


def _truncated_by(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """How a file that opened is shorter than the blocks its header lists, else None. A
    read-only open reads blocks only when a query needs them, so a truncated file opens and
    fails later, at some page; this finds it at start."""
    # used blocks, not total_blocks: a checkpoint after large deletes (the retention job) leaves
    # free blocks in the header's count and truncates those at the end of the file
    row = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchone()
    if row is None:
        return None
    block_size, blocks = row
    expected = _HEADERS_BYTES + int(block_size) * int(blocks)
    size = path.stat().st_size
    if size < expected:
        return f"it is truncated: {size} bytes, where its header lists {blocks} blocks in use ({expected} bytes)"
    return None


def connect(path: str | os.PathLike, *, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database file. A file another process holds is `DatabaseOwned`; a damaged one
    `DatabaseDamaged` (and is left as it was); a path that cannot hold the database (empty, a
    folder, an unwritable place) `DatabaseUnusable`. Each message says what to do."""
    target = str(path)
    if target != ":memory:":
        if not target.strip():
            raise DatabaseUnusable("No database path given (database.path is empty); name a file, "
                                   "e.g. data/centre.duckdb")
        p = Path(target)
        problem = database_problem(p, write=not read_only)
        if problem:
            if _looks_damaged(p):
                raise damaged_error(target, "it is empty or not a DuckDB database file")
            raise DatabaseUnusable(f"Cannot use {target} as the database: {problem}.")
        if not read_only:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnusable(f"Cannot make the folder for the database {target}: {exc.strerror}") from None
    try:
        # the limit from the first moment: opening a file replays its WAL, which the limit must bound too
        con = duckdb.connect(target, read_only=read_only,
                             config={"memory_limit": memory_limit} if memory_limit else {})
    except duckdb.Error as exc:
        text = str(exc)
        if _is_damage(exc):
            raise damaged_error(target, text) from None
        lock = _lock_holder(text)
        if lock is not None:
            raise owned_error(target, lock or None) from None
        raise DatabaseUnusable(f"Cannot open the database {target}: {text}") from None
    if target != ":memory:":
        short = _truncated_by(con, Path(target))
        if short:
            con.close()
            raise damaged_error(target, short)
    con.execute("SET TimeZone = 'UTC'").fetchall()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'").fetchall()
    return con


def _lock_holder(text: str) -> int | None:
    """The PID in DuckDB's "Could not set lock on file ... Conflicting lock is held in ... (PID n)"
    (0 when it names none); None when `text` is not about a lock."""
    if not re.search(r"\block\b", text, re.IGNORECASE):
        return None
    m = _LOCK_RE.search(text)
    return int(m.group(1)) if m else 0


def migrations() -> list[tuple[int, str, str]]:
    out = []
    for p in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version = int(p.name.split("_", 1)[0])
        out.append((version, p.stem, p.read_text()))
    return out


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT on `con`, ROLLBACK if the block raises. The error raised is the first:
    a COMMIT that fails (a full disk) has ended the transaction already, so the ROLLBACK
    after it fails too ("no transaction is active"); that second failure is logged, never
    raised in place of the one that says what went wrong."""
    con.execute("BEGIN").fetchall()
    try:
        yield con
        con.execute("COMMIT").fetchall()
    except BaseException as exc:
        try:
            con.execute("ROLLBACK").fetchall()
        except duckdb.Error as rollback_exc:
            log.debug("ROLLBACK after %s: %s", exc, rollback_exc)
        raise


def migrate(con: duckdb.DuckDBPyConnection, *, upto: int | None = None) -> list[int]:
    """Apply migrations not yet applied (up to version `upto`, default all), each in its own
    transaction; return those applied."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)""").fetchall()
    done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in migrations():
        if version in done or (upto is not None and version > upto):
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


_PARAMS_LINE = re.compile(r"--\s*params:\s*(.*?)\s*$")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    text: str
    params: tuple[str, ...]


def named_query(name: str) -> NamedQuery:
    """queries/sql/<name>.sql with the parameters its first line declares."""
    text = sql_text(name)
    first = text.split("\n", 1)[0]
    m = _PARAMS_LINE.match(first)
    if not m:
        raise ValueError(f"query {name!r}: the first line must declare its parameters "
                         f"('-- params: a, b' or '-- params: none'), found {first!r}")
    declared = m.group(1)
    params = () if declared == "none" else tuple(p.strip() for p in declared.split(","))
    bad = [p for p in params if not _PARAM_NAME.match(p)]
    if bad or len(set(params)) != len(params):
        raise ValueError(f"query {name!r}: cannot read the parameter list {declared!r}")
    return NamedQuery(name, text, params)


def run(cur: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pd.DataFrame:
    """Run queries/sql/<name>.sql with $named parameters; return a DataFrame. Every declared
    parameter must be given (None is a value: SQL NULL) and no other (TypeError otherwise)."""
    q = named_query(name)
    missing = [p for p in q.params if p not in params]
    if missing:
        raise TypeError(f"query {name!r} is missing parameter {missing[0]!r} "
                        f"(it declares: {', '.join(q.params)})")
    unknown = [k for k in params if k not in q.params]
    if unknown:
        raise TypeError(f"query {name!r} got an unknown parameter {unknown[0]!r} "
                        f"(it declares: {', '.join(q.params) or 'none'})")
    if not params:
        return cur.execute(q.text).df()
    return cur.execute(q.text, params).df()


class Store:
    """The owner's handle on the database (see module docstring)."""

    def __init__(self, path: str | os.PathLike = ":memory:", *, read_only: bool = False,
                 memory_limit: str | None = None, owner: Any = None):
        self.path = str(path)
        self.read_only = read_only
        self.memory_limit = memory_limit
        self.owner = owner_key(owner)
        self.con: duckdb.DuckDBPyConnection | None = None
        wal = Path(self.path + ".wal")
        had_wal = self.path != ":memory:" and wal.exists()
        con = self._open()
        if not read_only:
            try:
                migrate(con)
                create_macros(con)
                adopt_default_owner(con, self.owner)
            except duckdb.Error as exc:
                lock = _lock_holder(str(exc))
                if lock is not None:
                    # another process took the file's lock between our open and our first
                    # write (DuckDB may let the open through and refuse at the WAL): owned
                    con.close()
                    self.con = None
                    raise owned_error(self.path, lock or None) from None
                if not _is_damage(exc):
                    raise
                # damage found past the header: leave the file as it was (no checkpoint
                # of what this open wrote, no WAL of ours beside it)
                con.execute("PRAGMA disable_checkpoint_on_shutdown").fetchall()
                con.close()
                self.con = None
                if not had_wal:
                    wal.unlink(missing_ok=True)
                raise damaged_error(self.path, str(exc)) from None
        self.write_lock = threading.Lock()
        # a sample's hour, and the hour this far before it, are marked for the rollup: a
        # sample is the "next sample" that ends its device's previous one, which may lie in
        # the hour before (queries/rollup.add_jobs sets it to twice the longest interval)
        self.dirty_lookback_s = 30.0
        # hours this store knows rollup_dirty holds (it is the file's one writer): a write into
        # an hour already marked costs no statement; the rollup takes hours through take_dirty
        self._dirty_known: set[datetime] = set()
        self._dirty_new: set[datetime] = set()
        self._devices = _DeviceRows()
        self._closed = False
        self._gate = threading.Condition()     # cursors in use vs. reopen()
        self._in_use = 0
        self._reopening = False

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.con = con = connect(self.path, read_only=self.read_only, memory_limit=self.memory_limit)
        self.opened_at = time.monotonic()
        return con

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._gate:
            self._gate.wait_for(lambda: not self._reopening)
            # a reopen that could not connect: try again now
            cur = (self.con if self.con is not None else self._open()).cursor()
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
                self._dirty_known = set()        # another process may have had the file between
                try:
                    self._open()
                except (DatabaseUnavailable, duckdb.Error) as exc:
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
        with self.write_lock:
            self._dirty_new = set()
            try:
                with self.cursor() as cur, transaction(cur):
                    yield cur
            except BaseException:
                self._dirty_new = set()
                raise
            self._dirty_known |= self._dirty_new          # only once committed
            self._dirty_new = set()

    def write_scrape(self, *, samples: pa.Table | None = None, devices: pa.Table | None = None,
                     events: pa.Table | None = None, facility: pa.Table | None = None,
                     runs: pa.Table | None = None) -> int:
        """Write one or more scrapes' batches in one transaction; return samples stored."""
        stored = 0
        written: list[dict] = []
        with self._tx() as cur:
            if devices is not None:
                devices = self._devices.changed(cur, devices)
                if devices.num_rows:
                    cur.register("batch_devices", devices)
                    cur.execute(_UPSERT_DEVICES).fetchall()
                    written = cur.sql(_DEVICES_WRITTEN).to_arrow_table().to_pylist()
                    cur.unregister("batch_devices")
            for name, table in (("device_samples", samples), ("device_events", events),
                                ("facility_samples", facility), ("collector_runs", runs)):
                n = self._insert(cur, name, table)
                if name == "device_samples":
                    stored = n
        self._devices.remember(written)          # only once committed
        return stored

    def insert(self, name: str, table: pa.Table) -> int:
        """Insert a batch into the catalogue table `name` in its own transaction; return the
        rows inserted. Idempotent: a row whose natural key is stored, or repeated earlier in
        the batch, is skipped. Owner columns the batch lacks are this store's owner."""
        with self._tx() as cur:
            return self._insert(cur, name, table)

    def _insert(self, cur: duckdb.DuckDBPyConnection, name: str, table: pa.Table | None) -> int:
        if table is None or not table.num_rows:
            return 0
        spec = catalogue.table(name)
        if spec.owned:
            table = self._with_owner(table)
        for key in spec.key:                 # a key column the batch lacks is NULL in every row
            if key not in table.column_names:
                table = table.append_column(key, pa.nulls(table.num_rows, spec.column(key).arrow))
        table = first_of_each_key(name, table)
        relation = f"batch_{name}"
        cur.register(relation, table)
        inserted = cur.execute(_insert_sql(name, relation), insert_params(name, table)).fetchall()[0][0]
        if name == "device_samples" and inserted:
            self._mark_dirty(cur, table)
        cur.unregister(relation)             # not after a failure: the aborted transaction refuses it
        return inserted

    def _mark_dirty(self, cur: duckdb.DuckDBPyConnection, samples: pa.Table) -> None:
        """Mark the UTC hours of `samples`, and the hours `dirty_lookback_s` before them, in
        rollup_dirty (queries/rollup.py): one INSERT of the hours not marked yet, none when the
        store knows them marked (an INSERT ... ON CONFLICT DO UPDATE per write cost 10 ms)."""
        us = pc.cast(samples["ts"], pa.int64())
        back = int(self.dirty_lookback_s * 1_000_000)
        hours = set()
        for col in (us, pc.subtract(us, back)):
            for v in pc.unique(pc.divide(col, 3_600_000_000)).to_pylist():
                hours.add(v)
        new = [datetime.fromtimestamp(h * 3600, timezone.utc) for h in hours]
        new = [h for h in new if h not in self._dirty_known]
        if new:
            cur.execute(_MARK_DIRTY, [new]).fetchall()
            self._dirty_new.update(new)

    def take_dirty(self, n: int, after: datetime | None = None) -> list[datetime]:
        """Take up to `n` of the rollup's dirty hours (after `after`), oldest first: removed from
        rollup_dirty, so a write from now on marks them again, and kept in kv (ROLLUP_TAKEN)
        until `done_dirty` or `return_dirty`, so a crash in between loses none."""
        with self._tx() as cur:
            hours = [r[0] for r in cur.execute("""SELECT hour FROM rollup_dirty
                WHERE $after IS NULL OR hour > $after ORDER BY hour LIMIT $n""",
                                               {"after": after, "n": n}).fetchall()]
            if hours:
                cur.execute("DELETE FROM rollup_dirty WHERE hour IN (SELECT unnest($1::TIMESTAMPTZ[]))",
                            [hours]).fetchall()
                self._set_kv(cur, ROLLUP_TAKEN, json.dumps([h.isoformat() for h in hours]))
                self._dirty_known.difference_update(hours)
        return hours

    def done_dirty(self, still_dirty: Iterable[datetime] = ()) -> None:
        """The taken hours are built; `still_dirty` of them are marked again (their newest
        samples are not settled yet)."""
        with self._tx() as cur:
            again = list(still_dirty)
            if again:
                cur.execute(_MARK_DIRTY, [again]).fetchall()
                self._dirty_new.update(again)
            self._set_kv(cur, ROLLUP_TAKEN, "[]")

    def return_dirty(self) -> None:
        """Mark the hours taken and not done (a build that failed, or a process that stopped
        in the middle of one) dirty again."""
        taken = json.loads(self.get_kv(ROLLUP_TAKEN) or "[]")
        if taken:
            self.done_dirty(datetime.fromisoformat(h) for h in taken)

    def _set_kv(self, cur: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        cur.execute("""INSERT INTO kv (owner_site, owner_instance, key, value, updated_at)
            VALUES (?, ?, ?, ?, now()) ON CONFLICT (owner_site, owner_instance, key) DO UPDATE
            SET value = excluded.value, updated_at = excluded.updated_at""", [*self.owner, key, value]).fetchall()

    def _with_owner(self, table: pa.Table) -> pa.Table:
        """`table` with this store's owner where it names none (no column, or NULL)."""
        for column, value in zip(OWNER_COLUMNS, self.owner):
            i = table.schema.get_field_index(column)
            if i < 0:
                table = table.append_column(column, pa.array([value] * table.num_rows, pa.string()))
            elif table.column(i).null_count:
                table = table.set_column(i, column, pc.fill_null(table.column(i), value))
        return table

    def register_targets(self, rows: list[dict]) -> None:
        """Make `rows` this owner's current scrape targets; its targets no longer configured
        are retired (their collector_runs history stays), other owners' are left alone. The
        simulator's URLs change port on every start, so without this the sources page would
        fill with dead endpoints."""
        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "registered_at": now} for r in rows], schema=arrow_schema("targets"))
        table = first_of_each_key("targets", self._with_owner(table))
        site, instance = self.owner
        with self._tx() as cur:
            cur.register("batch_targets", table)
            cur.execute("""DELETE FROM targets WHERE owner_site = ? AND owner_instance = ?
                           AND target NOT IN (SELECT target FROM batch_targets)""", [site, instance]).fetchall()
            cur.execute("""INSERT INTO targets BY NAME SELECT * FROM batch_targets
                ON CONFLICT (owner_site, owner_instance, target) DO UPDATE SET source = excluded.source,
                kind = excluded.kind, site = excluded.site, cluster = excluded.cluster,
                host = excluded.host""").fetchall()
            cur.unregister("batch_targets")

    def import_facility_readings(self, rows: list[dict]) -> dict[str, list]:
        """Insert meter readings; nothing stored is ever overwritten. A row whose meter and
        period are stored with the same category and value is "unchanged"; one that differs
        from what is stored is a "conflict" and is not stored: `conflict` says how ("kwh":
        another value, "category": another category, "overlap": the period overlaps a stored
        period of the same meter, which would count that time twice), beside the stored row's
        `stored_kwh`, `stored_start`, `stored_end` (in the row's time zone), `stored_scope`,
        `stored_pue_category` (collectors.meter_csv.conflict_msg words it). Returns the rows
        as inserted / unchanged / conflicts."""
        out: dict[str, list] = {"inserted": [], "unchanged": [], "conflicts": []}
        if not rows:
            return out
        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "imported_at": now} for r in rows],
                                     schema=arrow_schema("facility_readings"))
        probe = table.select(["site", "meter", "period_start", "period_end"]).append_column(
            "row_i", pa.array(range(len(rows)), pa.int64()))
        with self._tx() as cur:
            cur.register("batch_readings", probe)
            stored = cur.execute("""
                SELECT b.row_i, f.period_start, f.period_end, f.energy_kwh, f.scope, f.pue_category
                FROM batch_readings b JOIN facility_readings f
                  ON f.site = b.site AND f.meter = b.meter
                 AND f.period_start < b.period_end AND b.period_start < f.period_end
                ORDER BY b.row_i, f.period_start""").fetchall()
            cur.unregister("batch_readings")
            found: dict[int, list[tuple]] = {}
            for i, *rest in stored:
                found.setdefault(i, []).append(tuple(rest))
            keep = []
            for i, r in enumerate(rows):
                verdict = _reading_verdict(r, found.get(i, []))
                if verdict is None:
                    keep.append(i)
                    out["inserted"].append(r)
                elif isinstance(verdict, dict):
                    out["conflicts"].append({**r, **verdict})
                else:
                    out["unchanged"].append(r)
            if keep:
                self._insert(cur, "facility_readings", table.take(pa.array(keep, pa.int64())))
        return out

    def get_kv(self, key: str) -> str | None:
        """This owner's value for `key`, None when unset."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT value FROM kv WHERE owner_site = ? AND owner_instance = ? AND key = ?",
                               [*self.owner, key]).fetchall()
        return rows[0][0] if rows else None

    def set_kv(self, key: str, value: str) -> None:
        with self._tx() as cur:
            cur.execute("""INSERT INTO kv (owner_site, owner_instance, key, value, updated_at)
                VALUES (?, ?, ?, ?, now()) ON CONFLICT (owner_site, owner_instance, key) DO UPDATE
                SET value = excluded.value, updated_at = excluded.updated_at""",
                        [*self.owner, key, value]).fetchall()

    def record_job_run(self, *, job: str, started_at: datetime, duration_s: float, ok: bool,
                       rows: int | None, error: str | None = None, error_msg: str | None = None,
                       detail: str | None = None) -> None:
        """Record one run of a scheduled job for this owner (`error` in English, `error_msg`
        its i18n.dumps JSON). A run recorded again (same job and start) is kept once."""
        row = dict(job=job, started_at=started_at, duration_s=duration_s, ok=ok, rows=rows, error=error,
                   error_msg=error_msg, detail=detail)
        self.insert("job_runs", pa.Table.from_pylist([row], schema=_JOB_RUN_SCHEMA))

    def put_status(self, name: str, value: dict, *, at: datetime | None = None) -> None:
        """Publish this owner's status `name` (a JSON-encodable dict; datetimes become ISO
        text), replacing the previous value; pages read it with the owner_status query."""
        text = json.dumps(value, default=_json_default, ensure_ascii=False)
        with self._tx() as cur:
            cur.execute("""INSERT INTO owner_status (owner_site, owner_instance, name, value, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (owner_site, owner_instance, name) DO UPDATE
                SET value = excluded.value, updated_at = excluded.updated_at""",
                        [*self.owner, name, text, at or datetime.now(timezone.utc)]).fetchall()

    def get_status(self, name: str) -> dict | None:
        """This owner's status `name` as put (datetimes as ISO text), None when never put."""
        with self.cursor() as cur:
            rows = cur.execute("""SELECT value FROM owner_status
                WHERE owner_site = ? AND owner_instance = ? AND name = ?""", [*self.owner, name]).fetchall()
        return json.loads(rows[0][0]) if rows and rows[0][0] is not None else None


def _reading_verdict(row: dict, stored: list[tuple]) -> dict | str | None:
    """None: store `row`; "unchanged": stored as it is; else the conflict's fields (see
    Store.import_facility_readings). `stored`: the meter's stored readings whose periods
    overlap the row's, as (start, end, kwh, scope, pue_category), earliest first."""
    if not stored:
        return None
    same = [s for s in stored if s[0] == row["period_start"] and s[1] == row["period_end"]]
    start, end, kwh, scope, pue_category = same[0] if same else stored[0]
    tz = row["period_start"].tzinfo
    out = {"stored_kwh": kwh, "stored_start": start.astimezone(tz), "stored_end": end.astimezone(tz),
           "stored_scope": scope, "stored_pue_category": pue_category}
    if not same:
        return {"conflict": "overlap", **out}
    if (scope, pue_category) != (row["scope"], row["pue_category"]):
        return {"conflict": "category", **out}
    if abs(kwh - row["energy_kwh"]) >= 1e-9:
        return {"conflict": "kwh", **out}
    return "unchanged"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"owner status values must be JSON-encodable; got {type(value).__name__}: {value!r}")


_JOB_RUN_SCHEMA = pa.schema([f for f in arrow_schema("job_runs") if f.name not in OWNER_COLUMNS])


# Hours the rollup job has to rebuild (queries/rollup.py): inserted once, never updated.
_MARK_DIRTY = """INSERT INTO rollup_dirty (hour, marked_at)
    SELECT unnest($1::TIMESTAMPTZ[]), now() ON CONFLICT (hour) DO NOTHING"""
ROLLUP_TAKEN = "rollup.taken"        # kv: the dirty hours a rollup build has taken and not done


@lru_cache(maxsize=None)
def _insert_sql(name: str, relation: str) -> str:
    return insert_sql(name, relation)


def adopt_default_owner(con: duckdb.DuckDBPyConnection, owner: OwnerKey) -> None:
    """Give rows of the default owner to `owner`: rows written before migration 011 (or by a
    store opened without an owner) belong to whoever owns the file, so an upgraded owner keeps
    its targets and back-fill progress. Where `owner` already has a row of the same key (a
    keyed table), its own row stays and the default owner's is dropped."""
    if tuple(owner) == DEFAULT_OWNER:
        return
    with transaction(con):
        for t in catalogue.TABLES.values():
            if not t.owned:
                continue
            if t.primary_key:
                rest = [k for k in t.key if k not in OWNER_COLUMNS]
                same = " AND ".join(f"o.{k} IS NOT DISTINCT FROM d.{k}" for k in rest)
                con.execute(f"""DELETE FROM {t.name} d WHERE owner_site = ? AND owner_instance = ?
                    AND EXISTS (SELECT 1 FROM {t.name} o WHERE o.owner_site = ? AND o.owner_instance = ?
                                AND {same})""", [*DEFAULT_OWNER, *owner]).fetchall()
            con.execute(f"""UPDATE {t.name} SET owner_site = ?, owner_instance = ?
                            WHERE owner_site = ? AND owner_instance = ?""", [*owner, *DEFAULT_OWNER]).fetchall()


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
        old = (self.rows or {}).get(new["device_id"])
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

_shared: Store | None = None


def set_shared_store(store: Store | None) -> None:
    """Publish the owner process's store to the pages running in the same process."""
    global _shared
    _shared = store


def shared_store() -> Store | None:
    return _shared
