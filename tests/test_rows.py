"""The series -> rows stage (collectors/rows.py) against the exporter fast path and across sources.

- Every device fixture (dcgm, AMD, Ascend) read by `parse_devices` and by
  `parse_series` -> `rows.device_batch` with the same mapping gives the same device ids,
  identity/attribution meta, column values and sample times, with the host taken from the
  labels and from the target. String-valued fields (`DCGM_FI_DEV_NAME ... Tesla T4`) are
  the fast path's alone: a series carries numbers; the test shows that is the only difference.
- Facility meters read directly (FacilityCollector) and read through Prometheus
  (PrometheusCollector on a fake client answering as Prometheus does) are the same rows,
  so the PUE the Live page computes from them is the same.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime, timedelta, timezone

import pytest

from collectors.exposition import CompiledMapping, NotExposition, parse_devices, parse_series
from collectors.facility import FacilityCollector
from collectors.prometheus import PrometheusCollector
from collectors.rows import (
    DevicePivot, FacilityMapping, FacilityPivot, batch_scrape, device_batch, facility_rows, query_series,
)
from collectors.targets import Target
from config import Source
from helpers import FIXTURES_ROOT, T_REF
from queries import energy

UTC = timezone.utc
SITE = "sh-lingang"
DEVICE_FIXTURES = [(kind, p.name) for kind in ("dcgm", "amd", "ascend")
                   for p in sorted((FIXTURES_ROOT / kind).glob("*.txt"))]


def fixture_text(kind: str, name: str) -> str:
    return (FIXTURES_ROOT / kind / name).read_bytes().decode("utf-8")


def numbers_only(mapping: CompiledMapping) -> CompiledMapping:
    return dataclasses.replace(mapping, strings={})


@pytest.mark.parametrize("host_from_label", [True, False])
@pytest.mark.parametrize("kind, name", DEVICE_FIXTURES)
def test_every_device_fixture_reads_the_same_through_the_stage(cfg, kind, name, host_from_label):
    text = fixture_text(kind, name)
    mapping = numbers_only(CompiledMapping.from_config(cfg.mappings[kind]))
    kw = {"default_host": "fixture-host", "host_from_label": host_from_label}
    try:
        want = parse_devices(text, mapping, **kw)
    except NotExposition:
        with pytest.raises(NotExposition):
            series, stats = parse_series(text)
            device_batch(series, stats, mapping, **kw)
        return
    series, stats = parse_series(text)
    got = device_batch(series, stats, mapping, **kw)
    assert got.ids == want.ids and got.ids
    assert got.meta == want.meta
    assert got.columns == want.columns
    assert got.ts_ms == want.ts_ms
    assert got.stats.implausible == want.stats.implausible
    assert got.stats.blanks == want.stats.blanks


def test_string_fields_are_the_only_difference(cfg):
    """DCGM_FI_DEV_NAME prints the model as a string value: only the fast path reads it."""
    text = fixture_text("dcgm", "string_values.txt")
    full = CompiledMapping.from_config(cfg.mappings["dcgm"])
    assert full.strings
    want = parse_devices(text, full, default_host="fixture-host")
    got = device_batch(*parse_series(text), full, default_host="fixture-host")
    assert got.ids == want.ids and got.columns == want.columns
    strings = set(full.strings.values())
    assert {a for w in want.meta for a in strings if w[a] is not None} == {"model"}
    for g, w in zip(got.meta, want.meta):
        assert {k: v for k, v in g.items() if k not in strings} == {k: v for k, v in w.items() if k not in strings}


def test_two_label_sets_naming_one_device_are_rejected_as_the_fast_path_does(cfg):
    """AMD compute partitions sharing the card's serial number: the second gpu_id under one id
    is an issue, not a merged device."""
    text = ('gpu_power_usage{serial_number="S1",gpu_id="0",hostname="n"} 300\n'
            'gpu_power_usage{serial_number="S1",gpu_id="1",hostname="n"} 310\n')
    mapping = CompiledMapping.from_config(cfg.mappings["amd"])
    want = parse_devices(text, mapping)
    got = device_batch(*parse_series(text), mapping)
    assert got.ids == want.ids == ["S1"] and got.columns["power_w"] == want.columns["power_w"] == [300.0]
    assert got.stats.malformed == want.stats.malformed == 1
    assert got.stats.issues[0].lineno == 2 and "also gpu 0" in got.stats.issues[0].reason


def test_prometheus_points_pivot_by_exporter_and_time(cfg):
    """A query result: each (exporter, sample time) is an instant; a value that is not a
    number is an issue, a blank sentinel a NULL that still counts as the device's sample."""
    mapping = CompiledMapping.from_config(cfg.mappings["dcgm"])
    pivot = DevicePivot(mapping, stats := _stats(), by_time=True)
    labels = {"gpu": "0", "UUID": "GPU-1", "Hostname": "node-a", "job": "dcgm", "instance": "10.0.0.5:9400"}
    result = [{"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels},
               "values": [[1000.0, "50"], [1015.0, "9223372036854775794"], [1030.0, "x"]]},
              {"metric": {"__name__": "DCGM_FI_DEV_POWER_USAGE", **labels}, "values": [[1000.0, "300.5"]]},
              {"metric": {"__name__": "not_mapped", **labels}, "values": [[1000.0, "1"], [1015.0, "1"]]}]
    for name, lab, values, exporter in query_series(result):
        pivot.feed(name, lab, values, default_host="10.0.0.5", exporter=exporter, raw=True)
    group = ("dcgm", "10.0.0.5:9400", "node-a")
    assert list(pivot.instants) == [(group, 1_000_000), (group, 1_015_000)]
    first = pivot.batch(pivot.instants[(group, 1_000_000)])
    assert first.ids == ["GPU-1"] and first.columns["util_pct"] == [50.0] and first.columns["power_w"] == [300.5]
    second = pivot.batch(pivot.instants[(group, 1_015_000)])
    assert second.columns["util_pct"] == [None] and second.ts_ms == [1_015_000]
    # 50, the blank and 300.5 landed; "x" is an issue; not_mapped's 2 points are unmapped
    assert (stats.samples, stats.blanks, stats.unmapped, stats.malformed) == (3, 1, 2, 1)
    assert "value is not a number: 'x'" in stats.issues[0].reason


