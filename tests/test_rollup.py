"""The history tiers (queries/rollup.py) against hand-computed GPU-hours on a small store written
through the real write path: dcgm-exporter text -> DcgmCollector -> Store.write_scrape.

Every scenario runs at a 60 s collection interval, so a sample stands for the time until its
device's next one when that comes within 120 s, else for 60 s (docs/history.md "Device time").
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collectors.dcgm import DcgmCollector
from collectors.targets import Target
from helpers import make_config
from queries import Store
from queries import rollup

UTC = timezone.utc
T10 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
HOURS = 3600.0
TARGET = Target(url="http://node-a:9400/metrics", source="t", kind="dcgm", site="sh-lingang", cluster="train-a",
                host="node-a")
TENANTS = [{"id": "lab", "name": "Lab", "namespaces": ["lab-ns"]},
           {"id": "renter", "name": "Renter"}]
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def cfg_with(**tables):
    tables.setdefault("collection", {"interval_s": 60})
    tables.setdefault("tenants", TENANTS)
    tables.setdefault("leases", [])
    tables.setdefault("attribution", [])
    return make_config(**tables)


def gpu_text(gpus: list[dict]) -> str:
    """dcgm-exporter text: each dict a GPU (or MIG instance) with its values; a key left out is
    not exported. Keys: uuid, util, tensor, power, energy_mj, ns, pod, profile, instance."""
    metrics = {"util": "DCGM_FI_DEV_GPU_UTIL", "tensor": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
               "power": "DCGM_FI_DEV_POWER_USAGE", "energy_mj": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}
    lines = []
    for key, name in metrics.items():
        for i, g in enumerate(gpus):
            if g.get(key) is None:
                continue
            labels = (f'gpu="{i}",UUID="{g["uuid"]}",device="nvidia{i}",modelName="NVIDIA H100 80GB HBM3",'
                      f'Hostname="node-a"')
            if g.get("profile"):
                labels += f',GPU_I_PROFILE="{g["profile"]}",GPU_I_ID="{g["instance"]}"'
            if g.get("ns"):
                labels += f',namespace="{g["ns"]}",pod="{g.get("pod", "p-0")}",container="c"'
            lines.append(f"{name}{{{labels}}} {g[key]}")
    return "\n".join(lines) + "\n"


class Floor:
    """Scrapes written through the real path, one collector (its energy counter tracker) per floor."""

    def __init__(self, store: Store, cfg):
        self.store = store
        self.collector = DcgmCollector(cfg, fetch=lambda url, timeout: pytest.fail("no network in tests"))

    def scrape(self, ts: datetime, gpus: list[dict], target: Target = TARGET) -> None:
        s = self.collector.from_text(gpu_text(gpus), target, ts)
        self.store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)


def group(store: Store, tier: str = "rollup_group_1h", **where) -> dict:
    """The sums of a group tier's rows matching `where`, over all buckets."""
    cond = " AND ".join(f"{k} = ${k}" for k in where) or "true"
    with store.cursor() as cur:
        row = cur.execute(f"""SELECT sum(observed_s), sum(available_s), sum(allocated_s), sum(busy_s),
                                     sum(useful_s), sum(alloc_idle_s), sum(util_s), sum(util_obs_s),
                                     sum(tflop_s), sum(energy_j), sum(samples)
                              FROM {tier} WHERE {cond}""", where).fetchall()[0]
    keys = ("observed_s", "available_s", "allocated_s", "busy_s", "useful_s", "alloc_idle_s", "util_s",
            "util_obs_s", "tflop_s", "energy_j", "samples")
    return {k: (v or 0) for k, v in zip(keys, row)}


