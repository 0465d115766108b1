"""AMD Device Metrics Exporter and Huawei Ascend npu-exporter text -> canonical rows.

The fixtures follow the exporters' published formats: families sorted by name
with # HELP/# TYPE, labels sorted by name (Go's Prometheus client), values in
Go's shortest float form (AMD's microjoule counters in e-notation, Ascend's
float32 powers with their binary tails), millisecond timestamps on every Ascend
sample. tests/fixtures/amd: an MI300X Kubernetes node with GPU_UUID and
CARD_SERIES enabled, and a Slurm node with the exporter's default labels (no
UUID, part-number card_model, job labels). tests/fixtures/ascend: an Atlas 800T
A2 (8 x 910B3) on Kubernetes, and an older 910A host whose exporter prints no
vdie_id. Each has an unhealthy device. Expected values are computed by hand
from the fixture lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collectors.amd import AmdCollector
from collectors.ascend import AscendCollector
from collectors.dcgm import target_host
from collectors.exposition import CompiledMapping, parse_devices
from collectors.targets import Target
from config import MappingFile
from helpers import make_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
UTC = timezone.utc
T0 = datetime(2026, 11, 1, 8, 0, 15, tzinfo=UTC)

AMD_GPU0 = "ccff74a1-0000-1000-80e0-c6d49f5b0d86"
AMD_GPU4 = "0aff74a1-0000-1000-8052-7e6d5c4b3a29"
AMD_GPU6 = "27ff74a1-0000-1000-806b-fedcba987654"       # unhealthy: gpu_health 0, 3 uncorrectable ECC
AMD_GPU7 = "b8ff74a1-0000-1000-80a2-13579bdf2468"
NPU0 = "5A8D09E2-2450C918-38D1F48A-0C2B0419-31202053"
NPU4 = "5A8D09E2-2070C318-E241F48A-0C2B0419-5B202053"
NPU6 = "5A8D09E2-2480DD18-4B97F48A-0C2B0419-6D202053"   # unhealthy: health_status 0, 2 double-bit ECC
NPU7 = "5A8D09E2-2190CA18-D07EF48A-0C2B0419-18202053"


def read(vendor: str, name: str) -> str:
    return (FIXTURES / vendor / name).read_bytes().decode("utf-8")


def amd_target(url: str = "http://mi300x-node-07:5000/metrics", host: str | None = None) -> Target:
    return Target(url=url, source="mi300-amd", kind="amd", site="sh-lingang", cluster="train-a", host=host)


def npu_target(url: str = "http://atlas-a2-012:8082/metrics", host: str | None = None) -> Target:
    return Target(url=url, source="a2-npu", kind="ascend", site="sh-lingang", cluster="infer-b", host=host)


def by_device(table) -> dict[str, dict]:
    return {r["device_id"]: r for r in table.to_pylist()}


@pytest.fixture
def amd(cfg) -> AmdCollector:
    return AmdCollector(cfg, fetch=lambda url, timeout: pytest.fail("no network in tests"))


@pytest.fixture
def ascend(cfg) -> AscendCollector:
    return AscendCollector(cfg, fetch=lambda url, timeout: pytest.fail("no network in tests"))


# --- AMD: Kubernetes node -------------------------------------------------------------------

def test_amd_devices_identity_model_and_catalogue(amd):
    s = amd.from_text(read("amd", "mi300x_k8s.txt"), amd_target(), T0)
    assert s.rows == 8 and s.lines_skipped == 0 and s.issues == []
    d = by_device(s.devices)
    assert len(d) == 8 and AMD_GPU0 in d and AMD_GPU6 in d
    g0 = d[AMD_GPU0]
    assert (g0["vendor"], g0["model"], g0["catalogue_model"], g0["peak_dense_tflops"]) == \
        ("amd", "AMD Instinct MI300X OAM", "MI300X", 1307.0)
    assert (g0["uuid"], g0["gpu_index"], g0["host"], g0["driver_version"]) == \
        (AMD_GPU0, 0, "mi300x-node-07", "6.10.5")
    assert g0["mem_total_mib"] == 181248.0 + 15344.0 == 196592.0          # used + free, MiB
    assert g0["mig_parent"] is None and g0["pci_bus_id"] is None
    assert {r["gpu_index"] for r in d.values()} == set(range(8))
    assert all(r["vendor"] == "amd" and r["catalogue_model"] == "MI300X" for r in d.values())


def test_amd_sample_values_and_units(amd):
    rows = by_device(amd.from_text(read("amd", "mi300x_k8s.txt"), amd_target(), T0).samples)
    g0 = rows[AMD_GPU0]
    assert g0["ts"] == T0                                    # the exporter stamps no samples
    assert (g0["util_pct"], g0["power_w"], g0["temp_c"], g0["mem_temp_c"]) == (97.0, 712.0, 78.0, 71.0)
    assert g0["dram_active"] == pytest.approx(0.58)          # gpu_umc_activity 58 %
    assert g0["energy_j"] == pytest.approx(46251098.8416, rel=1e-12)     # 4.62510988416e+13 uJ
    assert (g0["mem_used_mib"], g0["mem_free_mib"]) == (181248.0, 15344.0)
    assert (g0["sm_clock_mhz"], g0["mem_clock_mhz"]) == (2100.0, 1300.0)  # clock_type system / memory
    assert (g0["health"], g0["ecc_dbe_volatile"], g0["ecc_sbe_volatile"]) == (1, 0, 0)
    assert type(g0["health"]) is int
    # not in the scrape (profiler metrics off; no XID, no throttle mask on AMD): NULL, never 0
    for col in ("sm_active", "tensor_active", "xid_last", "throttle_reasons", "processes", "energy_delta_j"):
        assert g0[col] is None, col
    g4 = rows[AMD_GPU4]
    assert (g4["util_pct"], g4["power_w"], g4["sm_clock_mhz"], g4["mem_used_mib"]) == (41.0, 402.0, 1830.0, 150016.0)
    assert g4["energy_j"] == pytest.approx(31877012.3456, rel=1e-12)
    g7 = rows[AMD_GPU7]
    assert (g7["util_pct"], g7["sm_clock_mhz"], g7["mem_clock_mhz"], g7["mem_free_mib"]) == \
        (0.0, 132.0, 900.0, 196592.0 - 282.0)


def test_amd_unreadable_clock_sentinel_is_null_and_noted(amd):
    # GPU 7 prints 65535 MHz for a memory clock it cannot read; the rest of it is kept
    text = read("amd", "mi300x_k8s.txt").splitlines(keepends=True)
    i = next(i for i, line in enumerate(text)
             if line.startswith("gpu_clock{") and 'clock_type="memory"' in line and 'gpu_id="7"' in line)
    text[i] = text[i].rsplit(" ", 1)[0] + " 65535\n"
    s = amd.from_text("".join(text), amd_target(), T0)
    g7 = by_device(s.samples)[AMD_GPU7]
    assert g7["mem_clock_mhz"] is None and g7["sm_clock_mhz"] == 132.0 and g7["util_pct"] == 0.0
    assert s.rows == 8 and s.lines_skipped == 0
    assert [str(n) for n in s.notes] == [f"1 implausible value(s) stored as NULL: mem_clock_mhz = 65,535 on "
                                         f"{AMD_GPU7}, allowed 0..20,000"]
    assert s.notes[0].key == "msg.implausible"          # stored as a key, shown in the reader's language


def test_amd_unhealthy_gpu_and_its_events(amd):
    s = amd.from_text(read("amd", "mi300x_k8s.txt"), amd_target(), T0)
    g6 = by_device(s.samples)[AMD_GPU6]
    assert (g6["health"], g6["ecc_dbe_volatile"], g6["ecc_sbe_volatile"], g6["util_pct"]) == (0, 3, 17, 0.0)
    ev = s.events.to_pylist()
    assert [(e["device_id"], e["kind"], e["gpu_index"], e["host"]) for e in ev] == \
        [(AMD_GPU6, "unhealthy", 6, "mi300x-node-07")]


def test_amd_kubernetes_attribution(amd):
    rows = by_device(amd.from_text(read("amd", "mi300x_k8s.txt"), amd_target(), T0).samples)
    assert (rows[AMD_GPU0]["namespace"], rows[AMD_GPU0]["pod"], rows[AMD_GPU0]["container"],
            rows[AMD_GPU0]["tenant"]) == ("moonlake-train", "llm-pretrain-mi300-worker-0", "trainer", "moonlake")
    assert (rows[AMD_GPU4]["namespace"], rows[AMD_GPU4]["container"], rows[AMD_GPU4]["tenant"]) == \
        ("cs-inference", "vllm", "chatserve")
    # the exporter prints empty pod labels on free GPUs: NULL, not ""
    assert (rows[AMD_GPU7]["namespace"], rows[AMD_GPU7]["pod"], rows[AMD_GPU7]["tenant"], rows[AMD_GPU7]["job"]) == \
        (None, None, None, None)


def test_amd_energy_delta_between_two_scrapes(amd):
    text = read("amd", "mi300x_k8s.txt")
    first = amd.from_text(text, amd_target(), T0)
    assert all(r["energy_delta_j"] is None for r in first.samples.to_pylist())      # no previous reading
    # 15 s later gpu 0 has drawn 712 W x 15 s = 10,680 J = 1.068e10 uJ more
    assert text.count("} 4.62510988416e+13\n") == 1
    later = text.replace("} 4.62510988416e+13\n", "} 4.62617788416e+13\n")
    rows = by_device(amd.from_text(later, amd_target(), T0 + timedelta(seconds=15)).samples)
    assert rows[AMD_GPU0]["energy_j"] == pytest.approx(46261778.8416, rel=1e-12)
    assert rows[AMD_GPU0]["energy_delta_j"] == pytest.approx(10680.0, abs=1e-6)
    assert rows[AMD_GPU4]["energy_delta_j"] == 0.0                  # same counter reading
    # a driver reload restarts the counter: the delta is the new reading, as Prometheus' increase()
    reset = text.replace("} 4.62510988416e+13\n", "} 2.5e+07\n")
    rows = by_device(amd.from_text(reset, amd_target(), T0 + timedelta(seconds=30)).samples)
    assert rows[AMD_GPU0]["energy_delta_j"] == pytest.approx(25.0)


# --- AMD: Slurm node, the exporter's default labels ---------------------------------------------

def test_amd_slurm_serial_numbers_part_number_model_and_jobs(amd):
    s = amd.from_text(read("amd", "mi300x_slurm.txt"), amd_target("http://hpc-mi300-021:5000/metrics"), T0)
    assert s.rows == 8 and s.lines_skipped == 0
    d = by_device(s.devices)
    assert sorted(d) == [f"6924090061{i * 3 + 11:02d}" for i in range(8)]   # serial_number: no gpu_uuid label
    g0 = d["692409006111"]
    # without card_series the model is the board part number, which the catalogue knows
    assert (g0["model"], g0["catalogue_model"], g0["peak_dense_tflops"], g0["vendor"]) == \
        ("102-G30211-0C", "MI300X", 1307.0, "amd")
    assert (g0["host"], g0["gpu_index"], g0["uuid"]) == ("hpc-mi300-021", 0, "692409006111")
    rows = by_device(s.samples)
    assert [rows[f"6924090061{i * 3 + 11:02d}"]["job"] for i in range(8)] == \
        ["428113"] * 4 + ["428120"] * 2 + [None] * 2
    assert rows["692409006111"]["namespace"] is None and rows["692409006111"]["tenant"] is None
    assert (rows["692409006111"]["power_w"], rows["692409006111"]["energy_j"]) == (748.0, pytest.approx(8804120.0))
    assert rows["692409006126"]["health"] == 1                       # gpu 5


def test_amd_compute_partitions_need_their_own_ids(cfg):
    """CPX partitions share the card's serial number: without gpu_uuid they must not merge."""
    mapping = CompiledMapping.from_config(cfg.mappings["amd"])
    lines = []
    for gid, uuid in (("0", "11ff74a1-0000-1000-80e0-c6d49f5b0d86"), ("1", "12ff74a1-0000-1000-80e0-c6d49f5b0d86")):
        lines.append(f'gpu_gfx_activity{{card_model="102-G30211-0C",gpu_compute_partition_type="cpx",gpu_id="{gid}",'
                     f'gpu_partition_id="{gid}",gpu_uuid="{uuid}",hostname="cpx-node-01",'
                     f'serial_number="692409005408"}} '
                     f'{40 + int(gid)}')
    with_uuid = parse_devices("\n".join(lines) + "\n", mapping)
    assert len(with_uuid) == 2 and with_uuid.columns["util_pct"] == [40.0, 41.0]
    without = "\n".join(line.replace(',gpu_uuid="11ff74a1-0000-1000-80e0-c6d49f5b0d86"', "")
                        .replace(',gpu_uuid="12ff74a1-0000-1000-80e0-c6d49f5b0d86"', "") for line in lines) + "\n"
    b = parse_devices(without, mapping)
    assert b.ids == ["692409005408"] and b.columns["util_pct"] == [40.0]
    assert b.stats.malformed == 1
    assert "device id 692409005408 is also gpu 0" in b.stats.issues[0].reason


