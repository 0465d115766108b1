"""PrometheusCollector: the pivot against the exporter parser, incremental delivery, events,
back-fill windows and error words on a fake client; then end to end against Debian's real
`prometheus` scraping the simulated floor (values, tenants, meters, back-fill, outage).

The simulated floor is deterministic, so what Prometheus stored for a sample time t can be
checked against what the simulator prints at t. Its server here reads a clock quantised to
whole seconds: a sample Prometheus stamps t was rendered at floor(t) or, when the scrape
crossed a second boundary on its way, at floor(t) + 1; one of the two must match exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

import collectors.prometheus as prom_mod
from collectors.dcgm import DcgmCollector
from collectors.exposition import parse_series
from collectors.facility import FacilityCollector
from collectors.prometheus import BackfillIncomplete, PrometheusCollector
from collectors.scheduler import Scheduler
from collectors.targets import ScrapeError, Target
from config import MappingFile, Source
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES
from prom_server import MISSING_REASON, PromServer, available, free_port, node_jobs, static_target
from helpers import FIXTURES, read

UTC = timezone.utc
SITE, CLUSTER = "sh-lingang", "train-a"
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
COMPARED = [c for c in SAMPLE_MEASURES if c != "energy_delta_j"] + ["tenant", "host", *SAMPLE_LABELS]


def source(url: str = "http://prometheus.test:9090", mappings=("dcgm", "facility"), timeout_s: float = 5.0,
           **kw) -> Source:
    return Source(name="prom-a", kind="prometheus", site=SITE, cluster=CLUSTER, targets=[url],
                  mappings=list(mappings), timeout_s=timeout_s, **kw)


def target(url: str = "http://prometheus.test:9090") -> Target:
    return Target(url=url, source="prom-a", kind="prometheus", site=SITE, cluster=CLUSTER)


# ------------------------------------------------------------------ a fake Prometheus

class FakeProm:
    """Answers `{__name__=~"A|B"}[Nms]` at `time` like /api/v1/query: raw samples in [time - N, time]."""

    SELECTOR = re.compile(r'^\{__name__=~"(.*)"\}\[(\d+)ms\]$')

    def __init__(self):
        self.series: dict[tuple, dict] = {}     # frozen labels -> {"metric", "values"}
        self.calls: list[tuple[str, float, float]] = []   # (query, lo, hi) in seconds
        self.fail: Exception | None = None
        self.max_window_s: float | None = None  # answer "too many samples" above this

    def add(self, metric: dict, t: float, value) -> None:
        s = self.series.setdefault(tuple(sorted(metric.items())), {"metric": dict(metric), "values": []})
        s["values"].append([round(t, 3), str(value)])
        s["values"].sort()

    def add_text(self, text: str, t: float, instance: str, job: str = "dcgm") -> None:
        """Every sample line of exporter text, as Prometheus would store it for a scrape at t."""
        lines = text.split("\n")
        series, _ = parse_series(text)
        for s in series:
            line = lines[s.lineno - 1].rstrip("\r")
            raw = line[line.rfind("}") + 1:].split()[0] if "{" in line else line.split()[1]
            self.add({"__name__": s.name, **s.labels, "instance": instance, "job": job}, t, raw)

    def custom_query(self, query: str, params: dict | None = None) -> list[dict]:
        if self.fail is not None:
            raise self.fail
        m = self.SELECTOR.match(query)
        assert m, query
        names = set(m.group(1).split("|"))
        hi = float(params["time"])
        lo = hi - int(m.group(2)) / 1000
        assert params["timeout"]
        self.calls.append((query, lo, hi))
        if self.max_window_s is not None and hi - lo > self.max_window_s:
            raise PrometheusApiClientException(
                "HTTP Status Code 422 (b'{\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"query "
                "processing would load too many samples into memory in query execution\"}')")
        out = []
        for s in self.series.values():
            if s["metric"]["__name__"] not in names:
                continue
            vals = [v for v in s["values"] if lo - 1e-9 <= v[0] <= hi + 1e-9]
            if vals:
                out.append({"metric": s["metric"], "values": vals})
        return out


def collector(cfg, fake: FakeProm | None = None, **kw) -> PrometheusCollector:
    src_kw = {k: kw.pop(k) for k in ("mappings", "host_from", "timeout_s") if k in kw}
    fake = fake or FakeProm()
    return PrometheusCollector(cfg, source(**src_kw), client_factory=lambda url, timeout: fake, **kw)


def rows_by_device(table) -> dict[str, dict]:
    return {r["device_id"]: r for r in table.to_pylist()}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    return a == b


# ------------------------------------------------------------------ pure: the pivot

@pytest.mark.parametrize("fixture, host", [
    ("dcgm4_k8s.txt", "gpu-node-017"), ("mig_h100.txt", "mig-node"), ("blank_sentinels.txt", "t4-infer-07"),
    ("lowercase_hostname.txt", "dgx-a100-04"), ("dcgm2_legacy.txt", "legacy-node"),
    ("escaped_labels.txt", "esc-node"), ("vgpu_guest.txt", "vdi-guest-12"),
    ("implausible_values.txt", "h100-train-031")])
def test_rows_match_the_exporter_parser(cfg, fixture, host):
    """Series read through Prometheus pivot into the same rows, devices and events as the exporter's text."""
    text = read(fixture)
    direct = DcgmCollector(cfg).from_text(
        text, Target(url=f"http://{host}:9400/metrics", source="prom-a", kind="dcgm", site=SITE, cluster=CLUSTER,
                     host=host), T0)
    fake = FakeProm()
    fake.add_text(text, T0.timestamp(), instance=f"{host}:9400")
    got = collector(cfg, fake, step_s=0).collect(target(), T0 + timedelta(seconds=1))

    want, have = rows_by_device(direct.samples), rows_by_device(got.samples)
    assert set(have) == set(want) and len(have) == got.samples.num_rows
    for dev, row in want.items():
        assert have[dev]["ts"] == T0
        for c in [*COMPARED, "energy_delta_j", "site", "cluster", "source"]:
            assert same(have[dev][c], row[c]), (dev, c, have[dev][c], row[c])
    want_dev, have_dev = rows_by_device(direct.devices), rows_by_device(got.devices)
    for dev, row in want_dev.items():
        for c, v in row.items():
            if c not in ("target", "first_seen", "last_seen"):
                assert same(have_dev[dev][c], v), (dev, c)
        assert have_dev[dev]["target"].startswith("http://prometheus.test:9090#dcgm/")
    assert event_keys(got) == event_keys(direct)
    assert got.notes == direct.notes           # implausible values: the same NULLs, the same note
    assert bool(got.notes) == (fixture == "implausible_values.txt")


