"""History from an existing Prometheus: `HistoryImport` (collectors/prometheus.py) against
Debian's real `prometheus`, serving blocks written with its `promtool` from OpenMetrics text.

The history: three hosts of two GPUs each, 30 hours at 60 s, ending a little before the
test starts (step k is END - 60 k s); `util` follows a formula, and one facility meter reports
at the same steps. node-a names cluster train-a in its `cluster` label, node-b names cluster-x
and site sh-pudong (neither configured), node-c names neither. For the tracker: node-a's GPUs
count energy (300 J a step, the counter reset at k = 700), node-a GPU 1 reports XID 79 at
k = 500..509, node-c GPU 1 is missing at k = 300..304 (lost, then back), node-b's GPUs run in
namespace moonlake-train from k = 719 on. The source itself is in sh-lingang /
infer-b with `cluster_label = "cluster"`, `site_label = "site"`, `history_days = 1`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import collectors.prometheus as prom_mod
from collectors.prometheus import HistoryImport, PrometheusCollector, default_client, history_import_job
from collectors.targets import ScrapeError
from config import Source
from helpers import make_config
from prom_server import MISSING_REASON, PromServer, available, backfill, free_port, promtool_available
from queries import Store

UTC = timezone.utc
STEP_S = 60
STEPS = 30 * 60                                  # 30 h of history at 60 s
END = int(time.time()) // STEP_S * STEP_S - 120  # the newest sample, in the past
NOW = datetime.fromtimestamp(END + 1, UTC)      # the import's "first start"
HOSTS = {"node-a": {"cluster": "train-a"}, "node-b": {"cluster": "cluster-x", "site": "sh-pudong"}, "node-c": {}}
GPUS = 2

MISSING = range(300, 305)                         # node-c GPU 1 is absent at these steps
# history_days = 1: the samples at END - 60 k with END - 60 k > NOW - 86400 s = END + 1 - 86400,
# i.e. 60 k < 86399, k = 0..1439: 1440 steps of each GPU and of the meter
IMPORTED_STEPS = 1440
DEVICE_ROWS = 3 * GPUS * IMPORTED_STEPS - 5      # 3 hosts x 2 GPUs x 1440 = 8640, less node-c GPU 1's 5 = 8635
FACILITY_ROWS = IMPORTED_STEPS                   # 1440
ALL_ROWS = DEVICE_ROWS + FACILITY_ROWS           # 10075

pytestmark = pytest.mark.skipif(not (available() and promtool_available()), reason=MISSING_REASON)


def util(host: str, gpu: int, k: int) -> int:
    return (7 * k + 13 * gpu + len(host)) % 101


def energy_mj(k: int) -> int:
    """node-a's counter: 300 J a step from the oldest step, restarting at k = 700."""
    j = STEPS - 1 - k                            # steps since the oldest
    reset = STEPS - 1 - 700
    return 300_000 * (j if j < reset else j - reset)


def openmetrics() -> str:
    out = []
    families = {"DCGM_FI_DEV_GPU_UTIL": lambda h, g, k: util(h, g, k),
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": lambda h, g, k: energy_mj(k) if h == "node-a" else None,
                "DCGM_FI_DEV_XID_ERRORS": lambda h, g, k: (79 if k in range(500, 510) else 0)
                if (h, g) == ("node-a", 1) else None}
    for family, value in families.items():
        out.append(f"# TYPE {family} gauge")
        for host, extra in HOSTS.items():
            for g in range(GPUS):
                labels = {"gpu": str(g), "UUID": f"GPU-{host}-{g}", "Hostname": host,
                          "modelName": "NVIDIA H100 80GB HBM3", "job": "dcgm", "instance": f"{host}:9400", **extra}
                for newer in (False, True):       # node-b's namespace starts at k = 719: a second series
                    if newer and host != "node-b":
                        continue
                    text = ",".join(f'{k}="{v}"' for k, v in
                                    {**labels, **({"namespace": "moonlake-train"} if newer else {})}.items())
                    for k in reversed(range(STEPS)):
                        v = value(host, g, k)
                        if v is None or ((host, g) == ("node-c", 1) and k in MISSING):
                            continue
                        if host == "node-b" and newer != (k <= 719):
                            continue
                        out.append(f"{family}{{{text}}} {v} {END - STEP_S * k}")
    out.append("# TYPE dcim_power_watts gauge")
    out.extend(f'dcim_power_watts{{site="sh-lingang",meter="intake",scope="facility",job="dcim",'
               f'instance="dcim:9116"}} {1000 + k % 50} {END - STEP_S * k}' for k in reversed(range(STEPS)))
    out.append("# EOF")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    work = tmp_path_factory.mktemp("prom-history")
    tsdb = work / "tsdb"
    backfill(openmetrics(), tsdb)
    with PromServer(work, [], tsdb=tsdb) as server:
        yield server


