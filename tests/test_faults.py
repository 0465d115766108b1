"""Fault injection: broken exporters over real sockets, a failing store, spill and drop.

Each test asserts what was stored afterwards: faults stay local, nothing
collected is lost, duplicates are stored once.
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from collectors.dcgm import DcgmCollector
from collectors.scheduler import Scheduler
from collectors.spool import Batch, WriteSpool
from collectors.targets import Target, fetch
from queries import Store
from helpers import dcgm_text, sample_counts

# every test here injects a fault (tests/conftest.py counts them in the faults summary line)
pytestmark = pytest.mark.fault

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
GOOD = dcgm_text()


class Broken(http.server.BaseHTTPRequestHandler):
    """/ok, /500, /hang, /close (mid-body), /html, /empty"""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        if mode == "ok":
            body = GOOD.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif mode == "500":
            self.send_error(500, "Internal Server Error")
        elif mode == "hang":
            self.server.release.wait(10)
        elif mode == "close":
            body = GOOD.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        elif mode == "html":
            body = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def broken_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    srv.daemon_threads = True
    srv.release = threading.Event()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def target(base: str, mode: str, host: str) -> Target:
    return Target(url=f"{base}/{mode}/metrics", source="faults", kind="dcgm", site="sh-lingang",
                  cluster="train-a", host=host)


class TimedStore:
    """A store that notes when each write happened and can fail on demand."""

    def __init__(self, store: Store, failures: int = 0):
        self.store, self.failures, self.writes = store, failures, []
        self.stored_samples = threading.Event()     # set once a write stored samples

    def __getattr__(self, name):               # everything but writes is the real store's
        return getattr(self.store, name)

    def write_scrape(self, **tables):
        if self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        n = self.store.write_scrape(**tables)
        self.writes.append((time.perf_counter(), n))
        if n > 0:
            self.stored_samples.set()
        return n


def test_broken_exporters_fail_alone_and_say_why(cfg, store, broken_server):
    fast = replace(cfg, collection=cfg.collection.model_copy(update={"timeout_s": 1.0}))
    targets = [target(broken_server, m, f"node-{m}") for m in ("ok", "500", "hang", "close", "html")]
    timed = TimedStore(store)
    stored_first = []

    def fetch_(url, timeout):
        if "/hang/" in url:
            # the hanging target's request goes out once the good target's samples are stored, or after
            # a 60 s guard: a scheduler that stored only at the end of the cycle would never get here first
            stored_first.append(timed.stored_samples.wait(60))
        return fetch(url, timeout)

    sched = Scheduler(timed, [(DcgmCollector(fast, fetch=fetch_), targets, 0)], interval_s=15, concurrency=8)
    rep = sched.run_cycle(T0)
    assert (rep.ok, rep.failed) == (1, 4)
    assert rep.errors[targets[1].url] == "HTTP 500 Internal Server Error"
    assert rep.errors[targets[2].url] == "no answer within 1 s"
    assert rep.errors[targets[3].url].startswith("connection closed mid-response after")
    assert rep.errors[targets[4].url].startswith("response is not Prometheus text")
    # the good target's samples were stored before the hanging one timed out (after its 1 s timeout)
    assert stored_first == [True] and 1.0 <= rep.scrape_s
    rows = store.con.execute("SELECT device_id, util_pct FROM device_samples ORDER BY 1").fetchall()
    assert rows == [("GPU-0000", 87.0), ("GPU-0001", 0.0)]
    runs = dict(store.con.execute("SELECT target, error FROM collector_runs WHERE NOT ok").fetchall())
    assert runs[targets[2].url] == "no answer within 1 s" and len(runs) == 4
    sched.pool.shutdown()


def test_retry_with_backoff_then_success(cfg, store, faults):
    calls = []

    def flaky(url, timeout):
        calls.append(time.perf_counter())
        if len(calls) < 3:
            raise __import__("collectors.targets", fromlist=["x"]).ScrapeError("HTTP 503 Service Unavailable")
        return GOOD

    naps = []
    t = Target(url="http://flaky:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=flaky), [t], 2)], interval_s=15, sleep=naps.append)
    rep = sched.run_cycle(T0)
    assert rep.ok == 1 and naps == [0.5, 1.0]                 # backoff between the three attempts
    runs = store.con.execute("SELECT ok, error FROM collector_runs ORDER BY started_at").fetchall()
    assert runs == [(False, "HTTP 503 Service Unavailable (attempt 1 of 3; retrying)"),
                    (False, "HTTP 503 Service Unavailable (attempt 2 of 3; retrying)"), (True, None)]
    assert store.con.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == 2
    rows, unique = sample_counts(store)
    faults.stored(expected=2, unique=unique, rows=rows)      # 2 GPUs, one scrape


def test_a_target_failing_for_cycles_backs_off(cfg, store):
    from collectors.targets import ScrapeError

    def down(url, timeout):
        raise ScrapeError("connection refused (is the exporter running?)")

    t = Target(url="http://down:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    clock = [T0.timestamp()]
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=down), [t], 0)], interval_s=15, clock=lambda: clock[0])
    tried = []
    for _ in range(8):
        rep = sched.run_cycle()
        tried.append(rep.targets)
        clock[0] += 15
    assert tried == [1, 1, 0, 1, 0, 0, 0, 1]                  # after 2 failures: every 2, then every 4 intervals


def test_write_fails_twice_then_succeeds_and_nothing_is_lost(cfg, store, faults):
    texts = {0: dcgm_text(util=(10, 20)), 1: dcgm_text(util=(30, 40)), 2: dcgm_text(util=(50, 60))}
    cycle = [0]
    t = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    flaky_store = TimedStore(store, failures=2)
    sched = Scheduler(flaky_store, [(DcgmCollector(cfg, fetch=lambda u, to: texts[cycle[0]]), [t], 0)],
                      interval_s=15)
    for i in range(3):
        cycle[0] = i
        rep = sched.run_cycle(T0 + timedelta(seconds=15 * i))
        if i < 2:
            assert rep.write_error == "OSError: [Errno 28] No space left on device"
            assert sched.spool.stats.pending_batches == i + 1
    assert rep.write_error is None and sched.spool.stats.pending_batches == 0
    got = store.con.execute("SELECT ts, util_pct FROM device_samples ORDER BY ts, device_id").fetchall()
    assert [u for _, u in got] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert store.con.execute("SELECT count(*) FROM collector_runs").fetchall()[0][0] == 3
    sched.spool.put(Batch.of(samples=DcgmCollector(cfg).from_text(texts[0], t, T0, track=False).samples))
    sched.spool.flush(store.write_scrape)                      # a duplicate delivery changes nothing
    assert store.con.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == 6
    rows, unique = sample_counts(store)
    faults.tried(3)                                            # two failed writes and a re-delivery
    faults.stored(expected=6, unique=unique, rows=rows)      # 3 cycles x 2 GPUs


def test_collector_reopens_the_database_every_few_hours_and_loses_nothing(cfg, tmp_path, faults):
    """Reopening is the owner's "reopen" job (collectors/runtime.py add_store_jobs), run beside the cycles."""
    from collectors.jobs import JobRunner
    from collectors.runtime import add_store_jobs
    from collectors.scheduler import REOPEN_EVERY_S

    store = Store(tmp_path / "c.duckdb")
    t = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    sched = Scheduler(store, [(DcgmCollector(cfg, fetch=lambda u, to: dcgm_text(util=(10, 20))), [t], 0)],
                      interval_s=15)
    runner = JobRunner(store, clock=lambda: T0.timestamp())
    add_store_jobs(runner, store, interval_s=15)
    sched.run_cycle(T0)
    first = store.opened_at
    sched.run_cycle(T0 + timedelta(seconds=15))
    assert [r.job for r in runner.run_due(T0 + timedelta(seconds=15))] == ["release-memory"]
    assert store.opened_at == first                            # not yet
    sched.run_cycle(T0 + timedelta(seconds=30))
    runs = {r.job: r for r in runner.run_due(T0 + timedelta(seconds=REOPEN_EVERY_S))}
    assert runs["reopen"].ok and runs["reopen"].rows == 1
    assert store.opened_at > first                             # reopened after that cycle's writes
    sched.run_cycle(T0 + timedelta(seconds=45))
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM device_samples").fetchone()[0] == 8
        assert cur.execute("SELECT count(*) FROM collector_runs").fetchone()[0] == 4
        assert cur.execute("SELECT count(*) FROM job_runs WHERE job = 'reopen' AND ok").fetchone()[0] == 1
    rows, unique = sample_counts(store)
    faults.stored(expected=8, unique=unique, rows=rows)      # 4 cycles x 2 GPUs across the reopen
    store.close()