# --- Ascend: Atlas 800T A2 on Kubernetes ------------------------------------------------------

def test_ascend_devices_identity_model_and_catalogue(ascend):
    s = ascend.from_text(read("ascend", "npu_exporter_910b_k8s.txt"), npu_target(), T0)
    assert s.rows == 8 and s.lines_skipped == 0 and s.issues == []
    d = by_device(s.devices)
    n0 = d[NPU0]
    assert (n0["vendor"], n0["model"], n0["catalogue_model"], n0["peak_dense_tflops"]) == \
        ("huawei", "910B3-Ascend-V1", "Ascend-910B", 313.0)
    # no host label in the text: the host is the target URL's host name
    assert (n0["uuid"], n0["gpu_index"], n0["pci_bus_id"], n0["host"]) == (NPU0, 0, "0000:C1:00.0", "atlas-a2-012")
    assert n0["mem_total_mib"] == 65536.0                    # used + derived free = hbm_total_memory
    assert {r["gpu_index"] for r in d.values()} == set(range(8))
    assert all(r["host"] == "atlas-a2-012" and r["catalogue_model"] == "Ascend-910B" for r in d.values())


def test_ascend_sample_values_units_and_millisecond_timestamps(ascend):
    rows = by_device(ascend.from_text(read("ascend", "npu_exporter_910b_k8s.txt"), npu_target(), T0).samples)
    n0 = rows[NPU0]
    # the row's time is the exporter's: 1793520015123 ms
    assert n0["ts"] == datetime(2026, 11, 1, 8, 0, 15, 123000, tzinfo=UTC)
    assert rows[NPU7]["ts"] == datetime(2026, 11, 1, 8, 0, 17, 480000, tzinfo=UTC)
    assert (n0["util_pct"], n0["temp_c"], n0["mem_temp_c"], n0["sm_clock_mhz"]) == (87.0, 63.0, 54.0, 1800.0)
    assert n0["power_w"] == 367.20001220703125 == pytest.approx(367.2)      # float32 367.2 as Go prints it
    assert n0["tensor_active"] == pytest.approx(0.78)                      # cube utilisation 78 %
    assert (n0["mem_used_mib"], n0["mem_free_mib"]) == (58123.0, 65536.0 - 58123.0)
    assert (n0["processes"], n0["health"], n0["ecc_dbe_volatile"], n0["ecc_sbe_aggregate"]) == (1, 1, 0, 0)
    # no energy counter on Ascend; no SM / DRAM ratios, no XID: NULL, never 0
    for col in ("energy_j", "energy_delta_j", "sm_active", "dram_active", "xid_last", "mem_clock_mhz"):
        assert n0[col] is None, col
    n4 = rows[NPU4]
    assert (n4["util_pct"], n4["mem_used_mib"], n4["mem_free_mib"]) == (34.0, 41210.0, 24326.0)
    assert n4["power_w"] == pytest.approx(201.5)
    assert rows[NPU7]["power_w"] == pytest.approx(90.4) and rows[NPU7]["processes"] == 0