@pytest.mark.parametrize("kind, fixture, host", [
    ("amd", "amd/mi300x_k8s.txt", "mi300x-node-03"), ("amd", "amd/mi300x_slurm.txt", "mi300x-node-07"),
    ("ascend", "ascend/npu_exporter_910b_k8s.txt", "ascend-node-01"),
    ("ascend", "ascend/npu_exporter_910a_host.txt", "ascend-node-02")])
def test_amd_and_ascend_through_prometheus_match_their_exporters(cfg, kind, fixture, host):
    """Label-selected fields (AMD clocks) and derived columns (Ascend free memory) work through PromQL too."""
    from collectors.registry import collector_class

    text = (FIXTURES.parent / fixture).read_text()
    tgt = Target(url=f"http://{host}:9100/metrics", source="prom-a", kind=kind, site=SITE, cluster=CLUSTER,
                 host=host)
    direct = collector_class(kind)(cfg, host_from_label=False).from_text(text, tgt, T0)
    fake = FakeProm()
    fake.add_text(text, T0.timestamp(), instance=f"{host}:9100", job=kind)
    got = collector(cfg, fake, step_s=0, mappings=(kind,), host_from="target").collect(
        target(), T0 + timedelta(seconds=1))
    want, have = rows_by_device(direct.samples), rows_by_device(got.samples)
    assert set(have) == set(want) and len(want) in (4, 8)
    filled = set()
    for dev, row in want.items():
        for c in COMPARED:
            assert same(have[dev][c], row[c]), (dev, c, have[dev][c], row[c])
            if row[c] is not None:
                filled.add(c)
    assert "mem_free_mib" in filled                        # Ascend: total - used; AMD: printed
    if kind == "amd":
        assert {"sm_clock_mhz", "mem_clock_mhz"} <= filled   # gpu_clock{clock_type="system"|"memory"}
    want_dev, have_dev = rows_by_device(direct.devices), rows_by_device(got.devices)
    for dev, row in want_dev.items():
        assert (have_dev[dev]["vendor"], have_dev[dev]["model"], have_dev[dev]["catalogue_model"]) == \
            (row["vendor"], row["model"], row["catalogue_model"])


NPU_TEXT = (FIXTURES.parent / "ascend" / "npu_exporter_910b_k8s.txt").read_text()
NPU_SERIES = [s for s in parse_series(NPU_TEXT)[0] if s.ts_ms is not None]
NPU_FIRST = min(s.ts_ms for s in NPU_SERIES)          # the fixture's refresh: 16 stamps within 4.6 s


def add_refresh(fake: FakeProm, start_ms: int) -> None:
    """One refresh of the npu-exporter's cache as a Prometheus honouring its stamps stores it:
    every series at its own time, the refresh's first stamp moved to start_ms."""
    for s in NPU_SERIES:
        fake.add({"__name__": s.name, **s.labels, "instance": "ascend-node-01:8082", "job": "npu"},
                 (s.ts_ms - NPU_FIRST + start_ms) / 1000, s.value)


def npu_rows(scrape) -> dict[tuple, dict]:
    return {(r["device_id"], r["ts"]): r for r in scrape.samples.to_pylist()} if scrape.samples else {}


