"""NvmlCollector on a scripted NVML (tests/fake_nvml.py): a 2 x H100 host whose GPU 1 is
split into two MIG instances. Unit conversions against hand-computed numbers, MIG
identity and peak shares as dcgm-exporter's, "no value" and unexpected NVML errors,
lost GPUs, XIDs from the event set (stored once each), a missing NVML library through
the real scheduler, and what the store holds afterwards."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pynvml
import pytest

from collectors.batch import DEVICE_SCHEMA, EVENT_SCHEMA, SAMPLE_SCHEMA, EventTracker
from collectors.dcgm import DcgmCollector
from collectors.nvml import UNAVAILABLE, NvmlCollector
from collectors.registry import make_collector, source_targets
from collectors.scheduler import Scheduler
from collectors.targets import ScrapeError, Target
from config import Source
from fake_nvml import GIB, FakeGpu, FakeMig, FakeNvml
from helpers import MIG_GPU, read

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
HOST = "gpu-node-042"
MIB = 1024 * 1024
GPU0 = "GPU-5d0e6a11-2b3c-4d4e-8f5a-6b7c8d9e0a01"
GPU1 = "GPU-5d0e6a11-2b3c-4d4e-8f5a-6b7c8d9e0a02"
MIG_SMALL, MIG_BIG = f"{GPU1}/9", f"{GPU1}/2"
CORRECTED, UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
VOLATILE, AGGREGATE = pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC


def target(host: str = HOST) -> Target:
    return Target(url=f"nvml://{host}", source="local-nvml", kind="nvml", site="sh-lingang", cluster="train-a",
                  host=host)


def two_h100() -> FakeNvml:
    """GPU 0 whole (memory temperature not supported); GPU 1 in MIG mode, ECC disabled."""
    return FakeNvml([
        FakeGpu(uuid=GPU0, bus_id="00000000:18:00.0", util=87, used=10 * GIB, power_mw=350_000,
                energy_mj=1_234_567_890, temp_c=61, mem_temp_c=None, sm_clock=1980, mem_clock=2619,
                throttle=0x4, ecc={(CORRECTED, VOLATILE): 3, (CORRECTED, AGGREGATE): 12,
                                   (UNCORRECTED, AGGREGATE): 1},
                remapped=(2, 1, 0, 0), processes=2),
        FakeGpu(uuid=GPU1, bus_id="00000000:2A:00.0", power_mw=143_870, energy_mj=5_550_001_234, temp_c=45,
                mem_temp_c=48, ecc=None, migs=[FakeMig(9, "1g.10gb", used=3315 * MIB, total=9856 * MIB, processes=1),
                                              FakeMig(2, "3g.40gb", used=13 * MIB, total=40192 * MIB)]),
    ])


class Clock:
    """The time XIDs are seen at: starts at T0 + 1 s, one second further per reading."""

    def __init__(self, start: datetime = T0 + timedelta(seconds=1)):
        self.t = start.timestamp()

    def __call__(self) -> float:
        self.t += 1.0
        return self.t - 1.0


@pytest.fixture
def fake() -> FakeNvml:
    return two_h100()


@pytest.fixture
def collector(cfg, fake) -> NvmlCollector:
    c = NvmlCollector(cfg, host=HOST, nvml=fake, clock=Clock())
    yield c
    c.close()


def rows(table) -> dict[str, dict]:
    return {r["device_id"]: r for r in table.to_pylist()}


def events(scrape) -> list[tuple]:
    return [] if scrape.events is None else [(e["kind"], e["device_id"], e["code"]) for e in scrape.events.to_pylist()]


def drain(c: NvmlCollector) -> None:
    """Let the XID watch take everything queued (as its thread would), without a thread."""
    while c.poll_xids(0) and c.nvml.queued_xids():
        pass


# --- samples and devices ----------------------------------------------------------------------

def test_samples_have_the_canonical_schema(collector):
    s = collector.collect(target(), T0)
    assert s.samples.schema == SAMPLE_SCHEMA and s.devices.schema == DEVICE_SCHEMA
    assert s.rows == 3 and sorted(s.samples.column("device_id").to_pylist()) == sorted([GPU0, MIG_SMALL, MIG_BIG])
    assert s.events is None and s.lines_skipped == 0


def test_unit_conversions(collector):
    g0 = rows(collector.collect(target(), T0).samples)[GPU0]
    assert g0["power_w"] == 350.0                                   # 350 000 mW
    assert g0["energy_j"] == pytest.approx(1_234_567.89)            # 1 234 567 890 mJ
    assert (g0["mem_used_mib"], g0["mem_free_mib"]) == (10240.0, 71680.0)   # 10 GiB of 80 GiB
    assert (g0["util_pct"], g0["temp_c"], g0["sm_clock_mhz"], g0["mem_clock_mhz"]) == (87.0, 61.0, 1980.0, 2619.0)
    assert g0["throttle_reasons"] == 4 and type(g0["throttle_reasons"]) is int
    assert (g0["ecc_sbe_volatile"], g0["ecc_dbe_volatile"], g0["ecc_sbe_aggregate"], g0["ecc_dbe_aggregate"]) == \
        (3, 0, 12, 1)
    assert (g0["remapped_rows_correctable"], g0["remapped_rows_uncorrectable"], g0["row_remap_pending"],
            g0["row_remap_failed"]) == (2, 1, 0, 0)
    assert g0["processes"] == 2
    assert g0["energy_delta_j"] is None                             # first sample: interval unknown
    assert (g0["host"], g0["site"], g0["cluster"], g0["source"], g0["ts"]) == \
        (HOST, "sh-lingang", "train-a", "local-nvml", T0)
    assert g0["xid_last"] is None                                   # nobody watches XIDs (no start())
    assert g0["sm_active"] is None and g0["tensor_active"] is None  # NVML has no profiling counters


def test_energy_delta_between_collects_and_after_a_driver_reload(collector, fake):
    collector.collect(target(), T0)
    fake.gpus[0].energy_mj += 4_500_000                              # 4.5 kJ: 300 W for 15 s
    g0 = rows(collector.collect(target(), T0 + STEP).samples)[GPU0]
    assert g0["energy_j"] == pytest.approx(1_239_067.89) and g0["energy_delta_j"] == pytest.approx(4500.0)
    fake.gpus[0].energy_mj = 2_000_000                               # counter restarted with the driver
    g0 = rows(collector.collect(target(), T0 + 2 * STEP).samples)[GPU0]
    assert g0["energy_delta_j"] == pytest.approx(2000.0)


def test_devices_table(collector):
    d = rows(collector.collect(target(), T0).devices)[GPU0]
    assert (d["vendor"], d["model"], d["catalogue_model"], d["peak_dense_tflops"]) == \
        ("nvidia", "NVIDIA H100 80GB HBM3", "H100-SXM", 989.0)
    assert (d["gpu_index"], d["uuid"], d["pci_bus_id"], d["driver_version"]) == (0, GPU0, "00000000:18:00.0",
                                                                                  "550.90.07")
    assert d["mem_total_mib"] == 81920.0                            # 80 GiB
    assert (d["host"], d["target"], d["mig_parent"], d["mig_profile"]) == (HOST, f"nvml://{HOST}", None, None)


def test_mig_instances_are_devices_with_their_parent_and_peak_share(collector):
    s = collector.collect(target(), T0)
    d = rows(s.devices)
    assert GPU1 not in d                                            # the board shows as its instances
    small, big = d[MIG_SMALL], d[MIG_BIG]
    assert (small["mig_profile"], big["mig_profile"]) == ("1g.10gb", "3g.40gb")
    assert small["mig_parent"] == big["mig_parent"] == small["uuid"] == GPU1
    assert small["gpu_index"] == big["gpu_index"] == 1 and small["model"] == "NVIDIA H100 80GB HBM3"
    assert small["peak_dense_tflops"] == pytest.approx(989.0 / 7)
    assert big["peak_dense_tflops"] == pytest.approx(989.0 * 3 / 7)
    assert (small["mem_total_mib"], big["mem_total_mib"]) == (9856.0, 40192.0)
    smp = rows(s.samples)
    assert (smp[MIG_SMALL]["mem_used_mib"], smp[MIG_BIG]["mem_used_mib"]) == (3315.0, 13.0)
    assert (smp[MIG_SMALL]["processes"], smp[MIG_BIG]["processes"]) == (1, 0)
    assert smp[MIG_SMALL]["util_pct"] is None                       # NVML has none for a MIG instance
    for dev in (MIG_SMALL, MIG_BIG):                                # board values repeat, like dcgm-exporter's
        assert (smp[dev]["power_w"], smp[dev]["temp_c"], smp[dev]["mem_temp_c"]) == (143.87, 45.0, 48.0)
        assert smp[dev]["energy_j"] == pytest.approx(5_550_001.234)


def test_same_gpu_has_the_same_identity_as_from_dcgm_exporter(cfg):
    """tests/fixtures/dcgm/mig_h100.txt's GPU, read through NVML instead."""
    nvml = FakeNvml([FakeGpu(uuid=MIG_GPU, bus_id="00000000:1B:00.0", migs=[
        FakeMig(9, "1g.10gb", used=3315 * MIB, total=9752 * MIB), FakeMig(2, "3g.40gb", used=13 * MIB,
                                                                         total=40344 * MIB)])])
    via_nvml = NvmlCollector(cfg, host="mig-node-03", nvml=nvml).collect(target("mig-node-03"), T0)
    via_dcgm = DcgmCollector(cfg).from_text(read("mig_h100.txt"), target("mig-node-03"), T0)
    keys = ("device_id", "vendor", "model", "catalogue_model", "peak_dense_tflops", "host", "gpu_index", "uuid",
            "pci_bus_id", "mig_parent", "mig_profile", "driver_version", "mem_total_mib")
    assert {d: {k: r[k] for k in keys} for d, r in rows(via_nvml.devices).items()} == \
        {d: {k: r[k] for k in keys} for d, r in rows(via_dcgm.devices).items()}


