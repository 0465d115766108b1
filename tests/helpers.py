"""What several test modules share: fixture text, fake endpoints, waiting for an event.

No test module imports another; they import from here (and conftest.py holds the
pytest fixtures).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from collectors.targets import Target

FIXTURES_ROOT = Path(__file__).resolve().parent / "fixtures"
FIXTURES = FIXTURES_ROOT / "dcgm"

# device ids in the dcgm-exporter fixtures
K8S_GPU0 = "GPU-3f2a9c41-7d1e-4b8a-9c55-0e1f2a3b4c5d"
K8S_GPU1 = "GPU-8b7c6d5e-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
K8S_GPU2 = "GPU-c0ffee00-5a5a-4b4b-8c8c-0d0d0e0e0f0f"
MIG_GPU = "GPU-9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4"

T_REF = 1795132800.0            # 2026-11-20T00:00:00Z, a fixed instant of the simulated floor

A = Target(url="http://node-a:9400/metrics", source="t", kind="dcgm", site="sh-lingang", cluster="train-a",
           host="node-a")
B = Target(url="http://node-b:9400/metrics", source="t", kind="dcgm", site="sh-lingang", cluster="infer-b",
           host="node-b")


def read(name: str) -> str:
    """A dcgm-exporter fixture; bytes -> str by hand so that \\r\\n survives exactly as stored."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


def dcgm_text(util=(87, 0), xid=(0, 0), throttle=(0, 0), gpus=(0, 1), ns=("moonlake-train", None)):
    """dcgm-exporter text for GPUs of host node-a, with the given per-GPU values."""
    lines = ["# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", "# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    fields = [("DCGM_FI_DEV_GPU_UTIL", lambda i: util[i]), ("DCGM_FI_DEV_POWER_USAGE", lambda i: 300.5 + i),
              ("DCGM_FI_DEV_FB_USED", lambda i: 1000 * (i + 1)), ("DCGM_FI_DEV_FB_FREE", lambda i: 80559 - 1000 * i),
              ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", lambda i: 0.5), ("DCGM_FI_DEV_XID_ERRORS", lambda i: xid[i]),
              ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", lambda i: throttle[i]),
              ("DCGM_FI_DEV_GPU_TEMP", lambda i: 60 + i),
              ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", lambda i: 5_000_000 + i)]
    for name, value in fields:
        for i in gpus:
            pod = (f',container="pytorch",namespace="{ns[i]}",pod="job-{i}"' if ns[i] else "")
            lines.append(f'{name}{{gpu="{i}",UUID="GPU-{i:04d}",pci_bus_id="00000000:1{i}:00.0",device="nvidia{i}",'
                         f'modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",DCGM_FI_DRIVER_VERSION="550.127.05"'
                         f'{pod}}} {value(i)}')
    return "\n".join(lines) + "\n"


def text_b(**kw):
    """dcgm_text for host node-b, with its own GPU ids."""
    return dcgm_text(**kw).replace('Hostname="node-a"', 'Hostname="node-b"').replace("GPU-000", "GPU-B00")


class FakeFloor:
    """Per-URL responses: text, or an exception to raise."""

    def __init__(self):
        self.responses = {}

    def fetch(self, url, timeout):
        r = self.responses[url]
        if isinstance(r, Exception):
            raise r
        return r


def calm_instant(floor, start: float = T_REF) -> float:
    """The first instant from `start` (15 s steps) when every exporter answers and every GPU is present."""
    t = start - start % 15
    while True:
        if all(floor.exporter_up(h.host, t) and len(floor.gpu_states(h.host, t)) == h.n_gpus for h in floor.hosts):
            return t
        t += 15


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, *, event: threading.Event | None = None) -> bool:
    """Wait until `cond()` holds. Pass the `event` the code under test sets when it changes
    something (a cycle ended, a job ran): then this wakes on it instead of polling. The
    timeout is only a guard against a hang, never what the test measures."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if event is not None:
            event.wait(0.5)
            event.clear()
        else:
            time.sleep(0.05)
    return cond()


def config_dict(directory: Path | None = None) -> dict:
    """centre.toml of the package (or of `directory`) as a dict, to change and hand to
    `make_config` / `config.from_dict` instead of patching TOML text."""
    import tomllib

    import config

    with ((directory or config.CONFIG_DIR) / "centre.toml").open("rb") as fh:
        return tomllib.load(fh)


def make_config(centre: dict | None = None, *, base: Path | None = None, mappings: dict | None = None,
                **tables):
    """A validated Config: `centre` (default: `config_dict(base)`) with each keyword replacing
    that top-level table, e.g. `make_config(database={"path": str(db)}, sources=[{...}])`.
    `base` (e.g. config/examples/mixed-fleet) is also the Config's directory."""
    import config

    d = config_dict(base) if centre is None else centre
    d.update(tables)
    return config.from_dict(d, mappings=mappings, directory=base)


