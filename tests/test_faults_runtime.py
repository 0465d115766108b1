"""Fault injection in the owner's runtime (issue 11): damaged spool files, stopping while the store
fails, a scheduler loop that must not die, health that tells the truth, targets that answer with
nothing, two exporters claiming one device, compressed bodies, and a server that stays on this
machine.

Every test that injects a fault is marked `fault` (tests/conftest.py counts them); those that
store data through the fault report what the store holds with `faults.stored`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import http.client
import http.server
import math
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import config
from collectors import spool as spool_mod
from collectors.dcgm import DcgmCollector
from collectors.runtime import Runtime, assess
from collectors.scheduler import EMPTY_CYCLES, CycleReport, Scheduler
from collectors.spool import Batch, WriteSpool
from collectors.targets import ScrapeError, Target, fetch
from queries import Store
from helpers import (config_dir, config_dict, dcgm_text, make_config, sample_counts, text_b, toml_text,
                     wait_for)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
A = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a", host="node-a")
B = Target(url="http://b:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a", host="node-b")


class FailingStore:
    """The real store, except that writes fail (disk full) while `failing` is set."""

    def __init__(self, store: Store):
        self.store, self.failing = store, True

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write_scrape(self, **tables):
        if self.failing:
            raise OSError(28, "No space left on device")
        return self.store.write_scrape(**tables)


def spill_batches(cfg, directory: Path, n: int) -> WriteSpool:
    """A spool with `n` batches of 2 samples each (util i, i), all spilled to `directory`."""
    col = DcgmCollector(cfg)
    sp = WriteSpool(directory, max_memory_bytes=1)
    for i in range(n):
        s = col.from_text(dcgm_text(util=(i, i)), A, T0 + timedelta(seconds=15 * i), track=False)
        sp.put(Batch.of(samples=s.samples, devices=s.devices))
    assert sp.stats.memory_bytes == 0 and sp.stats.pending_batches == n
    return sp


def batch_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("batch-"))


def stored_utils(store: Store) -> list[float]:
    with store.cursor() as cur:
        return [u for (u,) in cur.execute("SELECT util_pct FROM device_samples ORDER BY ts, device_id").fetchall()]


# ---- #1: one damaged spool file must not stop all storage ------------------------------------------


def _zero_arrow(d: Path) -> str:
    (d / "samples.arrow").write_bytes(b"")
    return "samples.arrow"


def _truncated_arrow(d: Path) -> str:
    f = d / "samples.arrow"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return "samples.arrow"


def _no_rows_file(d: Path) -> str:
    (d / "rows").unlink()
    return "rows"


def _garbage(d: Path) -> str:
    (d / "devices.arrow").write_bytes(os.urandom(4096))
    return "devices.arrow"


DAMAGE = {"zero-byte": _zero_arrow, "truncated": _truncated_arrow, "rows missing": _no_rows_file,
          "garbage": _garbage}


@pytest.mark.fault
@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("when", ["at recovery", "at flush"])
def test_a_damaged_spool_batch_is_quarantined_and_the_rest_is_stored(cfg, store, tmp_path, faults, damage, when):
    """Three spilled batches, the oldest damaged (what a power cut leaves), found when a restarted
    process recovers the folder or when a running one reads the batch back to write it."""
    directory = tmp_path / "spool"
    sp = spill_batches(cfg, directory, 3)
    head = batch_dirs(directory)[0]
    if when == "at recovery":
        part = DAMAGE[damage](head)
        sp = WriteSpool(directory)                       # the restart
    else:
        part = DAMAGE[damage](head)
    stored, error = sp.flush(store.write_scrape)
    assert error is None and stored == 4                 # the two good batches behind it, 2 samples each
    assert stored_utils(store) == [1.0, 1.0, 2.0, 2.0]
    assert sp.stats.pending_batches == 0 and sp.stats.quarantined_batches == 1
    [q] = sp.stats.quarantined
    moved = directory / "quarantine" / head.name
    assert q["file"] == str(moved) and part in q["reason"]
    assert moved.is_dir() and part in (moved / "reason").read_text()
    assert batch_dirs(directory) == []                   # nothing left to block the next start
    again = WriteSpool(directory)                        # counted again after a restart, until removed
    assert again.stats.quarantined_batches == 1 and again.stats.pending_batches == 0
    rows, unique = sample_counts(store)
    faults.stored(expected=4, unique=unique, rows=rows)  # the damaged batch's 2 samples are unreadable by nature


@pytest.mark.fault
def test_an_interrupted_spill_is_quarantined_at_recovery(cfg, store, tmp_path, faults):
    directory = tmp_path / "spool"
    spill_batches(cfg, directory, 2)
    half = directory / "batch-00000000000000000001-deadbeef.tmp"     # what a crash mid-spill leaves
    half.mkdir()
    (half / "samples.arrow").write_bytes(b"ARROW1")
    sp = WriteSpool(directory)
    assert sp.stats.pending_batches == 2 and sp.stats.quarantined_batches == 1
    assert "interrupted" in sp.stats.quarantined[0]["reason"]
    assert sp.flush(store.write_scrape) == (4, None)
    rows, unique = sample_counts(store)
    faults.stored(expected=4, unique=unique, rows=rows)  # 2 batches x 2 GPUs


def test_a_spill_is_durable_files_and_folders_fsynced_before_and_after_the_rename(cfg, tmp_path, monkeypatch):
    synced: list[Path] = []
    monkeypatch.setattr(spool_mod, "_fsync", lambda p: synced.append(Path(p)))
    directory = tmp_path / "spool"
    spill_batches(cfg, directory, 1)
    [d] = batch_dirs(directory)
    tmp = d.with_suffix(".tmp")
    # every file and the temporary folder before the rename, the spool folder after it
    assert synced == [tmp / "samples.arrow", tmp / "devices.arrow", tmp / "rows", tmp, directory]


@pytest.mark.fault
def test_a_failed_write_is_spilled_at_once_so_a_killed_process_loses_nothing(cfg, tmp_path, faults):
    """The store fails; the batch goes to disk right away, so a `kill -9` (here: the spool is simply
    abandoned, nothing stopped) loses nothing that a restart cannot write."""
    db = Store(":memory:")
    failing = FailingStore(db)
    sched = Scheduler(failing, [(DcgmCollector(cfg, fetch=lambda u, to: dcgm_text(util=(5, 6))), [A], 0)],
                      interval_s=15, spool=WriteSpool(tmp_path / "spool"))
    rep = sched.run_cycle(T0)
    assert rep.write_error == "OSError: [Errno 28] No space left on device"
    assert sched.spool.stats.memory_bytes == 0 and len(batch_dirs(tmp_path / "spool")) == 1
    sched.pool.shutdown()
    restarted = WriteSpool(tmp_path / "spool")
    assert restarted.flush(db.write_scrape) == (2, None)
    rows, unique = sample_counts(db)
    faults.stored(expected=2, unique=unique, rows=rows)  # one cycle x 2 GPUs


@pytest.mark.fault
def test_a_spill_that_fails_keeps_the_batch_in_memory_and_says_so(cfg, tmp_path, monkeypatch, faults):
    db = Store(":memory:")
    failing = FailingStore(db)

    def full(_path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_mod, "_fsync", full)
    sched = Scheduler(failing, [(DcgmCollector(cfg, fetch=lambda u, to: dcgm_text()), [A], 0)],
                      interval_s=15, spool=WriteSpool(tmp_path / "spool"))
    sched.run_cycle(T0)
    st = sched.spool.stats
    assert st.pending_batches == 1 and st.memory_bytes > 0 and st.spill_error.startswith("OSError")
    assert batch_dirs(tmp_path / "spool") == []          # no partial batch left behind
    status, reasons = assess(started=True, thread_alive=True, loop_error=None, interval_s=15, now=0,
                             last_cycle_at=0, started_at=0, rep=sched.last_report, spool=vars(st), backfill={})
    assert status == "degraded" and {r["code"] for r in reasons} == {"write_error", "spill_error"}
    failing.failing = False
    sched.run_cycle(T0 + timedelta(seconds=15))
    sched.pool.shutdown()
    rows, unique = sample_counts(db)
    faults.stored(expected=4, unique=unique, rows=rows)  # 2 cycles x 2 GPUs


# ---- #2: what is queued at stop is spilled, not lost ----------------------------------------------


@pytest.mark.fault
def test_stop_spills_what_the_failing_store_did_not_take(cfg, tmp_path, monkeypatch, faults):
    """Five cycles against a failing store, with spilling at the failure made impossible (the disk is
    full) until the stop, when space is back: the stop spills all five batches, and the next start
    writes them."""
    db = Store(":memory:")
    failing = FailingStore(db)
    real_fsync = spool_mod._fsync
    disk = {"full": True}

    def fsync(path):
        if disk["full"]:
            raise OSError(28, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(spool_mod, "_fsync", fsync)
    texts = [dcgm_text(util=(i, i + 1)) for i in range(5)]
    cycle = [0]
    sched = Scheduler(failing, [(DcgmCollector(cfg, fetch=lambda u, to: texts[cycle[0]]), [A], 0)],
                      interval_s=15, spool=WriteSpool(tmp_path / "spool"))
    for i in range(5):
        cycle[0] = i
        sched.run_cycle(T0 + timedelta(seconds=15 * i))
    assert sched.spool.stats.pending_batches == 5 and batch_dirs(tmp_path / "spool") == []
    disk["full"] = False
    sched.stop()
    assert len(batch_dirs(tmp_path / "spool")) == 5
    restarted = WriteSpool(tmp_path / "spool")
    assert restarted.flush(db.write_scrape) == (10, None)
    assert stored_utils(db) == [float(u) for i in range(5) for u in (i, i + 1)]
    rows, unique = sample_counts(db)
    faults.tried(2)                                       # a failing store, then a failing spill
    faults.stored(expected=10, unique=unique, rows=rows)  # 5 cycles x 2 GPUs


@pytest.mark.fault
def test_runtime_stop_leaves_the_queue_in_the_spool_folder(tmp_path, faults):
    """Runtime.stop (the server's lifespan and `collectors run`'s signal handler call it) with the
    store failing: whatever was collected is in data/spool/ for the next start."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/ok/metrics"
    db = tmp_path / "rt.duckdb"
    cfg = make_config(database={**config_dict()["database"], "path": str(db)},
                      collection={**config_dict()["collection"], "interval_s": 1},
                      sources=[{"name": "one", "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a",
                                "targets": [url]}])
    store = Store(db)
    failing = FailingStore(store)
    rt = Runtime(cfg, failing, backfill=False).start()
    try:
        assert wait_for(lambda: rt.scheduler.cycles >= 2, event=rt.scheduler.cycled)
    finally:
        rt.stop()
        srv.shutdown()
        srv.server_close()
    cycles = rt.scheduler.cycles
    spool_dir = db.parent / "spool"
    assert len(batch_dirs(spool_dir)) == cycles
    failing.failing = False
    restarted = WriteSpool(spool_dir)
    stored, error = restarted.flush(store.write_scrape)
    assert error is None and stored == 2 * cycles        # 2 GPUs a cycle
    rows, unique = sample_counts(store)
    faults.stored(expected=2 * cycles, unique=unique, rows=rows)
    store.close()