def test_a_compute_instance_counts_as_its_gpu_instance(cfg):
    """Two compute instances of one GPU instance are two MIG handles but one device, profile 3g.40gb."""
    nvml = FakeNvml([FakeGpu(uuid=GPU1, bus_id="00000000:2A:00.0", migs=[
        FakeMig(1, "1c.3g.40gb", used=0, total=40192 * MIB), FakeMig(1, "2c.3g.40gb", used=0, total=40192 * MIB)])])
    d = NvmlCollector(cfg, host=HOST, nvml=nvml).collect(target(), T0).devices.to_pylist()
    assert [(r["device_id"], r["mig_profile"], r["peak_dense_tflops"]) for r in d] == \
        [(f"{GPU1}/1", "3g.40gb", pytest.approx(989.0 * 3 / 7))]


# --- NVML errors: no value, unexpected, lost ---------------------------------------------------

def test_unsupported_fields_are_null_and_the_rest_is_kept(collector):
    smp = rows(collector.collect(target(), T0).samples)
    assert smp[GPU0]["mem_temp_c"] is None and smp[GPU0]["temp_c"] == 61.0    # field answers NotSupported
    for dev in (MIG_SMALL, MIG_BIG):                                         # ECC disabled: NotSupported
        assert [smp[dev][c] for c in ("ecc_sbe_volatile", "ecc_dbe_volatile", "ecc_sbe_aggregate",
                                      "ecc_dbe_aggregate")] == [None] * 4
        assert smp[dev]["mem_temp_c"] == 48.0 and smp[dev]["remapped_rows_correctable"] == 0


