"""The JSON/CSV API (api/): its answers are the pages' tables, bad parameters are 400s that
name the parameter, and nothing ever shows a traceback.

Starlette's TestClient (httpx) drives the routes on a Starlette app over the tiny seeded
history of helpers.seed_history (c1's two GPUs, three hours from 2026-11-20T00:00Z).
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import api
import config
from queries import Store, history, rollup
from queries.history import View
from helpers import HISTORY_T0, history_centre, seed_history

T0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)
NOW = T0 + timedelta(hours=3)
RANGE = {"from": "2026-11-20T08:00:00+08:00", "to": "2026-11-20T03:00:00Z"}       # [T0, NOW)


@pytest.fixture
def served():
    cfg = config.from_dict(history_centre())
    store = Store(":memory:")
    seed_history(store)
    rollup.fill_tenants(store)                  # the seed writes the group tiers, not the tenant one
    box = {"store": store}
    client = TestClient(Starlette(routes=api.routes(lambda: box["store"], cfg, clock=lambda: NOW)),
                        raise_server_exceptions=False)
    yield client, cfg, store, box
    store.close()


def test_utilisation_answers_what_the_page_shows(served):
    client, cfg, store, _ = served
    for step in ("1h", "1d", "1w", "1mo", "all"):
        for by in ("fleet", "site", "cluster", "model", "tenant"):
            r = client.get("/api/v1/utilisation", params={**RANGE, "step": step, "by": by})
            assert r.status_code == 200, r.text
            page = history.utilisation(store, cfg, View(start=T0, end=NOW, step=step, by=by,
                                                        tz="Asia/Shanghai"), NOW)
            assert r.json() == page.to_json()
    body = client.get("/api/v1/utilisation", params={**RANGE, "step": "all", "by": "cluster"}).json()
    names = [c["name"] for c in body["columns"]]
    assert names[:11] == ["bucket", "cluster", "util_pct", "observed_gpu_hours", "owned_gpu_hours",
                          "available_gpu_hours", "allocated_gpu_hours", "busy_gpu_hours", "useful_gpu_hours",
                          "no_data_gpu_hours", "useful_basis"]
    assert {c["name"]: c["unit"] for c in body["columns"]}["owned_gpu_hours"] == "GPU-h"
    c1 = next(row for row in body["rows"] if row["cluster"] == "c1")
    assert (c1["owned_gpu_hours"], c1["allocated_gpu_hours"], c1["util_pct"]) == (6.0, 3.5, 38.889)


def test_tenants_answer_with_unattributed(served):
    client, cfg, store, _ = served
    r = client.get("/api/v1/tenants", params=RANGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["tenant", "allocated_gpu_hours", "busy_gpu_hours",
                                                    "useful_gpu_hours", "util_pct", "peak_gpus", "energy_kwh"]
    assert body == history.tenants(store, cfg, View(start=T0, end=NOW, tz="Asia/Shanghai"), NOW,
                                   trend=False).to_json()
    rows = {row["tenant"]: row for row in body["rows"]}
    assert set(rows) == {"acme", "idle-co", "_unattributed"}
    assert rows["acme"] == {"tenant": "acme", "allocated_gpu_hours": 3.0, "busy_gpu_hours": 2.0,
                            "useful_gpu_hours": 1.0, "util_pct": 50.0, "peak_gpus": 2.0, "energy_kwh": 1.5}


def test_csv_is_the_same_rows(served):
    client, cfg, store, _ = served
    r = client.get("/api/v1/utilisation", params={**RANGE, "step": "1h", "by": "tenant", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    json_rows = client.get("/api/v1/utilisation", params={**RANGE, "step": "1h", "by": "tenant"}).json()["rows"]
    assert len(rows) == len(json_rows) == 12                    # 3 hours x (2 tenants, unattributed, unallocated)
    assert rows[0]["bucket"] == "2026-11-20T08:00:00+08:00"
    assert [(r["tenant"], r["allocated_gpu_hours"]) for r in rows if r["tenant"] == "acme"] == [
        ("acme", "2.0"), ("acme", "1.0"), ("acme", "0.0")]
    assert rows[0]["owned_gpu_hours"] == ""                     # not defined per tenant: empty, as JSON's null
    t = client.get("/api/v1/tenants", params={**RANGE, "format": "csv"})
    assert t.text.splitlines()[0] == ("tenant,allocated_gpu_hours,busy_gpu_hours,useful_gpu_hours,util_pct,"
                                      "peak_gpus,energy_kwh")
    page = history.tenants(store, cfg, View(start=T0, end=NOW, tz="Asia/Shanghai"), NOW, trend=False)
    assert t.text == page.to_csv()


def test_tz_moves_day_buckets(served):
    client, *_ = served
    r = client.get("/api/v1/utilisation", params={**RANGE, "step": "1d", "tz": "America/New_York"})
    # 00:00-03:00Z on 20 November is the evening of the 19th in New York
    assert [row["bucket"] for row in r.json()["rows"]] == ["2026-11-19T00:00:00-05:00"]


@pytest.mark.parametrize("change, param", [
    ({"from": None}, "from"), ({"from": "2026-11-20T00:00:00"}, "from"), ({"from": "not a time"}, "from"),
    ({"to": None}, "to"), ({"to": "2026-11-19T00:00:00Z"}, "to"), ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"step": None}, "step"), ({"step": "5m"}, "step"), ({"by": "host"}, "by"), ({"tz": "Asia/Nowhere"}, "tz"),
    ({"site": "elsewhere"}, "site"), ({"cluster": "c9"}, "cluster"), ({"model": "TPU"}, "model"),
    ({"tenant": "mallory"}, "tenant"), ({"format": "xlsx"}, "format"), ({"lang": "en"}, "lang"),
    ({"from": "1990-01-01T00:00:00Z"}, "from"),
])
def test_bad_utilisation_parameter_is_400_naming_it(served, change, param):
    client, *_ = served
    params = {**RANGE, "step": "1h", "by": "fleet", **change}
    params = {k: v for k, v in params.items() if v is not None}
    r = client.get("/api/v1/utilisation", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "parameter"} and body["parameter"] == param
    assert f"'{param}'" in body["error"] and "expected" in body["error"]
    assert "Traceback" not in r.text


def test_bad_tenants_parameters(served):
    client, *_ = served
    for params, param in (({"from": RANGE["from"]}, "to"), ({**RANGE, "step": "1h"}, "step"),
                          ({**RANGE, "tenant": "acme"}, "tenant"), ({**RANGE, "format": "pdf"}, "format")):
        r = client.get("/api/v1/tenants", params=params)
        assert r.status_code == 400 and r.json()["parameter"] == param, r.text
    r = client.get("/api/v1/tenants?from=2026-11-20T00:00:00Z&from=2026-11-20T01:00:00Z&to=2026-11-21T00:00:00Z")
    assert r.status_code == 400 and "'from'" in r.json()["error"]


def test_too_many_buckets_asks_for_a_coarser_step(served):
    client, *_ = served
    r = client.get("/api/v1/utilisation", params={"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z",
                                                  "step": "1h"})
    assert r.status_code == 400 and r.json()["parameter"] == "step"


def test_no_store_or_a_failure_is_a_plain_message(served, monkeypatch):
    client, cfg, store, box = served
    box["store"] = None
    r = client.get("/api/v1/tenants", params=RANGE)
    assert r.status_code == 503 and set(r.json()) == {"error"}
    box["store"] = store

    def boom(*_a, **_k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(history, "tenants", boom)
    r = client.get("/api/v1/tenants", params=RANGE)
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


def test_api_view_is_the_pages_view():
    """The page builds its view from a named range; the API from/to of the same instants
    gives the same View, so the same table."""
    cfg = config.from_dict(history_centre())
    start, end = history.range_bounds("custom", NOW, "Asia/Shanghai", day_from=datetime(2026, 11, 20).date(),
                                      day_to=datetime(2026, 11, 20).date())
    v, _ = history.api_view({"from": start.isoformat(), "to": end.isoformat(), "step": "all"}, cfg, None,
                            route="utilisation")
    assert v == replace(View(start=start, end=end, tz="Asia/Shanghai"), step="all", by="fleet")