def _stats():
    from collectors.exposition import ParseStats
    return ParseStats()


# ------------------------------------------------------------------ facility, directly and through Prometheus

METER_TEXT = """\
# TYPE dcim_power_watts gauge
dcim_power_watts{site="sh-lingang",meter="facility-main",scope="facility"} 1300000.5
dcim_power_watts{site="sh-lingang",meter="ups-output",scope="it",pue_category="2"} 1000000
dcim_power_watts{site="sh-lingang",meter="cooling-plant",scope="cooling"} NaN
dcim_power_watts{meter="row-b",scope="it",pue_category="3"} 250000
dcim_power_watts{site="sh-lingang",meter="mystery"} 5
dcim_energy_kwh_total{site="sh-lingang",meter="facility-main",scope="facility"} 123456.789
dcim_energy_kwh_total{site="sh-lingang",meter="ups-output",scope="it",pue_category="2"} 98765.4
dcim_outdoor_temperature_celsius{site="sh-lingang"} 21.5
"""


class OnePromScrape:
    """Answers the collector's range-vector queries as Prometheus would after scraping `text`
    once at `at` (s): each series' value as Prometheus' JSON prints it, stamped `at`."""

    SELECTOR = re.compile(r'^\{__name__=~"(.*)"\}\[(\d+)ms\]$')

    def __init__(self, text: str, at: float, instance: str = "dcim-gw:9116", job: str = "dcim"):
        series, _ = parse_series(text)
        self.series = [({"__name__": s.name, **s.labels, "instance": instance, "job": job},
                        [at if s.ts_ms is None else s.ts_ms / 1000, "NaN" if s.value is None else repr(s.value)])
                       for s in series]

    def custom_query(self, query: str, params: dict | None = None) -> list[dict]:
        m = self.SELECTOR.match(query)
        assert m and params, query
        names, hi = set(m.group(1).split("|")), float(params["time"])
        lo = hi - int(m.group(2)) / 1000
        return [{"metric": metric, "values": [point]} for metric, point in self.series
                if metric["__name__"] in names and lo < point[0] <= hi]


