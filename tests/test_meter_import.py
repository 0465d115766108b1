"""Facility meter readings by hand: CSV validated row by row; good rows kept; re-import changes
nothing; a bad row (a number in another notation, a huge field, an unclosed quote, bytes that
are not UTF-8) costs that row only, and no input makes the parser raise."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import config
from collectors.meter_csv import conflict_msg, kwh_text, parse_kwh, parse_readings
from helpers import config_dir

CST = timezone(timedelta(hours=8))
HEADER = "site,meter,category,period_start,period_end,kwh\n"
CSV = (HEADER
       + "sh-lingang,grid-main,facility,2026-10-01,2026-11-01,612345.5\n"
       + "sh-lingang,ups-out,it1,2026-10-01,2026-11-01,498765\n"
       + "sh-lingang,chillers,cooling,2026-10-01T00:00:00+08:00,2026-11-01T00:00:00+08:00,88012.25\n"
       + "sh-lingang,grid-main,facility,2026-11-01,2026-10-01,5\n"
       + "beijing-1,grid-main,facility,2026-10-01,2026-11-01,100\n"
       + "sh-lingang,pdu-row-a,it4,2026-10-01,2026-11-01,100\n"
       + "sh-lingang,grid-b,facility,2026-10-01,2026-11-01,lots\n"
       + "sh-lingang,grid-b,facility,2026-10-1x,2026-11-01,1\n"
       + "sh-lingang,grid-b,facility,2026-10-01,2026-11-01,-3\n"
       + "sh-lingang,ups-out,it1,2026-10-01,2026-11-01,498765\n")
NOT_PLAIN = ("is not a plain decimal number (digits with an optional '.' decimal point; no thousands "
             "separators, decimal comma, underscores or exponent)")


def one_row(kwh: str = "10", *, meter: str = "m", start: str = "2026-10-01", end: str = "2026-11-01",
            category: str = "facility") -> str:
    return f"sh-lingang,{meter},{category},{start},{end},{kwh}\n"


def test_rows_are_validated_one_by_one(cfg):
    parsed = parse_readings(CSV.encode(), cfg, source_file="meters_october.csv")
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
        (8, f"kwh 'lots' {NOT_PLAIN}"),
        (9, "'2026-10-1x' is not an ISO 8601 date or date-time"),
        (10, "kwh -3 must not be negative"),
        (11, "same meter and period as line 3"),
    ]
    assert all(r.msg is not None and r.msg.render("zh-CN") != r.reason for r in parsed.rejected)


def test_header_problems_name_the_file_and_line(cfg):
    parsed = parse_readings(b"site,meter,when,kwh\nsh-lingang,m,2026-10-01,5\n", cfg, source_file="bill.csv")
    assert parsed.error == ("bill.csv: line 1: the header lacks column(s) category, period_start, period_end; "
                            "expected site,meter,category,period_start,period_end,kwh")


@pytest.mark.fault
def test_kwh_is_a_plain_decimal_number_within_bounds(cfg, faults):
    accepted = {"612345.5": 612345.5, "612345": 612345.0, " 12 ": 12.0, "+5": 5.0, ".5": 0.5, "5.": 5.0,
                "0": 0.0, "999999999999.5": 999999999999.5}
    rejected = {"612.345,5": NOT_PLAIN, "612,345.5": NOT_PLAIN, "612345,5": NOT_PLAIN, "1_000": NOT_PLAIN,
                "1e308": NOT_PLAIN, "1e3": NOT_PLAIN, "inf": NOT_PLAIN, "nan": NOT_PLAIN, "0x10": NOT_PLAIN,
                "612 345": NOT_PLAIN, "١٢": NOT_PLAIN, "": NOT_PLAIN, "-0": "must not be negative",
                "-3.5": "must not be negative",
                # the bound: below 10^12 kWh (1,000 TWh)
                "1000000000000": "is implausibly large", "99999999999999999999": "is implausibly large"}
    faults.tried(len(accepted) + len(rejected))
    assert {text: parse_kwh(text) for text in accepted} == accepted
    body = "".join(one_row(f'"{text}"', meter=f"m{i}") for i, text in enumerate(rejected))
    parsed = parse_readings((HEADER + body).encode(), cfg)
    assert parsed.rows == []
    assert [r.line for r in parsed.rejected] == list(range(2, len(rejected) + 2))
    for (text, why), r in zip(rejected.items(), parsed.rejected, strict=True):
        assert why in r.reason and r.reason.startswith("kwh "), (text, r.reason)


@pytest.mark.fault
def test_a_huge_field_costs_its_row_only(cfg, faults):
    # 200 kB in one field: over csv's own 128 kB limit, which aborted the whole import
    huge = "x" * 200_000
    text = HEADER + one_row(meter="a") + f"sh-lingang,{huge},facility,2026-10-01,2026-11-01,1\n" + one_row(meter="b")
    parsed = parse_readings(text.encode(), cfg)
    assert [r["meter"] for r in parsed.rows] == ["a", "b"]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (3, "the line is 200044 characters long; a reading takes at most 4096")]   # 200,000 + 44 other characters


@pytest.mark.fault
def test_an_unclosed_quote_costs_its_line_not_the_next(cfg, faults):
    text = HEADER + one_row('"12', meter="a") + one_row(meter="b") + one_row(meter="c")
    parsed = parse_readings(text.encode(), cfg)
    assert [r["meter"] for r in parsed.rows] == ["b", "c"]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (2, "a quoted field is not closed on its line (a field cannot span lines)")]


@pytest.mark.fault
def test_bytes_that_are_not_utf8_cost_their_row(cfg, faults):
    faults.tried(3)
    data = (HEADER + one_row(meter="a")).encode() + b"sh-lingang,m\xff\xfe,facility,2026-10-01,2026-11-01,1\n" \
        + one_row(meter="b").encode() + b"sh-lingang,n\0,facility,2026-10-01,2026-11-01,1\n"
    parsed = parse_readings(data, cfg)
    assert [r["meter"] for r in parsed.rows] == ["a", "b"]
    assert [(r.line, r.reason) for r in parsed.rejected] == [(3, "the line is not UTF-8 text"),
                                                              (5, "the line holds a NUL byte")]
    utf16 = parse_readings((HEADER + one_row()).encode("utf-16"), cfg, source_file="bill.csv")
    assert utf16.error == "bill.csv: line 1: the file is UTF-16 text; save it as UTF-8"


def test_line_ends_of_every_kind_and_a_byte_order_mark(cfg):
    rows = [HEADER.strip(), one_row(meter="a").strip(), one_row(meter="b").strip(), one_row(meter="c").strip()]
    data = b"\xef\xbb\xbf" + rows[0].encode() + b"\r\n" + rows[1].encode() + b"\r" + rows[2].encode() + b"\n" \
        + rows[3].encode()
    parsed = parse_readings(data, cfg)
    assert [(r["meter"], r["source_line"]) for r in parsed.rows] == [("a", 2), ("b", 3), ("c", 4)]
    assert parse_readings(data.decode("utf-8"), cfg).rows == parsed.rows


@pytest.mark.fault
def test_a_repeated_header_column_is_refused(cfg, faults):
    parsed = parse_readings((HEADER.strip() + ",KWH\n" + one_row("1").strip() + ",2\n").encode(), cfg,
                            source_file="bill.csv")
    assert parsed.error == "bill.csv: line 1: the header names column 'kwh' twice" and parsed.rows == []


@pytest.mark.fault
def test_years_outside_2000_to_2100_are_refused(cfg, faults):
    faults.tried(3)
    text = (HEADER + one_row(start="0001-01-01", meter="a") + one_row(end="9999-12-31T00:00:00", meter="b")
            + one_row(start="1999-12-31", meter="c") + one_row(start="2100-01-01", end="2100-02-01", meter="d"))
    parsed = parse_readings(text.encode(), cfg)
    assert [r["meter"] for r in parsed.rows] == ["d"]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (2, "'0001-01-01': the year must be from 2000 to 2100"),
        (3, "'9999-12-31T00:00:00': the year must be from 2000 to 2100"),
        (4, "'1999-12-31': the year must be from 2000 to 2100")]


@pytest.mark.fault
def test_overlapping_periods_of_one_meter_in_a_file_are_refused(cfg, faults):
    text = (HEADER + one_row(start="2026-10-01", end="2026-11-01", meter="a")
            + one_row(start="2026-10-15", end="2026-11-15", meter="a")        # overlaps the first
            + one_row(start="2026-11-01", end="2026-12-01", meter="a")        # adjoins it: fine
            + one_row(start="2026-10-15", end="2026-11-15", meter="b"))       # another meter: fine
    parsed = parse_readings(text.encode(), cfg)
    assert [(r["meter"], r["source_line"]) for r in parsed.rows] == [("a", 2), ("a", 4), ("b", 5)]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (3, "the period overlaps line 2 (2026-10-01..2026-11-01) of the same meter")]


@pytest.mark.fault
def test_no_input_makes_the_parser_raise(cfg):
    """Random bytes, and a good file cut and spliced with NULs, quotes, invalid UTF-8, huge fields."""
    rng = random.Random(11)
    good = (HEADER + one_row(meter="a") + one_row(meter="b", kwh="1.5")).encode()
    pieces = [b"\0", b'"', b"\xff", b"\xed\xa0\x80", b"\r", b"\n", b",", b"x" * 140_000, b"\xef\xbb\xbf",
              b"1e308", b"9999-01-01", "年".encode()]
    inputs = [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(150)]
    for _ in range(150):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data) + 1)
            data[at:at + rng.randrange(3)] = rng.choice(pieces)
        inputs.append(bytes(data))
    inputs += [b"", b"\n\n", HEADER.encode(), b'"' * 5, b"\xff\xfe" + b"\0" * 10]
    for data in inputs:                # counted as one fault: the inputs are random, not cases
        parsed = parse_readings(data, cfg)
        assert parsed.error is not None or all(r.line >= 2 for r in parsed.rejected)
        assert all(isinstance(r.reason, str) and r.reason for r in parsed.rejected)


def test_import_is_idempotent_and_never_overwrites(cfg, store):
    first = store.import_facility_readings(parse_readings(CSV, cfg).rows)
    assert (len(first["inserted"]), len(first["unchanged"]), len(first["conflicts"])) == (3, 0, 0)
    again = store.import_facility_readings(parse_readings(CSV, cfg).rows)
    assert (len(again["inserted"]), len(again["unchanged"]), len(again["conflicts"])) == (0, 3, 0)
    changed = CSV.replace("498765\n", "498000\n", 1)
    third = store.import_facility_readings(parse_readings(changed, cfg).rows)
    assert len(third["conflicts"]) == 1 and third["conflicts"][0]["stored_kwh"] == 498765.0
    rows = store.con.execute("SELECT meter, scope, pue_category, energy_kwh FROM facility_readings "
                             "ORDER BY meter").fetchall()
    assert rows == [("chillers", "cooling", None, 88012.25), ("grid-main", "facility", None, 612345.5),
                    ("ups-out", "it", 1, 498765.0)]


@pytest.mark.fault
def test_a_conflict_prints_two_numbers_that_differ(cfg, store, faults):
    store.import_facility_readings(parse_readings(HEADER + one_row("498765"), cfg).rows)
    # 498765.00001 and 498765 both print as "498765" with :g
    result = store.import_facility_readings(parse_readings(HEADER + one_row("498765.00001"), cfg).rows)
    (conflict,) = result["conflicts"]
    assert str(conflict_msg(conflict)) == ("m 2026-10-01..2026-11-01 is stored with 498765 kWh, the file says "
                                           "498765.00001; kept the stored value")
    assert kwh_text(0.1 + 0.2) == "0.30000000000000004" and kwh_text(1e-5) == "0.00001"


@pytest.mark.fault
def test_a_category_change_on_a_stored_period_is_a_conflict(cfg, store, faults):
    store.import_facility_readings(parse_readings(HEADER + one_row(category="it1"), cfg).rows)
    result = store.import_facility_readings(parse_readings(HEADER + one_row(category="it3"), cfg).rows)
    assert (len(result["inserted"]), len(result["unchanged"])) == (0, 0)
    (conflict,) = result["conflicts"]
    assert str(conflict_msg(conflict)) == ("m 2026-10-01..2026-11-01 is stored as category it1, the file says it3; "
                                           "kept the stored reading")
    assert store.con.execute("SELECT pue_category FROM facility_readings").fetchall() == [(1,)]


@pytest.mark.fault
def test_a_period_overlapping_a_stored_one_is_a_conflict(cfg, store, faults):
    store.import_facility_readings(parse_readings(HEADER + one_row(start="2026-10-01", end="2026-11-01"), cfg).rows)
    text = HEADER + one_row(start="2026-10-15", end="2026-11-15") + one_row(start="2026-11-15", end="2026-12-01")
    result = store.import_facility_readings(parse_readings(text, cfg).rows)
    assert [r["source_line"] for r in result["inserted"]] == [3]             # after the stored period: fine
    (conflict,) = result["conflicts"]
    assert str(conflict_msg(conflict)) == (
        "m 2026-10-15..2026-11-15 overlaps the stored period 2026-10-01..2026-11-01 of the same meter; "
        "not imported (that time would count twice)")
    assert store.con.execute("SELECT count(*) FROM facility_readings").fetchall() == [(2,)]


def test_cli_import(tmp_path):
    d = config_dir(tmp_path / "cfg", database={"path": str(tmp_path / "m.duckdb")})
    (tmp_path / "october.csv").write_text(CSV)
    cmd = [sys.executable, "-m", "collectors", "--config", str(d), "import-meters", str(tmp_path / "october.csv")]
    first = subprocess.run(cmd, cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 1                              # some rows were rejected
    assert "3 imported, 0 already present, 0 conflicting, 7 rejected" in first.stdout
    assert "line 6: rejected: unknown site 'beijing-1'" in first.stderr
    second = subprocess.run(cmd, cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert "0 imported, 3 already present" in second.stdout
    (tmp_path / "changed.csv").write_text(HEADER + "sh-lingang,ups-out,it1,2026-10-01,2026-11-01,498765.5\n")
    third = subprocess.run(cmd[:-1] + [str(tmp_path / "changed.csv")], cwd=config.PROJECT_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert third.returncode == 1 and ("line 2: conflict: ups-out 2026-10-01..2026-11-01 is stored with 498765 kWh, "
                                      "the file says 498765.5; kept the stored value") in third.stderr