def rows_of(store: Store, table: str) -> list[tuple]:
    with store.cursor() as cur:
        return sorted(cur.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def dirty(store: Store) -> list[datetime]:
    with store.cursor() as cur:
        return [r[0] for r in cur.execute("SELECT hour FROM rollup_dirty ORDER BY hour").fetchall()]


def two_hours_held(floor: Floor, gpu: str = "GPU-0000") -> None:
    """A GPU held by a pod of lab-ns from 10:00 to 12:00 (120 scrapes a minute apart), busy
    (util 50) in its first 30 minutes, idle after; at 12:00 the pod is gone."""
    for k in range(121):
        held = k < 120
        floor.scrape(T10 + k * MINUTE, [{"uuid": gpu, "util": 50 if k < 30 else 0, "tensor": 0.5 if k < 30 else 0,
                                         "power": 300, "ns": "lab-ns" if held else None}])


def test_allocated_two_hours_busy_half_an_hour(store):
    cfg = cfg_with()
    two_hours_held(Floor(store, cfg))
    result = rollup.build(store, cfg, T10 + timedelta(hours=3))
    lab = group(store, tenant="lab")
    # 120 samples of the pod, each standing 60 s until the next: 7,200 s = 2.0 GPU-hours held;
    # the first 30 had util 50: 30 x 60 = 1,800 s = 0.5 busy GPU-hours
    assert lab["allocated_s"] / HOURS == 2.0
    assert lab["busy_s"] / HOURS == 0.5
    assert lab["alloc_idle_s"] / HOURS == 1.5                       # 90 x 60 s
    # util while held: 1,800 s x 50 % = 900 s of 7,200 s = 12.5 %
    assert 100 * lab["util_s"] / lab["util_obs_s"] == 12.5
    # useful: tensor 0.5 over the busy 1,800 s = 900 s
    assert lab["useful_s"] == 900.0
    # the 12:00 sample: the device's newest, an hour old at build time: one interval, nobody's
    assert group(store, tenant="_unallocated")["observed_s"] == 60.0
    assert dirty(store) == [] and result.rows > 0


def test_a_ten_minute_gap_is_no_data(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in [*range(0, 11), *range(20, 61)]:          # 10:00..10:10, nothing 10:11..10:19, 10:20..11:00
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100, "power": 300}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    with store.cursor() as cur:
        observed, busy = cur.execute("""SELECT sum(observed_s), sum(busy_s) FROM rollup_device_1h
                                        WHERE bucket = $b""", {"b": T10}).fetchall()[0]
    # 10:00..10:09 stand 60 s each (600 s); 10:10's next comes 600 s later, beyond 2 x 60 s, so it
    # stands one interval (60 s); 10:20..10:59 stand 60 s each (2,400 s): 3,060 s observed,
    # the other 540 s of the hour are no data, neither busy nor idle
    assert observed == 3060.0
    assert busy == 3060.0
    assert 3600.0 - observed == 540.0


def test_a_counter_reset_never_makes_negative_energy(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    # the board's counter in mJ: 1,000 J, 1,060 J, 1,120 J, then the driver reloads: 10 J, 70 J
    for k, joules in enumerate([1000, 1060, 1120, 10, 70]):
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 10, "power": 999, "energy_mj": joules * 1000}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    # deltas: none for the first sample, 60, 60, then 10 (the reset's new reading), 60: 190 J
    assert group(store)["energy_j"] == 190.0


def test_energy_from_power_where_there_is_no_counter(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in range(3):
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 10, "power": 300}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    # three samples standing 60 s each at 300 W: 3 x 60 x 300 = 54,000 J
    assert group(store)["energy_j"] == 54000.0


def test_mig_instances_weigh_their_share_and_the_board_counts_once(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    parent = "GPU-9e8d7c6b"
    for k in range(61):                                 # 10:00 .. 11:00, the 11:00 sample ends the hour
        floor.scrape(T10 + k * MINUTE, [
            {"uuid": parent, "profile": "1g.10gb", "instance": 9, "util": 100, "tensor": 1.0, "power": 140,
             "ns": "lab-ns"},
            {"uuid": parent, "profile": "3g.40gb", "instance": 2, "util": 0, "tensor": 0.0, "power": 140}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    lab = group(store, tenant="lab", bucket=T10)
    free = group(store, tenant="_unallocated", bucket=T10)
    # the 1g instance: 3,600 s x 1/7 of a GPU; the 3g: 3,600 s x 3/7
    assert lab["observed_s"] == pytest.approx(3600 / 7)
    assert lab["busy_s"] == pytest.approx(3600 / 7)
    assert free["observed_s"] == pytest.approx(3600 * 3 / 7)
    # delivered: tensor 1.0 x 989 TFLOPS x 1/7 for 3,600 s
    assert lab["tflop_s"] == pytest.approx(3600 * 989.0 / 7)
    # board power 140 W repeated by both instances, counted once (on the instance with the lower
    # id, "<uuid>/2"): 140 W x 3,600 s = 504,000 J
    assert lab["energy_j"] + free["energy_j"] == pytest.approx(504000.0)
    assert free["energy_j"] == pytest.approx(504000.0) and lab["energy_j"] == 0


def test_a_lease_added_afterwards_reattributes_the_rebuilt_month(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in range(61):                                 # unlabelled GPU, busy, 10:00 .. 11:00
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100, "power": 300}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    assert group(store, tenant="_unallocated", bucket=T10)["observed_s"] == 3600.0
    assert group(store, tenant="renter")["observed_s"] == 0
    leased = cfg_with(leases=[{"tenant": "renter", "hosts": ["node-a"],
                               "start": datetime(2026, 11, 1, tzinfo=UTC)}])
    rollup.build(store, leased, T10 + timedelta(days=1))
    renter = group(store, tenant="renter", bucket=T10)
    # the whole hour now belongs to the renter, held (allocated) and busy: 3,600 s each
    assert (renter["observed_s"], renter["allocated_s"], renter["busy_s"]) == (3600.0, 3600.0, 3600.0)
    assert group(store, tenant="_unallocated", bucket=T10)["observed_s"] == 0
    # and the 5-minute tier with it: 12 buckets of 300 s
    assert group(store, "rollup_group_5m", tenant="renter", bucket=T10)["allocated_s"] == 300.0


def device_tenants(store: Store) -> list[tuple]:
    """rollup_device_tenant_1h as (bucket, device, tenant, available_s, busy_s, alloc_idle_s)."""
    with store.cursor() as cur:
        return cur.execute("""SELECT bucket, device_id, tenant, available_s, busy_s, alloc_idle_s
                              FROM rollup_device_tenant_1h ORDER BY ALL""").fetchall()


def test_the_device_tenant_tier_reattributes_on_a_lease_change(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in range(61):                                 # unlabelled GPU, busy, 10:00 .. 11:00
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100, "power": 300}])
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    # 60 samples a minute apart in 10:00: 3,600 s available and busy, nobody held it; the 11:00
    # sample, the newest, stands one interval: 60 s
    nobody = [(T10, "GPU-0000", "_unallocated", 3600.0, 3600.0, 0.0),
              (T10 + HOUR, "GPU-0000", "_unallocated", 60.0, 60.0, 0.0)]
    assert device_tenants(store) == nobody
    leased = cfg_with(leases=[{"tenant": "renter", "hosts": ["node-a"],
                               "start": datetime(2026, 11, 1, tzinfo=UTC)}])
    result = rollup.build(store, leased, T10 + timedelta(days=1))
    assert "regrouped" in result.detail
    assert device_tenants(store) == [(T10, "GPU-0000", "renter", 3600.0, 3600.0, 0.0),
                                     (T10 + HOUR, "GPU-0000", "renter", 60.0, 60.0, 0.0)]
    # the tier and the group tier agree: the renter's held time is the device's available time
    assert group(store, tenant="renter")["allocated_s"] == 3660.0           # 3,600 + 60
    rollup.build(store, cfg, T10 + timedelta(days=1))     # the lease removed again
    assert device_tenants(store) == nobody


def test_a_store_from_before_the_device_tenant_tier_gets_it_filled(store):
    cfg = cfg_with()
    two_hours_held(Floor(store, cfg))
    rollup.build(store, cfg, T10 + timedelta(hours=3))
    built = rows_of(store, rollup.DEVICE_TENANT_TIER)
    groups = rows_of(store, "rollup_group_1h")
    # the pod of lab-ns held it 10:00-12:00: one row per hour, 3,600 s each; busy the first
    # 30 minutes (1,800 s), idle the rest: 10:00 1,800 s idle, 11:00 3,600 s
    assert device_tenants(store)[:2] == [(T10, "GPU-0000", "lab", 3600.0, 1800.0, 1800.0),
                                         (T10 + timedelta(hours=1), "GPU-0000", "lab", 3600.0, 0.0, 3600.0)]
    with store.cursor() as cur:                          # as migration 013 leaves a store with history
        cur.execute(f"DELETE FROM {rollup.DEVICE_TENANT_TIER}").fetchall()
        cur.execute("DELETE FROM kv WHERE key = ?", [rollup.DEVICE_TENANT_KEY]).fetchall()
    result = rollup.build(store, cfg, T10 + timedelta(hours=3))
    assert "regrouped" not in result.detail
    assert rows_of(store, rollup.DEVICE_TENANT_TIER) == built
    assert rows_of(store, "rollup_group_1h") == groups


def test_rules_before_namespaces_and_unattributed_labels(store):
    cfg = cfg_with(attribution=[{"tenant": "renter", "pod": "rent-*"}])
    floor = Floor(store, cfg)
    for k in range(61):
        floor.scrape(T10 + k * MINUTE, [
            {"uuid": "GPU-0000", "util": 100, "ns": "lab-ns", "pod": "rent-1"},     # rule beats namespace
            {"uuid": "GPU-0001", "util": 100, "ns": "other-ns", "pod": "x"}])      # nobody's: unattributed
    rollup.build(store, cfg, T10 + timedelta(hours=2))
    assert group(store, tenant="renter", bucket=T10)["allocated_s"] == 3600.0
    assert group(store, tenant="_unattributed", bucket=T10)["allocated_s"] == 3600.0
    assert group(store, tenant="lab")["allocated_s"] == 0


def test_idempotent_and_catches_up_after_downtime(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    two_hours_held(floor)                 # written while the rollup was "down": hours 10, 11, 12 dirty
    assert dirty(store) == [T10 + timedelta(hours=h) for h in (-1, 0, 1, 2)]   # 10:00 also marks 09:00
    rollup.build(store, cfg, T10 + timedelta(hours=3), chunk_hours=24)   # one run, all hours in one chunk
    assert dirty(store) == []
    before = {t: rows_of(store, t) for t in rollup.TIERS}
    rollup.build(store, cfg, T10 + timedelta(hours=3))                  # nothing dirty: nothing changes
    store.dirty_lookback_s = 0
    with store.cursor() as cur:                                         # everything dirty again
        cur.execute("INSERT INTO rollup_dirty SELECT DISTINCT bucket_1h(ts), now() FROM device_samples")
    rollup.build(store, cfg, T10 + timedelta(hours=3))
    assert {t: rows_of(store, t) for t in rollup.TIERS} == before


def test_a_late_sample_updates_its_bucket(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in [0, 1, 3]:                                   # 10:02 missing
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100}])
    rollup.build(store, cfg, T10 + timedelta(hours=1))
    # 10:00 60 s, 10:01 -> 10:03 120 s (within 2 x 60), 10:03 newest 60 s: 240 s
    assert group(store)["observed_s"] == 240.0
    floor.scrape(T10 + 2 * MINUTE, [{"uuid": "GPU-0000", "util": 0}])
    assert dirty(store) == [T10]
    rollup.build(store, cfg, T10 + timedelta(hours=1))
    # now 10:01 stands 60 s and 10:02 (idle) 60 s: still 240 s, of which 180 s busy
    with store.cursor() as cur:
        assert cur.execute("SELECT observed_s, busy_s FROM rollup_device_1h").fetchall() == [(240.0, 180.0)]


def test_the_newest_sample_keeps_its_hour_dirty_until_it_counts(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    floor.scrape(T10 + 30 * MINUTE, [{"uuid": "GPU-0000", "util": 100}])
    rollup.build(store, cfg, T10 + 30 * MINUTE + timedelta(seconds=30))
    # 30 s old: younger than an interval, it stands for nothing yet, and its hour stays dirty
    assert group(store)["observed_s"] == 0 and group(store)["samples"] == 1
    assert T10 in dirty(store)
    rollup.build(store, cfg, T10 + 30 * MINUTE + timedelta(seconds=150))
    # 150 s old, past 2 x 60 s with no next sample: one interval, and the hour is done
    assert group(store)["observed_s"] == 60.0
    assert T10 not in dirty(store)


def test_five_minute_tier_sums_to_the_hourly_tier(store):
    cfg = cfg_with()
    two_hours_held(Floor(store, cfg))
    rollup.build(store, cfg, T10 + timedelta(hours=3))
    with store.cursor() as cur:
        for device in (False, True):
            fine, coarse = ("rollup_device_5m", "rollup_device_1h") if device else ("rollup_group_5m",
                                                                                      "rollup_group_1h")
            key = "device_id, namespace, pod, job, job_user" if device else "site, cluster, model, tenant"
            sums = ", ".join(f"sum({c})" for c in ("samples", "observed_s", "allocated_s", "busy_s", "util_s",
                                                   "energy_j"))
            a = cur.execute(f"SELECT bucket_1h(bucket), {key}, {sums} FROM {fine} GROUP BY ALL ORDER BY ALL").fetchall()
            b = cur.execute(f"SELECT bucket, {key}, {sums} FROM {coarse} GROUP BY ALL ORDER BY ALL").fetchall()
            assert a == b and a


def test_retention_keeps_dirty_hours(store):
    cfg = cfg_with(retention={"raw_days": 1, "five_minute_days": 2})
    floor = Floor(store, cfg)
    for k in range(3):
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100}])
    later = T10 + timedelta(days=5)
    rollup.retention(store, cfg, later)                   # not yet built: the raw samples stay
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == 3
    rollup.build(store, cfg, later)
    rollup.retention(store, cfg, later)                   # built: raw (1 day) and 5 min (2 days) go
    with store.cursor() as cur:
        counts = [cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                  for t in ("device_samples", "rollup_device_5m", "rollup_group_5m", "rollup_device_1h",
                            "rollup_group_1h")]
    assert counts == [0, 0, 0, 1, 1]


