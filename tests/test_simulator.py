"""The simulated centre: deterministic, parseable dcgm-exporter text, a floor that behaves.

Times are anchored at a fixed instant (T_REF) so every run checks the same
floor; the floor is a pure function of seed and time, so "the last 30 days"
before T_REF is as good as before now.
"""

from __future__ import annotations

import math
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

import config
from simulator import ExporterDown, Floor, GpuState, SimulatorServer, Target, render_dcgm, synthetic_gpus
from simulator.exporter import METRIC_NAMES, METRICS, XID_MESSAGES
from simulator.model import COMMISSIONED_AT, THERMAL_HW, THERMAL_SW

T_REF = 1795132800.0            # 2026-11-20T00:00:00Z
DAY = 86400.0
H100_FB_MIB = 81559
BASE_LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]
POD_LABELS = ["container", "namespace", "pod"]
FLOAT_METRICS = {m.name for m in METRICS if m.is_float}
LINE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(config.CONFIG_DIR)


@pytest.fixture(scope="module")
def floor(cfg) -> Floor:
    return Floor(cfg)


def _up_text(floor: Floor, host: str, t: float) -> tuple[str, float]:
    """node_text at the first instant from t (15 s steps) when the exporter answers."""
    while not floor.exporter_up(host, t):
        t += 15
    return floor.node_text(host, t), t