def test_ascend_unhealthy_chip_ecc_and_events(ascend):
    s = ascend.from_text(read("ascend", "npu_exporter_910b_k8s.txt"), npu_target(), T0)
    n6 = by_device(s.samples)[NPU6]
    assert (n6["health"], n6["ecc_dbe_volatile"], n6["ecc_dbe_aggregate"]) == (0, 2, 2)
    assert (n6["ecc_sbe_volatile"], n6["ecc_sbe_aggregate"]) == (14, 17)
    assert [(e["device_id"], e["kind"], e["gpu_index"], e["host"]) for e in s.events.to_pylist()] == \
        [(NPU6, "unhealthy", 6, "atlas-a2-012")]


def test_ascend_kubernetes_attribution(ascend):
    rows = by_device(ascend.from_text(read("ascend", "npu_exporter_910b_k8s.txt"), npu_target(), T0).samples)
    assert (rows[NPU0]["namespace"], rows[NPU0]["pod"], rows[NPU0]["container"], rows[NPU0]["tenant"]) == \
        ("zy-pretrain", "pangu-sft-7b-worker-0", "ascend-pytorch", "zhipu-lab")
    assert (rows[NPU4]["pod"], rows[NPU4]["container"], rows[NPU4]["tenant"]) == \
        ("mindie-server-5f7c9-h2kxd", "mindie", "chatserve")
    assert (rows[NPU7]["namespace"], rows[NPU7]["pod"], rows[NPU7]["tenant"]) == (None, None, None)