def test_status_says_current_or_catching_up(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    floor.scrape(T10, [{"uuid": "GPU-0000", "util": 100}])
    status = rollup.rollup_status(store, T10 + timedelta(hours=5))
    assert status["state"] == "catching_up" and status["dirty_hours"] == 2        # 09:00 (reach) and 10:00
    assert status["oldest_dirty"] == T10 - timedelta(hours=1)
    # 09:00 lies 5 h before the previous hour (14:00) at 15:00
    assert status["behind_s"] == 5 * 3600.0
    # an hour ago and this hour dirty: current (the rollup rebuilds them every interval)
    assert rollup.rollup_status(store, T10 + timedelta(minutes=30))["state"] == "current"
    rollup.build(store, cfg, T10 + timedelta(hours=5))
    status = rollup.rollup_status(store, T10 + timedelta(hours=5))
    assert status["state"] == "current" and status["dirty_hours"] == 0 and status["behind_s"] == 0
    assert status["tiers"]["rollup_device_1h"]["rows"] == 1
    assert status["tiers"]["rollup_device_1h"]["span"] == [T10, T10]
    # without the tier figures (health reads them only every few minutes): the same state, no tiers
    light = rollup.rollup_status(store, T10 + timedelta(hours=5), tiers=False)
    assert light == {**status, "tiers": {}}


def test_add_jobs_registers_rollup_and_retention(store):
    from collectors.jobs import JobRunner

    cfg = cfg_with(simulator={"backfill_step_s": 300})
    runner = JobRunner(store)
    rollup.add_jobs(runner, store, cfg)
    assert {j["job"] for j in runner.status()} == {"rollup", "retention"}
    assert store.dirty_lookback_s == 600.0                # 2 x the simulated back-fill's 300 s step
    Floor(store, cfg).scrape(T10, [{"uuid": "GPU-0000", "util": 100}])
    run = runner.run_now("rollup")
    assert run.ok and run.rows > 0
    assert runner.run_now("retention").ok
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM job_runs WHERE job IN ('rollup', 'retention') AND ok"
                           ).fetchall()[0][0] == 2