def test_no_permission_is_null_too(collector, fake):
    fake.gpus[0].failures["nvmlDeviceGetRemappedRows"] = pynvml.NVMLError_NoPermission()
    g0 = rows(collector.collect(target(), T0).samples)[GPU0]
    assert [g0[c] for c in ("remapped_rows_correctable", "remapped_rows_uncorrectable", "row_remap_pending",
                            "row_remap_failed")] == [None] * 4
    assert g0["power_w"] == 350.0 and collector.read_errors == 0          # an expected "no value"


def test_older_driver_falls_back_to_the_throttle_reasons_call(collector, fake):
    fake.gpus[0].failures["nvmlDeviceGetCurrentClocksEventReasons"] = pynvml.NVMLError_FunctionNotFound()
    fake.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x40
    assert rows(collector.collect(target(), T0).samples)[GPU0]["throttle_reasons"] == 0x40


def test_unexpected_error_mid_scrape_loses_only_that_value(collector, fake, store):
    fake.gpus[0].failures["nvmlDeviceGetPowerUsage"] = pynvml.NVMLError_Unknown()
    fake.gpus[1].failures["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVMLError_Timeout()   # a "no value"
    s = collector.collect(target(), T0)
    assert collector.read_errors == 1
    store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)
    with store.cursor() as cur:
        stored = {r[0]: r[1:] for r in cur.execute(
            "SELECT device_id, power_w, energy_j, temp_c, util_pct FROM device_samples").fetchall()}
    assert stored[GPU0][0] is None and stored[GPU0][1] == pytest.approx(1_234_567.89)
    assert stored[GPU0][2:] == (61.0, 87.0)
    assert stored[MIG_SMALL][:3] == (143.87, None, 45.0) and stored[MIG_BIG][0] == 143.87


