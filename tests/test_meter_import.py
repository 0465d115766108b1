"""Facility meter readings by hand: CSV validated row by row; good rows kept; re-import changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import config
from collectors.meter_csv import parse_readings
from helpers import config_dir

CSV = Path(__file__).resolve().parent / "fixtures" / "meters_october.csv"
CST = timezone(timedelta(hours=8))


def test_rows_are_validated_one_by_one(cfg):
    parsed = parse_readings(CSV.read_bytes(), cfg, source_file="meters_october.csv")
    assert parsed.error is None
    assert [(r["meter"], r["scope"], r["pue_category"], r["energy_kwh"]) for r in parsed.rows] == [
        ("grid-main", "facility", None, 612345.5), ("ups-out", "it", 1, 498765.0),
        ("chillers", "cooling", None, 88012.25)]
    assert parsed.rows[0]["period_start"] == datetime(2026, 10, 1, tzinfo=CST)     # bare dates: the site's time zone
    assert parsed.rows[0]["period_end"] == datetime(2026, 11, 1, tzinfo=CST)
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (5, "period_end 2026-10-01 is not after period_start 2026-11-01"),
        (6, "unknown site 'beijing-1'; expected one of ['sh-lingang']"),
        (7, "unknown category 'it4'; expected one of ['facility', 'cooling', 'it1', 'it2', 'it3']"),
        (8, "kwh 'lots' is not a number"),
        (9, "'2026-10-1x' is not an ISO 8601 date or date-time"),
        (10, "kwh -3 must be a non-negative number"),
        (11, "same meter and period as line 3"),
    ]


def test_header_problems_name_the_file_and_line(cfg):
    parsed = parse_readings(b"site,meter,when,kwh\nsh-lingang,m,2026-10-01,5\n", cfg, source_file="bill.csv")
    assert parsed.error == ("bill.csv: line 1: the header lacks column(s) category, period_start, period_end; "
                            "expected site,meter,category,period_start,period_end,kwh")


def test_import_is_idempotent_and_never_overwrites(cfg, store):
    parsed = parse_readings(CSV.read_bytes(), cfg)
    first = store.import_facility_readings(parsed.rows)
    assert (len(first["inserted"]), len(first["unchanged"]), len(first["conflicts"])) == (3, 0, 0)
    again = store.import_facility_readings(parse_readings(CSV.read_bytes(), cfg).rows)
    assert (len(again["inserted"]), len(again["unchanged"]), len(again["conflicts"])) == (0, 3, 0)
    changed = CSV.read_text().replace("498765\n", "498000\n", 1)
    third = store.import_facility_readings(parse_readings(changed, cfg).rows)
    assert len(third["conflicts"]) == 1 and third["conflicts"][0]["stored_kwh"] == 498765.0
    rows = store.con.execute("SELECT meter, scope, pue_category, energy_kwh FROM facility_readings "
                             "ORDER BY meter").fetchall()
    assert rows == [("chillers", "cooling", None, 88012.25), ("grid-main", "facility", None, 612345.5),
                    ("ups-out", "it", 1, 498765.0)]


def test_cli_import(tmp_path):
    d = config_dir(tmp_path / "cfg", database={"path": str(tmp_path / "m.duckdb")})
    cmd = [sys.executable, "-m", "collectors", "--config", str(d), "import-meters", str(CSV)]
    first = subprocess.run(cmd, cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 1                              # some rows were rejected
    assert "3 imported, 0 already present, 0 conflicting, 7 rejected" in first.stdout
    assert "line 6: rejected: unknown site 'beijing-1'" in first.stderr
    second = subprocess.run(cmd, cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert "0 imported, 3 already present" in second.stdout