def test_the_simulated_back_fill_stands_its_step_apart(store):
    from collectors.runtime import BACKFILL_KEY

    cfg = cfg_with(simulator={"backfill_step_s": 900})
    assert cfg.simulated
    sim = Target(url="http://simulator.invalid/a", source="simulator-train-a", kind="dcgm", site="sh-lingang",
                 cluster="train-a", host="node-a")
    floor = Floor(store, cfg)
    for k in range(4):                                     # back-filled 10:00, 10:15, 10:30, 10:45
        floor.scrape(T10 + k * 15 * MINUTE, [{"uuid": "GPU-0000", "util": 100}], sim)
    store.set_kv(BACKFILL_KEY, (T10 + 45 * MINUTE).isoformat())
    for k in range(60, 76):                                # live from 11:00, a minute apart, to 11:15
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100}], sim)
    rollup.build(store, cfg, T10 + timedelta(hours=3))
    with store.cursor() as cur:
        hours = cur.execute("SELECT bucket, observed_s FROM rollup_device_1h ORDER BY bucket").fetchall()
    # history: each of the four samples stands 900 s to the next (10:45 -> 11:00 the first live
    # one): 3,600 s; live: 15 samples 60 s apart and the newest one interval: 16 x 60 = 960 s
    assert hours == [(T10, 3600.0), (T10 + timedelta(hours=1), 960.0)]