def test_a_gpu_lost_mid_run_is_one_event_and_the_others_are_still_collected(collector, fake, store):
    first = collector.collect(target(), T0)
    fake.gpus[0].lost = True
    second = collector.collect(target(), T0 + STEP)
    assert set(second.samples.column("device_id").to_pylist()) == {MIG_SMALL, MIG_BIG}
    ev = second.events.to_pylist()
    assert [(e["kind"], e["device_id"], e["gpu_index"], e["host"], e["detail"]) for e in ev] == \
        [("lost", GPU0, 0, HOST, "GPU is lost")]
    assert ev[0]["ts"] == T0 + STEP and second.events.schema == EVENT_SCHEMA
    third = collector.collect(target(), T0 + 2 * STEP)
    assert events(third) == [] and third.rows == 2                  # still lost: no second event
    fake.gpus[0].lost = False
    fourth = collector.collect(target(), T0 + 3 * STEP)
    assert events(fourth) == [("back", GPU0, None)] and fourth.rows == 3
    for s in (first, second, third, fourth):
        store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)
    with store.cursor() as cur:
        assert cur.execute("SELECT kind, device_id FROM device_events ORDER BY ts").fetchall() == \
            [("lost", GPU0), ("back", GPU0)]
        assert cur.execute("SELECT count(*) FROM device_samples WHERE device_id = ?", [MIG_SMALL]).fetchone() == (4,)


def test_a_lost_mig_gpu_reports_each_instance_once(collector, fake):
    collector.collect(target(), T0)
    fake.gpus[1].failures["nvmlDeviceGetMigMode"] = pynvml.NVMLError_GpuIsLost()    # lost part-way through
    s = collector.collect(target(), T0 + STEP)
    assert sorted(events(s)) == [("lost", MIG_BIG, None), ("lost", MIG_SMALL, None)]
    assert s.samples.column("device_id").to_pylist() == [GPU0]
    assert events(collector.collect(target(), T0 + 2 * STEP)) == []


def test_a_gpu_lost_on_the_first_scrape_is_still_reported_once(collector, fake):
    fake.gpus[0].handle_error = pynvml.NVMLError_GpuIsLost()        # not even a handle
    first = collector.collect(target(), T0)
    assert events(first) == [("lost", f"{HOST}/gpu0", None)] and first.rows == 2
    assert first.events.to_pylist()[0]["gpu_index"] == 0
    assert events(collector.collect(target(), T0 + STEP)) == []
    fake.gpus[0].handle_error = None
    back = collector.collect(target(), T0 + 2 * STEP)
    assert events(back) == [("back", f"{HOST}/gpu0", None)] and back.rows == 3
    fake.gpus[0].lost = True                                        # now known: the tracker reports it
    assert events(collector.collect(target(), T0 + 3 * STEP)) == [("lost", GPU0, None)]