def check_refreshes(cfg, rows: dict[tuple, dict], starts_ms: list[int]) -> None:
    """Every refresh arrived whole: 8 chips each, every chip at its earliest stamp of that
    refresh, with the values the exporter printed (as the direct scrape reads them)."""
    from collectors.ascend import AscendCollector

    tgt = Target(url="http://ascend-node-01:8082/metrics", source="t", kind="ascend", site=SITE, cluster=CLUSTER,
                 host="ascend-node-01")
    direct = rows_by_device(AscendCollector(cfg).from_text(NPU_TEXT, tgt, T0).samples)
    earliest: dict[str, int] = {}
    for s in NPU_SERIES:
        dev = next(d for d in direct if d.endswith(s.labels["vdie_id"]) or s.labels["vdie_id"] in d)
        earliest[dev] = min(earliest.get(dev, s.ts_ms), s.ts_ms)
    want = {(dev, datetime.fromtimestamp((t - NPU_FIRST + start) / 1000, UTC))
            for start in starts_ms for dev, t in earliest.items()}
    assert set(rows) == want and len(want) == 8 * len(starts_ms)
    for (dev, _), row in rows.items():
        for c in COMPARED:
            if c != "host":
                assert same(row[c], direct[dev][c]), (dev, c, row[c], direct[dev][c])


def test_an_exporter_stamping_each_series_itself_arrives_as_whole_scrapes(cfg):
    """Huawei's npu-exporter stamps each chip, and each metric family, with its own read time,
    and Prometheus keeps those stamps by default (honor_timestamps). One refresh of its cache
    is 16 instants within 4.6 s; they are one scrape, so all 8 chips arrive, each at its own
    time. The next refresh comes 15 s later."""
    fake = FakeProm()
    starts = [NPU_FIRST, NPU_FIRST + 15_000, NPU_FIRST + 30_000]
    for start in starts:
        add_refresh(fake, start)
    col = collector(cfg, fake, step_s=0, mappings=("ascend",), host_from="target")
    got = col.collect(target(), datetime.fromtimestamp(NPU_FIRST / 1000 + 60, UTC))
    check_refreshes(cfg, npu_rows(got), starts)
    assert got.notes == [] and got.lines_skipped == 0
    assert len({d["device_id"] for d in got.devices.to_pylist()}) == 8


def test_a_refresh_cut_by_the_read_window_waits_for_the_next_read(cfg):
    """A collect whose tick falls inside a refresh (its later chips are stamped after the tick)
    delivers nothing of that refresh; the next collect delivers it whole, once."""
    fake = FakeProm()
    starts = [NPU_FIRST, NPU_FIRST + 15_000, NPU_FIRST + 30_000]
    for start in starts:
        add_refresh(fake, start)
    col = collector(cfg, fake, step_s=0, mappings=("ascend",), host_from="target")
    first = col.collect(target(), datetime.fromtimestamp((starts[1] + 2_000) / 1000, UTC))   # mid-refresh
    check_refreshes(cfg, npu_rows(first), starts[:1])
    second = col.collect(target(), datetime.fromtimestamp(NPU_FIRST / 1000 + 60, UTC))
    check_refreshes(cfg, npu_rows(second), starts[1:])


def test_back_fill_windows_do_not_cut_a_refresh(cfg):
    """A back-fill reads in windows (the first is 300 s while the sample rate is unknown); a
    refresh straddling a window's end is read whole in the next window."""
    fake = FakeProm()
    since = NPU_FIRST - 12_000
    starts = [since + 12_000 + 15_000 * k for k in range(48)]
    assert any(st < since + 300_000 < st + 4_600 for st in starts)         # one refresh straddles 300 s
    for start in starts:
        add_refresh(fake, start)
    col = collector(cfg, fake, step_s=0, mappings=("ascend",), host_from="target")
    scrapes = col.backfill(target(), datetime.fromtimestamp(since / 1000, UTC),
                           datetime.fromtimestamp((starts[-1] + 10_000) / 1000, UTC))
    assert len(scrapes) >= 2
    rows: dict[tuple, dict] = {}
    for sc in scrapes:
        got = npu_rows(sc)
        assert not set(got) & set(rows)                                    # nothing twice
        rows.update(got)
    check_refreshes(cfg, rows, starts)


def test_back_to_back_refreshes_are_told_apart_by_their_series(cfg):
    """An exporter refreshing as often as a refresh takes (every 5 s, 4.6 s of stamps) leaves
    gaps under a second between refreshes: a series coming again starts the next scrape."""
    fake = FakeProm()
    starts = [NPU_FIRST + 5_000 * k for k in range(4)]
    for start in starts:
        add_refresh(fake, start)
    col = collector(cfg, fake, step_s=0, mappings=("ascend",), host_from="target")
    got = col.collect(target(), datetime.fromtimestamp(NPU_FIRST / 1000 + 60, UTC))
    check_refreshes(cfg, npu_rows(got), starts)


def event_keys(scrape) -> list[tuple]:
    return sorted((e["device_id"], e["kind"], e["code"]) for e in (scrape.events.to_pylist() if scrape.events else []))


def gpu(i: int, host: str = "node-a", **labels) -> dict:
    return {"gpu": str(i), "UUID": f"GPU-{host}-{i}", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": host,
            "instance": f"{host}:9400", "job": "dcgm", **labels}