def test_scrapes_written_while_the_rollup_runs(store):
    """Scrapes keep landing while the job builds: neither fails, and once the writes stop one
    more run gives the tiers a build from scratch gives."""
    import threading

    cfg = cfg_with()
    floor = Floor(store, cfg)
    two_hours_held(floor)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for k in range(121, 300):
                floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 7, "ns": "lab-ns"}])
        except BaseException as exc:            # reported below, in the test's thread
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        rollup.build(store, cfg, T10 + timedelta(hours=6))
    writer.join()
    assert errors == []
    rollup.build(store, cfg, T10 + timedelta(hours=6))
    assert dirty(store) == []
    incremental = {t: rows_of(store, t) for t in rollup.TIERS}
    with store.cursor() as cur:
        for t in rollup.TIERS:
            cur.execute(f"DELETE FROM {t}")
        cur.execute("INSERT INTO rollup_dirty SELECT DISTINCT bucket_1h(ts), now() FROM device_samples")
    rollup.build(store, cfg, T10 + timedelta(hours=6))
    assert {t: rows_of(store, t) for t in rollup.TIERS} == incremental


def test_a_file_the_rollup_and_retention_shrank_opens_again(tmp_path):
    """Building and deleting leaves free blocks at the end of the file, which DuckDB truncates
    when it closes the file: the store opens such a file as the healthy file it is."""
    path = tmp_path / "shrunk.duckdb"
    cfg = cfg_with()
    store = Store(path)
    for h in range(24):                 # a day of 64 GPUs every 15 s, an hour a batch
        with store.cursor() as cur:
            batch = cur.sql(f"""SELECT TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds({h * 3600} + (i // 64) * 15)
                                       AS ts, 'GPU-' || (i % 64) AS device_id, (i * 7) % 101 AS util_pct
                                FROM range(64 * 240) t(i)""").to_arrow_table()
        store.write_scrape(samples=batch)
    store.close()
    store = Store(path)
    rollup.build(store, cfg, T10)
    rollup.retention(store, cfg, T10 + timedelta(days=100))
    store.close()
    import duckdb

    raw = duckdb.connect(str(path), read_only=True)
    size, total = raw.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchall()[0]
    raw.close()
    assert path.stat().st_size < size * total              # the file ends before its last free blocks
    reopened = Store(path)
    with reopened.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == 0
        assert cur.execute("SELECT count(*) FROM rollup_device_1h").fetchall()[0][0] > 0
    reopened.close()