def test_a_gpu_that_needs_a_reset_is_lost_under_its_uuid(collector, fake):
    fake.gpus[0].failures["nvmlDeviceGetName"] = pynvml.NVMLError_ResetRequired()
    s = collector.collect(target(), T0)
    assert [(e["kind"], e["device_id"], e["detail"]) for e in s.events.to_pylist()] == \
        [("lost", GPU0, "GPU requires restart")]


def test_handle_lookup_failure_is_a_lost_gpu(collector, fake):
    fake.gpus[1].handle_error = pynvml.NVMLError_Unknown()
    s = collector.collect(target(), T0)
    assert events(s) == [("lost", f"{HOST}/gpu1", None)] and s.samples.column("device_id").to_pylist() == [GPU0]


# --- XIDs ----------------------------------------------------------------------------------------

def test_each_xid_is_one_event_and_sets_xid_last(collector, fake, store):
    drain(collector)                                                # registers the event set
    assert [h.gpu.uuid for h, _ in fake.registered] == [GPU0, GPU1]
    first = collector.collect(target(), T0)
    assert events(first) == [] and set(first.samples.column("xid_last").to_pylist()) == {0}
    fake.emit_xid(0, 79)
    fake.emit_xid(1, 31, gi=2)                                      # one MIG instance's fault
    fake.emit_xid(0, 79)                                            # the same XID again: another event
    drain(collector)
    second = collector.collect(target(), T0 + STEP)
    ev = second.events.to_pylist()
    assert [(e["kind"], e["device_id"], e["code"], e["gpu_index"]) for e in ev] == \
        [("xid", GPU0, 79, 0), ("xid", MIG_BIG, 31, 1), ("xid", GPU0, 79, 0)]
    assert [e["ts"] for e in ev] == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]   # when each was seen
    xid = {d: r["xid_last"] for d, r in rows(second.samples).items()}
    assert xid == {GPU0: 79, MIG_BIG: 31, MIG_SMALL: 0}
    third = collector.collect(target(), T0 + 2 * STEP)              # the live state stays, no new event
    assert events(third) == [] and {d: r["xid_last"] for d, r in rows(third.samples).items()} == xid
    for s in (first, second, third):
        store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)
    with store.cursor() as cur:
        assert cur.execute("SELECT device_id, code FROM device_events WHERE kind = 'xid' ORDER BY ts").fetchall() \
            == [(GPU0, 79), (MIG_BIG, 31), (GPU0, 79)]


def test_a_board_xid_on_a_mig_gpu_is_one_event_and_shows_on_every_instance(collector, fake):
    drain(collector)
    fake.emit_xid(1, 48)                                            # double-bit ECC: the whole board
    drain(collector)
    s = collector.collect(target(), T0)
    assert events(s) == [("xid", GPU1, 48)]
    xid = {d: r["xid_last"] for d, r in rows(s.samples).items()}
    assert xid == {GPU0: 0, MIG_SMALL: 48, MIG_BIG: 48}
    fake.emit_xid(1, 31, gi=9)                                      # a newer instance fault wins there
    drain(collector)
    xid = {d: r["xid_last"] for d, r in rows(collector.collect(target(), T0 + STEP).samples).items()}
    assert xid == {GPU0: 0, MIG_SMALL: 31, MIG_BIG: 48}


def test_xid_79_of_a_gpu_that_then_falls_off_the_bus(collector, fake):
    drain(collector)
    collector.collect(target(), T0)
    fake.emit_xid(0, 79)
    drain(collector)
    fake.gpus[0].lost = True
    s = collector.collect(target(), T0 + STEP)
    assert sorted(events(s)) == [("lost", GPU0, None), ("xid", GPU0, 79)]