def through_both(cfg, text: str, at: datetime, *, direct_collector=None, url: str = "http://dcim-gw:9116/metrics",
                 mapping: str = "facility", instance: str = "dcim-gw:9116"):
    """(rows FacilityCollector, or `direct_collector`, reads from text at tick `at`, rows
    PrometheusCollector reads with `mapping` from a Prometheus that scraped the same text at
    `at` as `instance`), each sorted by meter; then both Scrapes."""
    tgt = Target(url=url, source="prom-a", kind="facility", site=SITE)
    direct = (direct_collector or FacilityCollector(cfg)).from_text(text, tgt, at)
    fake = OnePromScrape(text, at.timestamp(), instance=instance)
    src = Source(name="prom-a", kind="prometheus", site=SITE, cluster="train-a", targets=["http://prom.test:9090"],
                 mappings=[mapping])
    col = PrometheusCollector(cfg, src, client_factory=lambda url, timeout: fake, step_s=0)
    via = col.collect(Target(url="http://prom.test:9090", source="prom-a", kind="prometheus", site=SITE),
                      at + timedelta(seconds=1))
    assert via.samples is None and via.events is None
    return (sorted(direct.facility.to_pylist(), key=lambda r: r["meter"]),
            sorted(via.facility.to_pylist(), key=lambda r: r["meter"]), direct, via)


def test_meters_read_directly_and_through_prometheus_are_the_same_rows(cfg):
    at = datetime(2026, 11, 20, 8, 0, 15, tzinfo=UTC)
    direct, via, d_scrape, p_scrape = through_both(cfg, METER_TEXT, at)
    assert via == direct
    assert {r["meter"]: (r["site"], r["scope"], r["pue_category"], r["power_w"], r["energy_kwh"]) for r in direct} == {
        "facility-main": (SITE, "facility", None, 1300000.5, 123456.789),
        "ups-output": (SITE, "it", 2, 1000000.0, 98765.4),
        "cooling-plant": (SITE, "cooling", None, None, None),       # NaN is no reading
        "row-b": (SITE, "it", 3, 250000.0, None)}                    # no site label: the target's
    assert {r["ts"] for r in direct} == {at}
    # the meter without a scope is the same issue either way
    assert d_scrape.lines_skipped == p_scrape.lines_skipped == 1
    assert d_scrape.issues[0].reason == p_scrape.issues[0].reason
    assert d_scrape.issues[0].lineno == 6


