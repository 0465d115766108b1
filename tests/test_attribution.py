"""Tenant attribution: leases, rules, namespaces, unattributed; the precedence in collectors/attribution.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import config
from collectors.attribution import Attributor
from collectors.dcgm import DcgmCollector
from collectors.targets import Target
from helpers import dcgm_text, make_config

UTC = timezone.utc
CST = timezone(timedelta(hours=8))
RULES = {
    "attribution": [
        {"tenant": "autodrive", "namespace": "ad-*", "pod": "*-eval-*"},
        {"tenant": "bioforge", "job": "bf-*"},
        {"tenant": "chatserve", "namespace": "cs-*"},
        {"tenant": "edu-cloud", "user": "alice", "job": "428*"},
    ],
    "leases": [
        {"tenant": "edu-cloud", "hosts": ["node-a"], "start": datetime(2026, 11, 1, tzinfo=CST),
         "end": datetime(2026, 12, 1, tzinfo=CST)},
        {"tenant": "zhipu-lab", "devices": ["GPU-0001"], "start": datetime(2026, 11, 10, tzinfo=UTC)},
    ],
}


@pytest.fixture
def attributed_cfg():
    return make_config(**RULES)


def test_precedence(attributed_cfg):
    a = Attributor(attributed_cfg)
    t_lease = datetime(2026, 11, 20, tzinfo=UTC)
    t_before = datetime(2026, 10, 20, tzinfo=UTC)
    # 1. a device lease beats the host lease and the labels
    assert a.tenant("GPU-0001", "node-a", t_lease, "moonlake-train", "p", None) == "zhipu-lab"
    # 2. a host lease beats the labels
    assert a.tenant("GPU-0000", "node-a", t_lease, "moonlake-train", "p", None) == "edu-cloud"
    # ... only inside its time range ([start, end), with its own time zone)
    assert a.tenant("GPU-0000", "node-a", t_before, "moonlake-train", "p", None) == "moonlake"
    assert a.tenant("GPU-0000", "node-a", datetime(2026, 11, 30, 16, 0, tzinfo=UTC), None, None, None) is None
    assert a.tenant("GPU-0000", "node-a", datetime(2026, 11, 30, 15, 59, tzinfo=UTC), None, None, None) == "edu-cloud"
    # 3. rules in file order; every pattern of a rule must match
    assert a.tenant("x", "node-z", t_lease, "ad-perception", "det-eval-7", None) == "autodrive"
    assert a.tenant("x", "node-z", t_lease, "ad-perception", "train-7", None) == "autodrive"   # 4: namespaces list
    assert a.tenant("x", "node-z", t_lease, "ad-sandbox", "train-7", None) is None            # no rule, not listed
    assert a.tenant("x", "node-z", t_lease, None, None, "bf-fold-1234") == "bioforge"         # Slurm job pattern
    assert a.tenant("x", "node-z", t_lease, "cs-canary", "web-1", None) == "chatserve"
    assert a.tenant("x", "node-z", t_lease, None, None, "428113", "alice") == "edu-cloud"     # Slurm user and job
    assert a.tenant("x", "node-z", t_lease, None, None, "428113", "bob") is None              # both must match
    assert a.tenant("x", "node-z", t_lease, None, None, None, "alice") is None
    # 5. nothing matches: unattributed
    assert a.tenant("x", "node-z", t_lease, "research-sandbox", "nb-0", None) is None


def test_unattributed_samples_are_kept(attributed_cfg, store):
    col = DcgmCollector(attributed_cfg)
    target = Target(url="http://node-z:9400/metrics", source="t", kind="dcgm", site="sh-lingang",
                    cluster="train-a", host="node-z")
    text = dcgm_text(ns=("research-sandbox", "cs-canary")).replace('Hostname="node-a"', 'Hostname="node-z"')
    s = col.from_text(text, target, datetime(2026, 10, 1, tzinfo=UTC))
    assert store.write_scrape(samples=s.samples, devices=s.devices) == 2
    rows = store.con.execute("SELECT device_id, tenant, namespace FROM device_samples ORDER BY 1").fetchall()
    assert rows == [("GPU-0000", None, "research-sandbox"), ("GPU-0001", "chatserve", "cs-canary")]
    summary = store.query("fleet_summary", now=datetime(2026, 10, 1, 0, 0, 5, tzinfo=UTC), stale_s=60,
                          cluster=None, owned=None).iloc[0]
    assert int(summary.allocated) == 2                # a pod holds it, tenant or not


def test_bad_rules_are_rejected():
    with pytest.raises(config.ConfigError, match=r"attribution\[0\].tenant': unknown tenant 'nobody'"):
        make_config(attribution=[{"tenant": "nobody", "namespace": "x"}])
    with pytest.raises(config.ConfigError, match=r"leases\[0\].start': give a time zone"):
        make_config(leases=[{"tenant": "moonlake", "hosts": ["h"], "start": datetime(2026, 11, 1)}])
    with pytest.raises(config.ConfigError, match=r"attribution\[0\]': a rule needs at least one"):
        make_config(attribution=[{"tenant": "moonlake"}])


def test_a_slurm_user_on_amd_gpus_is_attributed(attributed_cfg):
    """AMD's exporter on a Slurm cluster labels each GPU with job_id and job_user; both are
    stored with the sample and a rule naming the user attributes it."""
    from collectors.amd import AmdCollector
    from helpers import FIXTURES

    text = (FIXTURES.parent / "amd" / "mi300x_slurm.txt").read_text()
    target = Target(url="http://hpc-mi300-021:5000/metrics", source="t", kind="amd", site="sh-lingang",
                    cluster="train-a", host="hpc-mi300-021")
    rows = AmdCollector(attributed_cfg).from_text(text, target, datetime(2026, 11, 20, tzinfo=UTC)).samples.to_pylist()
    by_user = {(r["job"], r["job_user"], r["tenant"]) for r in rows}
    assert ("428113", "alice", "edu-cloud") in by_user
    assert all(r["tenant"] == "edu-cloud" for r in rows if r["job_user"] == "alice")
    assert all(r["tenant"] is None for r in rows if r["job_user"] != "alice")


def test_a_rule_may_name_only_the_user():
    a = Attributor(make_config(attribution=[{"tenant": "bioforge", "user": "bf-*"}]))
    t = datetime(2026, 11, 20, tzinfo=UTC)
    assert a.tenant("x", "node-z", t, None, None, "1234", "bf-alice") == "bioforge"
    assert a.tenant("x", "node-z", t, None, None, "1234", "alice") is None