def test_ecc_problems_come_from_the_tracker_and_an_ecc_xid_is_one_incident(collector, fake):
    drain(collector)
    collector.collect(target(), T0)
    fake.gpus[0].ecc[(UNCORRECTED, VOLATILE)] = 1                  # a DBE with no XID (yet): an "ecc" event
    s = collector.collect(target(), T0 + STEP)
    assert [(e["kind"], e["device_id"], e["code"], e["detail"]) for e in s.events.to_pylist()] == \
        [("ecc", GPU0, 1, "dbe")]
    fake.gpus[0].ecc[(UNCORRECTED, VOLATILE)] = 2                  # the next DBE comes with its XID 48
    fake.gpus[0].remapped = (2, 1, 1, 0)                            # and a row remap waiting for a reset
    fake.emit_xid(0, 48)
    drain(collector)
    s = collector.collect(target(), T0 + 2 * STEP)
    assert sorted((e["kind"], e["device_id"], e["code"], e["detail"]) for e in s.events.to_pylist()) == \
        [("ecc", GPU0, None, "remap_pending"), ("xid", GPU0, 48, None)]


def test_a_board_ecc_xid_on_a_mig_gpu_covers_its_instances_ecc_rise(collector, fake):
    fake.gpus[1].ecc = {}                                           # ECC on, no errors yet
    drain(collector)
    collector.collect(target(), T0)
    fake.gpus[1].ecc[(UNCORRECTED, VOLATILE)] = 1
    fake.emit_xid(1, 48)
    drain(collector)
    assert events(collector.collect(target(), T0 + STEP)) == [("xid", GPU1, 48)]


def test_a_restart_keeps_xid_last_and_the_tracker_never_repeats_an_xid(cfg, fake):
    """The runtime primes a shared tracker from the store: the live state survives a restart, and the
    tracker, which never sees NVML's xid_last, reports no XID of its own."""
    tracker = EventTracker()
    tracker.prime([{"device_id": GPU0, "xid_last": 13, "throttle_reasons": 0}])
    c = NvmlCollector(cfg, host=HOST, nvml=fake, tracker=tracker, clock=Clock())
    drain(c)
    s = c.collect(target(), T0)
    assert events(s) == [] and rows(s.samples)[GPU0]["xid_last"] == 13
    fake.emit_xid(0, 79)
    drain(c)
    s = c.collect(target(), T0 + STEP)
    assert events(s) == [("xid", GPU0, 79)] and rows(s.samples)[GPU0]["xid_last"] == 79
    assert events(c.collect(target(), T0 + 2 * STEP)) == []
    assert tracker.xid == {GPU0: 13}                                # untouched by NVML's rows
    c.close()


def test_gpu_without_xid_events_has_unknown_xid_last(collector, fake):
    fake.gpus[1].failures["nvmlDeviceRegisterEvents"] = pynvml.NVMLError_NotSupported()
    drain(collector)
    xid = {d: r["xid_last"] for d, r in rows(collector.collect(target(), T0).samples).items()}
    assert xid == {GPU0: 0, MIG_SMALL: None, MIG_BIG: None}


def test_the_watch_thread_delivers_xids_and_stops_quickly(collector, fake):
    collector.start()
    fake.emit_xid(0, 13)
    deadline = time.monotonic() + 5
    seen, n = [], 0
    while not seen and time.monotonic() < deadline:
        seen = events(collector.collect(target(), T0 + n * STEP))
        n += 1
        time.sleep(0.01)
    assert seen == [("xid", GPU0, 13)]
    thread = collector._thread
    collector.stop(timeout=2.0)                                     # it wakes every EVENT_WAIT_MS
    assert not thread.is_alive()
    assert fake.calls["nvmlEventSetFree"] == 1


# --- NVML not available ----------------------------------------------------------------------------

