"""The live page at a 10,000-GPU centre (1,250 nodes): the heatmap is paged, problem hosts
first, and the page in the URL picks the hosts; a centre of up to 128 hosts sees one heatmap."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import config
from pages.live import PAGE_HOSTS, heatmap_page, host_order
from queries import Store
from queries.catalogue import arrow_schema
from helpers import config_dict, config_dir

NODES = 625                    # per cluster: 2 x 625 = 1,250 nodes x 8 GPUs = 10,000 GPUs
XID_HOST, DOWN_HOST = "trn-a-0500", "inf-b-0200"


def seed(store: Store, now: datetime, nodes: int) -> None:
    """Two scrape cycles of `nodes` 8-GPU nodes in each of infer-b and train-a (15 s apart,
    the newest 10 s before `now`): XID 79 on GPU 3 of XID_HOST in the newest; DOWN_HOST only
    in a cycle 5 minutes old (no data now, stale after 60 s)."""
    hosts = [(c, f"{p}-{n:04d}") for c, p in (("infer-b", "inf-b"), ("train-a", "trn-a")) for n in range(1, nodes + 1)]
    devices = [{"device_id": f"GPU-{h}-{g}", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3",
                "catalogue_model": "H100-SXM", "peak_dense_tflops": 989.0, "host": h, "cluster": c,
                "site": "sh-lingang", "gpu_index": g, "uuid": f"GPU-{h}-{g}", "source": "t",
                "first_seen": now - timedelta(minutes=5), "last_seen": now}
               for c, h in hosts for g in range(8)]
    store.write_scrape(devices=pa.Table.from_pylist(devices, schema=arrow_schema("devices")))

    def cycle(at: datetime, which: list[tuple[str, str]]) -> pa.Table:
        rows = [{"ts": at, "device_id": f"GPU-{h}-{g}", "host": h, "cluster": c, "site": "sh-lingang",
                 "util_pct": 50.0, "temp_c": 50.0, "power_w": 400.0, "health": 1,
                 "xid_last": 79 if (h, g) == (XID_HOST, 3) else 0}
                for c, h in which for g in range(8)]
        return pa.Table.from_pylist(rows, schema=arrow_schema("device_samples"))

    store.write_scrape(samples=cycle(now - timedelta(minutes=5), hosts))
    up = [(c, h) for c, h in hosts if h != DOWN_HOST]
    store.write_scrape(samples=cycle(now - timedelta(seconds=25), up))
    store.write_scrape(samples=cycle(now - timedelta(seconds=10), up))


@pytest.fixture
def big(tmp_path, monkeypatch):
    db = tmp_path / "big.duckdb"
    d = config_dict()
    d["clusters"] = [{**c, "nodes": NODES} for c in d["clusters"]]
    cdir = config_dir(tmp_path / "config", d, database={**d["database"], "path": str(db)})
    store = Store(db)
    seed(store, datetime.now(timezone.utc), NODES)
    store.close()
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    yield db
    st.cache_resource.clear()


def live(lang: str = "en", **params: str) -> AppTest:
    at = AppTest.from_file(str(config.PROJECT_ROOT / "app.py"), default_timeout=60)
    at.query_params["lang"] = lang
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def heatmaps(at: AppTest) -> list[dict]:
    """The page's figures that hold a heatmap trace, in page order."""
    figs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [f for f in figs if any(tr.get("type") == "heatmap" for tr in f["data"])]


def heatmap_hosts(at: AppTest) -> list[str]:
    """The x labels (hosts) of the host x GPU heatmap (the overview's x are column numbers)."""
    for fig in heatmaps(at):
        trace = next(tr for tr in fig["data"] if tr.get("type") == "heatmap")
        if all(isinstance(x, str) for x in trace["x"]):
            return list(trace["x"])
    raise AssertionError("no host x GPU heatmap on the page")


