"""Config: the default loads; bad config stops start-up naming the file and the key."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import config
from config import ConfigError


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


def test_cross_references_are_checked(cdir):
    edit(cdir / "centre.toml", 'site = "sh-lingang"\nnodes', 'site = "nowhere"\nnodes')
    with pytest.raises(ConfigError, match=r"clusters\[0\].site': unknown site 'nowhere'"):
        config.load(cdir)


def test_model_must_be_in_catalogue(cdir):
    edit(cdir / "centre.toml", 'model = "NVIDIA H100 80GB HBM3"', 'model = "Quantum Abacus 9000"')
    with pytest.raises(ConfigError, match=r"clusters\[0\].model': 'Quantum Abacus 9000' matches no model"):
        config.load(cdir)


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
