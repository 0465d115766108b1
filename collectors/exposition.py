"""Prometheus text exposition -> one wide, canonical row per device.

Exporters print one line per (metric, device); the store wants one row per
device per scrape. This parser does both in a single pass: it splits each line
at the label braces, looks the metric up in a mapping table (config/mappings),
and drops the value straight into that device's column. Label blocks repeat for
every metric of a device, so each distinct label string is parsed once and
cached; that is what makes a 10,000-GPU scrape cheap.

What it reads is the Prometheus text format 0.0.4 with Prometheus 3's quoted
UTF-8 names (`{"my.metric","label.name"="v"} 1`), and OpenMetrics text (a text
whose last line is `# EOF`, or `openmetrics=True`): there timestamps are float
seconds and exemplars may follow the value; in 0.0.4 text timestamps are integer
milliseconds. Values follow the format's float syntax exactly (Go's ParseFloat:
no `1_2`, no `+nan`), duplicate label names reject the line, and one strict
line parser (`_parse_line`) decides every line that the fast path of
parse_devices does not accept outright, so parse_series and parse_devices agree.
`# HELP`/`# TYPE`/`# UNIT` and other comments are comments: type-dependent rules
(histogram structure, counter suffixes) are not checked. docs/parser.md has the
whole list, and what the conformance checker found.

What real exporters print and this accepts: blank lines, `Hostname` or
`hostname`, MIG instances (a device of their own, id `<GPU UUID>/<GPU_I_ID>`),
millisecond sample timestamps, string-valued lines (`DCGM_FI_DEV_NAME{...} Tesla
T4`), escaped label values. "No value" (NULL) by rule: NaN and DCGM's blank
sentinels (values from 9.2e18 below +Inf, or 2^47..2^47+16); +Inf and -Inf are
values. An infinite value reaches a device column as it is and is then screened
like any other: every column with a plausible range (config.canonical) takes
finite values only, so ±Inf there becomes NULL with an implausible-value note. A
malformed line is counted and reported with its number and its reason as an
i18n key (LineIssue.msg); it never stops the rest of the scrape.

Two mapping features serve the other vendors. A field keyed
`metric{label="value"}` takes only that series (AMD prints every clock as
gpu_clock, told apart by clock_type); only lines of such metrics pay for the
label lookup. A parse-only column (mem_total_mib) becomes a stored one at the
end (`finish_columns`: free = total - used, for Ascend), after values no
device can report are screened out (config.canonical.PLAUSIBLE_RANGES). And two label sets
that name one device id under different GPU indexes (AMD compute partitions
sharing the card's serial number) are rejected line by line, not merged.

`config` (pydantic) is imported only where a mapping is compiled or a device
identified, so `python -m collectors parse --series` starts light.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from i18n import Msg, msg, t

if TYPE_CHECKING:
    from config import MappingFile

# DCGM marks "no value" with sentinels: int64 blanks start at 0x7ffffffffffffff0,
# fp64 blanks at 2^47 (DCGM_FP64_BLANK = 140737488355328.0, +1..+3 for the
# not-found / not-supported / no-permission variants).
_INT64_BLANK_MIN = 9.2e18
_FP64_BLANK_MIN = 140737488355328.0
_FP64_BLANK_MAX = _FP64_BLANK_MIN + 16.0
_INF = math.inf
_FLOAT_MAX = sys.float_info.max

# the times a device row can carry (datetime's years 1..9999, in ms); an exporter
# timestamp outside them is not used for the row (the scrape time is)
_TS_MIN_MS = -62135596800000
_TS_MAX_MS = 253402300799999
_INT64 = 2 ** 63

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_NAME_AT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_AT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_QUOTED_AT = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BLANKS = re.compile(r"[ \t]+")
_LONE_COMMA_AT = re.compile(r"[ \t]*,[ \t]*\}")           # `{,}`: no labels, one trailing comma
_SIMPLE_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
# the text format's values: Go's strconv.ParseFloat syntax without underscores or hex
_FLOAT_RE = re.compile(r"(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                       r"|[+-]?(?i:inf|infinity)|(?i:nan))\Z")
_TS_MS_RE = re.compile(r"[+-]?[0-9]+\Z")                             # 0.0.4: integer milliseconds
_TS_S_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")   # OpenMetrics: seconds
_SHOWN = 40                     # characters of a bad token quoted in a reason

MAX_REPORTED_ISSUES = 50
# Bounds on what one line may carry. Real exporters print lines of a few hundred characters;
# a 50 MB label value would otherwise become a host name, and a label-heavy 50 MB line cost
# gigabytes of dicts. A longer line is skipped and reported like any malformed one.
MAX_LINE_CHARS = 64 * 1024
MAX_ID_CHARS = 256             # a device id, host or MIG instance label
MAX_GPU_INDEX = 65535          # the index of a device on its host


class NotExposition(ValueError):
    """The input carried no Prometheus exposition text at all; `.msg` is the reason as a key."""

    def __init__(self, text: str | Msg, message: Msg | None = None) -> None:
        if isinstance(text, Msg):
            super().__init__(str(text))
            self.msg: Msg | None = text
        else:
            super().__init__(text)
            self.msg = message


class LineError(ValueError):
    """A line (or label block) the format does not allow; `.msg` is the reason as a key,
    `str()` its English text."""

    def __init__(self, message: Msg) -> None:
        super().__init__(str(message))
        self.msg = message


@dataclass
class LineIssue:
    lineno: int
    reason: str                 # English, for logs and old readers
    text: str
    msg: Msg | None = None      # the reason as a key (None: a reason given as text only)

    def __str__(self) -> str:
        return t("msg.line", "en", n=self.lineno, reason=self.reason, text=self.text)

    def as_msg(self) -> Msg:
        """The whole issue ("line 9: not a sample line: ...") as a key, its reason nested."""
        return msg("msg.line", n=self.lineno, reason=self.msg or self.reason, text=self.text)


@dataclass
class ParseStats:
    lines: int = 0
    samples: int = 0            # sample lines that landed in a canonical column
    unmapped: int = 0           # well-formed sample lines whose metric the mapping does not use
    blanks: int = 0             # DCGM blank sentinels / NaN turned into NULL
    comments: int = 0
    malformed: int = 0
    issues: list[LineIssue] = field(default_factory=list)
    # values outside config.canonical.PLAUSIBLE_RANGES, stored as NULL:
    # column -> [count, first device, first value]
    implausible: dict[str, list] = field(default_factory=dict)
    ts_unusable: int = 0        # exporter timestamps a row cannot carry (outside years 1..9999)
    max_issues: int = MAX_REPORTED_ISSUES

    def implausible_msg(self) -> Msg | None:
        """One line for the sources page, naming each column, a device and its value, as a key."""
        if not self.implausible:
            return None
        ranges = _canonical()[0]
        n = sum(c[0] for c in self.implausible.values())
        parts: list[Msg] = []
        for col, (count, device, value) in self.implausible.items():
            lo, hi = ranges.get(col, (None, None))
            allowed: str | Msg
            if lo is not None and hi is not None:
                allowed = f"{_num(lo)}..{_num(hi)}"
            elif lo is not None:
                allowed = msg("parse.at_least", lo=_num(lo)) if math.isinf(value) else f">= {_num(lo)}"
            else:
                allowed = f"<= {_num(hi)}" if hi is not None else "-"
            parts.append(msg("msg.implausible_values", column=col, value=_num(value), device=device,
                             more=count - 1, allowed=allowed) if count > 1 else
                         msg("msg.implausible_value", column=col, value=_num(value), device=device,
                             allowed=allowed))
        values = parts[-1]
        for part in reversed(parts[:-1]):
            values = msg("parse.and", head=part, tail=values)
        return msg("msg.implausible", n=n, values=values)

    def implausible_note(self) -> str | None:
        """implausible_msg() in English."""
        m = self.implausible_msg()
        return None if m is None else str(m)

    def add_issue(self, lineno: int, reason: str | Msg, line: str) -> None:
        self.malformed += 1
        if len(self.issues) < self.max_issues:
            if isinstance(reason, Msg):
                self.issues.append(LineIssue(lineno, str(reason), line[:120], reason))
            else:
                self.issues.append(LineIssue(lineno, reason, line[:120]))

    @property
    def well_formed(self) -> int:
        return self.samples + self.unmapped + self.comments


def not_exposition(stats: ParseStats) -> NotExposition:
    """The error for a text in which no line was a well-formed sample or comment."""
    if stats.issues:
        return NotExposition(msg("msg.parse.no_exposition", first=stats.issues[0].as_msg()))
    return NotExposition(msg("msg.parse.empty"))


@lru_cache(maxsize=1)
def _canonical() -> tuple[dict[str, tuple[float | None, float | None]], tuple[str, ...]]:
    """(PLAUSIBLE_RANGES, SAMPLE_LABELS), imported on first use: `config` is heavy."""
    from config.canonical import PLAUSIBLE_RANGES, SAMPLE_LABELS
    return PLAUSIBLE_RANGES, tuple(SAMPLE_LABELS)


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping table turned into lookup dicts for the hot loop.

    `numeric` holds plain metric names only (the Prometheus collector queries
    them as they are); fields keyed `metric{label="value"}` go to `selected`.
    """

    numeric: dict[str, tuple[str, float]]      # metric -> (column, scale)
    strings: dict[str, str]                    # metric -> device attribute
    labels: dict[str, tuple[str, ...]]         # role -> label names, first present wins
    columns: tuple[str, ...]                   # numeric columns this mapping can fill
    # metric -> (label name, label finder, label value -> (column, scale))
    selected: dict[str, tuple[str, re.Pattern[str], dict[str, tuple[str, float]]]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, m: MappingFile) -> "CompiledMapping":
        from config import SELECTOR_RE

        numeric: dict[str, tuple[str, float]] = {}
        selected: dict[str, tuple[str, re.Pattern[str], dict[str, tuple[str, float]]]] = {}
        for k, f in m.fields.items():
            if f.kind != "number":
                continue
            sel = SELECTOR_RE.match(k) if "{" in k else None
            if sel is None:
                numeric[k] = (f.column, float(f.scale))
                continue
            metric, label, value = sel.groups()
            first_label, _, by_value = selected.setdefault(metric, (label, _label_finder(label), {}))
            if first_label != label:
                raise ValueError(f"fields of {metric!r} select by two labels; use one label")
            by_value[value] = (f.column, float(f.scale))
        strings = {k: f.column for k, f in m.fields.items() if f.kind == "string"}
        cols = tuple(dict.fromkeys([c for c, _ in numeric.values()]
                                   + [c for _, _, vals in selected.values() for c, _ in vals.values()]))
        return cls(numeric, strings, {r: tuple(v) for r, v in m.labels.items()}, cols, selected)


