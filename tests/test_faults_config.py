"""Hostile configuration: each mistake stops start-up (and check-config) naming the file and
the key, instead of crashing later, storing samples twice or never matching.

Bounds checked here: collection.interval_s and ui.refresh_s 1 s .. 1 day; timeouts (collection
and per source) 0.1 s .. 10 min; stale_after_s 1 s .. 1 week; numbers are numbers (no "15",
no true, no inf or nan); database.memory_limit at least 64 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from config import ConfigError
from helpers import config_dict, config_dir, dcgm_text

pytestmark = pytest.mark.fault


def problems(centre: dict) -> str:
    with pytest.raises(ConfigError) as err:
        config.from_dict(centre)
    return str(err.value)


def with_(**tables) -> dict:
    d = config_dict()
    for name, value in tables.items():
        if isinstance(value, dict) and isinstance(d.get(name), dict):
            d[name] = {**d[name], **value}
        else:
            d[name] = value
    return d


def dcgm(name: str, *urls: str, **extra) -> dict:
    return {"name": name, "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a", "targets": list(urls), **extra}


def test_a_byte_that_is_not_utf8_names_the_file_line_and_column(tmp_path):
    d = config_dir(tmp_path / "cfg")
    text = (d / "centre.toml").read_bytes().replace(b'name = "Training A"', b'name = "Training \xe9"', 1)
    (d / "centre.toml").write_bytes(text)
    line = text[:text.index(b"\xe9")].count(b"\n") + 1
    with pytest.raises(ConfigError) as err:
        config.load(d)
    assert str(err.value) == (f"{d / 'centre.toml'}: line {line}, column 18: byte 0xe9 is not UTF-8 "
                              "(TOML files are UTF-8; save the file as UTF-8)")
    out = subprocess.run([sys.executable, "-m", "collectors", "--config", str(d), "check-config"],
                         cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "is not UTF-8" in out.stderr


@pytest.mark.parametrize("key, value, expected", [
    ("interval_s", float("inf"), "expected a finite number, got inf (float)"),
    ("interval_s", float("nan"), "expected a finite number, got nan (float)"),
    ("interval_s", 1e-9, "Input should be greater than or equal to 1"),
    ("interval_s", 86_401, "Input should be less than or equal to 86400"),
    ("interval_s", "15", "expected a number, got '15' (str)"),
    ("interval_s", True, "expected a number, got True (bool)"),
    ("timeout_s", 0.01, "Input should be greater than or equal to 0.1"),
    ("timeout_s", 601, "Input should be less than or equal to 600"),
    ("stale_after_s", 8 * 86_400, "Input should be less than or equal to 604800"),
    ("concurrency", True, "expected an integer, got True (bool)"),
    ("concurrency", "64", "expected an integer, got '64' (str)"),
])
def test_durations_are_bounded_numbers(key, value, expected):
    text = problems(with_(collection={key: value}))
    assert f"key 'collection.{key}': {expected}" in text


def test_numbers_are_numbers_everywhere():
    d = with_(ui={"refresh_s": "15"}, sources=[dcgm("a", "http://h:9400/metrics", timeout_s=float("inf"))])
    d["sites"][0]["grid_emission_kg_per_kwh"] = "0.5"
    text = problems(d)
    assert "key 'ui.refresh_s': expected a number, got '15' (str)" in text
    assert "key 'sites[0].grid_emission_kg_per_kwh': expected a number, got '0.5' (str)" in text
    assert "key 'sources[0].timeout_s': expected a finite number" in text
    ok = config.from_dict(with_(collection={"interval_s": 1, "timeout_s": 600}))        # integers are numbers
    assert (ok.collection.interval_s, ok.collection.timeout_s) == (1.0, 600.0)


def test_memory_limit_has_a_floor():
    assert ("key 'database.memory_limit': '1 KB' is too little for DuckDB to run; give at least 64MB"
            in problems(with_(database={"memory_limit": "1 KB"})))
    assert "database.memory_limit" in problems(with_(database={"memory_limit": "63MB"}))
    assert config.from_dict(with_(database={"memory_limit": "64MB"})).database.memory_limit == "64MB"


def test_bad_database_paths_are_caught_with_the_key(tmp_path, monkeypatch):
    assert "key 'database.path': String should have at least 1 character" in problems(with_(database={"path": ""}))
    assert (f"key 'database.path': {tmp_path} is a folder, not a database file"
            in problems(with_(database={"path": str(tmp_path)})))
    toml = tmp_path / "centre.toml"
    toml.write_text("[centre]\n")
    assert (f"key 'database.path': {toml} is not a DuckDB database file"
            in problems(with_(database={"path": str(toml)})))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # the test may run as root, which writes anywhere: the folder reads as read-only to the check
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    assert (f"key 'database.path': the folder {locked} cannot be written by this user"
            in problems(with_(database={"path": str(locked / "sub" / "centre.duckdb")})))


def test_check_config_reports_a_bad_database_setting(tmp_path):
    d = config_dir(tmp_path / "cfg", database={"path": str(tmp_path / "x.duckdb")})
    text = (d / "centre.toml").read_text()
    assert "\n[database]\n" in text
    (d / "centre.toml").write_text(text.replace("\n[database]\n", '\n[database]\nmemory_limit = "1 KB"\n'))
    out = subprocess.run([sys.executable, "-m", "collectors", "--config", str(d), "check-config"],
                         cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "key 'database.memory_limit'" in out.stderr and "Traceback" not in out.stderr


def test_a_mapping_must_fit_its_kind():
    text = problems(with_(sources=[dcgm("a", "http://h:9400/metrics", mappings=["facility"])]))
    assert ("key 'sources[0].mappings': mapping 'facility' fills facility_samples, but a dcgm source fills "
            "device_samples; use one of ['amd', 'ascend', 'dcgm']") in text
    meters = {"name": "m", "kind": "facility", "site": "sh-lingang", "cluster": "train-a",
              "targets": ["http://dcim:9105/metrics"], "mappings": ["dcgm"]}
    assert "mapping 'dcgm' fills device_samples, but a facility source fills facility_samples" in problems(
        with_(sources=[meters]))
    prom = {"name": "p", "kind": "prometheus", "site": "sh-lingang", "cluster": "train-a",
            "targets": ["http://prom:9090"], "mappings": ["dcgm", "facility"]}
    assert config.from_dict(with_(sources=[prom])).sources[0].mappings == ["dcgm", "facility"]


def test_configurations_that_store_a_sample_twice_are_refused():
    text = problems(with_(sources=[dcgm("a", "http://h1:9400/metrics", "http://h2:9400/metrics"),
                                   dcgm("b", "HTTP://H1:9400/metrics")]))
    assert ("key 'sources[1].targets[0]': 'HTTP://H1:9400/metrics' is also sources[0].targets[0]; one exporter "
            "scraped twice stores each sample twice") in text
    text = problems(with_(sources=[dcgm("a", "http://h1/metrics", "http://h1:80/metrics")]))
    assert "key 'sources[0].targets[1]': 'http://h1:80/metrics' is also sources[0].targets[0]" in text
    d = config_dict()
    d["clusters"][1]["host_prefix"] = d["clusters"][0]["host_prefix"]
    assert ("key 'clusters[1].host_prefix': host_prefix 'trn-a' is also clusters[0].host_prefix; two clusters "
            "would name the same hosts and store their samples twice") in problems(d)
    ipmi = {"name": "i", "kind": "ipmi", "site": "sh-lingang", "cluster": "train-a",
            "targets": ["http://ipmi:9290/ipmi?target=a", "http://ipmi:9290/ipmi?target=b"]}
    assert len(config.from_dict(with_(sources=[ipmi])).sources[0].targets) == 2      # one URL, two servers


@pytest.mark.parametrize("url, expected", [
    ("http://h:70000/metrics", "is not a URL urllib can read (Port out of range 0-65535); a port is 1..65535"),
    ("http://h:0/metrics", "port 0 is not a port to scrape"),
    ("http://h:9x/metrics", "is not a URL urllib can read"),
    ("http:///metrics", "names no host"),
    ("http://a b:9400/metrics", "holds a space or a control character"),
])
def test_urls_must_read_as_written(url, expected):
    assert expected in problems(with_(sources=[dcgm("a", url)]))


def test_bad_globs_in_attribution_rules_are_refused():
    rules = [{"tenant": "moonlake", "namespace": "team-[abc"}, {"tenant": "moonlake", "pod": "run-[z-a]*"},
             {"tenant": "moonlake", "namespace": "ok-[[]x-*"}, {"tenant": "moonlake", "job": "[!]]x"}]
    text = problems(with_(attribution=rules))
    assert ("key 'attribution[0].namespace': 'team-[abc': the '[' at position 6 is never closed "
            "(write '[[]' for a literal '[')") in text
    assert "key 'attribution[1].pod': 'run-[z-a]*': the range 'z-a' is backwards and matches nothing" in text
    assert "attribution[2]" not in text and "attribution[3]" not in text


def test_one_host_leased_to_two_tenants_at_once_is_refused():
    leases = [{"tenant": "moonlake", "hosts": ["trn-a-001", "trn-a-002"], "start": "2026-10-01T00:00:00+08:00",
               "end": "2026-11-01T00:00:00+08:00"},
              {"tenant": "bioforge", "hosts": ["trn-a-002"], "start": "2026-10-20T00:00:00+08:00"},
              {"tenant": "bioforge", "hosts": ["trn-a-001"], "start": "2026-11-01T00:00:00+08:00"},   # after: fine
              {"tenant": "moonlake", "hosts": ["trn-a-001"], "start": "2026-10-05T00:00:00+08:00",
               "end": "2026-10-06T00:00:00+08:00"},                                                   # same tenant
              {"tenant": "chatserve", "devices": ["GPU-1"], "start": "2026-10-01T00:00:00+08:00"},
              {"tenant": "autodrive", "devices": ["GPU-1"], "start": "2027-01-01T00:00:00+08:00"}]
    from datetime import datetime
    for lease in leases:
        lease["start"] = datetime.fromisoformat(lease["start"])
        if "end" in lease:
            lease["end"] = datetime.fromisoformat(lease["end"])
    text = problems(with_(leases=leases)).splitlines()
    assert text == [
        "centre.toml: key 'leases[1]': host 'trn-a-002' is leased to 'bioforge' here and to 'moonlake' in leases[0] "
        "over an overlapping time",
        "centre.toml: key 'leases[5]': device 'GPU-1' is leased to 'autodrive' here and to 'chatserve' in leases[4] "
        "over an overlapping time"]


def test_parse_prints_valid_utf8_whatever_the_input(tmp_path):
    """Exporter text with bytes that are not UTF-8 in a label, read from standard input under
    the C locale (where Python keeps such bytes as lone surrogates): the JSON out is UTF-8."""
    text = dcgm_text().encode().replace(b'Hostname="', b'Hostname="\xff\xfe', 1)
    out = subprocess.run([sys.executable, "-m", "collectors", "parse", "-"], input=text, cwd=config.PROJECT_ROOT,
                         capture_output=True, timeout=60, env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode("utf-8").splitlines()          # strict: raises on any invalid byte
    hosts = {json.loads(line)["host"] for line in lines}
    assert any(h.startswith("\ufffd\ufffd") for h in hosts), hosts
