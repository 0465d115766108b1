"""Facility meter readings from CSV: validate row by row, keep the good rows.

Format (UTF-8, a byte-order mark allowed; comma-separated; header required; column order
free; one reading a line; lines end with LF, CRLF or CR):

    site,meter,category,period_start,period_end,kwh
    sh-lingang,grid-main,facility,2026-10-01,2026-11-01,612345.5
    sh-lingang,ups-out,it1,2026-10-01,2026-11-01,498765
    sh-lingang,chillers,cooling,2026-10-01T00:00:00+08:00,2026-11-01T00:00:00+08:00,88012.25

category: facility (total intake), cooling, or it1 / it2 / it3 (IT energy measured at
ISO/IEC 30134-2 category 1 = UPS output, 2 = PDU output, 3 = IT equipment input).
Times: ISO 8601 dates or date-times, years 2000 to 2100; without an offset they are the
site's local time (config: sites[].timezone).

kwh is a plain decimal number: digits, optionally one '.' and more digits ("612345",
"612345.5", ".5"), optionally a leading '+'; from 0 up to (not including) 10^12 kWh
(a terawatt-hour is a thousand times more than the largest centre uses in a year).
Not accepted, because each reads as another number somewhere: a decimal comma
("612345,5"), thousands separators ("612,345.5", "612.345,5", "612 345"), underscores
("1_000"), exponents ("1e3"), inf/nan, negative numbers.

Each line is read on its own: a field cannot span lines (no reading needs one), so an
unclosed quote costs its own line, not the lines after it, and a field however long
(a field over csv's 128 kB limit, a NUL byte, bytes that are not UTF-8) costs only its
row. `parse_readings` never raises for any input: a bad row is rejected with its line
number and reason, a file that cannot be read at all (no header, a header missing or
repeating a column, UTF-16 text) is one file-level error. Messages are i18n keys
(i18n/meters.toml); `reason` / `error` hold the English text.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from config import Config
from i18n import Msg, msg

REQUIRED = ("site", "meter", "category", "period_start", "period_end", "kwh")
CATEGORIES = {"facility": ("facility", None), "cooling": ("cooling", None),
              "it1": ("it", 1), "it2": ("it", 2), "it3": ("it", 3)}
# plausible bounds of a reading (see the module docstring)
MAX_KWH = 1e12
FIRST_YEAR, LAST_YEAR = 2000, 2100
# a reading's line is far shorter; a longer one is rejected before csv reads it
MAX_LINE_CHARS = 4096
# how a rejected value is quoted in a message
_SHOWN = 40

_NUMBER = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)\Z", re.ASCII)


@dataclass
class Rejected:
    line: int
    reason: str                       # English
    msg: Msg | None = None            # the reason as a key, for the reader's language


@dataclass
class ParsedReadings:
    rows: list[dict]
    rejected: list[Rejected]
    error: str | None = None          # the file as a whole could not be read (English)
    error_msg: Msg | None = None      # the same as a key


class _Bad(ValueError):
    """A row's problem as a message key."""

    def __init__(self, m: Msg):
        super().__init__(str(m))
        self.msg = m


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def kwh_text(value: float) -> str:
    """A kWh figure in plain decimals, as many digits as it takes to tell it from any other
    float (a conflict's two numbers print differently whenever they differ)."""
    text = format(Decimal(repr(float(value))), "f")
    return text[:-2] if text.endswith(".0") else text


def parse_kwh(text: str) -> float:
    """A plain decimal kWh figure within bounds (module docstring), else _Bad saying why."""
    raw = text.strip()
    if raw.startswith("-") and _NUMBER.match(raw[1:]):
        raise _Bad(msg("msg.meters.kwh_negative", value=_shown(raw)))
    if not _NUMBER.match(raw):
        raise _Bad(msg("msg.meters.kwh_not_number", value=_shown(raw)))
    kwh = float(raw)
    if kwh >= MAX_KWH:
        raise _Bad(msg("msg.meters.kwh_too_large", value=_shown(raw), limit="10^12"))
    return kwh


def _when(text: str, tz: ZoneInfo) -> datetime:
    text = text.strip()
    try:
        if "T" in text or " " in text:
            dt = datetime.fromisoformat(text)
        else:
            dt = datetime.combine(date.fromisoformat(text), time())
    except ValueError:
        raise _Bad(msg("msg.meters.bad_time", value=_shown(text))) from None
    if not FIRST_YEAR <= dt.year <= LAST_YEAR:
        raise _Bad(msg("msg.meters.year_out_of_range", value=_shown(text), first=FIRST_YEAR, last=LAST_YEAR))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def _fields(line: str) -> list[str]:
    """One physical line as CSV fields; _Bad for an unclosed quote, a NUL or a field too long."""
    if len(line) > MAX_LINE_CHARS:
        raise _Bad(msg("msg.meters.line_too_long", n=len(line), limit=MAX_LINE_CHARS))
    if "\0" in line:
        raise _Bad(msg("msg.meters.nul"))
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise _Bad(msg("msg.meters.unclosed_quote")) from None
        raise _Bad(msg("msg.meters.bad_csv", detail=str(exc))) from None


_EOL = re.compile(r"\r\n|\n|\r")
_EOL_BYTES = re.compile(rb"\r\n|\n|\r")


