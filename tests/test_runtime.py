"""The owner process's runtime: simulator -> HTTP scrape -> store, back-fill, headless mode."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

import config
from collectors import registry
from collectors.runtime import BACKFILL_KEY, Runtime
from queries import Store, energy
from helpers import backfill_job, config_dict, config_dir, make_config, wait_for


def test_runtime_collects_the_simulated_centre_over_http(cfg, store, monkeypatch):
    built = []
    real_build = registry.build
    monkeypatch.setattr(registry, "build", lambda c, d: built.append(c.sources) or real_build(c, d))
    rt = Runtime(cfg, store, backfill=False).start()
    try:
        assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled), "no collection cycle"
        # the simulator went through the registry like configured sources: one per cluster, one meter per site
        [sources] = built
        assert sorted((s.name, s.kind) for s in sources) == [
            ("simulator-facility-sh-lingang", "facility"), ("simulator-infer-b", "dcgm"), ("simulator-train-a", "dcgm")]
        assert sum(len(s.targets) for s in sources) == 65 and [s for s, _ in rt.collectors] == list(sources)
        status = store.get_status("collector")
        assert status["simulated"] and status["targets"] == 65 and status["running"]
        jobs = {j["job"] for j in store.get_status("jobs")["jobs"]}
        assert jobs == {"reopen", "release-memory", "rollup", "retention", "energy", "monthly-report", "forecast"}
        assert store.get_status("rollups")["state"] in ("current", "catching_up")
        rep = rt.scheduler.last_report
        assert rep.targets == 65 and rep.write_error is None
        assert rep.ok >= 60                                   # an exporter or two may be in an outage
        at = rep.ts + timedelta(seconds=1)
        s = store.query("fleet_summary", now=at, stale_s=60, cluster=None, owned=cfg.total_gpus()).iloc[0]
        assert int(s.owned) == 512
        assert int(s.healthy) + int(s.faulted) + int(s.no_data) >= 500
        assert 0 < s.delivered_pflops < s.installed_pflops
        fac = energy.live_power(store, cfg, at, 60)
        assert len(fac) == 1 and 1.1 < fac.iloc[0].pue < 1.5 and int(fac.iloc[0].pue_category) == 1
        runs = store.con.execute("SELECT count(DISTINCT target), count(*) FILTER (WHERE ok) FROM collector_runs"
                                 ).fetchall()[0]
        assert runs == (65, rep.ok)                           # every target tried; failures may be retried
        health = rt.health()
        assert health["targets"] == 65 and health["cycles"] >= 1 and health["simulated"]
        url = rt.server.base_url
    finally:
        rt.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/", timeout=2)          # the simulator stopped with the runtime


def test_backfill_is_resumable_and_idempotent(cfg, store):
    from collectors.jobs import JobRunner, Once

    small = replace(cfg, simulator=cfg.simulator.model_copy(update={"backfill_days": 0.125}))   # 3 h
    fill = backfill_job(small, store)
    end = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    runner = JobRunner(store)
    runner.add("backfill", Once(), fill, now=end)
    [run] = runner.run_due(end)                               # the job's run starts at `end`: it fills up to it
    assert fill.done == 12                                    # 3 h at 900 s
    assert fill.state == "done" and fill.status() == {"state": "done", "done": 12, "total": 12, "error": None}
    n = store.con.execute("SELECT count(*), min(ts), max(ts), count(DISTINCT ts) FROM device_samples").fetchall()[0]
    assert n[0] > 12 * 480 and n[3] == 12
    assert n[1] == end - timedelta(hours=3) and n[2] == end - timedelta(seconds=900)
    fac = store.con.execute("SELECT count(DISTINCT ts) FROM facility_samples").fetchall()[0][0]
    assert fac == 12
    assert store.get_kv(BACKFILL_KEY) == (end - timedelta(seconds=900)).isoformat()
    # recorded like a scrape: a collector run per replayed scrape, at the instant it stands for ...
    runs = store.con.execute("SELECT count(*), count(DISTINCT started_at), count(DISTINCT target), sum(rows), "
                             "bool_and(ok) FROM collector_runs").fetchall()[0]
    assert runs[1] == 12 and 60 <= runs[2] <= 65 and runs[4]
    assert runs[3] == n[0] + fac * len(cfg.energy.meters)     # device rows + a row per meter per meter read
    # ... and one job run
    job = store.con.execute("SELECT job, ok, rows, detail FROM job_runs").fetchall()
    assert job == [("backfill", True, run.rows, "12 of 12 steps")] and run.rows == runs[3]
    fill(end=end)
    assert fill.done == 0                                     # resumes after the last step: nothing left
    again = backfill_job(small, store)
    store.set_kv(BACKFILL_KEY, (end - timedelta(hours=4)).isoformat())   # forget progress: redo all
    again(end=end)
    assert again.done == 12
    assert store.con.execute("SELECT count(*) FROM device_samples").fetchall()[0][0] == n[0]   # no duplicates
    assert store.con.execute("SELECT count(*) FROM collector_runs").fetchall()[0][0] == runs[0]


@pytest.fixture
def headless_cfg(tmp_path):
    base = config_dict()
    d = config_dir(tmp_path / "cfg", database={**base["database"], "path": str(tmp_path / "h.duckdb")},
                   collection={**base["collection"], "interval_s": 2})
    return d, tmp_path / "h.duckdb"


def test_headless_mode_and_a_second_owner(headless_cfg):
    d, db = headless_cfg
    cmd = [sys.executable, "-m", "collectors", "--config", str(d), "run", "--no-backfill"]
    first = subprocess.Popen(cmd, cwd=config.PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = first.stderr.readline()
        while line and "collecting from 65 target(s)" not in line:
            line = first.stderr.readline()
        assert "collecting from 65 target(s)" in line
        while line and "targets answered" not in line:     # the first cycle is stored
            line = first.stderr.readline()
        assert "targets answered" in line
        second = subprocess.run(cmd, cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 3
        assert f"The database {db} is in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err[-2000:]
    s = Store(db, owner=config.load(d).owner)
    try:
        assert s.con.execute("SELECT count(DISTINCT device_id) FROM device_samples").fetchall()[0][0] >= 480
        status = s.get_status("collector")                  # what a page in another process reads
        assert status["cycles"] >= 1 and status["targets"] == 65 and status["running"] is False
    finally:
        s.close()


def test_configured_sources_are_collected_with_their_own_settings(cfg, tmp_path, store):
    """A real-floor config: a dcgm source (per-source timeout, retries) and a direct facility meter."""
    from simulator import Floor, SimulatorServer

    with SimulatorServer(Floor(cfg)) as server:
        nodes = [t.url for t in server.targets() if t.kind == "dcgm" and t.cluster == "train-a"][:4]
        meter = next(t.url for t in server.targets() if t.kind == "facility")
        real = make_config(sources=[
            {"name": "hall-a-dcgm", "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a", "targets": nodes,
             "timeout_s": 2.0, "retries": 1},
            {"name": "hall-a-meters", "kind": "facility", "site": "sh-lingang", "cluster": "train-a",
             "targets": [meter]}])
        assert not real.simulated
        rt = Runtime(real, store, backfill=False).start()
        try:
            assert wait_for(lambda: rt.scheduler.cycles >= 1, event=rt.scheduler.cycled)
            assert rt.server is None and len(rt.targets) == 5
            dcgm = next(c for s, c in rt.collectors if s.name == "hall-a-dcgm")
            assert dcgm.timeout == 2.0 and rt.scheduler.jobs[0][2] == 1
        finally:
            rt.stop()
    got = dict(store.con.execute("SELECT source, count(DISTINCT device_id) FROM device_samples GROUP BY 1").fetchall())
    assert 24 <= got["hall-a-dcgm"] <= 32              # 4 nodes x 8 GPUs (one may be off the bus or down)
    fac = store.con.execute("SELECT DISTINCT source, scope FROM facility_samples ORDER BY 2").fetchall()
    assert fac == [("hall-a-meters", "cooling"), ("hall-a-meters", "facility"), ("hall-a-meters", "it")]


def test_a_prometheus_source_imports_its_history_as_a_job(tmp_path):
    """The owner registers each Prometheus source's history import as a job and reports it in
    /healthz `history_imports` (a Prometheus that does not answer: the run fails, in words)."""
    import socket

    with socket.socket() as sock:                      # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = make_config(database={"path": str(tmp_path / "p.duckdb")}, sources=[
        {"name": "central-prom", "kind": "prometheus", "site": "sh-lingang", "cluster": "train-a",
         "targets": [f"http://127.0.0.1:{port}"], "history_days": 1, "timeout_s": 1.0}])
    store = Store(tmp_path / "p.duckdb")
    rt = Runtime(cfg, store).start()
    try:
        assert wait_for(lambda: any(j["job"] == "history-import-central-prom" and j.get("last")
                                    for j in rt.health()["jobs"]), event=rt.jobs.ran)
        job = next(j for j in rt.health()["jobs"] if j["job"] == "history-import-central-prom")
        assert job["last"]["ok"] is False and "not reachable" in job["last"]["error"]
        imports = rt.health()["history_imports"]
        assert [i["source"] for i in imports] == ["central-prom"] and imports[0]["total"] == 24   # 1 day in hours
        assert imports[0]["state"] in ("running", "failed")
        assert store.get_status("history_imports")["imports"][0]["source"] == "central-prom"
    finally:
        rt.stop()
        store.close()