def test_ascend_host_comes_from_the_target(ascend, cfg):
    text = read("ascend", "npu_exporter_910b_k8s.txt")
    named = ascend.from_text(text, npu_target("http://10.20.3.12:8082/metrics", host="atlas-a2-012"), T0)
    assert {r["host"] for r in named.devices.to_pylist()} == {"atlas-a2-012"}
    by_ip = ascend.from_text(text, npu_target("http://10.20.3.12:8082/metrics"), T0)
    assert {r["host"] for r in by_ip.devices.to_pylist()} == {"10.20.3.12"}
    # host_from = "target" (how the registry builds a source's collector) gives the same
    pinned = AscendCollector(cfg, host_from_label=False).from_text(text, npu_target(), T0)
    assert {r["host"] for r in pinned.devices.to_pylist()} == {"atlas-a2-012"}
    assert target_host(Target(url="not a url", source="s", kind="ascend", site="x")) is None


def test_ascend_910a_without_vdie_id_falls_back_to_host_and_index(ascend):
    s = ascend.from_text(read("ascend", "npu_exporter_910a_host.txt"),
                         npu_target("http://npu-old-03:8082/metrics"), T0)
    assert s.rows == 4 and s.lines_skipped == 0
    d = by_device(s.devices)
    assert sorted(d) == [f"npu-old-03/gpu{i}" for i in range(4)]
    n0 = d["npu-old-03/gpu0"]
    # 910A is not in the catalogue: no peak, the vendor is the exporter's
    assert (n0["vendor"], n0["model"], n0["catalogue_model"], n0["peak_dense_tflops"], n0["uuid"]) == \
        ("huawei", "910Awn-Ascend-V1", None, None, None)
    rows = by_device(s.samples)
    # HBM, not the generic DDR figures (npu_chip_info_used_memory 0 / total_memory 15987)
    assert (rows["npu-old-03/gpu0"]["mem_used_mib"], rows["npu-old-03/gpu0"]["mem_free_mib"]) == (30123.0, 2132.0)
    assert (rows["npu-old-03/gpu2"]["mem_used_mib"], rows["npu-old-03/gpu2"]["mem_free_mib"]) == (0.0, 32255.0)
    assert rows["npu-old-03/gpu1"]["ts"] == datetime(2026, 11, 1, 8, 0, 20, 112000, tzinfo=UTC)
    assert rows["npu-old-03/gpu0"]["tensor_active"] is None          # 910A prints no cube utilisation