@dataclass
class DeviceBatch:
    """One scrape, pivoted: row i of every list belongs to device ids[i]."""

    ids: list[str]
    meta: list[dict[str, str | int | None]]    # identity and attribution per device
    columns: dict[str, list[float | None]]     # canonical measure -> values
    ts_ms: list[int | None]                    # exporter-supplied sample time, if any
    stats: ParseStats

    def __len__(self) -> int:
        return len(self.ids)


# ---- the strict line parser ---------------------------------------------------------


def is_openmetrics(text: str) -> bool:
    """OpenMetrics text ends with the line `# EOF` (looks at the tail only: a scrape can be large)."""
    tail = text[-64:].rstrip()
    return tail.endswith("# EOF") and (len(tail) == 5 or tail[-6] == "\n")


def _skip(s: str, pos: int = 0) -> int:
    """The index of the first character at or after `pos` that is not a blank (space, tab)."""
    n = len(s)
    while pos < n and s[pos] in " \t":
        pos += 1
    return pos


def _shown(s: str) -> str:
    return repr(s[:_SHOWN])


def _unquote(raw: str) -> str:
    """A quoted string's inside, escapes resolved. \\\\, \\" and \\n are escapes; a backslash before
    anything else stays as it is (client_python and the OpenMetrics suite keep `\\z` as two
    characters; Go's parser alone refuses it)."""
    if "\\" not in raw:
        return raw
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group()), raw)


