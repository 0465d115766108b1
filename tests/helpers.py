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