class _Serve(http.server.BaseHTTPRequestHandler):
    """/ok: dcgm text; /gzip: gzip with Content-Encoding; /rawgzip: gzip bytes, no header;
    /badgzip: says gzip, is not; /comment: one comment line; /br: Content-Encoding: br."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        body, headers = dcgm_text().encode(), {}
        if mode == "gzip":
            body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        elif mode == "rawgzip":
            body = gzip.compress(body)
        elif mode == "badgzip":
            body, headers = b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}
        elif mode == "br":
            headers = {"Content-Encoding": "br"}
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# ---- #8: the loop does not die; health tells the truth --------------------------------------------


@pytest.mark.fault
def test_the_scheduler_loop_survives_an_interval_it_cannot_wait(cfg, store):
    """interval_s = inf (config now refuses it; the loop must survive it anyway) used to kill the
    thread with an OverflowError: collection stopped while /healthz said ok."""
    sched = Scheduler(store, [], interval_s=math.inf)
    sched.LOOP_RETRY_S = 0.01
    sched.start()
    try:
        assert wait_for(lambda: sched.cycles >= 3, event=sched.cycled)
        assert sched.thread_alive and "cannot wait" in sched.loop_error
    finally:
        sched.stop()


@pytest.mark.fault
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")   # the thread's death is the point
def test_a_dead_loop_thread_is_reported_failed(cfg, store):
    class Fatal(BaseException):
        pass

    sched = Scheduler(store, [], interval_s=15)

    def die(ts=None):
        raise Fatal("the interpreter is going away")

    sched.run_cycle = die
    sched.start()
    sched._thread.join(10)
    assert not sched.thread_alive
    status, reasons = assess(started=True, thread_alive=sched.thread_alive, loop_error=sched.loop_error,
                             interval_s=15, now=sched.started_at, last_cycle_at=None, started_at=sched.started_at,
                             rep=None, spool={}, backfill={})
    assert status == "failed" and [r["code"] for r in reasons] == ["loop_stopped"]
    sched.stop()


def _assess(**kw):
    base = dict(started=True, thread_alive=True, loop_error=None, interval_s=15.0, now=1000.0, last_cycle_at=995.0,
                started_at=900.0, rep=CycleReport(ts=T0, targets=3, ok=3), spool={}, backfill={})
    return assess(**{**base, **kw})


@pytest.mark.parametrize("change, status, code", [
    ({}, "ok", None),
    ({"last_cycle_at": 1000.0 - 46}, "failed", "no_cycle"),                     # 46 s > 3 x 15 s
    ({"last_cycle_at": None, "started_at": 1000.0 - 46}, "failed", "no_cycle"),  # never cycled since start
    ({"rep": CycleReport(ts=T0, targets=2, ok=0, failed=2, skipped=1)}, "failed", "all_targets_failing"),
    ({"rep": CycleReport(ts=T0, targets=0, ok=0, failed=0, skipped=3)}, "failed", "all_targets_failing"),
    ({"rep": CycleReport(ts=T0, targets=3, ok=3, write_error="OSError: disk full")}, "degraded", "write_error"),
    ({"spool": {"dropped_batches": 2, "dropped_rows": 9, "last_drop_at": 1000.0 - 60}}, "degraded", "spool_dropping"),
    ({"spool": {"quarantined_batches": 1, "quarantined": [{"file": "q/batch-1", "reason": "rows is missing"}]}},
     "degraded", "quarantined"),
    ({"rep": CycleReport(ts=T0, targets=3, ok=2, failed=1, empty=1)}, "degraded", "targets_empty"),
    ({"backfill": {"state": "failed", "error": "RuntimeError: x"}}, "degraded", "backfill_failed"),
])
def test_health_states_each_reason(change, status, code):
    got, reasons = _assess(**change)
    assert got == status and [r["code"] for r in reasons] == ([code] if code else [])
    for r in reasons:
        assert r["message"] and r["msg"]                  # English and keys for the pages


def test_an_old_drop_no_longer_degrades_health():
    assert _assess(spool={"dropped_batches": 2, "dropped_rows": 9, "last_drop_at": 1000.0 - 3601})[0] == "ok"


@pytest.mark.fault
def test_runtime_health_is_failed_when_every_target_fails(tmp_path):
    cfg = make_config(database={**config_dict()["database"], "path": str(tmp_path / "h.duckdb")},
                      collection={**config_dict()["collection"], "interval_s": 1, "timeout_s": 1},
                      sources=[{"name": "gone", "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a",
                                "targets": [f"http://127.0.0.1:{_closed_port()}/metrics"]}])
    rt = Runtime(cfg, backfill=False).start()
    try:
        assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled)
        health = rt.health()
        assert health["status"] == "failed"
        assert [r["code"] for r in health["reasons"]] == ["all_targets_failing"]
        assert rt.store.get_status("collector")["status"] == "failed"     # what the pages read
    finally:
        rt.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- #10: answering with nothing is a problem --------------------------------------------------------


@pytest.mark.fault
@pytest.mark.parametrize("body", ["# HELP nothing here\n# TYPE nothing gauge\n",
                                  "#\x00\x01\x02\xff\xfe binary that starts with a hash\n"])
def test_a_target_that_answers_with_no_rows_becomes_a_failing_one(cfg, store, body):
    store.register_targets([A.as_row()])
    texts = [body] * EMPTY_CYCLES + [dcgm_text()]
    cycle = [0]
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=lambda u, to: texts[cycle[0]]), [A], 0)], interval_s=15)
    reps = []
    for i in range(len(texts)):
        cycle[0] = i
        reps.append(sched.run_cycle(T0 + timedelta(seconds=15 * i)))
    sched.pool.shutdown()
    with store.cursor() as cur:
        runs = cur.execute("SELECT ok, error FROM collector_runs ORDER BY started_at").fetchall()
    # noted from the first empty answer, failing from the EMPTY_CYCLES-th (3rd) in a row, ok again with rows
    assert [ok for ok, _ in runs] == [True, True, False, True]
    assert runs[0][1].startswith("answered but gave no rows (1 cycle(s) in a row)")
    assert runs[2][1].startswith("answered but gave no rows (3 cycle(s) in a row)")
    assert (reps[2].ok, reps[2].failed, reps[2].empty) == (0, 1, 1) and reps[3].empty == 0
    at = T0 + timedelta(seconds=15 * 2, milliseconds=500)
    problems = store.query("problems", now=at, stale_s=60, hours=24, cluster=None)
    [down] = problems[problems["kind"] == "exporter_down"]["detail"]
    assert down.startswith("answered but gave no rows (3")


# ---- two exporters, one device id ------------------------------------------------------------------


@pytest.mark.fault
def test_two_targets_claiming_one_device_id_show_as_a_problem(cfg, store, faults):
    store.register_targets([A.as_row(), B.as_row()])
    same = dcgm_text()                                    # both exporters report GPU-0000 and GPU-0001
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=lambda u, to: same), [A, B], 0)], interval_s=15)
    reps = [sched.run_cycle(T0 + timedelta(seconds=15 * i)) for i in range(2)]
    sched.pool.shutdown()
    assert [r.duplicate_ids for r in reps] == [2, 2]
    with store.cursor() as cur:
        events = cur.execute("SELECT device_id, detail FROM device_events WHERE kind = 'duplicate_id' "
                             "ORDER BY device_id").fetchall()
    assert [d for d, _ in events] == ["GPU-0000", "GPU-0001"]          # raised once, when the clash began
    assert all(A.url in detail and B.url in detail for _, detail in events)
    problems = store.query("problems", now=T0 + timedelta(seconds=20), stale_s=60, hours=24, cluster=None)
    assert sorted(problems[problems["kind"] == "duplicate_id"]["device_id"]) == ["GPU-0000", "GPU-0001"]
    rows, unique = sample_counts(store)
    faults.stored(expected=4, unique=unique, rows=rows)  # 2 cycles x 2 device ids, whichever exporter wins


def test_a_clash_that_ends_and_comes_back_is_reported_again(cfg, store):
    texts = {A.url: dcgm_text(), B.url: dcgm_text()}
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=lambda u, to: texts[u]), [A, B], 0)], interval_s=15)
    sched.run_cycle(T0)
    texts[B.url] = text_b()                              # B fixed: its own ids
    sched.run_cycle(T0 + timedelta(seconds=15))
    texts[B.url] = dcgm_text()
    sched.run_cycle(T0 + timedelta(seconds=30))
    sched.pool.shutdown()
    with store.cursor() as cur:
        n = cur.execute("SELECT count(*) FROM device_events WHERE kind = 'duplicate_id'").fetchone()[0]
    assert n == 4                                         # 2 device ids, twice


# ---- compressed bodies -------------------------------------------------------------------------------


@pytest.fixture
def serve():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.fault
def test_a_gzip_body_that_says_so_is_read(serve):
    assert fetch(serve + "/gzip/metrics", 5) == dcgm_text()


@pytest.mark.fault
@pytest.mark.parametrize("mode, words", [
    ("rawgzip", "gzip-compressed without a Content-Encoding header"),
    ("badgzip", "says it is gzip-compressed (Content-Encoding: gzip) but does not decompress"),
    ("br", "compressed as br"),
])
def test_a_compressed_body_that_cannot_be_read_says_how_it_is_compressed(serve, mode, words):
    with pytest.raises(ScrapeError) as err:
        fetch(f"{serve}/{mode}/metrics", 5)
    assert words in str(err.value)


# ---- #4: the server listens on 127.0.0.1 only and never reaches outside -------------------------------

AUDIT = '''\
"""Test-only: log every name lookup and connect to anything but this machine (PYTHONPATH)."""
import os, sys

_LOG = os.environ["ZHISUAN_OUTBOUND_LOG"]
_LOCAL_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost"}


def _local(host):
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOCAL_NAMES:
        return True
    h = str(host)
    return h.startswith("127.") or h in ("::1", "0.0.0.0", "::") or h.startswith("/")


def _hook(event, args):
    if event == "socket.connect":
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else addr
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if not _local(host):
        with open(_LOG, "a") as fh:
            fh.write(f"{event} {host!r}\\n")


sys.addaudithook(_hook)
'''


def _listeners(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) that one of `pids` holds."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:          # 0A: LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if v6:
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.append((addr, int(hexport, 16)))
    return out


def _tree(pid: int) -> set[int]:
    """`pid` and its descendants."""
    pids, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        for child in Path(f"/proc/{p}/task").glob("*/children"):
            for c in child.read_text().split():
                if int(c) not in pids:
                    pids.add(int(c))
                    todo.append(int(c))
    return pids


@contextlib.contextmanager
def manage_start(tmp_path: Path, env: dict | None = None, **tables):
    """`./manage start` on the package's config with `tables` replaced (its own database under
    tmp_path, no back-fill, 5 s cycles); yields (process, port, log path) once /healthz answers."""
    d = config_dict()
    cdir = config_dir(tmp_path / "config", d, **{
        "database": {**d["database"], "path": str(tmp_path / "s.duckdb")},
        "simulator": {**d["simulator"], "backfill_days": 0},
        "collection": {**d["collection"], "interval_s": 5}, **tables})
    port = _closed_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(config.PROJECT_ROOT / "manage"), "start", "--server.port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, config.ENV_VAR: str(cdir),
                                                                        **(env or {})},
                            start_new_session=True)
    try:
        def answers() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    return True
            except urllib.error.HTTPError as exc:
                return exc.code == 503 and b"starting" not in exc.read()
            except OSError:
                return False

        assert wait_for(answers, timeout=120), log_path.read_text()[-3000:]
        yield proc, port, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of GET path on the local server, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see listening sockets")
def test_manage_start_listens_on_loopback_only_and_never_reaches_outside(tmp_path):
    """`./manage start` as the README says (no address given): every listening socket of the server is
    on 127.0.0.1, and no name lookup or connect to another machine is attempted while it starts and
    serves (an audit hook in the server's interpreter logs any; the log must stay empty)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    outbound = tmp_path / "outbound.log"
    outbound.touch()
    with manage_start(tmp_path, {"PYTHONPATH": str(hook), "ZHISUAN_OUTBOUND_LOG": str(outbound)}) as (proc, port, log):
        assert get(port, "/")[0] == 200                     # a page is served too
        # /ui, a path people try, is a redirect to the dashboard rather than a blank page
        status, headers, _ = get(port, "/ui")
        assert (status, headers.get("location")) == (307, "/")
        listening = _listeners(_tree(proc.pid))
        assert ("127.0.0.1", port) in listening
        assert all(addr == "127.0.0.1" for addr, _ in listening), listening
    assert outbound.read_text() == "", outbound.read_text()
    assert "External URL" not in log.read_text()


@pytest.mark.fault
def test_healthz_answers_503_with_the_reason_when_no_target_answers(tmp_path):
    gone = f"http://127.0.0.1:{_closed_port()}/metrics"
    source = {"name": "gone", "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a", "targets": [gone]}
    d = config_dict()
    with manage_start(tmp_path, sources=[source],
                      collection={**d["collection"], "interval_s": 1, "timeout_s": 1}) as (_, port, _log):
        def failed() -> bool:
            status, _, body = get(port, "/healthz")
            doc = json.loads(body)
            return status == 503 and doc["status"] == "failed" and doc["cycles"] >= 1

        assert wait_for(failed, timeout=60)
        doc = json.loads(get(port, "/healthz")[2])
        assert [r["code"] for r in doc["reasons"]] == ["all_targets_failing"]
        assert doc["reasons"][0]["message"].startswith("no target answered in the last cycle")


@pytest.mark.fault
def test_manage_start_on_a_damaged_database_says_so_without_a_traceback(tmp_path):
    db = tmp_path / "damaged.duckdb"
    damage = b"\x00" * 100 + os.urandom(3996)             # what a half-copied file can look like
    db.write_bytes(damage)
    d = config_dict()
    d["database"] = {**d["database"], "path": str(db)}
    cdir = tmp_path / "config"                            # written as is: config checks would refuse it first
    cdir.mkdir()
    (cdir / "centre.toml").write_text(toml_text(d), encoding="utf-8")
    proc = subprocess.run([str(config.PROJECT_ROOT / "manage"), "start", "--server.port", str(_closed_port())],
                          env={**os.environ, config.ENV_VAR: str(cdir)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (2, 3), proc.stderr[-2000:]         # refused by config checks or by the open
    assert "not started" in proc.stderr and "damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert db.read_bytes() == damage                      # nothing written to a file that failed to open


# ---- the back-fill waits out a failing store ---------------------------------------------------------


@pytest.mark.fault
def test_the_backfill_waits_for_a_failing_store_and_finishes(cfg, faults):
    """The simulated history's back-fill runs once; a store write failing used to fail the job for
    good (its batch spooled, the rest of the history never filled before a restart)."""
    from dataclasses import replace

    from helpers import backfill_job

    class FailsTwice(FailingStore):
        refusals = 2

        def write_scrape(self, **tables):
            if self.refusals:
                self.refusals -= 1
                raise OSError(28, "No space left on device")
            return self.store.write_scrape(**tables)

    db = Store(":memory:")
    small = replace(cfg, simulator=cfg.simulator.model_copy(update={"backfill_days": 0.125}))   # 3 h
    flaky = FailsTwice(db)
    fill = backfill_job(small, flaky)
    fill.WRITE_RETRY_S = 0                               # try again at once: the test waits on nothing
    end = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    result = fill(end=end)
    assert flaky.refusals == 0                           # both refusals happened
    assert fill.state == "done" and fill.done == 12 and fill.error is None      # 3 h at 900 s
    with db.cursor() as cur:
        steps = cur.execute("SELECT count(DISTINCT ts) FROM device_samples").fetchone()[0]
    assert steps == 12
    rows, unique = sample_counts(db)
    faults.tried(2)                                      # two refused writes
    meters = len(cfg.energy.meters)                      # the simulated meters: one facility row each a step
    faults.stored(expected=result.rows - 12 * meters, unique=unique, rows=rows)     # all device rows