def _toml_value(v) -> str:
    import json
    from datetime import datetime

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)     # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def toml_text(centre: dict) -> str:
    """centre.toml's text for a dict of its shape: keys, tables, arrays of tables."""
    lines: list[str] = []
    for key, value in centre.items():
        if not isinstance(value, (dict, list)) or (isinstance(value, list) and not all(isinstance(x, dict)
                                                                                         for x in value)):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in centre.items():
        tables = [value] if isinstance(value, dict) else value if isinstance(value, list) and value and all(
            isinstance(x, dict) for x in value) else []
        for table in tables:
            lines.append(f"\n[{key}]" if isinstance(value, dict) else f"\n[[{key}]]")
            lines.extend(f"{k} = {_toml_value(x)}" for k, x in table.items())
    return "\n".join(lines) + "\n"


def config_dir(directory: Path, centre: dict | None = None, **tables) -> Path:
    """A configuration directory for a child process (CLI, server) that reads its config from
    files: centre.toml written from `centre` (default: `config_dict()`) with `tables` replaced,
    checked with `config.from_dict` first; the package's catalogue and mappings apply."""
    import config

    d = config_dict() if centre is None else centre
    d.update(tables)
    config.from_dict(d)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "centre.toml").write_text(toml_text(d), encoding="utf-8")
    return directory


def backfill_job(cfg, store, floor=None):
    """The simulator's history back-fill job of a simulated runtime that is wired but not started."""
    from collectors.runtime import simulated_backfill

    return simulated_backfill(cfg, store, floor)


def sample_counts(store) -> tuple[int, int]:
    """(rows, distinct (device, time) keys) in device_samples: what a fault test reports as stored."""
    with store.cursor() as cur:
        rows, unique = cur.execute(
            "SELECT count(*), count(DISTINCT (device_id, ts)) FROM device_samples").fetchone()
    return rows, unique


# ---- a tiny seeded history (the utilisation and tenant pages, the API) -------------------

HISTORY_T0 = 1795132800.0       # 2026-11-20T00:00:00Z (08:00 in Asia/Shanghai, a Friday)


def history_centre(**tables) -> dict:
    """A centre of one site (Asia/Shanghai) with cluster c1 (1 node x 2 H100) and c2 (1 node x 4
    H100, never reporting), tenants acme (namespace acme-ns) and idle-co, H100 at 12.5 CNY per
    GPU-hour; `tables` replace top-level tables."""
    d = config_dict()
    d.update(sites=[{"id": "s1", "name": "Site One", "timezone": "Asia/Shanghai"}],
             clusters=[{"id": "c1", "name": "C one", "site": "s1", "nodes": 1, "gpus_per_node": 2,
                        "model": "NVIDIA H100 80GB HBM3", "host_prefix": "n1"},
                       {"id": "c2", "name": "C two", "site": "s1", "nodes": 1, "gpus_per_node": 4,
                        "model": "NVIDIA H100 80GB HBM3", "host_prefix": "n2"}],
             tenants=[{"id": "acme", "name": "Acme AI", "namespaces": ["acme-ns"]},
                      {"id": "idle-co", "name": "Idle Co", "namespaces": ["idle-ns"]}],
             prices=[{"model": "H100-SXM", "cny_per_gpu_hour": 12.5}], leases=[], attribution=[])
    d.update(tables)
    return d