def test_hours_taken_by_a_build_that_failed_or_stopped_are_built_again(store, monkeypatch):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in range(3):
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100}])
    marked = dirty(store)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(rollup, "_build_groups", broken)
        with pytest.raises(RuntimeError):
            rollup.build(store, cfg, T10 + timedelta(hours=1))
    assert dirty(store) == marked                         # the failed chunk's hours came back
    store.take_dirty(24)                                  # a process that stopped after taking them
    assert dirty(store) == []
    rollup.build(store, cfg, T10 + timedelta(hours=1))
    # 10:00 and 10:01 stand 60 s each, 10:02 (newest, 58 min old) one interval: 180 s
    assert group(store)["observed_s"] == 180.0 and dirty(store) == []


def test_a_write_marks_each_hour_once(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    floor.scrape(T10, [{"uuid": "GPU-0000", "util": 100}])
    with store.cursor() as cur:
        first = cur.execute("SELECT hour, marked_at FROM rollup_dirty ORDER BY hour").fetchall()
    floor.scrape(T10 + MINUTE, [{"uuid": "GPU-0000", "util": 100}])
    with store.cursor() as cur:
        assert cur.execute("SELECT hour, marked_at FROM rollup_dirty ORDER BY hour").fetchall() == first
    rollup.build(store, cfg, T10 + timedelta(hours=1))
    floor.scrape(T10 + 2 * MINUTE, [{"uuid": "GPU-0000", "util": 100}])    # after the build took it
    assert dirty(store) == [T10]


def tenant_tier(store: Store) -> list[tuple]:
    """rollup_tenant_1h as (bucket, tenant, devices, allocated_s, busy_s, peak_gpus)."""
    with store.cursor() as cur:
        return cur.execute(f"""SELECT bucket, tenant, devices, allocated_s, busy_s, peak_gpus
                               FROM {rollup.TENANT_TIER} ORDER BY ALL""").fetchall()


def test_the_tenant_tier_keeps_each_hours_peak_and_is_filled_on_an_older_store(store):
    cfg = cfg_with()
    floor = Floor(store, cfg)
    for k in range(61):          # GPU-0000 held by lab-ns 10:00-11:00; GPU-0001 unheld, then held from 10:30
        floor.scrape(T10 + k * MINUTE, [{"uuid": "GPU-0000", "util": 100, "ns": "lab-ns"},
                                        {"uuid": "GPU-0001", "util": 0, "ns": "lab-ns" if k >= 30 else None}])
    rollup.build(store, cfg, T10 + timedelta(hours=3))
    built = tenant_tier(store)
    # 10:00: lab held GPU-0000 60 x 60 s and GPU-0001 30 x 60 s: 5,400 s, busy 3,600 s; from
    # 10:30 both at once: a 5-minute bucket of 600 s = 2.0 GPUs, more than the hour's mean 1.5.
    # The 11:00 samples (the newest) stand 60 s each: 120 s, in a 5-minute bucket 0.4 GPUs.
    # Nobody held GPU-0001 10:00-10:30: nobody's time, never allocated, so no GPUs held at once.
    assert built == [(T10, "_unallocated", 1, 0.0, 0.0, 0.0),
                     (T10, "lab", 2, 5400.0, 3600.0, 2.0),
                     (T10 + HOUR, "lab", 2, 120.0, 60.0, 0.4)]
    with store.cursor() as cur:          # the group tier holds the same sums
        assert cur.execute("""SELECT sum(allocated_s), sum(busy_s) FROM rollup_group_1h
                              WHERE tenant = 'lab'""").fetchall() == [(5520.0, 3660.0)]
    with store.cursor() as cur:          # as migration 019 leaves a store with history
        cur.execute(f"DELETE FROM {rollup.TENANT_TIER}").fetchall()
        cur.execute("DELETE FROM kv WHERE key = ?", [rollup.TENANT_KEY]).fetchall()
    result = rollup.build(store, cfg, T10 + timedelta(hours=3))
    assert "regrouped" not in result.detail and result.rows == 3 + 2      # and the cluster tier's two hours
    assert tenant_tier(store) == built
    with store.cursor() as cur:          # the cluster tier: train-a's hours summed over lab and nobody
        assert cur.execute(f"""SELECT bucket, cluster, observed_s, allocated_s FROM {rollup.CLUSTER_TIER}
                               ORDER BY ALL""").fetchall() == [(T10, "train-a", 7200.0, 5400.0),
                                                               (T10 + HOUR, "train-a", 120.0, 120.0)]
    assert rollup.build(store, cfg, T10 + timedelta(hours=3)).rows == 0      # filled once
    # the 5-minute tier retired (retention): a rebuild falls back to the hourly mean
    with store.cursor() as cur:
        cur.execute("DELETE FROM rollup_group_5m").fetchall()
    rollup.fill_tenants(store)
    assert [row[-1] for row in tenant_tier(store)] == [0.0, 1.5, 120 / 3600]
