"""Source kinds as plugins: the registry, its meta-tests, and the ipmi_exporter kind.

The meta-tests walk the registry (collectors/kinds/): every kind has a fixture test,
its name in both languages, a row in the README's kinds table, options that refuse a
key they do not take, and a collector built through the registry with the common
lifecycle. The ipmi tests read fixtures written after the exporter's documented
output (docs/metrics.md of prometheus-community/ipmi_exporter).
"""

from __future__ import annotations

import ast
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

import config
import i18n
from collectors import registry
from collectors.ipmi import IpmiCollector, server_of
from collectors.kinds import kinds
from collectors.kinds.base import Collector
from collectors.targets import ScrapeError, Target
from config import ConfigError
from helpers import FIXTURES_ROOT, make_config

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
TESTS = Path(__file__).resolve().parent
SITE, CLUSTER = "sh-lingang", "train-a"
BMC_URL = "http://ipmi-exporter.mgmt:9290/ipmi?module=dcmi&target=trn-a-07-bmc"

# kind -> the test that feeds its fixture through its collector ("file::test")
FIXTURE_TESTS = {
    "dcgm": "test_dcgm_collector.py::test_sample_values",
    "amd": "test_vendor_exporters.py::test_amd_sample_values_and_units",
    "ascend": "test_vendor_exporters.py::test_ascend_sample_values_units_and_millisecond_timestamps",
    "nvml": "test_nvml.py::test_unit_conversions",
    "prometheus": "test_prometheus.py::test_rows_match_the_exporter_parser",
    "facility": "test_kinds.py::test_each_text_kind_builds_rows_from_its_fixture",
    "ipmi": "test_kinds.py::test_ipmi_power_is_a_category_3_it_meter_per_server",
}

FACILITY_TEXT = """# TYPE dcim_power_watts gauge
dcim_power_watts{site="sh-lingang",meter="intake-1",scope="facility"} 412000
dcim_power_watts{site="sh-lingang",meter="ups-out-1",scope="it",pue_category="1"} 331000
"""

# kind -> (fixture text, a target URL of that kind), fed through the registry's collector
TEXT_FIXTURES = {
    "dcgm": ((FIXTURES_ROOT / "dcgm" / "dcgm4_k8s.txt"), "http://node-17:9400/metrics"),
    "amd": ((FIXTURES_ROOT / "amd" / "mi300x_k8s.txt"), "http://gpu-mi300-01:5000/metrics"),
    "ascend": ((FIXTURES_ROOT / "ascend" / "npu_exporter_910b_k8s.txt"), "http://npu-01:8082/metrics"),
    "facility": (FACILITY_TEXT, "http://dcim.example:9105/metrics"),
    "ipmi": ((FIXTURES_ROOT / "ipmi" / "remote_dcmi.txt"), BMC_URL),
}


def _text(src) -> str:
    return src.read_text(encoding="utf-8") if isinstance(src, Path) else src


def source_dict(kind: str, **keys) -> dict:
    d = {"name": f"{kind}-src", "kind": kind, "site": SITE, "cluster": CLUSTER}
    spec = kinds()[kind]
    if spec.targets != "none":
        d["targets"] = [TEXT_FIXTURES.get(kind, (None, "http://prometheus:9090"))[1]]
    d.update(keys)
    return d


def built(kind: str, **keys) -> registry.Built:
    cfg = make_config(sources=[source_dict(kind, **keys)])
    (b,) = registry.build(cfg, registry.deps(cfg))
    return b


# ---- the registry -------------------------------------------------------------------------------

def test_every_kind_module_is_listed_once_and_declares_its_own_name():
    files = {p.stem for p in (config.PROJECT_ROOT / "collectors" / "kinds").glob("*.py")} - {"__init__", "base"}
    assert set(kinds()) == files
    for name, kind in kinds().items():
        assert kind.name == name and kind.options.KIND == name