def seed_history(store) -> None:
    """Three hours of rollups from HISTORY_T0 on c1's two GPUs (g0 on host n1-001 index 0, g1
    index 1), written straight into the tiers (the rollup job's output, by hand):
      hour 0: both held by acme (acme-ns), busy half the hour each, util 35 %, tensor 0.25
      hour 1: g0 held by acme, busy all hour, util 80 %; g1 reported, nobody held it
      hour 2: g0 held by an unattributed pod for its first 30 minutes (util 50 %); g1 no data
    The group tier is what the rollup makes of the device tier with the config of
    history_centre (no leases); the 5-minute group tier holds hour 2 (the pod's 1 GPU)."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa

    from queries.catalogue import arrow_schema

    t0 = datetime.fromtimestamp(HISTORY_T0, timezone.utc)
    zero = dict(samples=0, observed_s=0.0, available_s=0.0, allocated_s=0.0, busy_s=0.0, useful_s=0.0,
                useful_basis=None, alloc_idle_s=0.0, util_s=0.0, util_obs_s=0.0, tflop_s=0.0, energy_j=0.0)

    def sums(**kw):
        row = dict(zero)
        row.update(kw)
        row["samples"] = int(row["observed_s"] // 15)
        return row

    def dev(hour, device, ns=None, pod=None, **kw):
        return dict(bucket=t0 + timedelta(hours=hour), device_id=device, namespace=ns, pod=pod, job=None,
                    job_user=None, **sums(**kw))

    def grp(hour, tenant, devices, minutes=0, step=3600, **kw):
        return dict(bucket=t0 + timedelta(hours=hour, minutes=minutes), site="s1", cluster="c1", model="H100-SXM",
                    tenant=tenant, devices=devices, **sums(**kw))

    busy_half = dict(observed_s=3600.0, available_s=3600.0, allocated_s=3600.0, busy_s=1800.0, useful_s=900.0,
                     useful_basis="tensor", alloc_idle_s=1800.0, util_s=1260.0, util_obs_s=3600.0,
                     tflop_s=900.0 * 989, energy_j=1.8e6)
    device_rows = [
        dev(0, "g0", "acme-ns", "train-1", **busy_half),
        dev(0, "g1", "acme-ns", "train-1", **busy_half),
        dev(1, "g0", "acme-ns", "train-1", observed_s=3600.0, available_s=3600.0, allocated_s=3600.0,
            busy_s=3600.0, useful_s=1800.0, useful_basis="tensor", util_s=2880.0, util_obs_s=3600.0,
            tflop_s=1800.0 * 989, energy_j=1.8e6),
        # the device tier counts idle available time whether held or not (queries/rollup.py)
        dev(1, "g1", observed_s=3600.0, available_s=3600.0, alloc_idle_s=3600.0, util_obs_s=3600.0),
        dev(2, "g0", None, "job-x", observed_s=1800.0, available_s=1800.0, allocated_s=1800.0, busy_s=1800.0,
            util_s=900.0, util_obs_s=1800.0),
    ]
    group_rows = [
        grp(0, "acme", 2, observed_s=7200.0, available_s=7200.0, allocated_s=7200.0, busy_s=3600.0,
            useful_s=1800.0, useful_basis="tensor", alloc_idle_s=3600.0, util_s=2520.0, util_obs_s=7200.0,
            tflop_s=1800.0 * 989, energy_j=3.6e6),
        grp(1, "acme", 1, observed_s=3600.0, available_s=3600.0, allocated_s=3600.0, busy_s=3600.0,
            useful_s=1800.0, useful_basis="tensor", util_s=2880.0, util_obs_s=3600.0, tflop_s=1800.0 * 989,
            energy_j=1.8e6),
        grp(1, "_unallocated", 1, observed_s=3600.0, available_s=3600.0, util_obs_s=3600.0),
        grp(2, "_unattributed", 1, observed_s=1800.0, available_s=1800.0, allocated_s=1800.0, busy_s=1800.0,
            util_s=900.0, util_obs_s=1800.0),
    ]
    five = [grp(2, "_unattributed", 1, minutes=m, observed_s=300.0, available_s=300.0, allocated_s=300.0,
                busy_s=300.0, util_s=150.0, util_obs_s=300.0) for m in range(0, 30, 5)]
    devices = [dict(device_id=d, vendor="nvidia", model="NVIDIA H100 80GB HBM3", catalogue_model="H100-SXM",
                    peak_dense_tflops=989.0, host="n1-001", cluster="c1", site="s1", gpu_index=i, uuid=d,
                    first_seen=t0, last_seen=t0 + timedelta(hours=3)) for i, d in enumerate(("g0", "g1"))]
    for name, rows in (("devices", devices), ("rollup_device_1h", device_rows), ("rollup_group_1h", group_rows),
                       ("rollup_group_5m", five)):
        store.insert(name, pa.Table.from_pylist(rows, schema=arrow_schema(name)))


# ---- AppTest ------------------------------------------------------------------------------

def run_script(script: Callable[..., None], args: tuple, params: dict[str, str], *,
               errors_allowed: bool = False, timeout: float = 60):
    """Run a page through AppTest.from_function(script, args) with `params` as its URL query;
    no exception, and no st.error unless `errors_allowed` (a page that refuses the viewer)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(script, args=args, default_timeout=timeout)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert errors_allowed or not at.error, [e.value for e in at.error]
    return at


def table_with(at, column: str):
    """The page's dataframe that has `column` (pages show several tables)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}: {[list(d.value.columns) for d in at.dataframe]}")


# In a browser (Playwright's page.wait_for_function): every lazily loaded element is there (no
# skeleton left) and every plotly chart has drawn its SVG, so a screenshot shows the page drawn
DRAWN = """() => !document.querySelector('[data-testid="stSkeleton"]') &&
    [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(e => e.querySelector('.main-svg'))"""