def _scan_labels(s: str, pos: int, name_allowed: bool) -> tuple[dict[str, str], str | None, int]:
    """The label block of `s` that starts at `pos` (just after its `{`) -> (labels, the quoted
    metric name inside it if any, the index after its `}`). Columns in reasons count from `pos`."""
    start = pos
    labels: dict[str, str] = {}
    qname: str | None = None
    m = _LONE_COMMA_AT.match(s, pos)
    if m is not None:
        return labels, None, m.end()
    n = len(s)
    while True:
        item = pos
        pos = _skip(s, pos)
        if pos >= n:
            raise LineError(msg("msg.parse.not_closed"))
        c = s[pos]
        if c == "}":
            return labels, qname, pos + 1
        name: str | None
        if c == '"':
            q = _QUOTED_AT.match(s, pos)
            if q is None:
                raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))
            text = _unquote(q.group(1))
            pos = _skip(s, q.end())
            if pos < n and s[pos] == "=":
                name = text
                if not name:
                    raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))
            else:
                if not name_allowed or qname is not None:
                    raise LineError(msg("msg.parse.two_names"))
                if not text:
                    raise LineError(msg("msg.parse.bad_name", name="''"))
                qname, name = text, None
        else:
            ln = _LABEL_NAME_AT.match(s, pos)
            if ln is None:
                raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))
            name = ln.group()
            pos = _skip(s, ln.end())
            if pos >= n or s[pos] != "=":
                raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))
        if name is not None:
            pos = _skip(s, pos + 1)
            q = _QUOTED_AT.match(s, pos)
            if q is None:
                raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))
            if name in labels:
                raise LineError(msg("msg.parse.dup_label", label=name))
            if name == "__name__":
                raise LineError(msg("msg.parse.reserved_label", label=name))
            labels[name] = _unquote(q.group(1))
            pos = _skip(s, q.end())
        if pos >= n:
            raise LineError(msg("msg.parse.not_closed"))
        c = s[pos]
        if c == ",":
            pos += 1
        elif c == "}":
            return labels, qname, pos + 1
        else:
            raise LineError(msg("msg.parse.bad_labels", col=item - start + 1))