# --- the mapping format: label selectors and parse-only columns ----------------------------------

def test_label_selected_fields_and_derived_free_memory():
    m = MappingFile.model_validate({
        "fields": {'clk{kind="core"}': {"column": "sm_clock_mhz"}, 'clk{kind="mem"}': {"column": "mem_clock_mhz"},
                   "used": {"column": "mem_used_mib"}, "total": {"column": "mem_total_mib", "scale": 1 / 1024}},
        "labels": {"uuid": ["id"]}})
    cm = CompiledMapping.from_config(m)
    assert "clk" not in cm.numeric and set(cm.selected["clk"][2]) == {"core", "mem"}
    text = ('clk{id="a",kind="core"} 1500\nclk{id="a",kind="mem"} 1200\nclk{id="a",kind="soc"} 900\n'
            'used{id="a"} 1000\ntotal{id="a"} 4194304\nused{id="b"} 10\nclk{id="b",kind="core",} 700\n'
            'clk{id="b",kind="mem" 1\n')
    b = parse_devices(text, cm)
    assert b.ids == ["a", "b"]
    assert b.columns["sm_clock_mhz"] == [1500.0, 700.0] and b.columns["mem_clock_mhz"] == [1200.0, None]
    # total (4 GiB given in KiB, scaled to MiB) only derives free; it is not a stored column
    assert "mem_total_mib" not in b.columns and b.columns["mem_free_mib"] == [4096.0 - 1000.0, None]
    assert b.stats.unmapped == 1 and b.stats.malformed == 1          # kind="soc" is not mapped; a broken line