def source(url: str, **options) -> Source:
    return Source.model_validate({"name": "central", "kind": "prometheus", "site": "sh-lingang",
                                  "cluster": "infer-b", "targets": [url], "mappings": ["dcgm", "facility"],
                                  "cluster_label": "cluster", "site_label": "site", "history_days": 1,
                                  **options})


@pytest.fixture(scope="module")
def cfg():
    return make_config()


class Counting:
    """The real client, counting the queries it is asked."""

    def __init__(self):
        self.queries = 0

    def __call__(self, url, timeout):
        real = default_client(url, timeout)
        outer = self

        class Client:
            def custom_query(self, query, params=None):
                outer.queries += 1
                return real.custom_query(query, params=params)

        return Client()


def make_job(cfg, store, src, *, client=None, **kw) -> HistoryImport | None:
    col = PrometheusCollector(cfg, src, client_factory=client or default_client)
    return history_import_job(col, store, src, now=NOW, **kw)


def run_to_end(job: HistoryImport, limit: int = 1000) -> list:
    results = []
    while job.status()["state"] != "done":
        results.append(job(NOW))
        assert len(results) < limit
    return results


def test_first_start_imports_history_days_into_the_labelled_clusters(prom, cfg):
    store = Store()
    job = make_job(cfg, store, source(prom.url))
    assert job.status()["state"] == "running" and job.status()["done"] == 0 and job.status()["total"] == 24.0
    results = run_to_end(job)
    with store.cursor() as cur:
        per_device = dict(cur.execute("SELECT device_id, count(*) FROM device_samples GROUP BY 1").fetchall())
        places = {r[0]: r[1:] for r in cur.execute("SELECT device_id, cluster, site FROM devices").fetchall()}
        sample_places = set(cur.execute("SELECT DISTINCT host, cluster, site FROM device_samples").fetchall())
        oldest, newest = cur.execute("SELECT min(ts), max(ts) FROM device_samples").fetchone()
        facility = cur.execute("SELECT count(*), min(power_w), max(power_w) FROM facility_samples").fetchone()
        one = cur.execute("SELECT util_pct FROM device_samples WHERE device_id = 'GPU-node-a-1' AND ts = ?",
                          [datetime.fromtimestamp(END - STEP_S * 10, UTC)]).fetchone()
    assert per_device == {f"GPU-{h}-{g}": IMPORTED_STEPS - (5 if (h, g) == ("node-c", 1) else 0)
                          for h in HOSTS for g in range(GPUS)}
    assert places["GPU-node-a-0"] == ("train-a", "sh-lingang")       # its cluster label
    assert places["GPU-node-b-1"] == ("cluster-x", "sh-pudong")      # labels naming what config lacks: kept
    assert places["GPU-node-c-0"] == ("infer-b", "sh-lingang")       # no labels: the source's own
    assert sample_places == {("node-a", "train-a", "sh-lingang"), ("node-b", "cluster-x", "sh-pudong"),
                             ("node-c", "infer-b", "sh-lingang")}
    assert oldest == datetime.fromtimestamp(END - STEP_S * (IMPORTED_STEPS - 1), UTC) and \
        newest == datetime.fromtimestamp(END, UTC)
    assert facility == (FACILITY_ROWS, 1000.0, 1049.0)               # 1000 + k % 50 over 1440 steps
    assert one == (util("node-a", 1, 10),)                           # (70 + 13 + 6) % 101 = 89
    assert util("node-a", 1, 10) == 89
    notes = {(n.key, n.params["value"]) for r in results for n in r.notes}
    assert notes == {("msg.prom.unknown_cluster", "cluster-x"), ("msg.prom.unknown_site", "sh-pudong")}
    st = job.status()
    assert (st["state"], st["done"], st["total"], st["samples"]) == ("done", 24.0, 24.0, ALL_ROWS)
    assert st["rate"] > 0 and st["error"] is None and st["source"] == "central"


def test_the_count_per_series_equals_prometheus_count_over_time(prom, cfg):
    store = Store()
    run_to_end(make_job(cfg, store, source(prom.url)))
    want = prom.query('sum by (UUID) (count_over_time(DCGM_FI_DEV_GPU_UTIL[86399s]))', at=END)
    assert len(want) == 3 * GPUS and sum(int(s["value"][1]) for s in want) == DEVICE_ROWS
    with store.cursor() as cur:
        got = dict(cur.execute("SELECT device_id, count(util_pct) FROM device_samples GROUP BY 1").fetchall())
    assert got == {s["metric"]["UUID"]: int(s["value"][1]) for s in want}