def _samples(text: str) -> list[tuple[str, list[tuple[str, str]], str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        out.append((m.group(1), LABEL.findall(m.group(2)), m.group(3)))
    return out


# ------------------------------------------------------------------ layout and determinism

def test_hosts_follow_the_configured_clusters(cfg, floor):
    assert len(floor.hosts) == sum(c.nodes for c in cfg.clusters) == 64
    assert floor.hosts[0].host == "trn-a-000" and floor.hosts[-1].host == "inf-b-031"
    assert {h.cluster for h in floor.hosts} == {"train-a", "infer-b"}
    assert all(h.site == "sh-lingang" and h.n_gpus == 8 for h in floor.hosts)


def test_same_seed_same_text_and_other_seed_differs(cfg, floor):
    other_floor_same_seed = Floor(cfg)
    reseeded = Floor(cfg, seed=cfg.simulator.seed + 1)
    for host in ("trn-a-005", "inf-b-017"):
        text, t = _up_text(floor, host, T_REF - 3 * DAY + 123)
        assert other_floor_same_seed.node_text(host, t) == text
        assert floor.node_text(host, t) == text           # asked again, after other instants were asked
        states = reseeded.gpu_states(host, t)
        assert [s.uuid for s in states] != [s.uuid for s in floor.gpu_states(host, t)]
    assert other_floor_same_seed.facility_text("sh-lingang", T_REF) == floor.facility_text("sh-lingang", T_REF)
    assert reseeded.facility_text("sh-lingang", T_REF) != floor.facility_text("sh-lingang", T_REF)


def test_identity_is_stable_and_formatted_like_real_gpus(floor):
    a = floor.gpu_states("trn-a-010", T_REF - 20 * DAY)
    b = floor.gpu_states("trn-a-010", T_REF)
    ua = {s.gpu_index: (s.uuid, s.pci_bus_id) for s in a}
    ub = {s.gpu_index: (s.uuid, s.pci_bus_id) for s in b}
    for g in set(ua) & set(ub):
        assert ua[g] == ub[g]
    for uuid, pci in ub.values():
        assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", uuid)
        assert re.fullmatch(r"00000000:[0-9A-F]{2}:00\.0", pci)
    assert len({u for u, _ in ub.values()}) == len(ub)


# ------------------------------------------------------------------ the text

def test_text_parses_and_every_gpu_has_every_field_in_label_order(floor):
    text, t = _up_text(floor, "trn-a-002", T_REF - 5 * DAY)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    gauges_and_counters = {n for n in METRIC_NAMES if n != "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}
    assert {f.name for f in families.values()} >= gauges_and_counters
    energy = [f for f in families.values() if f.name.startswith("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")]
    assert energy and energy[0].type == "counter"
    assert families["DCGM_FI_DEV_GPU_UTIL"].documentation == "GPU utilization (in %)."

    states = floor.gpu_states("trn-a-002", t)
    present = {str(s.gpu_index) for s in states}
    by_metric: dict[str, set[str]] = {}
    for name, labels, value in _samples(text):
        keys = [k for k, _ in labels]
        lab = dict(labels)
        expected = BASE_LABELS + (POD_LABELS if "pod" in lab else [])
        if name == "DCGM_FI_DEV_XID_ERRORS":
            expected = expected + ["err_code", "err_msg"]
            assert lab["err_code"] == value and lab["err_msg"] == XID_MESSAGES[int(value)]
        assert keys == expected, (name, keys)
        assert lab["device"] == f"nvidia{lab['gpu']}" and lab["Hostname"] == "trn-a-002"
        assert lab["modelName"] == "NVIDIA H100 80GB HBM3"
        by_metric.setdefault(name, set()).add(lab["gpu"])
        if name in FLOAT_METRICS:
            assert re.fullmatch(r"\d+\.\d{6}", value)
        else:
            assert re.fullmatch(r"\d+", value), (name, value)
    assert list(by_metric) == list(METRIC_NAMES)
    assert all(gpus == present for gpus in by_metric.values())

    for s in states:
        assert s.fb_used_mib + s.fb_free_mib == H100_FB_MIB
        assert 0 <= s.util_pct <= 100 and 0 <= s.tensor_active <= s.sm_active <= s.gr_active <= 1
        assert 30 <= s.gpu_temp_c <= 93 and s.mem_clock_mhz == 2619


def test_fast_path_matches_the_general_renderer(floor):
    rnd = random.Random(5)
    compared = 0
    for _ in range(60):
        host = rnd.choice(floor.hosts).host
        t = T_REF - rnd.random() * 30 * DAY
        if floor.exporter_up(host, t):
            assert floor.node_text(host, t) == render_dcgm(floor.gpu_states(host, t))
            compared += 1
    assert compared > 50


def test_render_dcgm_mig_labels_and_timestamps():
    states = synthetic_gpus(16, T_REF, seed=3, mig_fraction=0.5)
    mig = [s for s in states if s.mig_profile]
    assert mig and len(states) > 16
    text = render_dcgm(states, timestamp_ms=1_700_000_000_123)
    for _name, labels, _ in _samples(text.replace(" 1700000000123\n", "\n")):
        keys = [k for k, _ in labels]
        if "GPU_I_PROFILE" in keys:
            assert keys[5:7] == ["GPU_I_PROFILE", "GPU_I_ID"] and keys[7] == "Hostname"
    assert all(line.endswith(" 1700000000123") for line in text.splitlines() if not line.startswith("#"))
    fams = list(text_string_to_metric_families(text))
    util = next(f for f in fams if f.name == "DCGM_FI_DEV_GPU_UTIL")
    assert len(util.samples) == len(states) and util.samples[0].timestamp == pytest.approx(1_700_000_000.123)


def test_synthetic_gpus_scale_and_mix():
    states = synthetic_gpus(10_000, T_REF, seed=1)
    assert len(states) == 10_000 and len({s.host for s in states}) == 1250
    busy = sum(s.util_pct >= 85 for s in states) / len(states)
    free = sum(s.pod is None for s in states) / len(states)
    held_idle = sum(s.pod is not None and s.util_pct == 0 for s in states) / len(states)
    assert 0.45 < busy < 0.65 and 0.18 < free < 0.32 and 0.02 < held_idle < 0.09
    assert synthetic_gpus(50, T_REF, seed=1)[7] == states[7]


# ------------------------------------------------------------------ behaviour

def test_energy_counter_is_monotonic_and_integrates_power(floor):
    host = "trn-a-007"
    start = T_REF - 2 * DAY
    while floor.driver_reload_at(host, start + 2 * 3600) > start:
        start += 3600
    prev: dict[int, GpuState] = {}
    integral = {g: 0.0 for g in range(8)}
    first: dict[int, int] = {}
    t = start
    while t <= start + 2 * 3600:
        for s in floor.gpu_states(host, t):
            if s.gpu_index in prev:
                assert s.energy_mj > prev[s.gpu_index].energy_mj
                integral[s.gpu_index] += (prev[s.gpu_index].power_w + s.power_w) / 2 * 15 * 1000
            else:
                first[s.gpu_index] = s.energy_mj
            prev[s.gpu_index] = s
        t += 15
    for g, s in prev.items():
        assert s.energy_mj - first[g] == pytest.approx(integral[g], rel=0.03)


def test_lost_gpu_disappears_then_returns_with_reset_counter(floor):
    lost = [e for e in floor.events(T_REF - 30 * DAY, T_REF) if e["kind"] == "lost"]
    assert lost
    e = lost[0]
    host, g = e["host"], e["gpu_index"]

    def state(t):
        return {s.gpu_index: s for s in floor.gpu_states(host, t)}

    before, xid, gone, back = state(e["start"] - 60), state(e["start"] + 1), state(e["gone"] + 1), state(e["end"] + 1)
    assert 20 * 60 <= e["end"] - e["gone"] <= 90 * 60
    assert xid[g].xid == 79 and before[g].xid != 79
    assert g not in gone and len(gone) == 7
    assert back[g].xid == 0 and back[g].energy_mj < 2_000_000 < before[g].energy_mj
    later = state(e["end"] + 600)[g]
    assert later.energy_mj - back[g].energy_mj == pytest.approx(600 * 1000 * (later.power_w + back[g].power_w) / 2,
                                                                rel=0.3)
    assert any(i["kind"] == "lost" and i["host"] == host and i["gpu_index"] == g
               for i in floor.incidents(e["gone"] + 60))


def test_exporter_outage_raises_and_recovers(floor):
    outages = [e for e in floor.events(T_REF - DAY, T_REF) if e["kind"] == "exporter_down"]
    assert len(outages) >= 20
    assert {o["mode"] for o in outages} == {"hang", "503"}
    assert all(5 * 60 <= o["end"] - o["start"] <= 40 * 60 for o in outages)
    o = outages[0]
    with pytest.raises(ExporterDown) as down:
        floor.node_text(o["host"], o["start"] + 30)
    assert down.value.mode == o["mode"] and down.value.until == o["end"]
    assert not floor.exporter_up(o["host"], o["start"] + 30)
    assert floor.gpu_states(o["host"], o["start"] + 30)          # the GPUs still run
    after = o["end"] + 1
    if floor.exporter_up(o["host"], after):
        assert floor.node_text(o["host"], after).startswith("# HELP DCGM_FI_DEV_SM_CLOCK")


def test_about_one_exporter_down_at_a_time(floor):
    rnd = random.Random(2)
    down = sum(not floor.exporter_up(h.host, T_REF - rnd.random() * 30 * DAY) for _ in range(40) for h in floor.hosts)
    assert 0.3 <= down / 40 <= 2.0


def test_incidents_at_nearly_every_instant(floor):
    rnd = random.Random(7)
    seen_kinds = set()
    nonempty = 0
    for _ in range(50):
        inc = floor.incidents(T_REF - rnd.random() * 30 * DAY)
        nonempty += bool(inc)
        for i in inc:
            assert set(i) >= {"kind", "host", "gpu_index", "detail"}
            seen_kinds.add(i["kind"])
    assert nonempty >= 48
    assert seen_kinds >= {"thermal", "exporter_down", "xid"}


def test_thermal_throttling_looks_like_it(floor):
    for k in range(10):
        t = T_REF - 4 * DAY + k * 7 * 3600
        hot = [i for i in floor.incidents(t) if i["kind"] == "thermal"]
        if hot:
            break
    assert hot
    for i in hot[:4]:
        s = next(s for s in floor.gpu_states(i["host"], t) if s.gpu_index == i["gpu_index"])
        assert 87 <= s.gpu_temp_c <= 92 and s.throttle_reasons & (THERMAL_SW | THERMAL_HW)
        assert s.sm_clock_mhz < 1700 and s.power_w > 350


def test_workloads_training_inference_and_idle(floor):
    held_idle = total = 0
    for t in (T_REF - 9 * DAY + 3600 * k for k in range(0, 48, 6)):
        for h in floor.hosts:
            for s in floor.gpu_states(h.host, t):
                total += 1
                if s.pod is None:
                    assert s.util_pct == 0 and 55 <= s.power_w <= 85 and s.fb_used_mib == 0
                    assert s.namespace is None and s.container is None
                elif s.util_pct == 0 and s.tensor_active == 0:
                    held_idle += 1
                if s.container == "pytorch" and s.util_pct >= 85:
                    assert 0.6 <= s.sm_active <= 0.9 and 0.3 <= s.tensor_active <= 0.6
                    assert 530 <= s.power_w <= 705 and 60 * 1024 <= s.fb_used_mib <= 78 * 1024
                    assert re.fullmatch(r"[a-z-]+-[a-z0-9-]+-worker-[0-3]", s.pod)
                    assert 55 <= s.gpu_temp_c <= 92
    assert 0.01 < held_idle / total < 0.10


def test_inference_follows_the_day(floor):
    def mean_util(bjt_hour: int) -> float:
        vals = []
        for d in range(1, 8):
            t = math.floor(T_REF / DAY) * DAY - d * DAY + (bjt_hour - 8) % 24 * 3600
            for h in floor.hosts:
                if h.cluster == "infer-b":
                    vals += [s.util_pct for s in floor.gpu_states(h.host, t) if s.container == "triton-server"]
        return sum(vals) / len(vals)

    evening, night = mean_util(19), mean_util(4)
    assert evening > 1.8 * night and evening > 50


def test_facility_pue_and_registers(floor):
    rnd = random.Random(3)
    pues = []
    for k in range(120):
        t = COMMISSIONED_AT + 30 * DAY + k * 2.6 * DAY + rnd.random() * DAY
        fams = {f.name: f for f in text_string_to_metric_families(floor.facility_text("sh-lingang", t))}
        power = {s.labels["meter"]: s.value for s in fams["dcim_power_watts"].samples}
        it_meter = next(s for s in fams["dcim_power_watts"].samples if s.labels["meter"] == "ups-output")
        assert it_meter.labels["pue_category"] == "1"
        pues.append(power["facility-main"] / power["ups-output"])
        assert 150_000 < power["ups-output"] < 600_000 and power["cooling-plant"] > 0
    assert 1.1 < min(pues) and max(pues) < 1.5
    assert max(pues) - min(pues) > 0.12                 # seasons and days move it

    a, b = floor.facility_values("sh-lingang", T_REF - 30 * DAY), floor.facility_values("sh-lingang", T_REF)
    de = {k: b["energy_kwh"][k] - a["energy_kwh"][k] for k in a["energy_kwh"]}
    assert all(v > 0 for v in de.values())
    assert 1.1 < de["facility"] / de["it"] < 1.5
    # registers agree with the powers they integrate
    t0 = T_REF - 3 * DAY
    steps = [floor.facility_values("sh-lingang", t0 + 60 * k) for k in range(61)]
    mean_it_w = sum((x["it_w"] + y["it_w"]) / 2 for x, y in zip(steps, steps[1:])) / 60
    assert (steps[-1]["energy_kwh"]["it"] - steps[0]["energy_kwh"]["it"]) * 3.6e6 / 3600 == pytest.approx(
        mean_it_w, rel=0.01)
    assert all(y["energy_kwh"]["facility"] > x["energy_kwh"]["facility"] for x, y in zip(steps, steps[1:]))


def test_configured_overhead_is_in_the_facility_load(cfg):
    base = Floor(cfg)
    more = Floor(replace(cfg, simulator=cfg.simulator.model_copy(update={"site_overhead_kw": 100.0})))
    a, b = base.facility_values("sh-lingang", T_REF), more.facility_values("sh-lingang", T_REF)
    assert b["it_w"] == a["it_w"]
    assert b["facility_w"] - a["facility_w"] == pytest.approx((100.0 - cfg.simulator.site_overhead_kw) * 1000)


# ------------------------------------------------------------------ HTTP

def _get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def test_server_serves_nodes_facility_and_404(floor):
    t = T_REF - 7 * DAY
    while not floor.exporter_up("inf-b-003", t):
        t += 60
    with SimulatorServer(floor, clock=lambda: t) as srv:
        targets = srv.targets()
        assert len(targets) == 65 and all(isinstance(x, Target) for x in targets)
        node = next(x for x in targets if x.host == "inf-b-003")
        assert node.url == f"{srv.base_url}/nodes/inf-b-003/metrics" and node.kind == "dcgm"
        assert node.cluster == "infer-b" and node.site == "sh-lingang"
        fac = next(x for x in targets if x.kind == "facility")
        assert fac.url == f"{srv.base_url}/facility/sh-lingang/metrics" and fac.host is None

        code, ctype, body = _get(node.url)
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert body == floor.node_text("inf-b-003", t)
        code, _, body = _get(fac.url)
        assert code == 200 and body == floor.facility_text("sh-lingang", t)
        code, _, body = _get(srv.base_url + "/")
        assert code == 200 and body.split() == [x.url for x in targets]
        assert _get(srv.base_url + "/nodes/no-such-host/metrics")[0] == 404
        assert _get(srv.base_url + "/metrics")[0] == 404


def test_server_fails_like_a_broken_exporter_during_outages(floor):
    outages = [e for e in floor.events(T_REF - 2 * DAY, T_REF) if e["kind"] == "exporter_down"]
    by_mode = {o["mode"]: o for o in outages}
    assert set(by_mode) == {"hang", "503"}
    now = {"t": by_mode["503"]["start"] + 10}
    with SimulatorServer(floor, clock=lambda: now["t"], hang_s=0.4) as srv:
        code, _, body = _get(f"{srv.base_url}/nodes/{by_mode['503']['host']}/metrics")
        assert code == 503 and "DCGM" in body
        now["t"] = by_mode["hang"]["start"] + 10
        began = time.monotonic()
        with pytest.raises((urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError)) as err:
            _get(f"{srv.base_url}/nodes/{by_mode['hang']['host']}/metrics", timeout=60)
        assert time.monotonic() - began >= 0.4 and srv.hanging.is_set()   # held for hang_s: a lower bound
        # the server closed it (a client timeout, 60 s here, would be a timeout error, not a close)
        assert not isinstance(err.value, (socket.timeout, TimeoutError))
        assert "closed" in str(err.value).lower() or "disconnect" in str(err.value).lower()


def test_server_handles_a_burst_and_stops_cleanly(floor):
    hang = next(e for e in floor.events(T_REF - 2 * DAY, T_REF) if e["kind"] == "exporter_down" and e["mode"] == "hang")
    srv = SimulatorServer(floor, clock=lambda: hang["start"] + 5, hang_s=3600)
    srv.start()
    urls = [x.url for x in srv.targets()] * 4
    results: list[int] = []
    lock = threading.Lock()

    def worker(chunk):
        for u in chunk:
            if hang["host"] in u:
                continue
            code = _get(u)[0]
            with lock:
                results.append(code)
    threads = [threading.Thread(target=worker, args=(urls[i::16],)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) >= 250 and set(results) <= {200, 503}

    hung_outcome: list = []

    def hung_request():
        try:
            hung_outcome.append(_get(f"{srv.base_url}/nodes/{hang['host']}/metrics", timeout=60))
        except OSError as exc:
            hung_outcome.append(exc)
    hung = threading.Thread(target=hung_request, daemon=True)
    hung.start()
    assert srv.hanging.wait(60), "the request never started hanging"
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    stopper.join(60)                           # a guard only: waiting out the hang would take an hour
    assert not stopper.is_alive()              # a hang in progress does not hold up stop()
    srv.stop()                                 # idempotent
    hung.join(60)
    assert not hung.is_alive() and isinstance(hung_outcome[0], OSError)   # closed without a response
    assert not [t for t in threading.enumerate() if t.name.startswith("simulator-http")]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
