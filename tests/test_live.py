"""Scheduler + live queries: the ladder, PFLOPS, states and problems, hand-computed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pandas as pd

from collectors.dcgm import DcgmCollector
from collectors.scheduler import Scheduler
from collectors.targets import ScrapeError, Target
from helpers import A, B, FakeFloor, dcgm_text, text_b

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def setup(cfg, store):
    floor = FakeFloor()
    col = DcgmCollector(cfg, fetch=floor.fetch)
    sched = Scheduler(store, [(col, [A, B])], interval_s=15, concurrency=4, sleep=lambda s: None)
    store.register_targets([A.as_row(), B.as_row()])
    return floor, sched


def summary(store, at, cluster=None):
    return store.query("fleet_summary", now=at, stale_s=60, cluster=cluster, owned=None).iloc[0]


def test_ladder_and_pflops(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = dcgm_text(util=(87, 0), ns=("moonlake-train", None))
    floor.responses[B.url] = text_b(util=(0, 40), ns=("cs-inference", None))
    rep = sched.run_cycle(T0)
    assert (rep.ok, rep.failed, rep.rows, rep.stored) == (2, 0, 4, 4)
    s = summary(store, T0 + timedelta(seconds=5))
    assert int(s.owned) == 4 and int(s.healthy) == 4
    assert int(s.allocated) == 2                 # A0 (moonlake) and B0 (chatserve)
    assert int(s.busy) == 2                      # A0 87 %, B1 40 %
    assert int(s.allocated_idle) == 1            # B0: held by a pod at 0 %
    assert int(s.faulted) == 0 and int(s.no_data) == 0
    assert s.power_w == 300.5 + 301.5 + 300.5 + 301.5
    assert abs(s.delivered_pflops - 4 * 0.5 * 989 / 1000) < 1e-9
    assert abs(s.installed_pflops - 4 * 989 / 1000) < 1e-9
    a_only = summary(store, T0 + timedelta(seconds=5), cluster="train-a")
    assert int(a_only.owned) == 2 and int(a_only.busy) == 1


def test_xid_thermal_lost_and_exporter_down(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = dcgm_text()
    floor.responses[B.url] = text_b()
    sched.run_cycle(T0)
    t1 = T0 + timedelta(seconds=15)
    floor.responses[A.url] = dcgm_text(xid=(79, 0), throttle=(0, 0x40))
    floor.responses[B.url] = ScrapeError("no answer within 5 s")
    rep = sched.run_cycle(t1)
    assert (rep.ok, rep.failed) == (1, 1) and rep.errors[B.url] == "no answer within 5 s"
    t2 = t1 + timedelta(seconds=15)
    floor.responses[A.url] = dcgm_text(gpus=(1,), xid=(0, 0), throttle=(0, 0x40))   # GPU 0 fell off the bus
    sched.run_cycle(t2)
    at = t2 + timedelta(seconds=50)              # B's last data (T0) is now older than 60 s
    s = summary(store, at)
    assert int(s.owned) == 4
    assert int(s.faulted) == 1                   # A0 lost
    assert int(s.throttled) == 1                 # A1 hot
    assert int(s.no_data) == 2                   # B's exporter is down
    inv = store.query("fleet_summary", now=at, stale_s=60, cluster=None, owned=16).iloc[0]
    assert int(inv.owned) == 16 and int(inv.no_data) == 2 + 12   # 12 boards in config never reported
    states = store.query("heatmap", now=at, stale_s=60, cluster=None)
    st = {(r.host, r.gpu_index): r.state for r in states.itertuples()}
    assert st == {("node-a", 0): "lost", ("node-a", 1): "thermal", ("node-b", 0): "no_data", ("node-b", 1): "no_data"}
    probs = store.query("problems", now=at, stale_s=60, hours=24, cluster=None)
    kinds = sorted(zip(probs["kind"], probs["host"], probs["gpu_index"].fillna(-1).astype(int)))
    assert kinds == [("exporter_down", "node-b", -1), ("lost", "node-a", 0),
                     ("thermal", "node-a", 1), ("xid", "node-a", 0)]
    down = probs[probs.kind == "exporter_down"].iloc[0]
    assert down.detail == "no answer within 5 s" and bool(down.ongoing)
    assert t1 <= down.ts < t1 + timedelta(seconds=1)          # the first failed attempt of cycle t1
    xid = probs[probs.kind == "xid"].iloc[0]
    assert int(xid.code) == 79 and xid.ts == t1
    src = store.query("sources", now=at)
    b = src[src.target == B.url].iloc[0]
    assert not b.ok and b.last_error == "no answer within 5 s"
    assert int(b.failures_1h) == 6                              # 2 cycles x (1 try + 2 retries)
    a = src[src.target == A.url].iloc[0]
    assert a.ok and int(a.rows) == 1


def test_stale_when_collection_stops(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = dcgm_text()
    floor.responses[B.url] = text_b()
    sched.run_cycle(T0)
    later = T0 + timedelta(minutes=10)
    probs = store.query("problems", now=later, stale_s=60, hours=24, cluster=None)
    assert sorted(probs[probs.kind == "stale"]["host"]) == ["node-a", "node-b"]
    assert int(summary(store, later).no_data) == 4


def test_write_failure_is_reported_not_raised(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = dcgm_text()
    floor.responses[B.url] = text_b()
    store.con.execute("DROP TABLE device_events")      # a broken store
    store.con.execute("ALTER TABLE device_samples RENAME TO gone")
    rep = sched.run_cycle(T0)
    assert rep.write_error is not None and "device_samples" in rep.write_error


def test_mig_instances_count_one_board_and_its_power_once(cfg, store):
    lines = []
    for name, value in [("DCGM_FI_DEV_POWER_USAGE", 350.0), ("DCGM_FI_DEV_GPU_UTIL", 50),
                        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.7)]:
        for gi, prof in [(1, "3g.40gb"), (2, "3g.40gb"), (9, "1g.10gb")]:
            lines.append(f'{name}{{gpu="0",UUID="GPU-M",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",'
                         f'GPU_I_PROFILE="{prof}",GPU_I_ID="{gi}",Hostname="node-a"}} {value}')
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = "\n".join(lines) + "\n"
    floor.responses[B.url] = text_b()
    sched.run_cycle(T0)
    s = summary(store, T0, cluster="train-a")
    assert int(s.owned) == 1 and int(s.busy) == 1
    assert s.power_w == 350.0                                  # not 3 x 350
    assert abs(s.installed_pflops - 989 * 7 / 7 / 1000) < 1e-9  # 3/7 + 3/7 + 1/7 of one H100
    assert abs(s.delivered_pflops - 0.7 * 989 / 1000) < 1e-9


def test_retired_targets_leave_the_sources_page_and_problems(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[A.url] = dcgm_text()
    floor.responses[B.url] = ScrapeError("connection refused (is the exporter running?)")
    sched.run_cycle(T0)
    at = T0 + timedelta(seconds=5)
    assert set(store.query("problems", now=at, stale_s=60, hours=24, cluster=None)["kind"]) == {"exporter_down"}
    store.register_targets([A.as_row()])          # a restart whose config no longer has B
    assert list(store.query("sources", now=at)["target"]) == [A.url]
    assert store.query("problems", now=at, stale_s=60, hours=24, cluster=None).empty
    # history kept: A + 3 tries of B
    assert store.con.execute("SELECT count(*) FROM collector_runs").fetchall()[0][0] == 4


def _with_ecc(text: str, dbe: tuple, pending: tuple, failed: tuple) -> str:
    """dcgm_text plus the ECC and row-remap fields, GPU i reading dbe[i], pending[i], failed[i]."""
    labels = {i: text.split(f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}"', 1)[1].split("}", 1)[0] for i in (0, 1)}
    extra = [f'{name}{{gpu="{i}"{labels[i]}}} {values[i]}'
             for name, values in (("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", dbe), ("DCGM_FI_DEV_ROW_REMAP_PENDING", pending),
                                  ("DCGM_FI_DEV_ROW_REMAP_FAILURE", failed)) for i in (0, 1)]
    return text + "\n".join(extra) + "\n"


def test_ecc_errors_and_row_remaps_are_problems_once(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[B.url] = text_b()
    floor.responses[A.url] = _with_ecc(dcgm_text(), dbe=(0, 2), pending=(0, 0), failed=(0, 0))
    sched.run_cycle(T0)                       # GPU 1's 2 DBEs predate our history: not reported
    floor.responses[A.url] = _with_ecc(dcgm_text(), dbe=(1, 2), pending=(1, 0), failed=(0, 0))
    sched.run_cycle(T0 + timedelta(seconds=15))
    floor.responses[A.url] = _with_ecc(dcgm_text(), dbe=(1, 3), pending=(1, 0), failed=(0, 1))
    sched.run_cycle(T0 + timedelta(seconds=30))
    sched.run_cycle(T0 + timedelta(seconds=45))   # nothing new: no repeated events
    probs = store.query("problems", now=T0 + timedelta(seconds=50), stale_s=60, hours=24, cluster=None)
    ecc = probs[probs.kind == "ecc"].sort_values(["ts", "gpu_index", "detail"])
    got = [(int((r.ts - T0).total_seconds()), int(r.gpu_index), r.detail, None if pd.isna(r.code) else int(r.code))
           for r in ecc.itertuples()]
    assert got == [(15, 0, "dbe", 1), (15, 0, "remap_pending", None), (30, 1, "dbe", 3), (30, 1, "remap_failed", None)]
    stored = store.con.execute("""SELECT ecc_dbe_volatile, row_remap_pending, row_remap_failed FROM device_samples
                                  WHERE device_id = 'GPU-0001' ORDER BY ts DESC LIMIT 1""").fetchone()
    assert stored == (3, 0, 1)


def test_unhealthy_verdict_is_one_ongoing_problem(cfg, store):
    from collectors.batch import EventTracker
    from collectors.exposition import DeviceBatch, ParseStats

    def batch(health):
        meta = [{"host": "node-a", "gpu_index": i} for i in (0, 1)]
        return DeviceBatch(["npu-0", "npu-1"], meta, {"health": list(health)}, [None, None], ParseStats())

    tracker = EventTracker()
    assert tracker.observe(A, T0, batch((1, 1))) == []
    events = tracker.observe(A, T0 + timedelta(seconds=15), batch((1, 0)))
    assert [(e["device_id"], e["kind"], e["code"]) for e in events] == [("npu-1", "unhealthy", 0)]
    assert tracker.observe(A, T0 + timedelta(seconds=30), batch((1, 0))) == []        # still unhealthy: once
    assert tracker.observe(A, T0 + timedelta(seconds=45), batch((1, 1))) == []        # recovered
    again = tracker.observe(A, T0 + timedelta(seconds=60), batch((1, 0)))
    assert [e["kind"] for e in again] == ["unhealthy"]
    # primed from the store after a restart: a device already unhealthy is not reported again
    primed = EventTracker()
    primed.prime([{"device_id": "npu-1", "health": 0}])
    assert primed.observe(A, T0, batch((1, 0))) == []


def test_a_dbe_that_comes_with_its_xid_is_one_problem(cfg, store):
    floor, sched = setup(cfg, store)
    floor.responses[B.url] = text_b()
    floor.responses[A.url] = _with_ecc(dcgm_text(), dbe=(0, 0), pending=(0, 0), failed=(0, 0))
    sched.run_cycle(T0)
    floor.responses[A.url] = _with_ecc(dcgm_text(xid=(48, 0)), dbe=(1, 0), pending=(0, 0), failed=(0, 0))
    sched.run_cycle(T0 + timedelta(seconds=15))
    probs = store.query("problems", now=T0 + timedelta(seconds=20), stale_s=60, hours=24, cluster=None)
    assert sorted(zip(probs["kind"], probs["code"].astype("Int64"))) == [("xid", 48)]


def test_an_exporter_stamping_its_cache_time_is_not_lost(cfg, store):
    """Huawei's npu-exporter stamps samples with the time it read the chips, seconds before the
    cycle's tick; its NPUs must read as present, and one that vanishes as lost."""
    from collectors.ascend import AscendCollector
    from helpers import FIXTURES

    text = (FIXTURES.parent / "ascend" / "npu_exporter_910b_k8s.txt").read_text()
    stamps = sorted({int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"})
    tick = datetime.fromtimestamp(stamps[-1] // 1000 + 3, timezone.utc)   # 3 s after the exporter's cache
    npu = Target(url="http://ascend-node-01:8082/metrics", source="t", kind="ascend", site="sh-lingang",
                 cluster="train-a", host="ascend-node-01")
    floor = FakeFloor()
    sched = Scheduler(store, [(AscendCollector(cfg, fetch=floor.fetch), [npu])], interval_s=15, concurrency=2)
    store.register_targets([npu.as_row()])
    floor.responses[npu.url] = text
    sched.run_cycle(tick)
    sched.run_cycle(tick + timedelta(seconds=15))      # the exporter's cache has not moved on
    states = store.query("heatmap", now=tick + timedelta(seconds=20), stale_s=60, cluster=None)
    assert len(states) == 8 and set(states["state"]) <= {"ok", "unhealthy", "thermal"}
    # the cache's next read (every stamp 15 s on) no longer has chip 7: the scrape's oldest stamp
    # is now newer than chip 7's newest, so its endpoint answered a cycle that left it out
    moved = re.sub(r" (\d{13})$", lambda m: f" {int(m.group(1)) + 15_000}", text, flags=re.M)
    gone = "\n".join(line for line in moved.splitlines() if 'id="7"' not in line) + "\n"
    floor.responses[npu.url] = gone
    sched.run_cycle(tick + timedelta(seconds=30))
    sched.pool.shutdown()
    states = store.query("heatmap", now=tick + timedelta(seconds=35), stale_s=60, cluster=None)
    assert dict(zip(states["gpu_index"], states["state"]))[7] == "lost"
    assert (states["state"] == "lost").sum() == 1


def test_an_exporter_stamping_ahead_of_our_clock_is_not_lost(cfg, store):
    """An exporter whose clock runs 30 s ahead stamps every sample in our future: the run that
    carried those samples must not count before the samples themselves can be seen."""
    from collectors.ascend import AscendCollector
    from helpers import FIXTURES

    text = (FIXTURES.parent / "ascend" / "npu_exporter_910b_k8s.txt").read_text()
    first = min(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"
                and line.rsplit(" ", 1)[1].isdigit() and len(line.rsplit(" ", 1)[1]) == 13)
    tick = datetime.fromtimestamp(first // 1000 - 30, timezone.utc)           # the exporter is 30 s ahead
    npu = Target(url="http://ascend-node-01:8082/metrics", source="t", kind="ascend", site="sh-lingang",
                 cluster="train-a", host="ascend-node-01")
    floor = FakeFloor()
    sched = Scheduler(store, [(AscendCollector(cfg, fetch=floor.fetch), [npu])], interval_s=15, concurrency=2)
    store.register_targets([npu.as_row()])
    for k in range(3):
        floor.responses[npu.url] = re.sub(r" (\d{13})$", lambda m, k=k: f" {int(m.group(1)) + 15_000 * k}", text,
                                          flags=re.M)
        sched.run_cycle(tick + timedelta(seconds=15 * k))
    sched.pool.shutdown()
    for at in (tick + timedelta(seconds=50), tick + timedelta(seconds=65)):
        states = store.query("heatmap", now=at, stale_s=60, cluster=None)
        assert len(states) == 8 and "lost" not in set(states["state"]), (at, list(states["state"]))


def test_one_frozen_chip_stamp_does_not_hide_another_chip_leaving(cfg, store):
    """A chip whose stamp froze 5 minutes ago must not hold its scrape's sample time back:
    only stamps within an interval of the scrape's newest count, so a chip that then leaves
    the scrape still reads as lost, and so does the frozen one (no news of it)."""
    from collectors.ascend import AscendCollector
    from helpers import FIXTURES

    text = (FIXTURES.parent / "ascend" / "npu_exporter_910b_k8s.txt").read_text()
    stamps = sorted({int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"})
    tick = datetime.fromtimestamp(stamps[-1] // 1000 + 3, timezone.utc)
    npu = Target(url="http://ascend-node-01:8082/metrics", source="t", kind="ascend", site="sh-lingang",
                 cluster="train-a", host="ascend-node-01")
    floor = FakeFloor()
    sched = Scheduler(store, [(AscendCollector(cfg, fetch=floor.fetch), [npu])], interval_s=15, concurrency=2)
    store.register_targets([npu.as_row()])

    def page(k: int, without: str | None = None) -> str:
        lines = []
        for line in text.splitlines():
            if without and f'id="{without}"' in line:
                continue
            shift = -300_000 if 'id="0"' in line else 15_000 * k
            lines.append(re.sub(r" (\d{13})$", lambda m, shift=shift: f" {int(m.group(1)) + shift}", line))
        return "\n".join(lines) + "\n"

    for k in range(3):
        floor.responses[npu.url] = page(k)
        sched.run_cycle(tick + timedelta(seconds=15 * k))
    floor.responses[npu.url] = page(3, without="7")
    sched.run_cycle(tick + timedelta(seconds=45))
    sched.pool.shutdown()
    states = store.query("heatmap", now=tick + timedelta(seconds=50), stale_s=60, cluster=None)
    state = dict(zip(states["gpu_index"], states["state"]))
    assert state[7] == "lost" and state[0] == "lost"
    assert all(state[i] != "lost" for i in range(1, 7)), state