def _tail(rest: str, om: bool) -> tuple[float, int | None]:
    """What follows the name and labels: `value [timestamp]` (+ an exemplar in OpenMetrics)
    -> (value, timestamp in ms or None)."""
    body, hash_, exemplar = rest.partition("#")
    toks = _BLANKS.split(body.strip(" \t"))
    if not _FLOAT_RE.match(toks[0]):
        raise LineError(msg("msg.parse.not_a_number", value=_shown(rest.strip())))
    if len(toks) > 2:
        raise LineError(msg("msg.parse.trailing", text=_shown(" ".join(toks[2:]))))
    ts: int | None = None
    if len(toks) == 2:
        tok = toks[1]
        if om:
            if not _TS_S_RE.match(tok):
                raise LineError(msg("msg.parse.bad_ts_s", ts=_shown(tok)))
            ts = round(float(tok) * 1000.0)
        else:
            if not _TS_MS_RE.match(tok) or not -_INT64 <= int(tok) < _INT64:
                raise LineError(msg("msg.parse.bad_ts_ms", ts=_shown(tok)))
            ts = int(tok)
    if hash_:
        if not om or body[-1:] not in (" ", "\t"):
            raise LineError(msg("msg.parse.trailing", text=_shown("#" + exemplar)))
        _exemplar(exemplar)
    return float(toks[0]), ts


def _exemplar(s: str) -> None:
    """An OpenMetrics exemplar after its `#`: ` {labels} value[ timestamp]`, single spaces, at most
    128 characters of label names and values; checked, not kept."""
    bad = LineError(msg("msg.parse.bad_exemplar", text=_shown("#" + s)))
    if not s.startswith(" {") or "}" not in s:
        raise bad
    try:
        labels, _, end = _scan_labels(s, 2, False)
    except LineError:
        raise bad from None
    toks = s[end:].split(" ")
    if (toks[0] != "" or not 2 <= len(toks) <= 3 or not _FLOAT_RE.match(toks[1])
            or (len(toks) == 3 and not _TS_S_RE.match(toks[2]))
            or sum(len(k) + len(v) for k, v in labels.items()) > 128):
        raise bad