def mappings_with_amd_field_renamed(old: str, new: str) -> dict[str, dict]:
    """The package's mapping tables as dicts, with one [fields] key of amd.toml renamed."""
    import tomllib

    import config

    maps = {}
    for p in sorted((config.CONFIG_DIR / "mappings").glob("*.toml")):
        with p.open("rb") as fh:
            maps[p.stem] = tomllib.load(fh)
    fields = maps["amd"]["fields"]
    fields[new] = fields.pop(old)
    return maps


@pytest.mark.parametrize("key, message", [
    ('gpu_clock{clock_type=system}', "one label selector"),
    ('gpu_clock{a="1",b="2"}', "one label selector"),
])
def test_bad_label_selectors_are_config_errors(key, message):
    import config

    maps = mappings_with_amd_field_renamed('gpu_clock{clock_type="memory"}', key)
    with pytest.raises(config.ConfigError, match=message) as e:
        make_config(mappings=maps)
    assert "amd.toml" in str(e.value)


def test_selecting_one_metric_by_two_labels_is_a_config_error():
    import config

    maps = mappings_with_amd_field_renamed('gpu_clock{clock_type="memory"}', 'gpu_clock{clock_index="8"}')
    with pytest.raises(config.ConfigError, match="must all select by the same label"):
        make_config(mappings=maps)


# --- into the store and back -----------------------------------------------------------------