def test_spool_spills_to_disk_and_survives_a_restart(cfg, store, tmp_path, faults):
    t = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    col = DcgmCollector(cfg)
    spool = WriteSpool(tmp_path / "spool", max_memory_bytes=1)
    for i in range(3):
        s = col.from_text(dcgm_text(util=(i, i)), t, T0 + timedelta(seconds=15 * i), track=False)
        spool.put(Batch.of(samples=s.samples, devices=s.devices))
    assert spool.stats.pending_batches == 3 and spool.stats.memory_bytes == 0 and spool.stats.disk_bytes > 0
    del spool                                                  # the process dies before the store recovers
    again = WriteSpool(tmp_path / "spool")
    assert again.stats.pending_batches == 3 and again.stats.pending_rows == 6
    stored, err = again.flush(store.write_scrape)
    assert (stored, err) == (6, None) and again.stats.disk_bytes == 0
    assert not list((tmp_path / "spool").iterdir())
    got = store.con.execute("SELECT util_pct FROM device_samples ORDER BY ts, device_id").fetchall()
    assert [u for (u,) in got] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    rows, unique = sample_counts(store)
    faults.stored(expected=6, unique=unique, rows=rows)      # 3 spilled batches x 2 GPUs


def test_spool_drops_oldest_when_full_and_counts_it(cfg, tmp_path, caplog):
    t = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    col = DcgmCollector(cfg)
    batches = [col.from_text(dcgm_text(util=(i, i)), t, T0 + timedelta(seconds=15 * i), track=False)
               for i in range(4)]
    one = Batch.of(samples=batches[0].samples).nbytes
    mem_only = WriteSpool(None, max_memory_bytes=int(one * 2.5))
    for s in batches:
        mem_only.put(Batch.of(samples=s.samples))
    assert mem_only.stats.pending_batches == 2 and mem_only.stats.dropped_batches == 2
    assert mem_only.stats.dropped_rows == 4
    assert "dropped the oldest batch" in caplog.text
    store = Store()
    mem_only.flush(store.write_scrape)                         # the newest two survived
    assert [u for (u,) in store.con.execute(
        "SELECT DISTINCT util_pct FROM device_samples ORDER BY 1").fetchall()] == [2.0, 3.0]


def test_energy_counter_resets_never_give_negative_energy(cfg, store):
    t = Target(url="http://a:9400/metrics", source="f", kind="dcgm", site="sh-lingang", cluster="train-a")
    col = DcgmCollector(cfg)
    readings = [5_000_000, 5_600_000, 700_000, 1_000_000]       # mJ: the driver reloaded before the 3rd
    for i, mj in enumerate(readings):
        text = dcgm_text().replace("} 5000000", f"}} {mj}").replace("} 5000001", f"}} {mj}")
        s = col.from_text(text, t, T0 + timedelta(seconds=15 * i))
        store.write_scrape(samples=s.samples, devices=s.devices)
    got = [r[0] for r in store.con.execute(
        "SELECT energy_delta_j FROM device_samples WHERE device_id = 'GPU-0000' ORDER BY ts").fetchall()]
    assert got == [None, 600.0, 700.0, 300.0]