def _parse_line(line: str, om: bool) -> tuple[str, dict[str, str], float, int | None]:
    """One sample line (no leading blanks, no line end, not a comment) -> (name, labels, value,
    timestamp in ms or None); LineError says why not. Every line parse_series keeps or skips
    goes through here, and every line parse_devices does not take on its fast path."""
    m = _NAME_AT.match(line)
    pos = m.end() if m is not None else 0
    pos = _skip(line, pos)
    if pos < len(line) and line[pos] == "{" and (m is not None or pos == 0):
        if "}" not in line[pos:]:
            raise LineError(msg("msg.parse.not_closed"))
        labels, qname, end = _scan_labels(line, pos + 1, m is None)
        if m is None:
            if qname is None:
                raise LineError(msg("msg.parse.no_name"))
            name = qname
        else:
            name = m.group()
        return (name, labels) + _tail(line[end:], om)
    if m is None or pos == m.end():
        brace = line.find("{")
        if brace > 0:
            raise LineError(msg("msg.parse.bad_name", name=_shown(line[:brace].strip())))
        raise LineError(msg("msg.parse.not_sample"))
    return (m.group(), {}) + _tail(line[pos:], om)


def parse_labels(block: str) -> dict[str, str]:
    """Parse the inside of `{...}`; raise LineError (a ValueError) naming what is wrong."""
    if "\\" not in block:
        # fast path: one C-level findall, accepted only if it re-creates the block exactly
        pairs = _SIMPLE_LABEL_RE.findall(block)
        if ",".join(f'{k}="{v}"' for k, v in pairs) == (block[:-1] if block[-1:] == "," else block):
            labels = dict(pairs)
            if len(labels) == len(pairs) and "__name__" not in labels:
                return labels
    labels, qname, end = _scan_labels(block + "}", 0, False)
    if end != len(block) + 1:
        raise LineError(msg("msg.parse.bad_labels", col=end))
    return labels


def is_blank(v: float) -> bool:
    """DCGM's blank sentinels and NaN: "no value"; +Inf is a value. (parse_devices inlines this test.)"""
    return _INT64_BLANK_MIN <= v < _INF or _FP64_BLANK_MIN <= v <= _FP64_BLANK_MAX or v != v


def device_identity(labels: dict[str, str], roles: dict[str, tuple[str, ...]],
                    host: str | None) -> tuple[str, dict]:
    """(device id, identity/attribution meta) of a label set; LineError (a ValueError) if it names
    no device.

    The id is the UUID, `UUID/GPU_I_ID` for a MIG instance, or `host/gpu<index>` when
    an old exporter prints no UUID. Every collector that reads labels uses this rule.
    """
    uuid = _first(labels, roles.get("uuid", ()))
    mig = _first(labels, roles.get("mig_instance", ()))
    idx = _first(labels, roles.get("gpu_index", ()))
    for role, value in (("uuid", uuid), ("mig_instance", mig), ("host", host)):
        if value is not None and len(value) > MAX_ID_CHARS:
            raise LineError(msg("msg.parse.long_id", role=role, n=f"{len(value):,}", max=MAX_ID_CHARS))
    if idx is not None and not (idx.isascii() and idx.isdigit() and int(idx) <= MAX_GPU_INDEX):
        raise LineError(msg("msg.parse.bad_gpu_index", value=_shown(idx), max=MAX_GPU_INDEX))
    if uuid:
        key = uuid if mig is None else f"{uuid}/{mig}"
    elif host and idx is not None:
        key = f"{host}/gpu{idx}" if mig is None else f"{host}/gpu{idx}/{mig}"
    else:
        raise LineError(msg("msg.parse.no_device"))
    gpu_index = int(idx) if idx is not None else None
    meta = {
        "host": host, "gpu_index": gpu_index, "uuid": uuid,
        "model": _first(labels, roles.get("model", ())),
        "pci_bus_id": _first(labels, roles.get("pci_bus_id", ())),
        "driver_version": _first(labels, roles.get("driver_version", ())),
        "mig_profile": _first(labels, roles.get("mig_profile", ())),
        "mig_instance": mig,
        "mig_parent": uuid if (mig is not None and uuid) else None,
    }
    for role in _canonical()[1]:
        meta[role] = _first(labels, roles.get(role, ()))
    return key, meta