def test_both_vendors_write_through_the_store_and_read_back(cfg, amd, ascend):
    from queries import Store

    store = Store(":memory:")
    try:
        a = amd.from_text(read("amd", "mi300x_k8s.txt"), amd_target(), T0)
        n = ascend.from_text(read("ascend", "npu_exporter_910b_k8s.txt"), npu_target(), T0)
        for s in (a, n):
            store.write_scrape(samples=s.samples, devices=s.devices, events=s.events)
        got = store.con.execute(
            "SELECT d.vendor, d.catalogue_model, count(*), sum(d.peak_dense_tflops), sum(s.power_w), "
            "count(*) FILTER (WHERE s.health = 0) FROM devices d JOIN device_samples s USING (device_id) "
            "GROUP BY 1, 2 ORDER BY 1").fetchall()
        assert got[0][:4] == ("amd", "MI300X", 8, 8 * 1307.0)
        assert got[0][4] == 712 + 698 + 705 + 709 + 402 + 391 + 138 + 141 and got[0][5] == 1
        assert got[1][:4] == ("huawei", "Ascend-910B", 8, 8 * 313.0)
        assert got[1][4] == pytest.approx(367.2 + 362.6 + 371.9 + 359.4 + 201.5 + 196.3 + 92.1 + 90.4, abs=1e-3)
        assert got[1][5] == 1
        row = store.con.execute("SELECT energy_j, mem_free_mib, sm_clock_mhz, tenant FROM device_samples "
                                "WHERE device_id = ?", [AMD_GPU0]).fetchone()
        assert row[0] == pytest.approx(46251098.8416) and row[1:] == (15344.0, 2100.0, "moonlake")
        row = store.con.execute("SELECT ts, mem_free_mib, health FROM device_samples WHERE device_id = ?",
                                [NPU6]).fetchone()
        assert row == (datetime(2026, 11, 1, 8, 0, 17, 142000, tzinfo=UTC), 65536.0 - 3210.0, 0)
        states = dict(store.con.execute(
            "SELECT device_id, state FROM device_state(?::TIMESTAMPTZ, 60)", [T0 + timedelta(seconds=5)]).fetchall())
        assert states[AMD_GPU6] == states[NPU6] == "unhealthy"
        assert states[AMD_GPU0] == states[NPU0] == "ok"
        kinds = sorted(store.con.execute("SELECT device_id, kind FROM device_events").fetchall())
        assert kinds == sorted([(AMD_GPU6, "unhealthy"), (NPU6, "unhealthy")])
    finally:
        store.close()


# --- python -m collectors parse --kind --------------------------------------------------------

def run_parse(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ZHISUAN_CONFIG"}
    return subprocess.run([sys.executable, "-m", "collectors", "parse", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_parse_kind_amd_and_ascend():
    proc = run_parse("--kind", "amd", str(FIXTURES / "amd" / "mi300x_k8s.txt"))
    assert proc.returncode == 0, proc.stderr
    recs = {r["device_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    g0 = recs[AMD_GPU0]
    assert (g0["vendor"], g0["model"], g0["catalogue_model"], g0["util_pct"], g0["tenant"]) == \
        ("amd", "AMD Instinct MI300X OAM", "MI300X", 97.0, "moonlake")
    assert g0["energy_j"] == pytest.approx(46251098.8416) and recs[AMD_GPU6]["health"] == 0
    assert "8 device sample(s)" in proc.stderr and "not in the 'amd' mapping" in proc.stderr

    proc = run_parse("--kind", "ascend", "--host", "npu-old-03",
                     str(FIXTURES / "ascend" / "npu_exporter_910a_host.txt"))
    assert proc.returncode == 0, proc.stderr
    recs = {r["device_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    n0 = recs["npu-old-03/gpu0"]
    assert (n0["vendor"], n0["catalogue_model"], n0["mem_free_mib"], n0["exporter_ts_ms"]) == \
        ("huawei", None, 2132.0, 1793520020015)
    assert "'ascend' mapping" in proc.stderr

    # the DCGM default is unchanged, and a kind's mapping can still be overridden
    proc = run_parse(str(FIXTURES / "dcgm" / "dcgm4_k8s.txt"))
    assert proc.returncode == 0 and "'dcgm' mapping" in proc.stderr
    assert {json.loads(line)["vendor"] for line in proc.stdout.splitlines()} == {"nvidia"}
    proc = run_parse("--kind", "amd", "--mapping", "nope", str(FIXTURES / "amd" / "mi300x_k8s.txt"))
    assert proc.returncode == 2 and "unknown device mapping 'nope'" in proc.stderr
    proc = run_parse("--kind", "tpu", str(FIXTURES / "amd" / "mi300x_k8s.txt"))
    assert proc.returncode == 2 and "invalid choice: 'tpu'" in proc.stderr
