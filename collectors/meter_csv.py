"""Facility meter readings from CSV: validate row by row, keep the good rows.

Format (UTF-8, comma-separated, header required, column order free):

    site,meter,category,period_start,period_end,kwh
    sh-lingang,grid-main,facility,2026-10-01,2026-11-01,612345.5
    sh-lingang,ups-out,it1,2026-10-01,2026-11-01,498765
    sh-lingang,chillers,cooling,2026-10-01T00:00:00+08:00,2026-11-01T00:00:00+08:00,88012.25

category: facility (total intake), cooling, or it1 / it2 / it3 (IT energy measured at
ISO/IEC 30134-2 category 1 = UPS output, 2 = PDU output, 3 = IT equipment input).
Times: ISO 8601 dates or date-times; without an offset they are the site's local
time (config: sites[].timezone). A bad row is rejected with its line number and
reason; the good rows are kept.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from config import Config

REQUIRED = ("site", "meter", "category", "period_start", "period_end", "kwh")
CATEGORIES = {"facility": ("facility", None), "cooling": ("cooling", None),
              "it1": ("it", 1), "it2": ("it", 2), "it3": ("it", 3)}


@dataclass
class Rejected:
    line: int
    reason: str


@dataclass
class ParsedReadings:
    rows: list[dict]
    rejected: list[Rejected]
    error: str | None = None          # the file as a whole could not be read


def _when(text: str, tz: ZoneInfo) -> datetime:
    text = text.strip()
    try:
        if "T" in text or " " in text:
            dt = datetime.fromisoformat(text)
        else:
            dt = datetime.combine(date.fromisoformat(text), time())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def parse_readings(data: bytes | str, cfg: Config, *, source_file: str = "upload") -> ParsedReadings:
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return ParsedReadings([], [], f"{source_file}: line 1: the header lacks column(s) {', '.join(missing)}; "
                                      f"expected {','.join(REQUIRED)}")
    reader.fieldnames = header
    zones = {s.id: ZoneInfo(s.timezone) for s in cfg.sites}
    rows, rejected = [], []
    seen: dict[tuple, int] = {}
    for rec in reader:
        line = reader.line_num
        try:
            if None in rec or any(rec.get(c) is None for c in REQUIRED):
                raise ValueError("wrong number of fields")
            site = rec["site"].strip()
            if site not in zones:
                raise ValueError(f"unknown site {site!r}; expected one of {sorted(zones)}")
            meter = rec["meter"].strip()
            if not meter:
                raise ValueError("empty meter name")
            cat = rec["category"].strip().lower()
            if cat not in CATEGORIES:
                raise ValueError(f"unknown category {rec['category'].strip()!r}; expected one of {list(CATEGORIES)}")
            scope, pue_category = CATEGORIES[cat]
            start = _when(rec["period_start"], zones[site])
            end = _when(rec["period_end"], zones[site])
            if end <= start:
                raise ValueError(f"period_end {rec['period_end'].strip()} is not after period_start "
                                 f"{rec['period_start'].strip()}")
            try:
                kwh = float(rec["kwh"].strip().replace(",", ""))
            except ValueError:
                raise ValueError(f"kwh {rec['kwh'].strip()!r} is not a number") from None
            if not math.isfinite(kwh) or kwh < 0:
                raise ValueError(f"kwh {rec['kwh'].strip()} must be a non-negative number")
            key = (site, meter, start, end)
            if key in seen:
                raise ValueError(f"same meter and period as line {seen[key]}")
            seen[key] = line
        except ValueError as exc:
            rejected.append(Rejected(line, str(exc)))
            continue
        rows.append({"site": site, "meter": meter, "scope": scope, "pue_category": pue_category,
                     "period_start": start, "period_end": end, "energy_kwh": kwh,
                     "source_file": source_file, "source_line": line})
    return ParsedReadings(rows, rejected)
