"""History from an existing Prometheus: `HistoryImport` (collectors/prometheus.py) against
Debian's real `prometheus`, serving blocks written with its `promtool` from OpenMetrics text.

The history: three hosts of two GPUs each, 30 hours at 60 s, ending a little before the
test starts; `util` and `power` follow a formula, and one facility meter reports at the same
steps. node-a names cluster train-a in its `cluster` label, node-b names cluster-x and site
sh-pudong (neither configured), node-c names neither. The source itself is in sh-lingang /
infer-b with `cluster_label = "cluster"`, `site_label = "site"`, `history_days = 1`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

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

# history_days = 1: the samples at END - 60 k with END - 60 k > NOW - 86400 s = END + 1 - 86400,
# i.e. 60 k < 86399, k = 0..1439: 1440 steps of each GPU and of the meter
IMPORTED_STEPS = 1440
DEVICE_ROWS = 3 * GPUS * IMPORTED_STEPS          # 3 hosts x 2 GPUs x 1440 = 8640
FACILITY_ROWS = IMPORTED_STEPS                   # 1440
ALL_ROWS = DEVICE_ROWS + FACILITY_ROWS           # 10080

pytestmark = pytest.mark.skipif(not (available() and promtool_available()), reason=MISSING_REASON)


def util(host: str, gpu: int, k: int) -> int:
    return (7 * k + 13 * gpu + len(host)) % 101


def openmetrics() -> str:
    out = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    for host, extra in HOSTS.items():
        for g in range(GPUS):
            labels = {"gpu": str(g), "UUID": f"GPU-{host}-{g}", "Hostname": host,
                      "modelName": "NVIDIA H100 80GB HBM3", "job": "dcgm", "instance": f"{host}:9400", **extra}
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.extend(f"DCGM_FI_DEV_GPU_UTIL{{{text}}} {util(host, g, k)} {END - STEP_S * k}"
                       for k in reversed(range(STEPS)))
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
    assert per_device == {f"GPU-{h}-{g}": IMPORTED_STEPS for h in HOSTS for g in range(GPUS)}
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
    want = prom.query('count_over_time(DCGM_FI_DEV_GPU_UTIL[86399s])', at=END)
    assert len(want) == 3 * GPUS and {int(s["value"][1]) for s in want} == {IMPORTED_STEPS}
    with store.cursor() as cur:
        got = dict(cur.execute("SELECT device_id, count(util_pct) FROM device_samples GROUP BY 1").fetchall())
    assert got == {s["metric"]["UUID"]: int(s["value"][1]) for s in want}


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

    second = make_job(cfg, store, source(prom.url), write=write)
    assert second.status()["done"] == part["done"]                   # the plan and progress came from kv
    run_to_end(second)
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