def test_the_heatmap_at_10000_gpus_is_a_page_of_hosts_problems_first(big):
    at = live()
    assert [m.value for m in at.metric if m.label == "GPUs owned"] == ["10,000"]
    pager = at.number_input(key="heatmap_page")
    # 1,250 hosts / 128 a page = 9.77: 10 pages
    assert pager.value == 1 and pager.max == 10 and "10" in pager.label
    hosts = heatmap_hosts(at)
    assert len(hosts) == PAGE_HOSTS                     # 128 hosts x 8 GPUs, not 1,250
    # XID (worse) before no data; then the rest in the query's order (infer-b first)
    assert hosts[:4] == [XID_HOST, DOWN_HOST, "inf-b-0001", "inf-b-0002"]
    captions = " ".join(c.value for c in at.caption)
    assert "Hosts 1–128 of 1250" in captions and "the 2 host(s) with a problem" in captions
    # above it, every host as one cell: 1,250 hosts / 50 a row = 25 rows, the two problem hosts marked
    overview = heatmaps(at)[0]
    cells = next(tr for tr in overview["data"] if tr["type"] == "heatmap")
    assert len(cells["z"]) == 25 and all(len(r) == 50 for r in cells["z"])
    assert cells["y"][0] == "inf-b-0001" and cells["y"][-1] == "trn-a-0576"   # host 1,201 = train-a's 576th
    marks = {tr["name"]: (tr["x"], tr["y"]) for tr in overview["data"] if tr["type"] == "scatter"}
    # inf-b-0200 is host 200: row 4 (from 1; its first host inf-b-0151), column 50;
    # trn-a-0500 is host 625 + 500 = 1,125: row 23 (first host 1,101 = trn-a-0476), column 25
    assert marks == {"no data": ([50], ["inf-b-0151"]), "XID error": ([25], ["trn-a-0476"])}


def test_the_page_in_the_url_picks_its_hosts(big):
    at = live(hosts_page="2")
    assert at.number_input(key="heatmap_page").value == 2
    hosts = heatmap_hosts(at)
    # order: the 2 problem hosts, then inf-b-0001.. without inf-b-0200; places 129..256 are the
    # 127th..254th of the rest: inf-b-0127..inf-b-0199 (73 hosts) and inf-b-0201..inf-b-0255 (55)
    assert hosts[0] == "inf-b-0127" and hosts[-1] == "inf-b-0255" and len(hosts) == 128
    assert DOWN_HOST not in hosts
    at.number_input(key="heatmap_page").set_value(3).run()
    assert at.query_params["hosts_page"] == "3"                  # the page chosen goes in the URL
    assert heatmap_hosts(at)[0] == "inf-b-0256"                  # the 255th of the rest: 0201 + 55
    last = live(hosts_page="10")
    # 1,250 - 9 x 128 = 98 hosts on the last page: the rest's 1,151st.. are trn-a-0528..trn-a-0625
    # (the rest: 624 of infer-b, then train-a without trn-a-0500: 1,151 - 624 = 527th of train-a
    # is trn-a-0528, since trn-a-0500 was taken out before it)
    tail = heatmap_hosts(last)
    assert len(tail) == 98 and tail[0] == "trn-a-0528" and tail[-1] == "trn-a-0625"


def test_chinese_pager(big):
    at = live("zh-CN")
    assert "共 10 页" in at.number_input(key="heatmap_page").label
    assert "有问题的 2 台主机排在最前" in " ".join(c.value for c in at.caption)


def test_a_small_centre_sees_one_heatmap(tmp_path, monkeypatch):
    db = tmp_path / "small.duckdb"
    d = config_dict()                       # the default 2 x 32 nodes
    cdir = config_dir(tmp_path / "config", d, database={**d["database"], "path": str(db)})
    store = Store(db)
    seed(store, datetime.now(timezone.utc), 32)
    store.close()
    monkeypatch.setenv(config.ENV_VAR, str(cdir))
    st.cache_resource.clear()
    at = live(hosts_page="2")               # no pages: the parameter changes nothing
    st.cache_resource.clear()
    assert not at.get("number_input")
    hosts = heatmap_hosts(at)
    # every host in the query's order: infer-b's 32 then train-a's 32
    assert len(hosts) == 64 and hosts[0] == "inf-b-0001" and hosts[-1] == "trn-a-0032"


def test_host_order_and_pages_hand_made():
    df = pd.DataFrame({"host": ["h1", "h1", "h2", "h2", "h3", "h3", "h4", "h4"],
                       "gpu_index": [0, 1] * 4,
                       "state": ["ok", "ok", "ok", "thermal", "ok", "ok", "lost", None]})
    assert host_order(df) == ["h4", "h2", "h1", "h3"]        # lost (0), thermal (3), then as queried
    rows, hosts, problems = heatmap_page(df, 2, size=3)
    assert hosts == ["h3"] and list(rows["host"]) == ["h3", "h3"] and problems == 2
    rows, hosts, _ = heatmap_page(df, 1, size=3)
    assert hosts == ["h4", "h2", "h1"] and list(rows["host"]) == ["h4", "h4", "h2", "h2", "h1", "h1"]