def _lines(data: bytes | str) -> list[tuple[int, str | None]]:
    """(line number, text) of every line (ended by LF, CRLF or a lone CR, as spreadsheets
    write them); text None where the bytes are not UTF-8."""
    if isinstance(data, str):
        return list(enumerate(_EOL.split(data.removeprefix("\ufeff")), 1))
    out: list[tuple[int, str | None]] = []
    for i, raw in enumerate(_EOL_BYTES.split(data.removeprefix(b"\xef\xbb\xbf")), 1):
        try:
            out.append((i, raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((i, None))
    return out


def _file_error(source_file: str, line: int, m: Msg) -> ParsedReadings:
    whole = msg("msg.meters.file_error", file=source_file, line=line, reason=m)
    return ParsedReadings([], [], str(whole), whole)


def parse_readings(data: bytes | str, cfg: Config, *, source_file: str = "upload") -> ParsedReadings:
    """Meter readings of a CSV file (module docstring); never raises for any bytes."""
    if isinstance(data, bytes) and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _file_error(source_file, 1, msg("msg.meters.utf16"))
    lines = [(n, s) for n, s in _lines(data) if s is None or s.strip()]
    if not lines:
        return _file_error(source_file, 1, msg("msg.meters.empty"))
    head_no, head_text = lines[0]
    if head_text is None:
        return _file_error(source_file, head_no, msg("msg.meters.not_utf8"))
    try:
        header = [h.strip().lower() for h in _fields(head_text)]
    except _Bad as exc:
        return _file_error(source_file, head_no, exc.msg)
    for i, name in enumerate(header):
        if name and name in header[:i]:
            return _file_error(source_file, head_no, msg("msg.meters.header_repeats", column=name))
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return _file_error(source_file, head_no, msg("msg.meters.header_lacks", missing=", ".join(missing),
                                                     expected=",".join(REQUIRED)))
    zones = {s.id: ZoneInfo(s.timezone) for s in cfg.sites}
    rows: list[dict] = []
    rejected: list[Rejected] = []
    seen: dict[tuple, int] = {}
    periods: dict[tuple[str, str], list[tuple[datetime, datetime, int]]] = {}
    for line, text in lines[1:]:
        try:
            if text is None:
                raise _Bad(msg("msg.meters.not_utf8"))
            values = _fields(text)
            if len(values) != len(header):
                raise _Bad(msg("msg.meters.field_count", got=len(values), declared=len(header)))
            rec = dict(zip(header, values))
            row = _row(rec, zones)
            key = (row["site"], row["meter"], row["period_start"], row["period_end"])
            if key in seen:
                raise _Bad(msg("msg.meters.same_period", first=seen[key]))
            for start, end, other in periods.get(key[:2], ()):
                if row["period_start"] < end and start < row["period_end"]:
                    raise _Bad(msg("msg.meters.overlaps_line", first=other, start=_day(start), end=_day(end)))
        except _Bad as exc:
            rejected.append(Rejected(line, str(exc.msg), exc.msg))
            continue
        seen[key] = line
        periods.setdefault(key[:2], []).append((row["period_start"], row["period_end"], line))
        rows.append({**row, "source_file": source_file, "source_line": line})
    return ParsedReadings(rows, rejected)


def _day(when: datetime) -> str:
    return when.isoformat() if (when.hour, when.minute, when.second) != (0, 0, 0) else f"{when:%Y-%m-%d}"


def _row(rec: dict[str, str], zones: dict[str, ZoneInfo]) -> dict:
    site = rec["site"].strip()
    if site not in zones:
        raise _Bad(msg("msg.meters.unknown_site", site=_shown(site), expected=str(sorted(zones))))
    meter = rec["meter"].strip()
    if not meter:
        raise _Bad(msg("msg.meters.empty_meter"))
    cat = rec["category"].strip().lower()
    if cat not in CATEGORIES:
        raise _Bad(msg("msg.meters.unknown_category", category=_shown(rec["category"].strip()),
                       expected=str(list(CATEGORIES))))
    scope, pue_category = CATEGORIES[cat]
    start = _when(rec["period_start"], zones[site])
    end = _when(rec["period_end"], zones[site])
    if end <= start:
        raise _Bad(msg("msg.meters.end_before_start", end=_shown(rec["period_end"].strip()),
                       start=_shown(rec["period_start"].strip())))
    kwh = parse_kwh(rec["kwh"])
    return {"site": site, "meter": meter, "scope": scope, "pue_category": pue_category,
            "period_start": start, "period_end": end, "energy_kwh": kwh}


def _category(scope: str, pue_category: int | None) -> str:
    return next(name for name, value in CATEGORIES.items() if value == (scope, pue_category))


def conflict_msg(conflict: dict) -> Msg:
    """Why `Store.import_facility_readings` kept a stored reading instead of a row of the file
    (one of its "conflicts"): another kWh figure, another category, or a period that overlaps
    a stored one of the same meter. Numbers in full (`kwh_text`), so two that differ read
    differently."""
    period = f"{_day(conflict['period_start'])}..{_day(conflict['period_end'])}"
    stored = f"{_day(conflict['stored_start'])}..{_day(conflict['stored_end'])}"
    if conflict["conflict"] == "overlap":
        return msg("msg.meters.conflict_overlap", meter=conflict["meter"], period=period, stored=stored)
    if conflict["conflict"] == "category":
        return msg("msg.meters.conflict_category", meter=conflict["meter"], period=period,
                   stored=_category(conflict["stored_scope"], conflict["stored_pue_category"]),
                   given=_category(conflict["scope"], conflict["pue_category"]))
    return msg("msg.meters.conflict_kwh", meter=conflict["meter"], period=period,
               stored=kwh_text(conflict["stored_kwh"]), given=kwh_text(conflict["energy_kwh"]))