@pytest.mark.parametrize("error, words", [
    (pynvml.NVMLError_LibraryNotFound(), "NVML Shared Library Not Found (is the NVIDIA driver installed?)"),
    (pynvml.NVMLError_DriverNotLoaded(), "Driver Not Loaded (is the nvidia kernel module loaded?)"),
    (pynvml.NVMLError_NoPermission(), "Insufficient Permissions"),
])
def test_no_library_or_driver_is_a_clear_scrape_error_and_init_is_retried(collector, fake, error, words):
    fake.init_error = error
    with pytest.raises(ScrapeError) as exc:
        collector.collect(target(), T0)
    assert str(exc.value) == f"{UNAVAILABLE}: {words}"
    with pytest.raises(ScrapeError):
        collector.collect(target(), T0 + STEP)
    fake.init_error = None                                          # the driver got loaded
    assert collector.collect(target(), T0 + 2 * STEP).rows == 3
    assert fake.calls["nvmlInit"] == 3


def test_driver_gone_mid_run_is_a_scrape_error_and_nvml_is_initialised_again(collector, fake):
    assert collector.collect(target(), T0).rows == 3
    fake.gpus[0].failures["nvmlDeviceGetUUID"] = pynvml.NVMLError_DriverNotLoaded()
    with pytest.raises(ScrapeError, match=f"^{UNAVAILABLE}: Driver Not Loaded"):
        collector.collect(target(), T0 + STEP)
    del fake.gpus[0].failures["nvmlDeviceGetUUID"]
    assert collector.collect(target(), T0 + 2 * STEP).rows == 3 and fake.calls["nvmlInit"] == 2


def test_pynvml_not_importable(cfg):
    c = NvmlCollector(cfg, host=HOST)
    c.module_name = "pynvml_not_installed_here"
    with pytest.raises(ScrapeError, match=f"^{UNAVAILABLE}: cannot import pynvml_not_installed_here"):
        c.collect(target(), T0)


def test_the_real_pynvml_never_crashes(cfg):
    """Without a driver (CI, this machine) a clear ScrapeError; on a GPU host, rows."""
    c = NvmlCollector(cfg, host=HOST)
    try:
        s = c.collect(target(), T0)
    except ScrapeError as exc:
        assert str(exc).startswith(f"{UNAVAILABLE}: ")
    else:
        assert s.rows >= 1 and s.samples.schema == SAMPLE_SCHEMA
    finally:
        c.close()


def test_the_scheduler_records_the_failure_and_goes_on(cfg, store, fake):
    fake.init_error = pynvml.NVMLError_LibraryNotFound()
    c = NvmlCollector(cfg, host=HOST, nvml=fake)
    sched = Scheduler(store, [(c, [target()], 0)], interval_s=15)
    rep = sched.run_cycle(T0)
    assert (rep.ok, rep.failed) == (0, 1)
    with store.cursor() as cur:
        assert cur.execute("SELECT kind, target, ok, error FROM collector_runs").fetchall() == [
            ("nvml", f"nvml://{HOST}", False,
             f"{UNAVAILABLE}: NVML Shared Library Not Found (is the NVIDIA driver installed?)")]
        assert cur.execute("SELECT count(*) FROM device_samples").fetchone() == (0,)
    fake.init_error = None
    rep = sched.run_cycle(T0 + STEP)
    assert (rep.ok, rep.failed, rep.rows) == (1, 0, 3)
    with store.cursor() as cur:
        assert cur.execute("SELECT ok FROM collector_runs ORDER BY started_at").fetchall() == [(False,), (True,)]
        assert cur.execute("SELECT count(*) FROM device_samples").fetchone() == (3,)
    sched.pool.shutdown()


def one_scheduled_cycle(cfg, store, fake):
    """One scheduler cycle of a fresh NVML collector; the target's row on the sources page."""
    c = NvmlCollector(cfg, host=HOST, nvml=fake)
    sched = Scheduler(store, [(c, [target()], 0)], interval_s=15)
    store.register_targets([target().as_row()])
    sched.run_cycle(T0)
    sched.pool.shutdown()
    return store.query("sources", now=T0 + STEP).iloc[0]