def _first(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = labels.get(n)
        if v is not None and v != "":
            return v
    return None


def parse_devices(text: str, mapping: CompiledMapping, *, default_host: str | None = None,
                  host_from_label: bool = True, openmetrics: bool | None = None) -> DeviceBatch:
    """Parse exporter text into one row per device (see module docstring).

    `default_host` names the host when the text carries none (or always, with
    `host_from_label=False`, for Kubernetes exporters whose Hostname is a pod).
    `openmetrics` says the text is OpenMetrics (from the response's content type);
    None decides by the text. Raises NotExposition when nothing in the text looked
    like exposition.
    """
    numeric = mapping.numeric
    strings = mapping.strings
    selected = mapping.selected
    sel_targets: dict[str, tuple[str, float] | None] = {}      # label block -> its selected column
    roles = mapping.labels
    stats = ParseStats()
    ids: list[str] = []
    meta: list[dict] = []
    ts_ms: list[int | None] = []
    columns: dict[str, list] = {c: [] for c in mapping.columns}
    col_lists = columns
    row_of_key: dict[str, int] = {}
    row_of_block: dict[str, int] = {}
    bad_blocks: dict[str, Msg] = {}
    valid_names: dict[str, bool] = {}
    if text.startswith("\ufeff"):
        text = text[1:]
    om = is_openmetrics(text) if openmetrics is None else openmetrics
    # a value float() takes is the format's float unless it holds `_`, a non-ASCII digit, a blank
    # other than a space (these go to the strict parser) or is a signed NaN (checked with the blanks)
    ascii_text = text.isascii()

    def new_row(labels: dict[str, str]) -> int:
        host = default_host if not host_from_label else (_first(labels, roles.get("host", ())) or default_host)
        key, m = device_identity(labels, roles, host)
        row = row_of_key.get(key)
        if row is not None and m["gpu_index"] != meta[row]["gpu_index"]:
            # two devices under one id, e.g. AMD compute partitions sharing the card's serial number
            raise LineError(msg("msg.parse.shared_id", device=key, gpu=meta[row]["gpu_index"]))
        if row is None:
            row = len(ids)
            row_of_key[key] = row
            ids.append(key)
            meta.append(m)
            ts_ms.append(None)
            for lst in col_lists.values():
                lst.append(None)
        return row

    def set_ts(row: int, ts: int) -> None:
        if ts_ms[row] is None:
            if _TS_MIN_MS <= ts <= _TS_MAX_MS:
                ts_ms[row] = ts
            else:
                stats.ts_unusable += 1

    def strict(lineno: int, line: str) -> None:
        """A line the fast path does not take as it is: the strict parser decides."""
        try:
            name, labels, v, ts = _parse_line(line, om)
        except LineError as exc:
            stats.add_issue(lineno, exc.msg, line)
            return
        target = numeric.get(name)
        if target is None:
            sel = selected.get(name)
            if sel is not None:
                target = sel[2].get(labels.get(sel[0], ""))
        if target is None:
            # string-valued fields come from lines with a plain label block, which the fast path reads
            stats.unmapped += 1
            return
        try:
            row = new_row(labels)
        except LineError as exc:
            stats.add_issue(lineno, exc.msg, line)
            return
        if ts is not None:
            set_ts(row, ts)
        stats.samples += 1
        if is_blank(v):
            stats.blanks += 1
            return
        col, scale = target
        col_lists[col][row] = v * scale if scale != 1.0 else v

    int64_blank, fp64_blank, fp64_blank_max, inf = _INT64_BLANK_MIN, _FP64_BLANK_MIN, _FP64_BLANK_MAX, _INF
    blanks = numbers = 0
    lines = text.split("\n")
    stats.lines = len(lines) - (1 if lines and lines[-1] == "" else 0)
    for lineno, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            stats.add_issue(lineno, msg("msg.parse.too_long", n=f"{len(line):,}", max=f"{MAX_LINE_CHARS:,}"), line)
            continue
        if not line or line[0] == "#":
            if line:
                stats.comments += 1
            continue
        if line[-1] == "\r":
            line = line[:-1]
            if not line:
                continue
        if line[0] in " \t":                       # the format allows leading blanks
            line = line.lstrip(" \t")
            if not line or line[0] == "#":
                if line:
                    stats.comments += 1
                continue
        brace = line.find("{")
        if brace <= 0:                             # no label block, or a quoted name inside it
            strict(lineno, line)
            continue
        name = line[:brace]
        close = line.rfind("}")
        target = numeric.get(name)
        if target is None and name[-1] in " \t":   # `name {labels}` is allowed too
            name = name.rstrip(" \t")
            target = numeric.get(name)
        if target is None:
            attr = strings.get(name)
            if attr is None and selected and close > brace:
                sel = selected.get(name)
                if sel is not None:
                    block = line[brace + 1:close]
                    target = sel_targets.get(block, _UNSEEN)
                    if target is _UNSEEN:
                        target = sel_targets[block] = _select(sel, block)
            if attr is None and target is None:
                # not ours: only check it is a well-formed sample line
                ok = valid_names.get(name)
                if ok is None:
                    ok = valid_names[name] = bool(_NAME_RE.match(name))
                if not ok:                     # a quoted name, an exemplar's braces, or garbage
                    strict(lineno, line)
                elif close < brace:
                    stats.add_issue(lineno, msg("msg.parse.not_closed"), line)
                elif close == len(line) - 1 or not line[close + 1:].strip():
                    stats.add_issue(lineno, msg("msg.parse.not_a_number", value="''"), line)
                else:
                    stats.unmapped += 1
                continue
        if close < brace:
            stats.add_issue(lineno, msg("msg.parse.not_closed"), line)
            continue
        block = line[brace + 1:close]
        rest = line[close + 1:]
        row = row_of_block.get(block)
        if row is None:
            bad = bad_blocks.get(block)
            if bad is not None:
                stats.add_issue(lineno, bad, line)
                continue
            try:
                labels = parse_labels(block)
            except LineError:
                # a label syntax error, or an exemplar's braces: the strict parser tells which
                strict(lineno, line)
                continue
            try:
                row = new_row(labels)
            except LineError as exc:
                bad_blocks[block] = exc.msg
                stats.add_issue(lineno, exc.msg, line)
                continue
            row_of_block[block] = row
        if target is None:
            value_text = rest.strip()
            if not value_text:
                stats.add_issue(lineno, msg("msg.parse.not_a_number", value="''"), line)
                continue
            head, _, tail = value_text.rpartition(" ")
            if head and tail.isdigit() and len(tail) >= 10:     # a millisecond timestamp
                value_text = head.rstrip()
            meta[row][attr] = value_text
            stats.samples += 1
            continue
        try:
            v = float(rest)
            if "_" in rest or not rest.isprintable() or not (ascii_text or rest.isascii()):
                raise ValueError
        except ValueError:
            try:
                v, ts = _tail(rest, om)
            except LineError as exc:
                stats.add_issue(lineno, exc.msg, line)
                continue
            if ts is not None:
                set_ts(row, ts)
        if v >= int64_blank or (fp64_blank <= v <= fp64_blank_max) or v != v:
            if v != v and rest.strip(" \t")[:1] in ("+", "-"):
                stats.add_issue(lineno, msg("msg.parse.not_a_number", value=_shown(rest.strip())), line)
                continue
            if v != inf:
                numbers += 1
                blanks += 1
                continue
        numbers += 1
        col, scale = target
        col_lists[col][row] = v * scale if scale != 1.0 else v
    stats.samples += numbers
    stats.blanks += blanks

    if stats.well_formed == 0:
        raise not_exposition(stats)
    finish_columns(columns, ids, stats)
    return DeviceBatch(ids, meta, columns, ts_ms, stats)


_UNSEEN = ("", 0.0)


def _label_finder(label: str) -> re.Pattern[str]:
    """Finds one label's value in a label block without parsing all of it (AMD blocks run to 400 characters)."""
    return re.compile(r'(?:\A|,)\s*' + label + r'\s*=\s*"((?:[^"\\]|\\.)*)"')


def _select(sel: tuple[str, re.Pattern[str], dict[str, tuple[str, float]]], block: str) -> tuple[str, float] | None:
    """The column a label-selected field's series feeds, by its label block (None: not mapped).

    Selector values hold no quote or backslash, so an escaped value never matches one.
    """
    m = sel[1].search(block)
    return sel[2].get(m.group(1)) if m is not None else None


def finish_columns(columns: dict[str, list], ids: list[str], stats: ParseStats) -> None:
    """Make pivoted columns ready to store, in place. Every collector calls this
    once its columns are pivoted (parse_devices does it itself), before the
    event tracker sees them.

    1. Implausible values (outside config.canonical.PLAUSIBLE_RANGES) become
       NULL and are counted in stats, with the first device and value. A range
       holds finite values only (an open upper end means any finite value), so
       +Inf and -Inf in a ranged column are implausible; a column without a
       range keeps them.
    2. Parse-only columns become stored ones (config.PARSE_ONLY_COLUMNS):
       mem_total_mib gives mem_free_mib = total - used wherever the exporter
       printed no free memory itself.
    """
    _screen(columns, ids, stats)
    total = columns.pop("mem_total_mib", None)
    if total is None:
        return
    used = columns.get("mem_used_mib") or [None] * len(ids)
    free = columns.setdefault("mem_free_mib", [None] * len(ids))
    for i, (tot, u) in enumerate(zip(total, used)):
        if free[i] is None and tot is not None and u is not None and tot >= u:
            free[i] = tot - u


def _screen(columns: dict[str, list], ids: list[str], stats: ParseStats) -> None:
    ranges = _canonical()[0]
    for col, values in columns.items():
        bounds = ranges.get(col)
        if bounds is None or not values:
            continue
        lo = bounds[0] if bounds[0] is not None else -_FLOAT_MAX
        hi = bounds[1] if bounds[1] is not None else _FLOAT_MAX
        # min/max in C first: a whole column in range (the usual case) costs no Python loop
        present = [v for v in values if v is not None] if None in values else values
        if not present or (min(present) >= lo and max(present) <= hi):
            continue
        for i, v in enumerate(values):
            if v is not None and (v < lo or v > hi):
                values[i] = None
                seen = stats.implausible.get(col)
                if seen is None:
                    stats.implausible[col] = [1, ids[i], v]
                else:
                    seen[0] += 1


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) and not v.is_integer() else f"{int(v):,}"


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    value: float | None
    ts_ms: int | None
    lineno: int


