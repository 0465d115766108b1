"""DcgmCollector.from_text: canonical Arrow batches, tenant attribution, the
device catalogue (MIG and vGPU names included) and the EventTracker's XID,
thermal, lost and back events, on the fixtures in tests/fixtures/dcgm."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from collectors.batch import DEVICE_SCHEMA, EVENT_SCHEMA, MIG_SLICES_PER_GPU, SAMPLE_SCHEMA, EventTracker
from collectors.dcgm import DcgmCollector
from collectors.exposition import NotExposition
from collectors.targets import Target
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES
from helpers import K8S_GPU0, K8S_GPU1, K8S_GPU2, MIG_GPU, read

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)


def target(url: str = "http://gpu-node-017:9400/metrics", host: str | None = "gpu-node-017") -> Target:
    return Target(url=url, source="train-a-dcgm", kind="dcgm", site="sh-lingang", cluster="train-a", host=host)


@pytest.fixture
def collector(cfg) -> DcgmCollector:
    return DcgmCollector(cfg, fetch=lambda url, timeout: pytest.fail("no network in tests"))


def by_device(table: pa.Table) -> dict[str, dict]:
    return {r["device_id"]: r for r in table.to_pylist()}


def events(scrape) -> list[dict]:
    return [] if scrape.events is None else scrape.events.to_pylist()


def scrape_text(gpus: dict[int, dict]) -> str:
    """Minimal dcgm-exporter text for the tracker tests: gpu index -> field values."""
    fields = {"xid": "DCGM_FI_DEV_XID_ERRORS", "throttle": "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
              "temp": "DCGM_FI_DEV_GPU_TEMP", "util": "DCGM_FI_DEV_GPU_UTIL"}
    out = []
    for key, metric in fields.items():
        out.append(f"# HELP {metric} x\n# TYPE {metric} gauge\n")
        for i, vals in gpus.items():
            labels = (f'gpu="{i}",UUID="GPU-evt-000{i}",device="nvidia{i}",modelName="NVIDIA H100 80GB HBM3",'
                      f'Hostname="evt-node"')
            if key == "xid":
                labels += f',err_code="{vals.get("xid", 0)}"'
            out.append(f"{metric}{{{labels}}} {vals.get(key, 0)}\n")
    return "".join(out)


# --- samples: the canonical schema and values ---------------------------------------------

def test_samples_have_the_canonical_schema(collector):
    s = collector.from_text(read("dcgm4_k8s.txt"), target(), T0)
    assert s.samples.schema == SAMPLE_SCHEMA
    expected = (["ts", "device_id", "site", "cluster", "host"] + list(SAMPLE_MEASURES) + ["tenant"]
                + list(SAMPLE_LABELS) + ["source"])
    assert s.samples.column_names == expected
    for col, typ in SAMPLE_MEASURES.items():
        want = pa.int64() if typ == "BIGINT" else pa.float64()
        assert s.samples.schema.field(col).type == want, col
    assert s.samples.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert s.rows == 3 and s.samples.num_rows == 3 and s.lines_skipped == 0 and s.issues == []
    assert s.devices.schema == DEVICE_SCHEMA


def test_sample_values(collector):
    s = collector.from_text(read("dcgm4_k8s.txt"), target(), T0)
    rows = by_device(s.samples)
    g0, g1, g2 = rows[K8S_GPU0], rows[K8S_GPU1], rows[K8S_GPU2]
    assert g0["ts"] == T0
    assert (g0["site"], g0["cluster"], g0["host"], g0["source"]) == ("sh-lingang", "train-a", "gpu-node-017",
                                                                    "train-a-dcgm")
    assert g0["util_pct"] == 87.0 and g0["power_w"] == 612.345678
    assert g0["energy_j"] == pytest.approx(98765432.101, rel=1e-15)
    assert (g0["mem_used_mib"], g0["mem_free_mib"], g0["temp_c"]) == (71234.0, 10325.0, 71.0)
    assert (g0["sm_active"], g0["tensor_active"]) == (0.913472, 0.624018)
    assert g0["throttle_reasons"] == 4 and type(g0["throttle_reasons"]) is int
    assert g2["xid_last"] == 13 and type(g2["xid_last"]) is int
    assert g2["throttle_reasons"] == 64
    assert g1["util_pct"] == 0.0 and g1["mem_used_mib"] == 0.0
    assert g0["ecc_dbe_volatile"] is None          # not in the scrape: NULL, never 0


def test_tenant_attribution_from_config_namespaces(collector, cfg):
    assert cfg.tenant_for_namespace()["moonlake-train"] == "moonlake"
    rows = by_device(collector.from_text(read("dcgm4_k8s.txt"), target(), T0).samples)
    assert (rows[K8S_GPU0]["tenant"], rows[K8S_GPU0]["namespace"], rows[K8S_GPU0]["pod"],
            rows[K8S_GPU0]["container"]) == ("moonlake", "moonlake-train", "llm-pretrain-worker-0", "trainer")
    # a namespace no tenant owns: tenant NULL, the sample and its attribution kept
    assert (rows[K8S_GPU2]["tenant"], rows[K8S_GPU2]["namespace"], rows[K8S_GPU2]["pod"]) == \
        (None, "research-sandbox", "jupyter-alice-0")
    assert rows[K8S_GPU2]["util_pct"] == 42.0
    # not allocated
    assert (rows[K8S_GPU1]["tenant"], rows[K8S_GPU1]["namespace"], rows[K8S_GPU1]["pod"]) == (None, None, None)


def test_devices_table(collector):
    s = collector.from_text(read("dcgm4_k8s.txt"), target(), T0)
    d = by_device(s.devices)
    g0 = d[K8S_GPU0]
    assert g0["vendor"] == "nvidia" and g0["model"] == "NVIDIA H100 80GB HBM3"
    assert g0["catalogue_model"] == "H100-SXM" and g0["peak_dense_tflops"] == 989.0
    assert g0["mem_total_mib"] == 71234.0 + 10325.0
    assert (g0["gpu_index"], g0["uuid"], g0["pci_bus_id"], g0["driver_version"]) == \
        (0, K8S_GPU0, "00000000:18:00.0", "550.90.07")
    assert g0["mig_parent"] is None and g0["mig_profile"] is None
    assert (g0["host"], g0["site"], g0["cluster"], g0["source"], g0["target"]) == \
        ("gpu-node-017", "sh-lingang", "train-a", "train-a-dcgm", "http://gpu-node-017:9400/metrics")
    assert g0["first_seen"] == g0["last_seen"] == T0
    assert d[K8S_GPU1]["mem_total_mib"] == 81559.0 and d[K8S_GPU1]["gpu_index"] == 1


def test_mig_devices_and_peak_share(collector):
    s = collector.from_text(read("mig_h100.txt"), target("http://mig-node-03:9400/metrics", "mig-node-03"), T0)
    d = by_device(s.devices)
    small, big = d[f"{MIG_GPU}/9"], d[f"{MIG_GPU}/2"]
    assert MIG_SLICES_PER_GPU == 7
    assert small["catalogue_model"] == big["catalogue_model"] == "H100-SXM"
    assert small["peak_dense_tflops"] == pytest.approx(989.0 * 1 / 7)
    assert big["peak_dense_tflops"] == pytest.approx(989.0 * 3 / 7)
    assert (small["mig_profile"], big["mig_profile"]) == ("1g.10gb", "3g.40gb")
    assert small["mig_parent"] == big["mig_parent"] == MIG_GPU
    assert small["uuid"] == MIG_GPU and small["gpu_index"] == 0
    assert (small["mem_total_mib"], big["mem_total_mib"]) == (3315.0 + 6437.0, 13.0 + 40331.0)
    samples = by_device(s.samples)
    assert samples[f"{MIG_GPU}/9"]["tenant"] == "chatserve"           # cs-inference belongs to ChatServe
    assert samples[f"{MIG_GPU}/9"]["pod"] == "chat-api-7d9f8-xk2lp"
    assert samples[f"{MIG_GPU}/2"]["tenant"] is None and samples[f"{MIG_GPU}/2"]["namespace"] is None
    assert samples[f"{MIG_GPU}/9"]["tensor_active"] == 0.330512


def test_unparseable_mig_profile_gives_no_peak(collector):
    text = ('DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-nullmig",modelName="NVIDIA A100-SXM4-40GB",'
            'GPU_I_PROFILE="<<<NULL>>>",GPU_I_ID="6",Hostname="a0321111701"} 10\n')
    d = collector.from_text(text, target(), T0).devices.to_pylist()[0]
    assert d["catalogue_model"] == "A100" and d["peak_dense_tflops"] is None


def test_vgpu_names_find_their_base_model(collector):
    d = by_device(collector.from_text(read("vgpu_guest.txt"), target(), T0).devices)
    g0 = d["GPU-0a1b2c3d-4e5f-11ee-8a9b-0c0d0e0f1011"]
    g1 = d["GPU-0a1b2c3d-4e5f-11ee-8a9b-0c0d0e0f2022"]
    assert (g0["model"], g1["model"]) == ("GRID A100-40C", "NVIDIA A100-40C")
    assert g0["catalogue_model"] == g1["catalogue_model"] == "A100"
    assert g0["peak_dense_tflops"] == 312.0
    assert (g0["mem_total_mib"], g1["mem_total_mib"]) == (40960.0, 40960.0)


def test_model_from_string_field_reaches_the_catalogue(collector):
    d = collector.from_text(read("string_values.txt"), target(), T0).devices.to_pylist()
    assert [r["model"] for r in d] == ["Tesla T4", "Tesla T4"]
    assert [r["catalogue_model"] for r in d] == ["T4", "T4"]
    assert d[0]["peak_dense_tflops"] == 65.0


def test_unknown_model_keeps_vendor_and_null_peak(collector):
    text = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-unknown",modelName="NVIDIA RTX A5000",Hostname="ws"} 3\n'
    d = collector.from_text(text, target(), T0).devices.to_pylist()[0]
    assert (d["vendor"], d["catalogue_model"], d["peak_dense_tflops"]) == ("nvidia", None, None)


def test_legacy_text_takes_host_from_the_target(collector):
    s = collector.from_text(read("dcgm2_legacy.txt"), target("http://10.0.3.7:9400/metrics", "v100-node-01"), T0)
    assert s.samples.column("host").to_pylist() == ["v100-node-01", "v100-node-01"]
    d = s.devices.to_pylist()
    assert [r["catalogue_model"] for r in d] == ["V100", "V100"]
    assert d[0]["pci_bus_id"] is None and d[0]["driver_version"] is None
    assert s.samples.column("energy_j").to_pylist() == pytest.approx([4335301.032, 1200000.5])


def test_host_from_target_mode(cfg):
    c = DcgmCollector(cfg, host_from_label=False)
    s = c.from_text(read("dcgm4_k8s.txt"), target(host="node-17.example"), T0)
    assert set(s.samples.column("host").to_pylist()) == {"node-17.example"}
    assert set(s.devices.column("host").to_pylist()) == {"node-17.example"}


def test_exporter_timestamps_become_sample_times(collector):
    s = collector.from_text(read("timestamps_ms.txt"), target(), T0)
    exporter_time = datetime(2025, 11, 23, 0, 0, 0, 123000, tzinfo=UTC)
    assert s.samples.column("ts").to_pylist() == [exporter_time, exporter_time]
    assert s.devices.column("first_seen").to_pylist() == [exporter_time, exporter_time]


def test_blank_sentinels_are_null_in_the_table(collector):
    rows = by_device(collector.from_text(read("blank_sentinels.txt"), target(), T0).samples)
    g0 = rows["GPU-5b4a3928-1706-4f5e-9d3c-2b1a09f8e7d6"]
    g1 = rows["GPU-5b4a3928-1706-4f5e-9d3c-2b1a09f8e7d7"]
    assert g0["temp_c"] is None and g0["tensor_active"] is None and g1["xid_last"] is None
    assert g1["temp_c"] == 48.0 and g0["xid_last"] == 0


def test_malformed_lines_are_counted_on_the_scrape(collector):
    s = collector.from_text(read("malformed.txt"), target(), T0)
    assert s.rows == 2 and s.lines_skipped == 4
    assert [(i.lineno, i.reason) for i in s.issues] == [
        (4, "label block not closed"), (8, "value is not a number: 'N/A'"),
        (9, "not a sample line"), (16, "label block not closed"),
    ]


def test_not_exposition_propagates(collector):
    with pytest.raises(NotExposition):
        collector.from_text(read("html_nginx_502.txt"), target(), T0)


# --- events ----------------------------------------------------------------------------------

def test_first_scrape_events_and_schema(collector):
    s = collector.from_text(read("dcgm4_k8s.txt"), target(), T0)
    assert s.events.schema == EVENT_SCHEMA
    ev = sorted(events(s), key=lambda e: e["kind"])
    assert [(e["kind"], e["device_id"], e["code"]) for e in ev] == [
        ("thermal", K8S_GPU2, 64),     # HW thermal slowdown 0x40; GPU0's 0x04 (power cap) is not thermal
        ("xid", K8S_GPU2, 13),
    ]
    th = ev[0]
    assert th["detail"] == "84"        # temperature at the start of throttling
    for e in ev:
        assert (e["ts"], e["site"], e["cluster"], e["host"], e["gpu_index"], e["source"]) == \
            (T0, "sh-lingang", "train-a", "gpu-node-017", 2, "train-a-dcgm")
    # the same scrape again: nothing new
    again = collector.from_text(read("dcgm4_k8s.txt"), target(), T0 + timedelta(seconds=15))
    assert again.events is None


def test_new_xid_is_one_event_and_repeats_are_not(collector):
    t = target("http://evt-node:9400/metrics", "evt-node")
    assert events(collector.from_text(scrape_text({0: {}, 1: {}}), t, T0)) == []
    s = collector.from_text(scrape_text({0: {"xid": 79}, 1: {}}), t, T0 + timedelta(seconds=15))
    ev = events(s)
    assert [(e["kind"], e["device_id"], e["code"], e["gpu_index"], e["host"]) for e in ev] == \
        [("xid", "GPU-evt-0000", 79, 0, "evt-node")]
    assert ev[0]["ts"] == T0 + timedelta(seconds=15)
    assert events(collector.from_text(scrape_text({0: {"xid": 79}, 1: {}}), t, T0 + timedelta(seconds=30))) == []
    # a different XID on the same GPU is new again
    ev = events(collector.from_text(scrape_text({0: {"xid": 48}, 1: {}}), t, T0 + timedelta(seconds=45)))
    assert [(e["kind"], e["code"]) for e in ev] == [("xid", 48)]


def test_thermal_start_is_one_event(collector):
    t = target("http://evt-node:9400/metrics", "evt-node")
    step = iter(range(0, 3600, 15))

    def run(gpus):
        return events(collector.from_text(scrape_text(gpus), t, T0 + timedelta(seconds=next(step))))

    assert run({0: {"throttle": 0, "temp": 60}}) == []
    assert run({0: {"throttle": 4, "temp": 70}}) == []                  # SW power cap: not thermal
    ev = run({0: {"throttle": 0x40, "temp": 91}})
    assert [(e["kind"], e["device_id"], e["code"], e["detail"]) for e in ev] == \
        [("thermal", "GPU-evt-0000", 0x40, "91")]
    assert run({0: {"throttle": 0x40, "temp": 92}}) == []               # still throttling
    assert run({0: {"throttle": 0x44, "temp": 92}}) == []               # still thermal, plus power cap
    assert run({0: {"throttle": 0, "temp": 75}}) == []                  # the end is no event
    ev = run({0: {"throttle": 0x20, "temp": 88}})                       # SW thermal: a new start
    assert [(e["kind"], e["code"]) for e in ev] == [("thermal", 0x20)]


def test_lost_and_back(collector):
    t = target("http://evt-node:9400/metrics", "evt-node")
    three = {0: {}, 1: {}, 2: {}}
    assert events(collector.from_text(scrape_text(three), t, T0)) == []
    ev = events(collector.from_text(scrape_text({0: {}, 2: {}}), t, T0 + timedelta(seconds=15)))
    assert [(e["kind"], e["device_id"], e["gpu_index"], e["host"], e["code"]) for e in ev] == \
        [("lost", "GPU-evt-0001", 1, "evt-node", None)]
    assert ev[0]["ts"] == T0 + timedelta(seconds=15) and ev[0]["site"] == "sh-lingang"
    # still missing: no second "lost"
    assert events(collector.from_text(scrape_text({0: {}, 2: {}}), t, T0 + timedelta(seconds=30))) == []
    ev = events(collector.from_text(scrape_text(three), t, T0 + timedelta(seconds=45)))
    assert [(e["kind"], e["device_id"], e["gpu_index"]) for e in ev] == [("back", "GPU-evt-0001", 1)]
    assert events(collector.from_text(scrape_text(three), t, T0 + timedelta(seconds=60))) == []


def test_lost_is_per_target(collector):
    a = target("http://node-a:9400/metrics", "node-a")
    b = target("http://node-b:9400/metrics", "node-b")
    collector.from_text(scrape_text({0: {}, 1: {}}), a, T0)
    # another target's scrape, without node-a's GPUs, loses nothing
    assert events(collector.from_text(read("dcgm2_legacy.txt"), b, T0)) == []
    assert events(collector.from_text(scrape_text({0: {}, 1: {}}), a, T0 + timedelta(seconds=15))) == []


def test_primed_tracker_does_not_repeat_known_state(cfg):
    tracker = EventTracker()
    tracker.prime([{"device_id": K8S_GPU2, "xid_last": 13, "throttle_reasons": 64},
                   {"device_id": K8S_GPU0, "xid_last": None, "throttle_reasons": None}])
    c = DcgmCollector(cfg, tracker=tracker)
    assert c.from_text(read("dcgm4_k8s.txt"), target(), T0).events is None


def test_track_false_leaves_the_tracker_alone(collector):
    s = collector.from_text(read("dcgm4_k8s.txt"), target(), T0, track=False)
    assert s.events is None
    assert collector.tracker.xid == {} and collector.tracker.present == {}


def test_blank_xid_is_no_event(collector):
    s = collector.from_text(read("blank_sentinels.txt"), target(), T0)
    assert [e for e in events(s) if e["kind"] == "xid"] == []


# Known bug (reported to the lead): a proxy's error body with a line of plain words
# parses as an empty scrape instead of raising NotExposition, so every GPU of the
# target is reported "lost" although only the proxy failed.
def test_proxy_error_body_does_not_lose_every_gpu(collector):
    collector.from_text(read("dcgm4_k8s.txt"), target(), T0)
    body = "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n"
    with pytest.raises(NotExposition):
        collector.from_text(body, target(), T0 + timedelta(seconds=15))