def test_failed_reads_are_a_note_on_the_sources_page(cfg, store, fake):
    fake.gpus[0].failures["nvmlDeviceGetPowerUsage"] = pynvml.NVMLError_Unknown()
    src = one_scheduled_cycle(cfg, store, fake)
    assert bool(src.ok) and int(src.rows) == 3
    with store.cursor() as cur:
        (note,) = cur.execute("SELECT error FROM collector_runs").fetchone()
    assert note == "NVML read(s) failed, stored as NULL: nvmlDeviceGetPowerUsage: Unknown Error"


def test_an_implausible_reading_is_null_and_a_note_on_the_sources_page(cfg, store, fake):
    fake.gpus[0].temp_c = 255                  # a board's "no reading", not 255 degrees
    src = one_scheduled_cycle(cfg, store, fake)
    assert bool(src.ok) and int(src.rows) == 3
    assert src.last_error == f"1 implausible value(s) stored as NULL: temp_c = 255 on {GPU0}, allowed -40..150"
    with store.cursor() as cur:
        temps = dict(cur.execute("SELECT device_id, temp_c FROM device_samples").fetchall())
    assert temps[GPU0] is None and temps[MIG_SMALL] is not None


def test_start_and_stop_without_nvml_do_not_crash(cfg, fake):
    fake.init_error = pynvml.NVMLError_DriverNotLoaded()
    c = NvmlCollector(cfg, host=HOST, nvml=fake)
    c.start()
    deadline = time.monotonic() + 5
    while fake.calls["nvmlInit"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread = c._thread
    c.close()
    assert fake.calls["nvmlInit"] >= 1 and not thread.is_alive() and fake.calls["nvmlShutdown"] == 0


# --- the store and the registry ----------------------------------------------------------------------

def test_written_scrape_reads_back(collector, store):
    s = collector.collect(target(), T0)
    assert store.write_scrape(samples=s.samples, devices=s.devices, events=s.events) == 3
    with store.cursor() as cur:
        devices = {r[0]: r[1:] for r in cur.execute(
            "SELECT device_id, model, catalogue_model, peak_dense_tflops, mig_parent, mig_profile, gpu_index, "
            "pci_bus_id, mem_total_mib, host FROM devices").fetchall()}
        sample = cur.execute(
            "SELECT power_w, energy_j, mem_used_mib, mem_clock_mhz, ecc_sbe_aggregate, remapped_rows_uncorrectable, "
            "processes, mem_temp_c FROM device_samples WHERE device_id = ?", [GPU0]).fetchone()
    assert devices[GPU0] == ("NVIDIA H100 80GB HBM3", "H100-SXM", 989.0, None, None, 0, "00000000:18:00.0", 81920.0,
                             HOST)
    assert devices[MIG_BIG][3:6] == (GPU1, "3g.40gb", 1)
    assert devices[MIG_BIG][2] == pytest.approx(989.0 * 3 / 7)
    assert sample[0] == 350.0 and sample[1] == pytest.approx(1_234_567.89)
    assert sample[2:] == (10240.0, 2619.0, 12, 1, 2, None)
    live = store.query("device_latest_state")
    assert set(live["device_id"]) == {GPU0, MIG_SMALL, MIG_BIG}


def test_registry_builds_it_for_an_nvml_source(cfg):
    source = Source(name="local-gpus", kind="nvml", site="sh-lingang", cluster="train-a", host=HOST)
    c = make_collector(cfg, source)
    assert isinstance(c, NvmlCollector) and c.host == HOST and c.kind == "nvml"
    assert [t.url for t in source_targets(source)] == [f"nvml://{HOST}"]


def test_the_fake_only_speaks_pynvml():
    """Every function the fake offers exists in pynvml, so the collector cannot pass on a made-up call."""
    assert [n for n in dir(FakeNvml) if n.startswith("nvml") and not hasattr(pynvml, n)] == []