def test_every_kind_has_a_fixture_test_that_exists():
    assert set(FIXTURE_TESTS) == set(kinds())
    for kind, ref in FIXTURE_TESTS.items():
        file, test = ref.split("::")
        tree = ast.parse((TESTS / file).read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert test in names, f"{kind}: {ref} does not exist"


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_kind_is_named_in_both_languages(kind):
    key = kinds()[kind].name_key
    assert i18n.has(key), key
    en, zh = i18n.t(key, "en"), i18n.t(key, "zh-CN")
    assert en and zh and key not in (en, zh)
    assert re.search(r"[\u4e00-\u9fff]", zh) or zh == en == "Prometheus", zh


def test_every_kind_has_a_row_in_the_readme_kinds_table():
    readme = (config.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", readme, re.MULTILINE))
    assert set(kinds()) <= rows, set(kinds()) - rows


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_kind_builds_a_collector_with_the_common_lifecycle(kind):
    b = built(kind)
    assert isinstance(b.collector, Collector)
    assert b.source.kind == kind and b.retries == 2 and b.targets
    assert all(t.kind == kind and t.source == f"{kind}-src" and t.site == SITE for t in b.targets)
    b.collector.resume_from(b.targets[0], T0)
    b.collector.stop()
    b.collector.close()


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_kind_s_own_mappings_fill_a_table_it_takes(kind, cfg):
    """The check that refuses a mapping of another table (config) would refuse the kind's own."""
    spec = kinds()[kind]
    assert spec.mapping_tables and set(spec.mapping_tables) <= {"device_samples", "facility_samples"}
    assert all(cfg.mappings[m].table in spec.mapping_tables for m in spec.default_mappings), spec.default_mappings


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_kind_refuses_a_key_it_does_not_take(kind):
    with pytest.raises(ConfigError) as err:
        make_config(sources=[source_dict(kind, colour="blue")])
    assert "centre.toml: unknown key 'sources[0].colour'" in str(err.value)


@pytest.mark.parametrize("kind", sorted(TEXT_FIXTURES))
def test_each_text_kind_builds_rows_from_its_fixture(kind):
    b = built(kind)
    text, url = TEXT_FIXTURES[kind]
    scrape = b.collector.from_text(_text(text), b.targets[0], T0)
    assert scrape.rows > 0 and scrape.lines_skipped == 0
    table = scrape.facility if scrape.facility is not None else scrape.samples
    assert table.num_rows == scrape.rows
    assert set(table.column("source").to_pylist()) == {f"{kind}-src"}


def test_facility_rows_keep_their_meters_scopes_and_categories():
    b = built("facility")
    rows = b.collector.from_text(FACILITY_TEXT, b.targets[0], T0).facility.to_pylist()
    assert {(r["meter"], r["scope"], r["pue_category"], r["power_w"]) for r in rows} == {
        ("intake-1", "facility", None, 412000.0), ("ups-out-1", "it", 1, 331000.0)}


def test_collector_class_and_parse_kinds_come_from_the_registry():
    from collectors.__main__ import PARSE_KINDS
    from collectors.dcgm import DcgmCollector

    assert registry.collector_class("dcgm") is DcgmCollector
    assert registry.collector_class("ipmi") is IpmiCollector
    assert PARSE_KINDS == ("dcgm", "amd", "ascend")
    assert config.SOURCE_KINDS == tuple(kinds())
    assert set(config.EXPORTER_KINDS) == {"dcgm", "amd", "ascend", "facility", "ipmi"}
    assert config.DEFAULT_MAPPINGS["ipmi"] == ["ipmi"] and config.DEFAULT_MAPPINGS["nvml"] == []


def test_build_jobs_keeps_its_older_form():
    cfg = make_config(sources=[source_dict("dcgm", timeout_s=2.0, retries=1), source_dict("ipmi")])
    jobs, collectors = registry.build_jobs(cfg)
    assert [(len(j[1]), j[2]) for j in jobs] == [(1, 1), (1, 2)]
    assert [s.name for s, _ in collectors] == ["dcgm-src", "ipmi-src"]
    assert collectors[0][1].timeout == 2.0 and collectors[1][1].timeout == cfg.collection.timeout_s


def test_one_tracker_and_attributor_are_shared_by_the_device_kinds():
    cfg = make_config(sources=[source_dict("dcgm"), source_dict("amd", name="amd-src")])
    deps = registry.deps(cfg)
    a, b = registry.build(cfg, deps)
    assert a.collector.tracker is b.collector.tracker is deps.tracker
    assert a.collector.builder.attributor is b.collector.builder.attributor is deps.attributor
    assert (a.collector.builder.vendor, b.collector.builder.vendor) == ("nvidia", "amd")


# ---- ipmi_exporter --------------------------------------------------------------------------------

def ipmi(fetch=None) -> tuple[IpmiCollector, Target]:
    b = built("ipmi")
    if fetch is not None:
        b.collector.fetch = fetch
    return b.collector, b.targets[0]


def test_ipmi_power_is_a_category_3_it_meter_per_server():
    collector, target = ipmi()
    assert target.host == "trn-a-07-bmc"
    scrape = collector.from_text((FIXTURES_ROOT / "ipmi" / "remote_dcmi.txt").read_text(), target, T0)
    # one row: the DCMI reading (4235 W), not the PSU sensors (1060 + 1050 W) nor any other series
    assert scrape.facility.to_pylist() == [{
        "ts": T0, "site": SITE, "meter": "trn-a-07-bmc", "scope": "it", "pue_category": 3,
        "power_w": 4235.0, "energy_kwh": None, "source": "ipmi-src"}]
    assert scrape.notes == [] and scrape.lines_skipped == 0


def test_ipmi_in_band_metrics_name_the_node_and_read_the_newer_metric_name():
    collector, _ = ipmi()
    target = Target(url="http://trn-a-08:9290/metrics", source="ipmi-src", kind="ipmi", site=SITE,
                    cluster=CLUSTER, host=server_of("http://trn-a-08:9290/metrics"))
    rows = collector.from_text((FIXTURES_ROOT / "ipmi" / "current_watts_local.txt").read_text(),
                               target, T0).facility.to_pylist()
    assert [(r["meter"], r["scope"], r["pue_category"], r["power_w"]) for r in rows] == [("trn-a-08", "it", 3, 612.0)]


def test_ipmi_dcmi_down_fails_the_scrape_with_its_reason():
    collector, target = ipmi()
    with pytest.raises(ScrapeError) as err:
        collector.from_text((FIXTURES_ROOT / "ipmi" / "dcmi_down.txt").read_text(), target, T0)
    assert err.value.msg.key == "msg.ipmi.dcmi_down" and "trn-a-07-bmc" in str(err.value)
    assert "BMC" in err.value.msg.render("zh-CN") and "未返回功率读数" in err.value.msg.render("zh-CN")


def test_ipmi_without_a_power_measurement_is_a_noted_scrape_not_silence():
    collector, target = ipmi()
    scrape = collector.from_text((FIXTURES_ROOT / "ipmi" / "no_power_measurement.txt").read_text(), target, T0)
    assert scrape.rows == 0 and scrape.facility.num_rows == 0
    assert [n.key for n in scrape.notes] == ["msg.ipmi.collectors_down", "msg.ipmi.no_power"]
    assert "bmc" in str(scrape.notes[0])


def test_ipmi_text_without_dcmi_says_to_enable_it():
    collector, target = ipmi()
    scrape = collector.from_text('ipmi_up{collector="ipmi"} 1\nipmi_temperature_celsius{id="1",name="Inlet"} 22\n',
                                 target, T0)
    assert [n.key for n in scrape.notes] == ["msg.ipmi.no_dcmi"]


def test_ipmi_keeps_a_meter_label_that_the_text_carries():
    """Through a proxy that labels the reading (Prometheus' multi-target relabelling sets
    `instance` to the BMC), the label names the meter."""
    collector, target = ipmi()
    scrape = collector.from_text('ipmi_dcmi_power_consumption_watts{instance="10.2.0.11"} 3980\n', target, T0)
    assert [(r["meter"], r["power_w"]) for r in scrape.facility.to_pylist()] == [("10.2.0.11", 3980.0)]


def test_ipmi_collect_fetches_its_target_with_the_source_timeout():
    calls = []

    def fake(url, timeout):
        calls.append((url, timeout))
        return "ipmi_dcmi_power_consumption_watts 500\n"

    collector, target = ipmi(fake)
    assert collector.collect(target, T0).rows == 1
    assert calls == [(BMC_URL, make_config().collection.timeout_s)]


def test_ipmi_rows_are_stored_as_facility_samples(store):
    collector, target = ipmi()
    scrape = collector.from_text((FIXTURES_ROOT / "ipmi" / "remote_dcmi.txt").read_text(), target, T0)
    store.write_scrape(facility=scrape.facility)
    with store.cursor() as cur:
        got = cur.execute("SELECT meter, scope, pue_category, power_w FROM facility_samples").fetchall()
    assert got == [("trn-a-07-bmc", "it", 3, 4235.0)]


def test_server_of_a_target_url():
    assert server_of("http://exp:9290/ipmi?module=default&target=10.2.0.10") == "10.2.0.10"
    assert server_of("http://node-3:9290/metrics") == "node-3"
    assert server_of("http://exp:9290/ipmi?target=") == "exp"


def test_loading_config_imports_only_the_kind_declarations():
    """A host without NVML, or a CLI that only checks config, never imports a collector."""
    import subprocess
    import sys

    code = ("import sys, config; config.load(config.CONFIG_DIR / 'examples' / 'real-floor'); "
            "print(sorted(m for m in sys.modules if m.startswith(('collectors', 'pyarrow', 'pynvml'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    loaded = ast.literal_eval(out)
    assert loaded and all(m == "collectors" or m.startswith("collectors.kinds") for m in loaded), loaded


def test_the_vendor_of_a_mapping_table_comes_from_its_kind():
    from collectors.kinds import vendor_of_mapping

    assert [vendor_of_mapping(m) for m in ("dcgm", "amd", "ascend", "facility", "ipmi", "custom")] == [
        "nvidia", "amd", "huawei", "other", "other", "other"]
