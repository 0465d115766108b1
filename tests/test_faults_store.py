"""Faults at the database file: a full disk at COMMIT, damaged files, paths that cannot hold a
database, another owner. Each says what is wrong and what to do, and a file that failed to
open is left exactly as it was.

How DuckDB 2.0 meets damage (tried first): an empty file, random bytes or a text file are
"not a valid DuckDB database file"; a truncated one "Could not read enough bytes"; flipped
bytes in a block "Corrupt database file: computed checksum ... does not match"; each is
refused at connect, writing nothing. Damage in a block read only later passes the open and
surfaces at that read, as any I/O error does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

import config
from helpers import config_dir
from queries.store import DatabaseDamaged, DatabaseOwned, DatabaseUnusable, Store

pytestmark = pytest.mark.fault


class FullDiskAtCommit:
    """A cursor whose COMMIT fails as on a full disk. DuckDB ends the transaction when its
    COMMIT fails, so the ROLLBACK after it fails too, as it does for real."""

    def __init__(self, cur):
        self.cur = cur

    def execute(self, sql, *args):
        if sql.strip().upper() == "COMMIT":
            self.cur.execute("ROLLBACK")
            raise duckdb.IOException("IO Error: Could not write file \"x.duckdb.wal\": No space left on device")
        if sql.strip().upper() == "ROLLBACK":
            raise duckdb.TransactionException("TransactionContext Error: cannot rollback - no transaction is active")
        return self.cur.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.cur, name)


def test_a_failed_commit_reports_its_own_error_not_the_rollback(monkeypatch):
    store = Store(":memory:")
    real = store.cursor

    from contextlib import contextmanager

    @contextmanager
    def failing():
        with real() as cur:
            yield FullDiskAtCommit(cur)

    monkeypatch.setattr(store, "cursor", failing)
    with pytest.raises(duckdb.IOException, match="No space left on device"):
        store.set_kv("k", "v")
    monkeypatch.undo()
    assert store.get_kv("k") is None                 # nothing half-written
    store.set_kv("k", "v")                           # and the store still works once space is back
    assert store.get_kv("k") == "v"
    store.close()


def _good_file(path: Path) -> bytes:
    store = Store(path)
    store.set_kv("history", "x" * 200_000)
    store.record_job_run(job="j", started_at=datetime(2026, 10, 1, tzinfo=timezone.utc), duration_s=1.0, ok=True,
                         rows=1)
    store.close()
    return path.read_bytes()


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    for i in range(at, at + 64):
        out[i] ^= 0xFF
    return bytes(out)


DAMAGE = {
    "zero-length": lambda good: b"",
    "truncated": lambda good: good[:len(good) // 2],
    "header only": lambda good: good[:12288],
    "random bytes": lambda good: os.urandom(100_000),
    "text": lambda good: b"site,meter\n" * 1000,
    "bad checksum": lambda good: _flip(good, 12288 + 100),      # the first block after the two headers
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("read_only", [False, True])
def test_a_damaged_file_is_named_and_left_as_it_was(tmp_path, damage, read_only):
    good = _good_file(tmp_path / "good.duckdb")
    path = tmp_path / "centre.duckdb"
    path.write_bytes(DAMAGE[damage](good))
    before = (path.stat().st_size, path.stat().st_mtime_ns)
    with pytest.raises(DatabaseDamaged) as err:
        Store(path, read_only=read_only)
    text = str(err.value)
    assert f"The database {path} is damaged" in text and "move the file aside" in text
    assert "restore a copy" in text and "Nothing was written to it" in text
    assert (path.stat().st_size, path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["centre.duckdb", "good.duckdb"]     # no WAL left


def test_paths_that_cannot_hold_a_database(tmp_path, monkeypatch):
    with pytest.raises(DatabaseUnusable, match="is a folder, not a database file"):
        Store(tmp_path)
    with pytest.raises(DatabaseUnusable, match="No database path given"):
        Store("")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # this test may run as root, which writes anywhere: the folder reads as read-only to the check
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(DatabaseUnusable, match=f"the folder {locked} cannot be written by this user"):
        Store(locked / "centre.duckdb")
    assert list(locked.iterdir()) == []


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("argv, kind, advice", [
    (["-m", "collectors", "run"], "collector", "Then run this import again."),
    (["streamlit", "run", "app.py"], "dashboard", "import the file on its Sources page instead"),
])
def test_the_owner_is_named_with_advice_that_fits_it(tmp_path, argv, kind, advice):
    """A process holds the file, its command line that of the collector or the dashboard;
    import-meters says who it is and what to do about that owner, with exit code 3."""
    db = tmp_path / "centre.duckdb"
    Store(db).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), *argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseOwned) as err:
            Store(db)
        assert err.value.pid == holder.pid and err.value.owner_kind == kind
        d = config_dir(tmp_path / "cfg", database={"path": str(db)})
        (tmp_path / "m.csv").write_text("site,meter,category,period_start,period_end,kwh\n")
        out = subprocess.run([sys.executable, "-m", "collectors", "--config", str(d), "import-meters",
                              str(tmp_path / "m.csv")], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                             timeout=60)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert f"in use by process {holder.pid}" in out.stderr and advice in out.stderr
    if kind == "collector":
        assert "Sources page" not in out.stderr and f"kill -TERM {holder.pid}" in out.stderr


def _cli(d: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collectors", "--config", str(d), *args], cwd=config.PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_says_a_file_is_damaged_without_a_traceback(tmp_path):
    """A file whose header is not DuckDB's fails config checks (exit 2, naming database.path);
    one damaged past its header fails to open (exit 3: check-config opens it read-only to see);
    neither prints a traceback."""
    good = _good_file(tmp_path / "good.duckdb")
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    d = config_dir(tmp_path / "cfg1", database={"path": str(tmp_path / "later.duckdb")})
    (d / "centre.toml").write_text((d / "centre.toml").read_text().replace(str(tmp_path / "later.duckdb"),
                                                                            str(empty)))
    (tmp_path / "m.csv").write_text("site,meter,category,period_start,period_end,kwh\n")
    for args in (["check-config"], ["import-meters", str(tmp_path / "m.csv")], ["run", "--cycles", "1"]):
        out = _cli(d, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert "key 'database.path'" in out.stderr and "is empty (0 bytes)" in out.stderr
        assert "Traceback" not in out.stderr
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(_flip(good, 12288 + 100))
    d2 = config_dir(tmp_path / "cfg2", database={"path": str(bad)})
    for args in (["check-config"], ["import-meters", str(tmp_path / "m.csv")], ["run", "--cycles", "1"]):
        out = _cli(d2, *args)
        assert out.returncode == 3, (args, out.stderr)
        assert f"The database {bad} is damaged" in out.stderr and "Traceback" not in out.stderr


def test_one_sample_delivered_many_ways_is_stored_once(store, faults):
    """Issue 11 #5: two copies of one (device, time) in one batch (one URL in two sources, two
    exporters reporting one UUID), and the same batch again (a retry): one row each."""
    import pyarrow as pa

    from queries import arrow_schema

    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    rows = [{"ts": t0.replace(second=15 * i), "device_id": f"GPU-{d}", "util_pct": float(d)}
            for i in range(3) for d in range(2)]                 # 3 times x 2 devices = 6 samples
    batch = pa.Table.from_pylist(rows + rows, schema=arrow_schema("device_samples"))   # each twice: 12 rows
    faults.tried(2)
    assert store.insert("device_samples", batch) == 6
    assert store.insert("device_samples", batch) == 0
    stored, unique = store.con.execute(
        "SELECT count(*), count(DISTINCT (device_id, ts)) FROM device_samples").fetchone()
    faults.stored(expected=6, unique=unique, rows=stored)
    assert (stored, unique) == (6, 6)


@pytest.mark.fault
def test_a_lock_taken_between_open_and_first_write_names_the_owner(tmp_path, monkeypatch):
    """DuckDB can let an open through and refuse the first COMMIT at the WAL's lock (a second
    dashboard started beside a running one): that is the owned case, not a traceback."""
    import duckdb

    import queries.store as qs

    def locked(con, **kw):
        raise duckdb.TransactionException(
            f'Could not set lock on file "{tmp_path / "x.duckdb.wal"}": Conflicting lock is held in '
            f"/usr/bin/python3 (PID {os.getpid()}).")

    monkeypatch.setattr(qs, "migrate", locked)
    with pytest.raises(qs.DatabaseOwned, match=rf"in use by process {os.getpid()}"):
        qs.Store(tmp_path / "x.duckdb")