@pytest.mark.parametrize("offset_s", [0, 3600 * 7 + 15, 86400 * 31 + 45])
def test_simulated_meters_give_the_same_pue_inputs_either_way(cfg, store, offset_s):
    """The simulator's DCIM text at a few instants: the same rows, and the Live page's PUE
    query over each source's rows gives the same figures."""
    from simulator import Floor

    t = T_REF + offset_s
    text = Floor(cfg).facility_text(SITE, t)
    at = datetime.fromtimestamp(t, UTC)
    direct, via, d_scrape, p_scrape = through_both(cfg, text, at)
    meters = len(cfg.energy.meters)         # the meters of config/energy.toml the simulator serves
    assert via == direct and len(direct) == meters
    stored = "SELECT count(*) FROM facility_samples"
    store.write_scrape(facility=d_scrape.facility)
    assert store.con.execute(stored).fetchone()[0] == meters
    got = energy.live_power(store, cfg, at, 60).to_dict("records")
    store.con.execute("DELETE FROM facility_samples")
    store.write_scrape(facility=p_scrape.facility)
    assert store.con.execute(stored).fetchone()[0] == meters
    assert energy.live_power(store, cfg, at, 60).to_dict("records") == got
    (site,) = got
    # PUE = facility power / IT power of the same rows (category 1: the UPS output, the site's it_category)
    power = {r["meter"]: r["power_w"] for r in direct}
    assert site["pue"] == pytest.approx(power["facility-main"] / power["ups-output"]) and site["pue_category"] == 1
    assert 1.0 < site["pue"] < 2.0 and not math.isnan(site["pue"])


def test_meter_stamps_of_the_text_are_kept_either_way(cfg):
    """A meter gateway that stamps its readings (10 s before the tick here): the rows carry
    the stamp, directly and through Prometheus (which keeps such stamps by default)."""
    at = datetime(2026, 11, 20, 8, 0, 15, tzinfo=UTC)
    stamp_ms = round(at.timestamp() * 1000) - 10_000
    stamped = "".join(line + ("\n" if line.startswith("#") else f" {stamp_ms}\n") for line in METER_TEXT.splitlines())
    direct, via, *_ = through_both(cfg, stamped, at)
    assert via == direct and len(direct) == 4
    assert {r["ts"] for r in direct} == {at - timedelta(seconds=10)}


def test_server_power_from_ipmi_reads_the_same_through_prometheus(cfg):
    """ipmi_exporter prints the DCMI reading without labels: read directly, the meter is the
    scraped server and scope/category come from the mapping's defaults (IT, category 3);
    through a Prometheus whose multi-target relabelling makes `instance` the server, the
    same defaults apply and the row is the same."""
    from collectors.ipmi import IpmiCollector

    text = (FIXTURES_ROOT / "ipmi" / "current_watts_local.txt").read_text()
    at = datetime(2026, 11, 20, 8, 0, 15, tzinfo=UTC)
    direct, via, *_ = through_both(cfg, text, at, direct_collector=IpmiCollector(cfg.mappings["ipmi"], timeout_s=5),
                                   url="http://bmc-07:9290/metrics", mapping="ipmi", instance="bmc-07")
    assert via == direct
    assert [(r["meter"], r["scope"], r["pue_category"], r["power_w"]) for r in direct] == [("bmc-07", "it", 3, 612.0)]


def test_facility_rows_is_the_one_function_both_paths_use(cfg):
    """facility_rows (exporter text) and FacilityPivot fed query points agree on every row."""
    series, stats = parse_series(METER_TEXT)
    mapping = FacilityMapping.from_config(cfg.mappings["facility"])
    at = datetime(2026, 11, 20, 8, 0, 15, tzinfo=UTC)
    rows = facility_rows(series, stats, mapping, site=SITE, source="s", tick=at)
    pivot = FacilityPivot(mapping, _stats(), site=SITE, source="s", by_time=True)
    fake = OnePromScrape(METER_TEXT, at.timestamp())
    for name, labels, values, exporter in query_series(fake.custom_query(
            '{__name__=~"dcim_power_watts|dcim_energy_kwh_total"}[60000ms]', {"time": str(at.timestamp())})):
        pivot.feed(name, labels, values, exporter=exporter, raw=True)
    ((key, meters),) = pivot.instants.items()
    assert key == (("dcim", "dcim-gw:9116"), round(at.timestamp() * 1000))
    assert pivot.rows(meters, at) == rows
    # 4 power + 2 energy samples landed (one NaN), the outdoor temperature is not mapped, the
    # scope-less meter is an issue
    assert (stats.samples, stats.unmapped, stats.malformed) == (6, 1, 1)


