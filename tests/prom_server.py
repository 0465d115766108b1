"""A real Prometheus server on 127.0.0.1 for tests: Debian's /usr/bin/prometheus with a temp config.

    with PromServer(tmp_path, jobs) as prom:      # jobs: scrape jobs, see `node_jobs`
        prom.wait_for_samples('up', count=3)
        ... prom.url ...

The config is JSON (YAML accepts it). Every static target names its own
`instance` and metrics path, so many simulated exporters can sit behind one
simulator port and still look like separate exporters, as they do on a floor.
`stop()` terminates and waits; a server that will not stop is killed.

History for an import test: `backfill(openmetrics_text, tsdb_dir)` writes blocks with
Debian's `promtool`, and `PromServer(workdir, [], tsdb=tsdb_dir)` serves them (no scrape
jobs; the folder is used as it is, never emptied).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROMETHEUS = os.environ.get("ZHISUAN_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("ZHISUAN_PROMTOOL", str(Path(PROMETHEUS).with_name("promtool")))
MISSING_REASON = (f"{PROMETHEUS} not found: install Debian's `prometheus` package (CI does) to run the "
                  "Prometheus integration tests")


def available() -> bool:
    return os.access(PROMETHEUS, os.X_OK)


def promtool_available() -> bool:
    return os.access(PROMTOOL, os.X_OK)


def backfill(openmetrics: str, tsdb: Path) -> None:
    """Write `openmetrics` (OpenMetrics text ending in `# EOF`, timestamps in seconds) into
    the TSDB folder `tsdb` as blocks, as `promtool tsdb create-blocks-from openmetrics` does."""
    tsdb.mkdir(parents=True, exist_ok=True)
    src = tsdb.parent / f"{tsdb.name}.om"
    src.write_text(openmetrics, encoding="utf-8")
    done = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(src), str(tsdb)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    src.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"promtool failed ({done.returncode}): {done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_target(address: str, path: str, instance: str, **labels: str) -> dict:
    return {"targets": [address], "labels": {"__metrics_path__": path, "instance": instance, **labels}}


def node_jobs(sim_base_url: str, hosts: list[str], sites: list[str]) -> list[dict]:
    """Scrape jobs for a SimulatorServer: one dcgm-exporter per host, one meter endpoint per site."""
    address = urllib.parse.urlsplit(sim_base_url).netloc
    return [
        {"job_name": "dcgm", "static_configs": [static_target(address, f"/nodes/{h}/metrics", f"{h}:9400")
                                                for h in hosts]},
        {"job_name": "dcim", "static_configs": [static_target(address, f"/facility/{s}/metrics", f"dcim-{s}:9116")
                                                for s in sites]},
    ]


class PromServer:
    def __init__(self, workdir: str | os.PathLike, jobs: list[dict], *, port: int | None = None,
                 scrape_interval_s: int = 1, tsdb: Path | None = None):
        self.dir = Path(workdir)
        self.jobs = jobs
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_interval_s = scrape_interval_s
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / f"prometheus-{self.port}.log"
        self.started_at: float | None = None
        self.tsdb = tsdb            # an existing TSDB to serve (kept); None: a fresh one per start

    def start(self, timeout: float = 30.0) -> "PromServer":
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.tsdb
        if data is None:
            data = self.dir / f"tsdb-{self.port}"
            shutil.rmtree(data, ignore_errors=True)
        conf = self.dir / f"prometheus-{self.port}.yml"
        iv = f"{self.scrape_interval_s}s"
        conf.write_text(json.dumps({"global": {"scrape_interval": iv, "scrape_timeout": iv, "evaluation_interval": iv},
                                    "scrape_configs": self.jobs}, indent=1))
        self.started_at = time.time()
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             "--storage.tsdb.retention.time=3650d"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prometheus not ready within {timeout:g} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=5) as r:
            return json.load(r)["data"]["result"]

    def wait_for_samples(self, promql: str, count: int, timeout: float = 30.0) -> list[dict]:
        """Poll until `promql` returns at least `count` series (e.g. 'count_over_time(up[1m]) >= 5')."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if len(result) >= count:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{promql!r} returned {len(result)} series, wanted {count}; log: {self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
            self._log.close()

    def __enter__(self) -> "PromServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