def put(fake: FakeProm, t: float, host: str, gpus: dict[int, dict]) -> None:
    names = {"util": "DCGM_FI_DEV_GPU_UTIL", "xid": "DCGM_FI_DEV_XID_ERRORS",
             "energy": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}
    for i, vals in gpus.items():
        for k, name in names.items():
            fake.add({"__name__": name, **gpu(i, host)}, t, vals.get(k, 0))


def test_prometheus_job_label_is_not_the_hpc_job_and_instance_names_the_host(cfg):
    fake = FakeProm()
    labels = {k: v for k, v in gpu(0).items() if k != "Hostname"}        # no Hostname label at all
    fake.add({"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels, "namespace": "moonlake-train"}, T0.timestamp(), 50)
    fake.add({"__name__": "DCGM_FI_DEV_GPU_UTIL", **gpu(1, "node-b"), "hpc_job": "slurm-4711"}, T0.timestamp(), 60)
    got = rows_by_device(collector(cfg, fake).collect(target(), T0).samples)
    a, b = got["GPU-node-a-0"], got["GPU-node-b-1"]
    assert a["job"] is None and a["host"] == "node-a" and a["tenant"] == "moonlake"
    assert b["job"] == "slurm-4711" and b["host"] == "node-b"


def test_events_and_energy_deltas_per_exporter_scrape(cfg):
    """A GPU missing from its exporter's scrape is lost; an exporter Prometheus could not scrape is not."""
    fake = FakeProm()
    t1, t2 = T0.timestamp(), T0.timestamp() + 15
    put(fake, t1, "node-a", {0: {"util": 90, "energy": 1_000_000}, 1: {"util": 80, "energy": 5_000_000}})
    put(fake, t1 + 0.4, "node-b", {0: {"util": 10, "energy": 7_000_000}})
    put(fake, t2, "node-a", {0: {"util": 0, "xid": 79, "energy": 3_500_000}})     # GPU 1 gone; node-b down
    col = collector(cfg, fake, step_s=15)
    first = col.collect(target(), T0 + timedelta(seconds=5))
    assert first.events is None and first.samples.num_rows == 3
    second = col.collect(target(), T0 + timedelta(seconds=20))
    assert second.samples.num_rows == 1
    row = second.samples.to_pylist()[0]
    assert row["device_id"] == "GPU-node-a-0" and row["energy_delta_j"] == pytest.approx(2500.0)
    events = sorted((e["device_id"], e["kind"], e["code"], e["ts"].timestamp()) for e in second.events.to_pylist())
    assert events == [("GPU-node-a-0", "xid", 79, t2), ("GPU-node-a-1", "lost", None, t2)]


def test_a_gpu_gone_from_its_exporter_reads_lost_on_the_live_page(cfg, store):
    """The exporter behind Prometheus has no collector_runs of its own: a GPU missing from
    its scrapes is lost once the exporter's other GPUs were seen more than stale_s later; an
    exporter that Prometheus could not scrape is no_data, as a direct one would be."""
    fake = FakeProm()
    t1, t2 = T0.timestamp(), T0.timestamp() + 15
    put(fake, t1, "node-a", {0: {"util": 90}, 1: {"util": 80}})
    put(fake, t1 + 0.4, "node-b", {0: {"util": 10}})
    put(fake, t2, "node-a", {0: {"util": 70}})                       # GPU 1 gone; node-b down
    sched = Scheduler(store, [(collector(cfg, fake, step_s=15, mappings=("dcgm",)), [target()], 0)],
                      interval_s=15)
    store.register_targets([target().as_row()])
    sched.run_cycle(T0 + timedelta(seconds=5))
    state = store.query("heatmap", now=T0 + timedelta(seconds=6), stale_s=10, cluster=None)
    assert set(state["state"]) == {"ok"} and len(state) == 3
    sched.run_cycle(T0 + timedelta(seconds=20))
    sched.pool.shutdown()
    # GPU a-1's newest sample is 15 s older than a-0's, more than stale_s: its exporter left it out
    state = store.query("heatmap", now=T0 + timedelta(seconds=21), stale_s=10, cluster=None)
    assert dict(zip(zip(state["host"], state["gpu_index"]), state["state"])) == {
        ("node-a", 0): "ok", ("node-a", 1): "lost", ("node-b", 0): "no_data"}
    # with a longer stale_s, 15 s apart is within one exporter's spread of sample times
    state = store.query("heatmap", now=T0 + timedelta(seconds=21), stale_s=30, cluster=None)
    assert set(state["state"]) == {"ok"}
    # later, everything is stale; a-1 stays lost
    state = store.query("heatmap", now=T0 + timedelta(seconds=50), stale_s=10, cluster=None)
    assert dict(zip(zip(state["host"], state["gpu_index"]), state["state"])) == {
        ("node-a", 0): "no_data", ("node-a", 1): "lost", ("node-b", 0): "no_data"}


def test_collect_is_incremental_thinned_to_the_step_and_catches_late_scrapes(cfg):
    fake = FakeProm()
    base = T0.timestamp()
    for k in range(60):
        put(fake, base + k + 0.003 * (k % 3), "node-a", {0: {"util": k}})
        if k < 30:
            put(fake, base + k + 0.5, "node-b", {0: {"util": k}})
    now = [base + 31]
    col = collector(cfg, fake, step_s=5, clock=lambda: now[0])
    s1 = col.collect(target(), T0 + timedelta(seconds=31))
    late = base + 30.5                                   # node-b's scrape at 30.5 is committed after that read
    put(fake, late, "node-b", {0: {"util": 30}})
    now[0] = base + 61
    s2 = col.collect(target(), T0 + timedelta(seconds=61))
    s3 = col.collect(target(), T0 + timedelta(seconds=61))
    assert s3.rows == 0
    rows = s1.samples.to_pylist() + s2.samples.to_pylist()
    for dev in ("GPU-node-a-0", "GPU-node-b-0"):
        ts = [r["ts"].timestamp() for r in rows if r["device_id"] == dev]
        assert ts == sorted(set(ts))
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert gaps and all(4.5 <= g < 5.5 for g in gaps), gaps
    assert late in [r["ts"].timestamp() for r in s2.samples.to_pylist() if r["device_id"] == "GPU-node-b-0"]
    assert [r["ts"].timestamp() for r in rows if r["device_id"] == "GPU-node-a-0"][0] == base


def test_backfill_windows_follow_the_sample_budget_in_time_order(cfg, monkeypatch, store):
    monkeypatch.setattr(prom_mod, "SAMPLE_BUDGET", 400)
    fake = FakeProm()
    base = T0.timestamp()
    for k in range(180):                                 # 3 h at one scrape a minute, 2 GPUs x 3 metrics
        put(fake, base + 60 * k, "node-a", {0: {"util": k % 100, "energy": 1000 * k}, 1: {"util": 1}})
    col = collector(cfg, fake, mappings=("dcgm",))
    assert col.backfill(target(), T0, T0, step_s=60) == [] and fake.calls == []
    scrapes = col.backfill(target(), T0 - timedelta(seconds=1), T0 + timedelta(hours=3), step_s=60)
    windows = [(lo, hi) for _, lo, hi in fake.calls]
    assert len(windows) >= 3 and all(b[0] == pytest.approx(a[1], abs=1e-3) for a, b in zip(windows, windows[1:]))
    assert all(hi - lo <= 3600 for lo, hi in windows[1:])           # sized from the rate after the first
    ts = [r["ts"].timestamp() for s in scrapes if s.samples for r in s.samples.to_pylist()]
    assert ts == sorted(ts) and len(ts) == 360
    for s in scrapes:
        store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)
    deltas = store.con.execute("SELECT count(*), sum(energy_delta_j) FROM device_samples "
                               "WHERE device_id = 'GPU-node-a-0'").fetchone()
    assert deltas == (180, pytest.approx(179 * 1000 * 0.001))
    again = col.backfill(target(), T0 - timedelta(seconds=1), T0 + timedelta(hours=3), step_s=60)
    assert again and sum(s.rows for s in again) == 0


def test_a_window_prometheus_finds_too_big_is_halved(cfg):
    fake = FakeProm()
    for k in range(100):
        put(fake, T0.timestamp() + 30 * k, "node-a", {0: {"util": 1}})
    fake.max_window_s = 700
    scrapes = collector(cfg, fake, mappings=("dcgm",)).backfill(target(), T0 - timedelta(seconds=1),
                                                                T0 + timedelta(seconds=3000), step_s=0)
    assert sum(s.rows for s in scrapes) == 100
    windows = [hi - lo for _, lo, hi in fake.calls]
    big = next(i for i, w in enumerate(windows) if w > 700)
    assert windows[big + 1] == pytest.approx(windows[big] / 2, abs=1e-3)
    first_ok = next(i for i in range(big, len(windows)) if windows[i] <= 700)
    assert all(w <= 700 for w in windows[first_ok:])       # later windows start at the size that worked


def test_query_errors_and_unreachable_in_words(cfg):
    fake = FakeProm()
    col = collector(cfg, fake, mappings=("dcgm",))
    fake.fail = PrometheusApiClientException(
        "HTTP Status Code 400 (b'{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"invalid parameter "
        "\\\\\"query\\\\\": 1:2: parse error: unexpected character\"}')")
    with pytest.raises(ScrapeError) as e:
        col.collect(target(), T0)
    msg = str(e.value)
    assert "failed query {__name__=~\"DCGM_FI_DEV_GPU_UTIL|" in msg and "HTTP 400, bad_data" in msg
    assert "parse error: unexpected character" in msg
    fake.fail = requests.exceptions.ReadTimeout("read timed out")
    with pytest.raises(ScrapeError, match=r"Prometheus at http://prometheus.test:9090 not reachable: no answer "
                                          r"within 5 s"):
        col.collect(target(), T0)
    fake.fail = requests.exceptions.ConnectionError("HTTPConnectionPool: [Errno 111] Connection refused")
    with pytest.raises(ScrapeError, match="not reachable: connection refused"):
        col.collect(target(), T0)
    fake.fail = PrometheusApiClientException("HTTP Status Code 503 (b'Service Unavailable')")
    with pytest.raises(ScrapeError, match="not reachable: HTTP 503, Service Unavailable"):
        col.collect(target(), T0)
    fake.fail = ValueError("Expecting value: line 1 column 1 (char 0)")
    with pytest.raises(ScrapeError, match="not Prometheus JSON"):
        col.collect(target(), T0)


def test_a_backfill_that_fails_midway_keeps_what_it_read(cfg):
    fake = FakeProm()
    for k in range(3):
        put(fake, T0.timestamp() + 3600 * k + 10, "node-a", {0: {"util": k}})
    col = collector(cfg, fake, mappings=("dcgm",))
    it = col.iter_backfill(target(), T0, T0 + timedelta(hours=3), step_s=0)
    first = next(it)
    assert first.rows >= 1
    fake.fail = requests.exceptions.ConnectionError("Connection refused")
    with pytest.raises(ScrapeError):
        next(it)
    fake.fail = None
    col2 = collector(cfg, fake, mappings=("dcgm",))
    calls = []

    def flaky(query, params=None):
        calls.append(query)
        if len(calls) == 2:
            raise requests.exceptions.ConnectionError("Connection refused")
        return fake.custom_query(query, params)
    col2.client_factory = lambda url, timeout: type("C", (), {"custom_query": staticmethod(flaky)})()
    with pytest.raises(BackfillIncomplete) as e:
        col2.backfill(target(), T0, T0 + timedelta(hours=3), step_s=0)
    assert len(e.value.scrapes) == 1 and e.value.scrapes[0].rows >= 1


def test_default_client_has_a_timeout(cfg):
    """A Prometheus that accepts the connection and never answers costs one timeout, no retries."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)                                   # never accept()ed: the kernel queues, nobody answers
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        col = PrometheusCollector(cfg, source(url, mappings=("dcgm",), timeout_s=0.5))
        t0 = time.monotonic()
        with pytest.raises(ScrapeError, match=r"not reachable: no answer within 0.5 s"):
            col.collect(target(url), datetime.now(UTC))
        assert time.monotonic() - t0 < 1.5
        col.close()


# ------------------------------------------------------------------ real Prometheus

@dataclasses.dataclass
class Floorlive:
    cfg: object
    floor: object
    sim: object
    prom: PromServer
    hosts: list[str]
    started: datetime


def pick_hosts(cfg, floor, n: int = 3) -> list[str]:
    """Train-a hosts whose exporters answer for the next minutes, tenants' pods first."""
    now = time.time()
    tenants = cfg.tenant_for_namespace()
    up = [h.host for h in floor.hosts if h.cluster == CLUSTER
          and all(floor.exporter_up(h.host, now + d) for d in range(0, 301, 30))]
    with_tenant = [h for h in up if any(g.namespace in tenants for g in floor.gpu_states(h, now))]
    return (with_tenant + [h for h in up if h not in with_tenant])[:n]


@pytest.fixture(scope="module")
def live(cfg, tmp_path_factory):
    if not available():
        pytest.skip(MISSING_REASON)
    from simulator import Floor, SimulatorServer

    floor = Floor(cfg)
    floor.facility_text(SITE, time.time())              # the first meter reading sums the history: do it now
    hosts = pick_hosts(cfg, floor)
    sim = SimulatorServer(floor, clock=lambda: float(math.floor(time.time())))
    sim.start()
    started = datetime.now(UTC)
    server = PromServer(tmp_path_factory.mktemp("prom"), node_jobs(sim.base_url, hosts, [SITE]))
    try:
        server.start()
        server.wait_for_samples("count_over_time(up[1m]) >= 3", len(hosts) + 1)
        yield Floorlive(cfg, floor, sim, server, hosts, started)
    finally:
        server.stop()
        sim.stop()


class Reference:
    """What the simulator printed at a whole second, parsed by the direct collectors."""

    def __init__(self, live: Floorlive):
        self.live = live
        self.dcgm = DcgmCollector(live.cfg)
        self.fac = FacilityCollector(live.cfg)
        self.cache: dict = {}

    def device(self, host: str, sec: int, dev: str) -> dict | None:
        key = ("d", host, sec)
        if key not in self.cache:
            t = Target(url=f"http://{host}:9400/metrics", source="prom-a", kind="dcgm", site=SITE, cluster=CLUSTER,
                       host=host)
            s = self.dcgm.from_text(self.live.floor.node_text(host, float(sec)), t, T0, track=False)
            self.cache[key] = rows_by_device(s.samples)
        return self.cache[key].get(dev)

    def meter(self, sec: int, meter: str) -> dict:
        key = ("f", sec)
        if key not in self.cache:
            t = Target(url="x", source="prom-a", kind="facility", site=SITE)
            s = self.fac.from_text(self.live.floor.facility_text(SITE, float(sec)), t, T0)
            self.cache[key] = {r["meter"]: r for r in s.facility.to_pylist()}
        return self.cache[key][meter]


def matches(row: dict, ref: dict | None, columns) -> bool:
    return ref is not None and all(same(row[c], ref[c]) for c in columns)


def test_collect_matches_the_simulator_end_to_end(live):
    col = PrometheusCollector(live.cfg, source(live.prom.url), step_s=0)
    scrape = col.collect(target(live.prom.url), datetime.now(UTC))
    samples = scrape.samples.to_pylist()
    assert {r["host"] for r in samples} == set(live.hosts)
    assert len({r["device_id"] for r in samples}) >= 8 * len(live.hosts) - 1
    ref = Reference(live)
    for r in samples:
        sec = math.floor(r["ts"].timestamp())
        assert any(matches(r, ref.device(r["host"], s, r["device_id"]), COMPARED) for s in (sec, sec + 1)), r
    assert any(r["tenant"] for r in samples), "picked hosts run tenants' pods: attribution must show"
    meters = scrape.facility.to_pylist()
    assert {m["meter"]: (m["scope"], m["pue_category"]) for m in meters} == {
        m.meter: (m.scope, m.category) for m in live.cfg.energy.meters}
    cols = ["site", "scope", "pue_category", "power_w", "energy_kwh"]
    for m in meters:
        sec = math.floor(m["ts"].timestamp())
        assert any(matches(m, ref.meter(s, m["meter"]), cols) for s in (sec, sec + 1)), m
    col.close()


def test_backfill_stores_each_scrape_once(live, store):
    prom = live.prom
    prom.wait_for_samples("count_over_time(up[1m]) >= 10", len(live.hosts) + 1)
    until = datetime.now(UTC)
    since = live.started - timedelta(seconds=1)
    col = PrometheusCollector(live.cfg, source(prom.url), step_s=0)
    scrapes = col.backfill(target(prom.url), since, until, step_s=1)
    stored = sum(store.write_scrape(samples=s.samples, devices=s.devices, events=s.events, facility=s.facility)
                 for s in scrapes)
    # what Prometheus holds: one GPU_UTIL sample per GPU per scrape in (since, until]
    window_ms = round((until - since).total_seconds() * 1000)
    held = prom.query(f"count_over_time(DCGM_FI_DEV_GPU_UTIL[{window_ms}ms])", at=until.timestamp())
    assert stored == sum(int(s["value"][1]) for s in held) > 7 * len(live.hosts) * 8
    dup = store.con.execute("SELECT count(*) - count(DISTINCT (device_id, ts)) FROM device_samples").fetchone()[0]
    assert dup == 0
    meters = store.con.execute("SELECT count(*), count(DISTINCT ts) FROM facility_samples").fetchone()
    n = len(live.cfg.energy.meters)                  # every simulated meter once per scrape
    assert n == 7 and meters[0] == n * meters[1] >= n * 8
    # energy deltas follow the counters in time order
    bad = store.con.execute("""
        SELECT count(*) FROM (
          SELECT energy_delta_j, energy_j - lag(energy_j) OVER (PARTITION BY device_id ORDER BY ts) AS d
          FROM device_samples) WHERE d >= 0 AND abs(energy_delta_j - d) > 1e-6""").fetchone()[0]
    assert bad == 0
    # again: nothing new, from the same collector or a restarted one
    assert sum(s.rows for s in col.backfill(target(prom.url), since, until, step_s=1)) == 0
    again = PrometheusCollector(live.cfg, source(prom.url), step_s=0).backfill(target(prom.url), since, until, 1)
    assert sum(s.rows for s in again) == stored + meters[0]
    assert sum(store.write_scrape(samples=s.samples, devices=s.devices, facility=s.facility) for s in again) == 0
    assert store.con.execute("SELECT count(*) FROM facility_samples").fetchone()[0] == meters[0]
    # live collection continues after the back-filled range, without overlap
    time.sleep(1.2)
    nxt = col.collect(target(prom.url), datetime.now(UTC))
    assert nxt.rows > 0 and min(r["ts"] for r in nxt.samples.to_pylist()) > until - timedelta(seconds=1.5)
    assert store.write_scrape(samples=nxt.samples) == nxt.samples.num_rows


def test_prometheus_down_at_start_then_back(live, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    col = PrometheusCollector(live.cfg, source(url, timeout_s=2.0), step_s=0)
    t0 = time.monotonic()
    with pytest.raises(ScrapeError, match=rf"Prometheus at {url} not reachable: connection refused"):
        col.collect(target(url), datetime.now(UTC))
    assert time.monotonic() - t0 < 3.0
    with PromServer(tmp_path, node_jobs(live.sim.base_url, live.hosts[:1], []), port=port):
        assert col.collect(target(url), datetime.now(UTC)).rows == 0      # up, nothing scraped yet
        deadline = time.monotonic() + 20
        got = 0
        while got == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            got = col.collect(target(url), datetime.now(UTC)).rows
        assert got > 0


def test_a_broken_mapping_names_the_query_and_prometheus_error(live):
    cfg = live.cfg
    broken = MappingFile.model_validate({"fields": {"bad(name": {"column": "util_pct"}}, "labels": {"uuid": ["UUID"]}})
    cfg2 = dataclasses.replace(cfg, mappings={**cfg.mappings, "broken": broken})
    col = PrometheusCollector(cfg2, source(live.prom.url, mappings=("broken",)))
    with pytest.raises(ScrapeError) as e:
        col.collect(target(live.prom.url), datetime.now(UTC))
    msg = str(e.value)
    assert 'failed query {__name__=~"bad(name"}' in msg and "HTTP 400, bad_data" in msg
    assert "error parsing regexp" in msg


def test_concurrent_backfill_and_collect_deliver_each_sample_once(live, store):
    col = PrometheusCollector(live.cfg, source(live.prom.url, mappings=("dcgm",)), step_s=0)
    tg = target(live.prom.url)
    since = live.started - timedelta(seconds=1)
    out, errors = [], []

    def run():
        try:
            out.extend(col.iter_backfill(tg, since, datetime.now(UTC), step_s=0))
        except Exception as exc:  # surfaced below
            errors.append(exc)
    th = threading.Thread(target=run)
    th.start()
    for _ in range(3):
        out.append(col.collect(tg, datetime.now(UTC)))
    th.join()
    assert not errors
    rows = [(r["device_id"], r["ts"]) for s in out if s.samples for r in s.samples.to_pylist()]
    assert rows and len(rows) == len(set(rows))


def test_a_long_gap_without_data_does_not_hold_collection_back(cfg):
    """Prometheus itself was down for hours: the empty hours are read once, then collection moves on."""
    fake = FakeProm()
    base = T0.timestamp()
    put(fake, base, "node-a", {0: {"util": 1}})
    col = collector(cfg, fake, mappings=("dcgm",), step_s=0)
    assert col.collect(target(), T0 + timedelta(seconds=1)).rows == 1
    resumed = base + 10 * 3600
    for k in range(30):
        put(fake, resumed + k, "node-a", {0: {"util": 2}})
    rows, n = 0, 0
    while rows < 30 and n < 10:
        n += 1
        rows += col.collect(target(), T0 + timedelta(seconds=10 * 3600 + 30)).rows
    assert rows == 30 and n <= 4
    calls = len(fake.calls)
    assert col.collect(target(), T0 + timedelta(seconds=10 * 3600 + 31)).rows == 0
    assert len(fake.calls) == calls + 1


def test_npu_exporter_stamps_through_a_real_prometheus_arrive_whole(tmp_path):
    """Debian's Prometheus, with its default honor_timestamps, scrapes a simulated npu-exporter
    that stamps each chip with its read time (chip 0 0.7 s before chip 7). Every scrape the
    collector delivers holds all 8 chips, each at its own time, with the values the simulator
    printed for that page."""
    if not available():
        pytest.skip(MISSING_REASON)
    import config as config_mod
    from collectors.ascend import AscendCollector
    from simulator import Floor, SimulatorServer
    from simulator.exporter import ASCEND_CHIP_READ_MS

    mixed = config_mod.load(config_mod.PROJECT_ROOT / "config" / "examples" / "mixed-fleet")
    floor = Floor(mixed)
    now = time.time()
    host = next(h for h in floor.hosts if h.kind == "ascend"
                and all(floor.exporter_up(h.host, now + d) and len(floor.gpu_states(h.host, now + d)) == h.n_gpus
                        for d in range(0, 121, 5)))
    with SimulatorServer(floor, clock=lambda: float(math.floor(time.time()))) as sim:
        address = sim.base_url.split("//", 1)[1]
        jobs = [{"job_name": "npu", "static_configs": [static_target(address, f"/nodes/{host.host}/metrics",
                                                                     f"{host.host}:8082")]}]
        with PromServer(tmp_path, jobs) as prom:
            prom.wait_for_samples("count_over_time(npu_chip_info_utilization[1m]) >= 4", 8)
            # thinned to one scrape a second: a chip's stamp taken for a scrape would leave 1 chip of 8
            col = PrometheusCollector(mixed, source(prom.url, mappings=("ascend",), host_from="target"), step_s=1)
            got = col.collect(target(prom.url), datetime.now(UTC))
            col.close()
    # the tracker saw whole scrapes: no chip reads as lost from the scrape of another
    assert [e for e in (got.events.to_pylist() if got.events else []) if e["kind"] == "lost"] == []
    index = {d["device_id"]: d["gpu_index"] for d in got.devices.to_pylist()}
    pages: dict[int, dict[str, dict]] = {}
    for r in got.samples.to_pylist():
        page_ms = round(r["ts"].timestamp() * 1000) + (7 - index[r["device_id"]]) * ASCEND_CHIP_READ_MS
        assert page_ms % 1000 == 0, r                    # the chip's own stamp, not the scrape's
        pages.setdefault(page_ms // 1000, {})[r["device_id"]] = r
    assert len(pages) >= 3
    tgt = Target(url=f"http://{host.host}:8082/metrics", source="prom-a", kind="ascend", site=SITE, cluster=CLUSTER,
                 host=host.host)
    direct = AscendCollector(mixed, host_from_label=False)
    for sec, rows in pages.items():
        assert len(rows) == 8, (sec, sorted(index[d] for d in rows))
        want = rows_by_device(direct.from_text(floor.node_text(host.host, float(sec)), tgt, T0, track=False).samples)
        for dev, row in rows.items():
            for c in ("util_pct", "mem_used_mib", "mem_free_mib", "power_w", "temp_c", "health", "namespace", "pod"):
                assert same(row[c], want[dev][c]), (sec, dev, c, row[c], want[dev][c])
