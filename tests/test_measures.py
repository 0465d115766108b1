"""The measures (queries/measures.py and the SQL macros of queries/macros/measures.sql) against
hand-computed numbers: owned and installed capacity from the config, the ladder and its
shares, device time, MIG weights, idle cost, site-local calendars."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from helpers import make_config
from queries import measures as m

UTC = timezone.utc
SITES = [{"id": "sh", "name": "Shanghai", "timezone": "Asia/Shanghai"},
         {"id": "de", "name": "Frankfurt", "timezone": "Europe/Berlin"}]
CLUSTERS = [
    {"id": "a", "name": "A", "site": "sh", "nodes": 4, "gpus_per_node": 8, "model": "NVIDIA H100 80GB HBM3",
     "host_prefix": "a"},
    {"id": "b", "name": "B", "site": "sh", "nodes": 2, "gpus_per_node": 8, "model": "NVIDIA A100-SXM4-80GB",
     "host_prefix": "b"},
    {"id": "c", "name": "C", "site": "de", "nodes": 1, "gpus_per_node": 4, "model": "NVIDIA H100 80GB HBM3",
     "host_prefix": "c"},
]


@pytest.fixture(scope="module")
def centre():
    return make_config(sites=SITES, clusters=CLUSTERS, tenants=[{"id": "lab", "name": "Lab"}], leases=[],
                       attribution=[], sources=[], prices=[{"model": "H100-SXM", "cny_per_gpu_hour": 18.0}])


def test_owned_gpus_from_the_inventory(centre):
    # a: 4 x 8 = 32, b: 2 x 8 = 16, c: 1 x 4 = 4
    assert m.owned_gpus(centre) == {None: 52}
    assert m.owned_gpus(centre, "site") == {"sh": 48, "de": 4}
    assert m.owned_gpus(centre, "cluster") == {"a": 32, "b": 16, "c": 4}
    assert m.owned_gpus(centre, "model") == {"H100-SXM": 36, "A100": 16}
    assert m.owned_gpus(centre, "cluster", site="sh", model="H100-SXM") == {"a": 32}
    day = datetime(2026, 11, 20, tzinfo=UTC)
    # 52 GPUs x 24 h = 1,248 GPU-hours
    assert m.owned_gpu_seconds(centre, day, day + timedelta(days=1))[None] / 3600 == 1248.0


def test_installed_tflops(centre):
    # H100-SXM 989 TFLOPS x 36 = 35,604; A100 312 x 16 = 4,992
    assert m.installed_tflops(centre, "model") == {"H100-SXM": pytest.approx(35604.0), "A100": pytest.approx(4992.0)}
    assert m.installed_tflops(centre)[None] == pytest.approx(40596.0)


def test_the_ladder_hours_shares_and_losses():
    # one GPU over 10 h: owned 36,000 s; it reported 9 h, 8 h healthy, 6 h held, 3 h busy, 1.5 h useful
    lad = m.Ladder.from_sums({"observed_s": 32400, "available_s": 28800, "allocated_s": 21600, "busy_s": 10800,
                              "useful_s": 5400, "util_s": 8100, "util_obs_s": 32400}, owned_s=36000)
    assert lad.hours() == {"owned": 10.0, "observed": 9.0, "available": 8.0, "allocated": 6.0, "busy": 3.0,
                           "useful": 1.5, "no_data": 1.0}
    assert lad.shares() == {"owned": 100.0, "observed": 90.0, "available": 80.0, "allocated": 60.0, "busy": 30.0,
                            "useful": 15.0, "no_data": 10.0}
    assert lad.losses() == {"owned->observed": 1.0, "observed->available": 1.0, "available->allocated": 2.0,
                            "allocated->busy": 3.0, "busy->useful": 1.5}
    # 8,100 s of utilisation over 32,400 s observed: 25 %
    assert lad.util_pct == 25.0
    tenant = m.Ladder.from_sums({"observed_s": 7200}, owned_s=None)
    assert tenant.no_data_s is None and tenant.shares()["observed"] is None


def test_util_pct_is_time_weighted_not_a_mean_of_means():
    # 1 h at 90 % and 3 h at 10 %: (3,240 + 1,080) s of 14,400 s = 30 %, not (90 + 10) / 2 = 50 %
    assert m.util_pct(3600 * 0.9 + 3 * 3600 * 0.1, 4 * 3600) == pytest.approx(30.0)
    assert m.util_pct(0, 0) is None and m.share_pct(5, 0) is None


def test_device_time():
    # next within 2 x 60 s: the gap itself; beyond: one interval; newest: one interval once 60 s old
    assert m.device_seconds(0, 90, 60, now=1000) == 90
    assert m.device_seconds(0, 600, 60, now=1000) == 60
    assert m.device_seconds(0, None, 60, now=30) == 0
    assert m.device_seconds(0, None, 60, now=61) == 60


def test_mig_weight_in_python_and_sql(store):
    cases = {"1g.10gb": 1 / 7, "3g.40gb": 3 / 7, "7g.80gb": 1.0, None: 1.0, "<<<NULL>>>": 1.0}
    with store.cursor() as cur:
        for profile, weight in cases.items():
            assert m.mig_weight(profile) == pytest.approx(weight)
            assert cur.execute("SELECT mig_weight(?)", [profile]).fetchall()[0][0] == pytest.approx(weight)


def test_delivered_pflops_and_idle_cost(centre):
    # 3,600,000 TFLOP-seconds over an hour: 1,000 TFLOPS = 1 PFLOPS
    assert m.delivered_pflops(3_600_000, 3600) == 1.0
    # 2 idle H100 GPU-hours at 18 CNY = 36 CNY; A100 has no price
    assert m.idle_cost_cny(centre, 7200, "H100-SXM") == 36.0
    assert m.idle_cost_cny(centre, 7200, "A100") is None


def test_useful_basis_combines():
    assert m.combine_basis(["tensor", "tensor", None]) == "tensor"
    assert m.combine_basis(["tensor", "sm"]) == "mixed"
    assert m.combine_basis([None]) is None


def test_a_shanghai_day_starts_at_1600_utc_the_day_before(store, centre):
    tz = m.site_timezone(centre, "sh")
    assert tz == "Asia/Shanghai"
    t = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)           # 23:30 on the 20th in Shanghai
    u = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)           # 00:30 on the 21st
    assert m.bucket_start(t, "1d", tz) == datetime(2026, 11, 19, 16, tzinfo=UTC)
    assert m.bucket_start(u, "1d", tz) == datetime(2026, 11, 20, 16, tzinfo=UTC)
    # the week of Friday the 20th starts on Monday the 16th, 00:00 Shanghai = 15th 16:00 UTC
    assert m.bucket_start(t, "1w", tz) == datetime(2026, 11, 15, 16, tzinfo=UTC)
    # December starts at 1 December 00:00 Shanghai = 30 November 16:00 UTC
    dec = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert m.bucket_start(dec, "1mo", tz) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert m.bucket_label(datetime(2026, 11, 19, 16, tzinfo=UTC), tz) == "2026-11-20T00:00:00+08:00"
    with store.cursor() as cur:
        for ts, unit, step in ((t, "day", "1d"), (u, "day", "1d"), (t, "week", "1w"), (dec, "month", "1mo")):
            assert cur.execute("SELECT bucket_local(?, ?, ?)", [unit, ts, tz]).fetchall()[0][0] == \
                m.bucket_start(ts, step, tz)


def test_local_days_follow_daylight_saving(store):
    # Berlin, 29 March 2026: clocks go 02:00 -> 03:00, so the local day is 23 h
    # (28 March 23:00 UTC .. 29 March 22:00 UTC)
    spans = m.buckets(datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 30, 22, tzinfo=UTC), "1d",
                      "Europe/Berlin")
    assert [(b - a).total_seconds() / 3600 for a, b in spans] == [23.0, 24.0]
    with store.cursor() as cur:
        got = cur.execute("SELECT bucket_local('day', TIMESTAMPTZ '2026-03-29 21:59:00+00', 'Europe/Berlin')"
                          ).fetchall()[0][0]
    assert got == datetime(2026, 3, 28, 23, tzinfo=UTC)


def test_buckets_are_clipped_to_the_range():
    start, end = datetime(2026, 11, 20, 10, 30, tzinfo=UTC), datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
    spans = m.buckets(start, end, "1h")
    # 10:30-11:00, 11:00-12:00, 12:00-12:15
    assert [(b - a).total_seconds() for a, b in spans] == [1800, 3600, 900]


def test_tenant_words(centre):
    assert m.tenant_label(centre, "lab") == "Lab"
    assert m.tenant_label(centre, m.UNATTRIBUTED) == "Unattributed"
    assert m.tenant_label(centre, m.UNALLOCATED, "zh-CN") == "未分配"


def test_prices_name_catalogue_models_once():
    import config

    with pytest.raises(config.ConfigError, match=r"prices\[0\]\.model.*unknown model 'H100'"):
        make_config(prices=[{"model": "H100", "cny_per_gpu_hour": 18.0}])
    with pytest.raises(config.ConfigError, match=r"prices\[1\]\.model.*duplicate model 'A100'"):
        make_config(prices=[{"model": "A100", "cny_per_gpu_hour": 9.0}, {"model": "A100", "cny_per_gpu_hour": 8.0}])
    with pytest.raises(config.ConfigError, match=r"retention\.raw_days"):
        make_config(retention={"raw_days": 0})
    cfg = make_config()
    assert (cfg.retention.raw_days, cfg.retention.five_minute_days, cfg.utilisation.target_pct) == (14, 90, 60.0)


def test_sql_macros_state_the_python_definitions(store):
    with store.cursor() as cur:
        row = cur.execute("""SELECT util_pct(8100, 32400), util_pct(1, 0), share_pct(21600, 36000), share_pct(5, 0),
                                    delivered_pflops(3600000, 3600), sample_available(NULL, NULL),
                                    sample_available(0, 0), sample_available(1, 79),
                                    labels_held(NULL, NULL, NULL, NULL), labels_held(NULL, NULL, '17', NULL),
                                    basis_of(2, 'sm'), basis_of(1, 'sm')""").fetchall()[0]
    assert row[0] == m.util_pct(8100, 32400) == 25.0
    assert row[1] is None and m.util_pct(1, 0) is None
    assert row[2] == m.share_pct(21600, 36000) == 60.0
    assert row[3] is None
    assert row[4] == m.delivered_pflops(3_600_000, 3600) == 1.0
    assert row[5:8] == (m.sample_available(None, None), m.sample_available(0, 0), m.sample_available(1, 79)) \
        == (True, False, False)
    assert row[8:] == (False, True, "mixed", "sm")


def test_array_forms_give_their_scalar_twins_floats():
    import numpy as np

    util_s, obs = np.array([1260.0, 0.0, 2880.0, 5.0]), np.array([3600.0, 0.0, 3600.0, 3.0])
    arr = m.util_pct_array(util_s, obs)
    assert arr[0] == m.util_pct(1260.0, 3600.0) == 35.0 and arr[2] == 80.0      # 1,260 / 3,600 s; 2,880 / 3,600 s
    assert np.isnan(arr[1]) and m.util_pct(0.0, 0.0) is None                   # nothing observed
    assert arr[3] == m.util_pct(5.0, 3.0)
    tflop, span = np.array([1800.0 * 989, 0.0]), np.array([3600.0, 1800.0])
    assert m.delivered_pflops_array(tflop, span).tolist() == [m.delivered_pflops(1800.0 * 989, 3600.0), 0.0]
    # 6 GPUs x 3 h owned, 4.5 GPU-h observed: 13.5 GPU-h no data; more observed than owned: 0;
    # owned not defined (per tenant): missing
    no_data = m.no_data_s_array(np.array([64800.0, 3600.0, np.nan]), np.array([16200.0, 7200.0, 100.0]))
    assert no_data[:2].tolist() == [48600.0, 0.0] and np.isnan(no_data[2])