def parse_series(text: str, *, openmetrics: bool | None = None,
                 max_issues: int = MAX_REPORTED_ISSUES) -> tuple[list[Series], ParseStats]:
    """Every sample line, in order, through the strict line parser (facility meters, IPMI, the
    `--series` CLI). Blank values (NaN, DCGM sentinels) come back as None; ±Inf as they are.
    `openmetrics` as for parse_devices; `max_issues` caps stats.issues (malformed counts them all).
    Raises NotExposition when no line was a sample or comment."""
    stats = ParseStats(max_issues=max_issues)
    out: list[Series] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    om = is_openmetrics(text) if openmetrics is None else openmetrics
    lines = text.split("\n")
    stats.lines = len(lines) - (1 if lines and lines[-1] == "" else 0)
    for lineno, raw in enumerate(lines, 1):
        line = (raw[:-1] if raw[-1:] == "\r" else raw).lstrip(" \t")
        if not line:
            continue
        if line[0] == "#":
            stats.comments += 1
            continue
        if len(line) > MAX_LINE_CHARS:
            stats.add_issue(lineno, msg("msg.parse.too_long", n=f"{len(line):,}", max=f"{MAX_LINE_CHARS:,}"), line)
            continue
        try:
            name, labels, value, ts = _parse_line(line, om)
        except LineError as exc:
            stats.add_issue(lineno, exc.msg, line)
            continue
        if is_blank(value):
            stats.blanks += 1
            out.append(Series(name, labels, None, ts, lineno))
        else:
            out.append(Series(name, labels, value, ts, lineno))
        stats.samples += 1
    if stats.well_formed == 0:
        raise not_exposition(stats)
    return out, stats
