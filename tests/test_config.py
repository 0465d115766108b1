"""Config: the default loads; bad config stops start-up naming the file and the key, every
problem at once; a config built from dicts is validated the same way."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import config
from config import ConfigError, Owner
from helpers import config_dict, make_config


@pytest.fixture
def cdir(tmp_path):
    d = tmp_path / "cfg"
    shutil.copytree(config.CONFIG_DIR, d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return d


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_default_config_describes_the_simulated_centre(cfg):
    assert cfg.simulated and cfg.total_gpus() == 512
    assert [c.id for c in cfg.clusters] == ["train-a", "infer-b"] and len(cfg.tenants) == 6
    h100 = cfg.catalogue.lookup("NVIDIA H100 80GB HBM3")
    assert (h100.peak_dense_tflops, h100.memory_gib, h100.tdp_w) == (989.0, 80, 700)
    assert cfg.catalogue.lookup("GRID A100-40C").id == "A100"        # vGPU name finds its base model
    assert cfg.catalogue.lookup("Ascend910B3").id == "Ascend-910B"
    assert cfg.catalogue.lookup("Some Unknown Card") is None
    assert cfg.mappings["dcgm"].fields["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].scale == 0.001


def test_unknown_key_names_file_and_key(cdir):
    edit(cdir / "centre.toml", "interval_s = 15", "intervall_s = 15")
    with pytest.raises(ConfigError) as err:
        config.load(cdir)
    msg = str(err.value)
    assert str(cdir / "centre.toml") in msg and "unknown key 'collection.intervall_s'" in msg


def test_wrong_type_names_key_and_value(cdir):
    edit(cdir / "centre.toml", "nodes = 32", 'nodes = "thirty-two"')
    with pytest.raises(ConfigError) as err:
        config.load(cdir)
    msg = str(err.value)
    assert "centre.toml" in msg and "key 'clusters[0].nodes'" in msg and "expected an integer" in msg
    assert "'thirty-two'" in msg


def test_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as err:
        config.load(tmp_path / "empty")
    assert str(tmp_path / "empty" / "centre.toml") in str(err.value) and "file not found" in str(err.value)


def test_missing_required_key(cdir):
    edit(cdir / "centre.toml", 'name = "Simulated AI Computing Centre"\n', "")
    with pytest.raises(ConfigError, match=r"required key 'centre.name' is missing"):
        config.load(cdir)


def test_cross_references_are_checked():
    d = config_dict()
    d["clusters"][0]["site"] = "nowhere"
    with pytest.raises(ConfigError, match=r"clusters\[0\].site': unknown site 'nowhere'"):
        config.from_dict(d)


def test_model_must_be_in_catalogue():
    d = config_dict()
    d["clusters"][0]["model"] = "Quantum Abacus 9000"
    with pytest.raises(ConfigError, match=r"clusters\[0\].model': 'Quantum Abacus 9000' matches no model"):
        config.from_dict(d)


def test_mapping_column_must_be_canonical(cdir):
    edit(cdir / "mappings" / "dcgm.toml", 'column = "util_pct"', 'column = "utilisation"')
    with pytest.raises(ConfigError) as err:
        config.load(cdir)
    assert "dcgm.toml" in str(err.value) and "fields.DCGM_FI_DEV_GPU_UTIL.column" in str(err.value)


def test_bad_toml_syntax(cdir):
    (cdir / "centre.toml").write_text("[centre\nname = 1\n")
    with pytest.raises(ConfigError, match="centre.toml: not valid TOML"):
        config.load(cdir)


def test_dashboard_refuses_to_start_on_bad_config(cdir):
    """The server process (app.py imported as the ASGI app) exits with the message, no traceback."""
    edit(cdir / "centre.toml", "refresh_s = 15", "refresh_s = -1")
    proc = subprocess.run([sys.executable, "-c", "import app"], cwd=config.PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", config.ENV_VAR: str(cdir)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Configuration error, dashboard not started" in proc.stderr
    assert "key 'ui.refresh_s'" in proc.stderr and "Traceback" not in proc.stderr


def test_database_memory_limit_is_checked_and_applied(cdir, tmp_path):
    edit(cdir / "centre.toml", 'memory_limit = "1GB"', 'memory_limit = "lots"')
    with pytest.raises(ConfigError) as err:
        config.load(cdir)
    assert "centre.toml" in str(err.value) and "key 'database.memory_limit'" in str(err.value)
    edit(cdir / "centre.toml", 'memory_limit = "lots"', 'memory_limit = "768MB"')
    cfg = config.load(cdir)
    from queries import Store
    store = Store(tmp_path / "m.duckdb", memory_limit=cfg.database.memory_limit)
    with store.cursor() as cur:
        assert cur.execute("SELECT current_setting('memory_limit')").fetchone() == ("732.4 MiB",)
    store.close()


# ---- config from code, every problem at once, the owner, source kinds ---------------------------

SOURCE = {"name": "hall-a", "kind": "dcgm", "site": "sh-lingang", "cluster": "train-a",
          "targets": ["http://n1:9400/metrics"]}


def test_from_dict_gives_the_same_config_as_load(cfg):
    built = config.from_dict(config_dict())
    assert built.sites == cfg.sites and built.clusters == cfg.clusters and built.tenants == cfg.tenants
    assert built.mappings == cfg.mappings and built.catalogue.models == cfg.catalogue.models
    assert built.directory == config.CONFIG_DIR


def test_from_dict_does_not_keep_or_change_the_dict():
    d = config_dict()
    d["sources"] = [dict(SOURCE, targets=["http://n1:9400/metrics"])]
    c = config.from_dict(d)
    d["sources"][0]["targets"].append("http://n2:9400/metrics")
    assert c.sources[0].targets == ["http://n1:9400/metrics"]


def test_every_problem_is_reported_at_once_each_with_file_and_key():
    d = config_dict()
    d["clusters"][0]["site"] = "nowhere"
    d["clusters"][1]["model"] = "Quantum Abacus 9000"
    d["tenants"][1]["namespaces"] = ["moonlake-train"]
    d["sources"] = [dict(SOURCE, targets=[]), dict(SOURCE, name="hall-a", kind="prometheus",
                                                   targets=["http://p:9090", "http://q:9090"])]
    with pytest.raises(ConfigError) as err:
        config.from_dict(d)
    lines = str(err.value).splitlines()
    assert lines == [
        "centre.toml: key 'clusters[0].site': unknown site 'nowhere'; expected one of ['sh-lingang']",
        "centre.toml: key 'clusters[1].model': 'Quantum Abacus 9000' matches no model in accelerators.toml; "
        "add it to the catalogue",
        "centre.toml: key 'tenants[1].namespaces': namespace 'moonlake-train' already belongs to tenant 'moonlake'",
        "centre.toml: key 'sources[1].name': duplicate name 'hall-a'",
        "centre.toml: key 'sources[0].targets': a dcgm source needs at least one exporter URL",
        "centre.toml: key 'sources[1].targets': a prometheus source takes exactly one base URL "
        '(e.g. ["http://prometheus:9090"]), got 2',
    ]


def test_problems_of_several_files_are_reported_together(tmp_path):
    d = config_dict()
    d["ui"] = {"refresh_s": -1}
    maps = {"dcgm": {"fields": {"DCGM_FI_DEV_GPU_UTIL": {"column": "utilisation"}}, "labels": {}}}
    with pytest.raises(ConfigError) as err:
        config.from_dict(d, mappings=maps, directory=tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / 'centre.toml'}: key 'ui.refresh_s'" in msg
    assert f"{tmp_path / 'mappings' / 'dcgm.toml'}: key 'fields.DCGM_FI_DEV_GPU_UTIL.column'" in msg


def test_load_reports_every_problem_of_the_files_too(cdir):
    edit(cdir / "centre.toml", "interval_s = 15", "intervall_s = 15")
    edit(cdir / "centre.toml", "nodes = 32", 'nodes = "thirty-two"')
    with pytest.raises(ConfigError) as err:
        config.load(cdir)
    assert [line.split(": ", 1)[0] for line in str(err.value).splitlines()] == [str(cdir / "centre.toml")] * 2
    assert "unknown key 'collection.intervall_s'" in str(err.value) and "key 'clusters[0].nodes'" in str(err.value)


def test_check_config_prints_every_problem(cdir):
    edit(cdir / "centre.toml", 'site = "sh-lingang"\nnodes', 'site = "nowhere"\nnodes')
    edit(cdir / "centre.toml", 'model = "NVIDIA H100 80GB HBM3"', 'model = "Quantum Abacus 9000"')
    proc = subprocess.run([sys.executable, "-m", "collectors", "--config", str(cdir), "check-config"],
                          cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "clusters[0].site': unknown site 'nowhere'" in proc.stderr
    assert "clusters[0].model': 'Quantum Abacus 9000' matches no model" in proc.stderr


def test_owner_defaults_to_the_first_site_and_this_host():
    import socket

    assert make_config().owner == Owner(site="sh-lingang", instance=socket.gethostname())
    assert make_config(owner={"instance": "dash-2"}).owner == Owner("sh-lingang", "dash-2")
    with pytest.raises(ConfigError, match=r"key 'owner.site': unknown site 'pudong'"):
        make_config(owner={"site": "pudong"})
    with pytest.raises(ConfigError, match=r"unknown key 'owner.name'"):
        make_config(owner={"name": "x"})


@pytest.mark.parametrize("kind, keys, message", [
    ("prometheus", {"targets": []}, "key 'sources[0].targets': a prometheus source takes exactly one base URL"),
    ("nvml", {"targets": ["http://x:1/"]}, "key 'sources[0].targets': an nvml source reads the local GPUs and "
                                          "takes no targets"),
    ("dcgm", {"targets": ["n1:9400"]}, "key 'sources[0].targets': 'n1:9400' is not an http(s) URL"),
    ("dcgm", {"host": "n1"}, "unknown key 'sources[0].host' (check the spelling; it is not a setting)"),
    ("dcgm", {"host_from": "pod"}, "key 'sources[0].host_from': Input should be 'label' or 'target'"),
    ("dcgm", {"mappings": ["nope"]}, "key 'sources[0].mappings': no mapping table 'nope'"),
    ("quantum", {}, "key 'sources[0].kind': unknown kind 'quantum'; expected one of ['dcgm', 'amd', 'ascend'"),
])
def test_a_source_is_checked_by_its_kind(kind, keys, message):
    src = {k: v for k, v in SOURCE.items() if not (kind == "nvml" and k == "targets")}
    with pytest.raises(ConfigError) as err:
        make_config(sources=[dict(src, kind=kind, **keys)])
    assert f"centre.toml: {message}" in str(err.value)


def test_source_keys_read_through_the_kind_options():
    c = make_config(sources=[dict(SOURCE, host_from="target", timeout_s=2.5),
                             {"name": "local", "kind": "nvml", "site": "sh-lingang", "cluster": "train-a",
                              "host": "gpu-7"}])
    dcgm, nvml = c.sources
    assert (dcgm.targets, dcgm.host_from, dcgm.mapping_names, dcgm.timeout_s, dcgm.host) == (
        ["http://n1:9400/metrics"], "target", ["dcgm"], 2.5, None)
    assert (nvml.targets, nvml.host, nvml.mapping_names, nvml.host_from) == ([], "gpu-7", [], "label")
    assert type(dcgm.options).__name__ == "DcgmOptions"
    fresh = config.Source(**SOURCE)
    assert fresh == config.Source(**SOURCE).model_copy() and fresh.targets == SOURCE["targets"]
    assert fresh == config.Source(**SOURCE)         # reading one's options does not make them differ


def test_a_source_built_in_code_is_checked_when_read():
    src = config.Source(name="p", kind="prometheus", site="s", cluster="c", targets=["a", "b"])
    with pytest.raises(ConfigError, match="source 'p': key 'targets': a prometheus source takes exactly one"):
        _ = src.targets


@pytest.mark.parametrize("example", sorted(p.name for p in (config.CONFIG_DIR / "examples").iterdir()))
def test_every_example_config_loads(example):
    c = config.load(config.CONFIG_DIR / "examples" / example)
    assert c.sites and c.clusters


def test_the_real_floor_example_has_an_ipmi_source():
    c = config.load(config.CONFIG_DIR / "examples" / "real-floor")
    assert c.owner == Owner("sh-lingang", "dashboard-1") and not c.simulated
    ipmi = next(s for s in c.sources if s.kind == "ipmi")
    assert ipmi.mapping_names == ["ipmi"] and ipmi.retries == 0 and len(ipmi.targets) == 2


def test_a_config_directory_written_from_a_dict_loads_as_the_dict(tmp_path):
    """helpers.config_dir (for child processes that read files) writes what from_dict accepts."""
    from datetime import datetime, timezone

    from helpers import config_dir

    lease = {"tenant": "moonlake", "hosts": ["h-1"], "start": datetime(2026, 11, 1, tzinfo=timezone.utc)}
    d = config_dir(tmp_path / "c", sources=[SOURCE], leases=[lease], owner={"instance": "dash-2"},
                   database={"path": str(tmp_path / "x.duckdb"), "memory_limit": "512MB"})
    loaded = config.load(d)
    assert loaded.sources == make_config(sources=[SOURCE]).sources and loaded.leases[0].start == lease["start"]
    assert loaded.owner.instance == "dash-2" and loaded.database.memory_limit == "512MB"