def test_array_windows_give_the_rows_of_the_per_sample_path(prom, cfg, monkeypatch):
    """The import reads windows as arrays; the live collector's per-sample path, on the same
    windows, gives the same samples, devices and events (energy deltas across a counter reset,
    an XID, a GPU lost and back, a namespace change)."""
    monkeypatch.setattr(prom_mod, "IMPORT_SAMPLE_BUDGET", 3000)      # several windows
    job = make_job(cfg, Store(), source(prom.url))
    arrays = job.importer
    per_sample = job._importer()
    per_sample.columnar = False
    since, until = datetime.fromisoformat(job.status()["from"]), datetime.fromisoformat(job.status()["to"])
    calls = []
    real = arrays._process_columnar

    def spy(*a, **kw):
        out = real(*a, **kw)
        calls.append(out is not None)
        return out

    arrays._process_columnar = spy
    got = [s for s, _ in arrays.iter_history(job.target, since, until)]
    want = [s for s, _ in per_sample.iter_history(job.target, since, until)]
    assert len(calls) == len(got) > 3 and all(calls)                  # every window read as arrays

    def rows(scrapes, table, key):
        out = [r for s in scrapes if getattr(s, table) is not None for r in getattr(s, table).to_pylist()]
        return sorted(out, key=lambda r: tuple(str(r[k]) for k in key))

    assert rows(got, "samples", ("device_id", "ts")) == rows(want, "samples", ("device_id", "ts"))
    assert rows(got, "devices", ("device_id", "last_seen")) == rows(want, "devices", ("device_id", "last_seen"))
    assert rows(got, "facility", ("ts",)) == rows(want, "facility", ("ts",))
    events = rows(got, "events", ("ts", "device_id", "kind"))
    assert events == rows(want, "events", ("ts", "device_id", "kind"))
    assert [(e["device_id"], e["kind"], e["code"], e["ts"]) for e in events] == [
        ("GPU-node-a-1", "xid", 79, datetime.fromtimestamp(END - STEP_S * 509, UTC)),    # the oldest step with 79
        ("GPU-node-c-1", "lost", None, datetime.fromtimestamp(END - STEP_S * 304, UTC)),
        ("GPU-node-c-1", "back", None, datetime.fromtimestamp(END - STEP_S * 299, UTC))]
    deltas = {r["ts"]: r["energy_delta_j"] for r in rows(got, "samples", ("device_id", "ts"))
              if r["device_id"] == "GPU-node-a-0"}
    assert deltas[datetime.fromtimestamp(END - STEP_S * 1439, UTC)] is None    # the first sample: no delta
    assert deltas[datetime.fromtimestamp(END - STEP_S * 1000, UTC)] == 300.0   # 300 J a step
    assert deltas[datetime.fromtimestamp(END - STEP_S * 700, UTC)] == 0.0      # the reset: the new reading, 0 J
    tenants = {r["tenant"] for r in rows(got, "samples", ("device_id", "ts")) if r["device_id"] == "GPU-node-b-0"}
    assert tenants == {None, "moonlake"}                                       # moonlake-train is moonlake's


def test_stopped_midway_a_restart_goes_on_where_it_stopped(prom, cfg, monkeypatch, tmp_path):
    monkeypatch.setattr(prom_mod, "IMPORT_SAMPLE_BUDGET", 3000)      # windows of about 3.8 h: several runs
    db = tmp_path / "import.duckdb"
    store = Store(db)
    first = make_job(cfg, store, source(prom.url), slice_s=0)       # each run: one window
    first(NOW)
    first(NOW)
    part = first.status()
    assert part["state"] == "running" and 0 < part["done"] < part["total"]
    store.close()

    store = Store(db)                                                # the owner restarts
    delivered = []

    def write(scrape):
        delivered.append(scrape.rows)
        return store.write_scrape(samples=scrape.samples, devices=scrape.devices, events=scrape.events,
                                  facility=scrape.facility)

    monkeypatch.setattr(prom_mod, "IMPORT_REOPEN_ROWS", 1)          # the file reopened after every run
    second = make_job(cfg, store, source(prom.url), write=write, slice_s=0)
    assert second.status()["done"] == part["done"]                   # the plan and progress came from kv
    opened = store.opened_at
    run_to_end(second)
    assert store.opened_at != opened
    with store.cursor() as cur:
        rows, unique = cur.execute("SELECT count(*), count(DISTINCT (device_id, ts)) FROM device_samples").fetchone()
    assert rows == unique == DEVICE_ROWS
    assert sum(delivered) == ALL_ROWS - part["samples"]              # nothing read twice
    assert second.status()["samples"] == ALL_ROWS