def test_one_text_through_the_stage_is_the_exporter_collectors_scrape(cfg):
    """dcgm text parsed by parse_series -> device_batch -> batch_scrape stores what DcgmCollector
    stores for it: the same samples, devices and events (a second scrape raises the XID)."""
    from collectors.batch import BatchBuilder, EventTracker
    from collectors.dcgm import DcgmCollector
    from helpers import A, dcgm_text

    at = datetime(2026, 11, 20, 8, 0, 15, tzinfo=UTC)
    direct, tracker = DcgmCollector(cfg), EventTracker()
    mapping = numbers_only(CompiledMapping.from_config(cfg.mappings["dcgm"]))
    builder = BatchBuilder(cfg, "nvidia")
    for k, text in enumerate([dcgm_text(), dcgm_text(xid=(79, 0))]):
        ts = at + timedelta(seconds=15 * k)
        want = direct.from_text(text, A, ts)
        got = batch_scrape(device_batch(*parse_series(text), mapping, default_host="node-a"), builder, A, ts, tracker)
        assert got.samples.equals(want.samples) and got.devices.equals(want.devices)
        assert (got.events is None) == (want.events is None) and (k == 0) == (want.events is None)
        if want.events is not None:
            assert got.events.equals(want.events)


def test_issues_carry_their_reason_as_a_key(cfg):
    """Skipped series read in Chinese on the Sources page: each issue keeps its message key."""
    mapping = CompiledMapping.from_config(cfg.mappings["dcgm"])
    text = '# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu="0"} 5\n'      # no UUID, no host
    batch = device_batch(*parse_series(text), mapping)
    (issue,) = batch.stats.issues
    assert issue.msg.key == "msg.parse.no_device" and issue.lineno == 2
    assert issue.text == 'DCGM_FI_DEV_GPU_UTIL{gpu="0"}'
    series, stats = parse_series('dcim_power_watts{meter="m"} 5\n')
    facility = FacilityMapping.from_config(cfg.mappings["facility"])
    assert facility_rows(series, stats, facility, site=SITE, source="s", tick=datetime(2026, 11, 20, tzinfo=UTC)) == []
    (issue,) = stats.issues
    assert issue.msg.key == "msg.rows.no_meter" and issue.msg.render("zh-CN") != issue.reason
    stats = _stats()
    FacilityPivot(facility, stats, site=SITE, source="s").feed("dcim_power_watts", {"meter": "m", "scope": "it"},
                                                               [[1.0, "x"]], raw=True)
    (issue,) = stats.issues
    assert issue.msg.key == "msg.parse.not_a_number" and issue.reason == "value is not a number: 'x'"


def test_a_bad_category_or_a_far_timestamp_costs_that_series_only(cfg):
    """A meter label like pue_category="99999999999" overflowed the Arrow batch and lost the whole
    meter exporter (issue 11); a timestamp past year 9999 crashed the row's datetime."""
    from collectors.facility import FacilityCollector

    text = ('dcim_power_watts{site="sh-lingang",meter="ups-a",scope="it",pue_category="99999999999"} 1000\n'
            'dcim_power_watts{site="sh-lingang",meter="grid",scope="facility"} 1500 99999999999999999\n'
            'dcim_power_watts{site="sh-lingang",meter="ups-b",scope="it",pue_category="2"} 800\n')
    target = Target(url="http://meter:9100/metrics", source="m", kind="facility", site="sh-lingang")
    ts = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    scrape = FacilityCollector(cfg).from_text(text, target, ts)
    rows = {r["meter"]: r for r in scrape.facility.to_pylist()}
    assert set(rows) == {"grid", "ups-b"}
    assert rows["grid"]["ts"] == ts and rows["ups-b"]["pue_category"] == 2     # far stamp -> the tick
    assert scrape.lines_skipped == 1 and "PUE category 99999999999" in str(scrape.issues[0])
