"""The simulator serves AMD and Ascend clusters in their vendors' exporter formats.

config/examples/mixed-fleet has two (small) H100 clusters, an Ascend 910B and an
AMD MI300X cluster on one site. A cluster whose model the catalogue lists under
vendor "amd" or "huawei" is served as the AMD Device Metrics Exporter or the
Ascend npu-exporter would print it, from the same GpuState values the floor
computes for every node; the pages must parse through the matching collector
to the right vendor, model and values, and the runtime (live and back-fill)
must store all three vendors. Times are anchored at fixed instants where every
exporter answers and every GPU is on the bus, so each run checks the same floor.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

import config
from collectors.ascend import AscendCollector
from collectors.amd import AmdCollector
from collectors.registry import collector_class
from collectors.runtime import Runtime
from collectors.targets import Target, fetch
from queries import Store
from simulator import Floor, GpuState, SimulatorServer, render_amd, render_ascend
from simulator.exporter import ASCEND_CHIP_READ_MS, go_float, vendor_health
from helpers import T_REF, backfill_job, calm_instant, wait_for

UTC = timezone.utc
MIXED = config.PROJECT_ROOT / "config" / "examples" / "mixed-fleet"
VENDOR_OF_KIND = {"dcgm": "nvidia", "amd": "amd", "ascend": "huawei"}
CATALOGUE_OF_KIND = {"dcgm": "H100-SXM", "amd": "MI300X", "ascend": "Ascend-910B"}


@pytest.fixture(scope="module")
def mixed() -> config.Config:
    return config.load(MIXED)


@pytest.fixture(scope="module")
def floor(mixed) -> Floor:
    return Floor(mixed)


def host_of(floor: Floor, kind: str, busy: bool = True, t: float = T_REF) -> str:
    """A host of that exporter kind, preferably one with a GPU at work at t."""
    hosts = [h.host for h in floor.hosts if h.kind == kind]
    if busy:
        for h in hosts:
            if any(s.util_pct > 0 for s in floor.gpu_states(h, t)):
                return h
    return hosts[0]


def target_for(t, kind: str) -> Target:
    return Target(url=t.url, source="simulator", kind=kind, site=t.site, cluster=t.cluster, host=t.host)


def rows(table) -> dict[str, dict]:
    return {r["device_id"]: r for r in table.to_pylist()}


# ------------------------------------------------------------------ the example centre and the layout

def test_mixed_fleet_example_loads_with_the_package_catalogue_and_mappings(mixed):
    assert mixed.directory == MIXED.resolve() and mixed.simulated
    assert not (MIXED / "accelerators.toml").exists() and not (MIXED / "mappings").exists()
    assert {"dcgm", "amd", "ascend", "facility"} <= set(mixed.mappings)
    got = {c.id: (mixed.catalogue.lookup(c.model).id, mixed.catalogue.lookup(c.model).vendor, c.nodes * c.gpus_per_node)
           for c in mixed.clusters}
    assert got == {"train-a": ("H100-SXM", "nvidia", 64), "infer-b": ("H100-SXM", "nvidia", 64),
                   "train-910b": ("Ascend-910B", "huawei", 32), "infer-mi300": ("MI300X", "amd", 32)}
    assert len({s.id for s in mixed.sites}) == 1 and mixed.database.path == "data/mixed-fleet.duckdb"


def test_each_cluster_serves_its_vendors_exporter(floor, cfg):
    kinds = {}
    for h in floor.hosts:
        kinds.setdefault(h.cluster, set()).add(h.kind)
    assert kinds == {"train-a": {"dcgm"}, "infer-b": {"dcgm"}, "train-910b": {"ascend"}, "infer-mi300": {"amd"}}
    server = SimulatorServer(floor)
    by_kind = {}
    for t in server.targets():
        by_kind[t.kind] = by_kind.get(t.kind, 0) + 1
    assert by_kind == {"dcgm": 16, "ascend": 4, "amd": 4, "facility": 1}
    # the default centre is all NVIDIA: every node still serves dcgm-exporter text
    assert {h.kind for h in Floor(cfg).hosts} == {"dcgm"}


# ------------------------------------------------------------------ pages over HTTP, through the collectors

def test_pages_of_every_kind_parse_to_the_right_vendor_model_and_values(floor, mixed):
    t = calm_instant(floor)
    ts = datetime.fromtimestamp(t, UTC)
    chosen = {kind: host_of(floor, kind, t=t) for kind in VENDOR_OF_KIND}
    with SimulatorServer(floor, clock=lambda: t) as server:
        targets = {tg.kind: tg for tg in server.targets() if tg.kind != "facility" and tg.host == chosen[tg.kind]}
        assert set(targets) == {"dcgm", "amd", "ascend"}
        for kind, tg in targets.items():
            text = fetch(tg.url, 5.0)
            families = {f.name for f in text_string_to_metric_families(text)}   # valid exposition text
            scrape = collector_class(kind)(mixed).from_text(text, target_for(tg, kind), ts)
            assert scrape.lines_skipped == 0 and scrape.issues == []
            states = {s.gpu_index: s for s in floor.gpu_states(tg.host, t)}
            devs = rows(scrape.devices)
            assert len(devs) == len(states) == 8
            for d in devs.values():
                assert (d["vendor"], d["catalogue_model"], d["host"]) == \
                    (VENDOR_OF_KIND[kind], CATALOGUE_OF_KIND[kind], tg.host), kind
                assert d["model"] == mixed.cluster(tg.cluster).model
                assert d["mem_total_mib"] == states[d["gpu_index"]].fb_free_mib + states[d["gpu_index"]].fb_used_mib
            samples = {r["device_id"]: r for r in scrape.samples.to_pylist()}
            for dev, d in devs.items():
                s, r = states[d["gpu_index"]], samples[dev]
                assert (r["util_pct"], r["mem_used_mib"], r["mem_free_mib"]) == \
                    (s.util_pct, s.fb_used_mib, s.fb_free_mib)
                assert (r["temp_c"], r["mem_temp_c"], r["sm_clock_mhz"]) == (s.gpu_temp_c, s.mem_temp_c, s.sm_clock_mhz)
                assert r["namespace"] == s.namespace and r["pod"] == s.pod
                if kind == "amd":
                    assert {"gpu_gfx_activity", "gpu_energy_consumed", "gpu_health", "gpu_clock"} <= families
                    assert dev == s.uuid[4:] and r["power_w"] == round(s.power_w)
                    assert r["energy_j"] == pytest.approx(s.energy_mj / 1000, rel=1e-12)    # printed in uJ
                    assert r["tensor_active"] == pytest.approx(s.tensor_active, abs=5e-5)
                    assert r["health"] == vendor_health(s) and r["ts"] == ts
                elif kind == "ascend":
                    assert {"npu_chip_info_utilization", "npu_chip_info_hbm_used_memory",
                            "machine_npu_nums"} <= families
                    assert r["power_w"] == pytest.approx(round(s.power_w, 1), abs=1e-4)     # float32, one decimal
                    assert r["tensor_active"] == pytest.approx(round(s.tensor_active * 100) / 100)
                    assert r["energy_j"] is None and r["health"] == vendor_health(s)
                    # each chip at its own read time (by id), the last one at the page's time (ms)
                    read_ms = (len(states) - 1 - d["gpu_index"]) * ASCEND_CHIP_READ_MS
                    assert r["ts"] == ts - timedelta(milliseconds=read_ms)
                    assert len(dev) == 44 and dev.count("-") == 4                     # a vdie_id
                else:
                    assert r["power_w"] == s.power_w and r["energy_j"] == pytest.approx(s.energy_mj / 1000)


def test_amd_energy_counter_is_microjoules_and_integrates_power(floor, mixed):
    host = host_of(floor, "amd")
    t0 = calm_instant(floor)
    t1 = t0 + 60
    assert floor.exporter_up(host, t1)
    col = AmdCollector(mixed)
    tg = Target(url=f"http://sim/nodes/{host}/metrics", source="simulator", kind="amd", site="sh-lingang",
                cluster="infer-mi300", host=host)
    col.from_text(floor.node_text(host, t0), tg, datetime.fromtimestamp(t0, UTC))
    second = rows(col.from_text(floor.node_text(host, t1), tg, datetime.fromtimestamp(t1, UTC)).samples)
    before = {s.gpu_index: s for s in floor.gpu_states(host, t0)}
    after = {s.gpu_index: s for s in floor.gpu_states(host, t1)}
    for r in second.values():
        g = next(i for i, s in after.items() if s.uuid[4:] == r["device_id"])
        expected = (after[g].energy_mj - before[g].energy_mj) / 1000
        assert r["energy_delta_j"] == pytest.approx(expected, abs=1e-3)
        # about 60 s of the power the exporter shows (the counter is noise-free, readings are not)
        assert r["energy_delta_j"] == pytest.approx(60 * (before[g].power_w + after[g].power_w) / 2, rel=0.15)


def test_ascend_pages_carry_the_read_time_in_milliseconds(floor):
    host = host_of(floor, "ascend")
    t = calm_instant(floor) + 0.25
    text = floor.node_text(host, t)
    stamped = [line for line in text.splitlines() if line.startswith("npu_chip_info_")]
    # each chip at the time the exporter read it: chip 7 at the page's time, chip 0 0.7 s before
    for line in stamped:
        chip = int(re.search(r'[{,]id="(\d+)"', line).group(1))
        assert line.endswith(f" {int(t * 1000) - (7 - chip) * ASCEND_CHIP_READ_MS}"), line
    assert len(stamped) > 8
    assert "\nmachine_npu_nums 8\n" in text                      # a node-level gauge has no timestamp


def test_exporters_fail_in_their_own_words_during_outages(floor):
    wanted = {"amd", "ascend"}
    kind_of = {h.host: h.kind for h in floor.hosts}
    found = {}
    for e in floor.events(T_REF - 30 * 86400, T_REF):
        if e["kind"] == "exporter_down" and e["mode"] == "503" and kind_of[e["host"]] in wanted - set(found):
            found[kind_of[e["host"]]] = e
    assert set(found) == wanted
    for kind, e in found.items():
        with SimulatorServer(floor, clock=lambda e=e: e["start"] + 1) as server:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{server.base_url}/nodes/{e['host']}/metrics", timeout=5)
            body = err.value.read().decode()
            assert err.value.code == 503 and "DCGM" not in body
            assert ("gpuagent" if kind == "amd" else "dcmi") in body


# ------------------------------------------------------------------ renderers

def _state(**kw) -> GpuState:
    base = dict(host="node-x", gpu_index=0, uuid="GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
                pci_bus_id="00000000:1B:00.0",
                model_name="AMD Instinct MI300X OAM", util_pct=55, gr_active=0.6, sm_active=0.5, tensor_active=0.3125,
                dram_active=0.4, fb_used_mib=100000, fb_free_mib=96592, power_w=512.4, energy_mj=123456789,
                gpu_temp_c=70, mem_temp_c=66, sm_clock_mhz=2100, mem_clock_mhz=1300, throttle_reasons=0, xid=0,
                namespace=None, pod=None, container=None)
    base.update(kw)
    return GpuState(**base)


@pytest.mark.parametrize("xid, remap_failed, health", [(0, 0, 1), (13, 0, 1), (79, 0, 0), (48, 0, 0), (0, 1, 0)])
def test_vendor_health_follows_fatal_xids_and_failed_remaps(mixed, xid, remap_failed, health):
    s = _state(xid=xid, row_remap_failure=remap_failed)
    assert vendor_health(s) == health
    tg = Target(url="http://node-x:5000/metrics", source="t", kind="amd", site="sh-lingang", host="node-x")
    amd = rows(AmdCollector(mixed).from_text(render_amd([s]), tg, datetime(2026, 11, 1, tzinfo=UTC)).samples)
    assert next(iter(amd.values()))["health"] == health
    npu = _state(xid=xid, row_remap_failure=remap_failed, model_name="910B3-Ascend-V1")
    text = render_ascend([npu], timestamp_ms=1793491200000)
    got = rows(AscendCollector(mixed).from_text(text, tg, datetime(2026, 11, 1, tzinfo=UTC)).samples)
    assert next(iter(got.values()))["health"] == health
    assert ("npu_chip_info_error_code{" in text) and ((" 2.162169857e+09 " in text) == (health == 0))   # 0x80E01801


def test_rendered_labels_are_sorted_and_families_follow_the_go_client():
    s = _state(namespace="cs-inference", pod="chat-0", container="vllm")
    amd = render_amd([s, _state(gpu_index=1, uuid="GPU-1a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")])
    names = [line.split(" ")[2] for line in amd.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names) and "gpu_prof_tensor_active_percent" in names
    for line in amd.splitlines():
        if not line.startswith("#"):
            labels = [p.split("=", 1)[0] for p in line[line.index("{") + 1:line.rindex("}")].split('",')]
            assert labels == sorted(labels), line
    assert 'card_model="102-G30211-0C",card_series="AMD Instinct MI300X OAM"' in amd
    assert "} 1.23456789e+11\n" in amd                        # 123456789 mJ = 1.23456789e+11 uJ, Go's %g
    npu = render_ascend([_state(model_name="910B3-Ascend-V1", power_w=367.2)], timestamp_ms=1793491200123)
    assert "} 367.20001220703125 1793491200123\n" in npu       # float32, as the exporter keeps power
    assert 'npu_chip_info_name{container_name="",id="0",name="910B3-Ascend-V1",' in npu


@pytest.mark.parametrize("value, text", [
    (0, "0"), (1, "1"), (196592, "196592"), (999999, "999999"), (1e6, "1e+06"), (2776148269, "2.776148269e+09"),
    (0.5, "0.5"), (0.0001, "0.0001"), (1e-05, "1e-05"), (-2.5e8, "-2.5e+08"),
    (367.20001220703125, "367.20001220703125"),
    (46251098841600, "4.62510988416e+13"), (123.25, "123.25"),
])
def test_go_float_prints_values_as_client_golang_does(value, text):
    assert go_float(value) == text


# ------------------------------------------------------------------ the runtime, live and back-fill

def test_runtime_collects_all_three_vendors_from_the_simulator(mixed, floor):
    t = calm_instant(floor)
    store = Store(":memory:")
    rt = Runtime(mixed, store, backfill=False, clock=lambda: t).start()
    try:
        assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled), "no collection cycle within 60 s"
        rep = rt.scheduler.last_report              # the scheduler loop's first run_cycle()
        assert rep.targets == 25 and rep.failed == 0 and rep.write_error is None
        assert {tg.kind for tg in rt.targets} == {"dcgm", "amd", "ascend", "facility"}
    finally:
        rt.stop()
    try:
        got = store.con.execute(
            "SELECT d.vendor, d.catalogue_model, count(DISTINCT d.device_id), count(DISTINCT d.host), "
            "count(s.energy_j), count(s.health) FROM devices d JOIN device_samples s USING (device_id) "
            "GROUP BY 1, 2 ORDER BY 1").fetchall()
        assert [g[:4] for g in got] == [("amd", "MI300X", 32, 4), ("huawei", "Ascend-910B", 32, 4),
                                        ("nvidia", "H100-SXM", 128, 16)]
        energy = {g[0]: g[4] for g in got}
        health = {g[0]: g[5] for g in got}
        assert energy["huawei"] == 0 and energy["amd"] > 0 and energy["nvidia"] > 0   # no counter on Ascend
        assert health["nvidia"] == 0 and health["amd"] > 0 and health["huawei"] > 0
        runs = dict(store.con.execute(
            "SELECT kind, count(*) FILTER (WHERE ok) FROM collector_runs GROUP BY 1").fetchall())
        assert runs["amd"] >= 4 and runs["ascend"] >= 4 and runs["dcgm"] >= 16
        states = dict(store.con.execute(
            "SELECT vendor, count(*) FILTER (WHERE state IN ('lost', 'no_data')) FROM device_state(?::TIMESTAMPTZ, 60) "
            "GROUP BY 1", [datetime.fromtimestamp(t + 1, UTC)]).fetchall())
        assert states == {"amd": 0, "huawei": 0, "nvidia": 0}
    finally:
        store.close()


def test_backfill_of_a_mixed_fleet_stores_every_vendor(mixed, floor):
    small = replace(mixed, simulator=mixed.simulator.model_copy(update={"backfill_days": 1 / 24}))  # 1 h, 4 steps
    store = Store(":memory:")
    try:
        fill = backfill_job(small, store, floor)
        end = datetime.fromtimestamp(T_REF, UTC)
        fill(end=end)
        assert fill.done == 4
        got = dict(store.con.execute(          # samples per device (most of a vendor's devices)
            "SELECT vendor, max(n) FROM (SELECT d.vendor, device_id, count(DISTINCT s.ts) AS n FROM devices d "
            "JOIN device_samples s USING (device_id) GROUP BY 1, 2) GROUP BY 1").fetchall())
        assert got == {"amd": 4, "huawei": 4, "nvidia": 4}
        first, last = store.con.execute(
            "SELECT min(ts), max(ts) FROM device_samples s JOIN devices d USING (device_id) "
            "WHERE d.vendor = 'huawei'").fetchone()
        # the pages' ms stamps: chip 0 read 0.7 s before the page's time, chip 7 at it
        assert (first, last) == (end - timedelta(hours=1, milliseconds=700), end - timedelta(seconds=900))
        deltas = store.con.execute(
            "SELECT count(*) FROM device_samples s JOIN devices d USING (device_id) "
            "WHERE d.vendor = 'amd' AND s.energy_delta_j > 0").fetchone()[0]
        assert deltas >= 3 * 28                      # every AMD GPU after its first step (one may be off the bus)
    finally:
        store.close()


def test_configured_amd_and_ascend_sources_are_collected(mixed, floor, tmp_path):
    """A real-floor config pointing amd and ascend sources at exporters (here the simulator's)."""
    t = calm_instant(floor)
    with SimulatorServer(floor, clock=lambda: t) as server:
        urls = {k: [tg.url for tg in server.targets() if tg.kind == k][:2] for k in ("amd", "ascend")}
        (tmp_path / "centre.toml").write_text((MIXED / "centre.toml").read_text() + f'''
[[sources]]
name = "mi300-exporters"
kind = "amd"
site = "sh-lingang"
cluster = "infer-mi300"
targets = {urls["amd"]!r}

[[sources]]
name = "npu-exporters"
kind = "ascend"
site = "sh-lingang"
cluster = "train-910b"
targets = {urls["ascend"]!r}
'''.replace("'", '"'))
        real = config.load(tmp_path)
        assert not real.simulated and [s.mapping_names for s in real.sources] == [["amd"], ["ascend"]]
        store = Store(":memory:")
        rt = Runtime(real, store, backfill=False, clock=lambda: t).start()
        try:
            assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled)
            assert rt.server is None and rt.scheduler.last_report.failed == 0
        finally:
            rt.stop()
    try:
        got = store.con.execute("SELECT s.source, d.vendor, count(DISTINCT device_id), min(d.host), max(d.host) "
                                "FROM device_samples s JOIN devices d USING (device_id) GROUP BY 1, 2 ORDER BY 1"
                                ).fetchall()
        # the Ascend exporter names no host and a bare target URL has no configured one: the URL's host
        # name stands in (every simulated exporter listens on 127.0.0.1); AMD prints its hostname label
        assert got[0][:3] == ("mi300-exporters", "amd", 16) and got[0][3].startswith("inf-mi-")
        assert got[1] == ("npu-exporters", "huawei", 16, "127.0.0.1", "127.0.0.1")
    finally:
        store.close()