def test_a_restart_after_it_is_done_imports_nothing(prom, cfg):
    store = Store()
    run_to_end(make_job(cfg, store, source(prom.url)))
    counting = Counting()
    again = make_job(cfg, store, source(prom.url), client=counting)
    assert again.status()["state"] == "done"
    assert again(NOW).rows == 0 and counting.queries == 0


def test_a_source_that_already_holds_data_imports_nothing(prom, cfg):
    store = Store()
    live = PrometheusCollector(cfg, source(prom.url))
    tgt = make_job(cfg, Store(), source(prom.url, history_days=1)).target
    scrape = live.collect(tgt, datetime.fromtimestamp(END + 1, UTC))
    assert store.write_scrape(samples=scrape.samples, devices=scrape.devices) > 0
    job = make_job(cfg, store, source(prom.url))
    assert (job.status()["state"], job.status()["total"], job.status()["skipped"]) == ("done", 0.0, "stored")


def test_history_days_0_turns_it_off(cfg):
    store = Store()
    assert make_job(cfg, store, source("http://127.0.0.1:9", history_days=0)) is None
    assert store.get_kv(prom_mod.IMPORT_KEY + "central") is None


def test_an_unreachable_prometheus_fails_the_run_in_words(cfg):
    store = Store()
    job = make_job(cfg, store, source(f"http://127.0.0.1:{free_port()}", timeout_s=2.0))
    with pytest.raises(ScrapeError):
        job(NOW)
    st = job.status()
    assert st["state"] == "failed" and "not reachable" in st["error"]
    assert json.loads(st["error_msg"])[0]["key"] == "msg.prom_unreachable"
    plan = json.loads(store.get_kv(prom_mod.IMPORT_KEY + "central"))
    assert plan["done"] == plan["from"] and st["done"] == 0                # nothing counted as done
    assert datetime.fromisoformat(st["from"]) == NOW - timedelta(days=1)


def test_as_a_job_it_runs_until_done_and_records_each_run(prom, cfg):
    from collectors.jobs import JobRunner

    store = Store()
    job = make_job(cfg, store, source(prom.url), slice_s=0)        # a window a run
    runner = JobRunner(store)
    runner.add("history-import-central", job.schedule, job, now=NOW)
    runs = []
    at = NOW
    while runner.jobs["history-import-central"].due is not None:
        runs.extend(runner.run_due(at))
        at += timedelta(seconds=cfg.collection.interval_s)
        assert len(runs) < 100
    assert len(runs) >= 2 and all(r.ok for r in runs) and sum(r.rows for r in runs) == ALL_ROWS
    assert runs[-1].detail == "24.0 of 24.0 h"
    with store.cursor() as cur:
        recorded = cur.execute("SELECT count(*), sum(rows) FROM job_runs WHERE job = 'history-import-central'"
                               ).fetchall()[0]
    assert recorded == (len(runs), ALL_ROWS)
    again = JobRunner(store)                                        # a restart: nothing to run
    again.add("history-import-central", make_job(cfg, store, source(prom.url)).schedule,
              make_job(cfg, store, source(prom.url)), now=NOW)
    assert again.jobs["history-import-central"].due is None


def test_a_run_bounds_duckdbs_memory_and_checkpoints_each_window(prom, cfg, monkeypatch, tmp_path):
    """While a run writes, DuckDB's memory limit is IMPORT_MEMORY_LIMIT (below the configured
    1 GB) and each window is checkpointed into the file; after the run the configured limit is back."""
    monkeypatch.setattr(prom_mod, "IMPORT_SAMPLE_BUDGET", 3000)      # several windows
    store = Store(tmp_path / "import.duckdb", memory_limit="1GB")

    def limit() -> str:
        with store.cursor() as cur:
            return cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]

    configured = limit()
    seen, wal = [], []

    def write(scrape):
        seen.append(limit())
        wal.append(Path(f"{store.path}.wal").exists() and Path(f"{store.path}.wal").stat().st_size)
        return store.write_scrape(samples=scrape.samples, devices=scrape.devices, events=scrape.events,
                                  facility=scrape.facility)

    run_to_end(make_job(cfg, store, source(prom.url), write=write))
    assert len(seen) > 2 and set(seen) == {"366.2 MiB"}                 # 384 MB = 366.2 MiB, as DuckDB says it
    # the previous window's rows already in the file: the WAL holds only its progress in kv
    # (a few hundred bytes; without the checkpoints it held every window's rows since the last one)
    assert max(wal[1:]) < 2048
    assert limit() == configured
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM device_samples").fetchone()[0] == DEVICE_ROWS
    store.close()
