"""Prometheus text exposition -> one wide, canonical row per device.

Exporters print one line per (metric, device); the store wants one row per
device per scrape. This parser does both in a single pass: it splits each line
at the label braces, looks the metric up in a mapping table (config/mappings),
and drops the value straight into that device's column. Label blocks repeat for
every metric of a device, so each distinct label string is parsed once and
cached; that is what makes a 10,000-GPU scrape cheap.

What real exporters print and this accepts: `# HELP`/`# TYPE` and other
comments, blank lines, `Hostname` or `hostname`, MIG instances (a device of
their own, id `<GPU UUID>/<GPU_I_ID>`), millisecond sample timestamps, DCGM's
blank sentinels (values near 2^63, or 2^47 for floats), which become NULL,
string-valued lines (`DCGM_FI_DEV_NAME{...} Tesla T4`), escaped label values.
A malformed line is counted and reported with its number; it never stops the
rest of the scrape.

Two mapping features serve the other vendors. A field keyed
`metric{label="value"}` takes only that series (AMD prints every clock as
gpu_clock, told apart by clock_type); only lines of such metrics pay for the
label lookup. A parse-only column (mem_total_mib) becomes a stored one at the
end (`finish_columns`: free = total - used, for Ascend), after values no
device can report are screened out (config.canonical.PLAUSIBLE_RANGES). And two label sets
that name one device id under different GPU indexes (AMD compute partitions
sharing the card's serial number) are rejected line by line, not merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from config import SELECTOR_RE, MappingFile
from config.canonical import PLAUSIBLE_RANGES, SAMPLE_LABELS
from i18n import t

# DCGM marks "no value" with sentinels: int64 blanks start at 0x7ffffffffffffff0,
# fp64 blanks at 2^47 (DCGM_FP64_BLANK = 140737488355328.0, +1..+3 for the
# not-found / not-supported / no-permission variants).
_INT64_BLANK_MIN = 9.2e18
_FP64_BLANK_MIN = 140737488355328.0
_FP64_BLANK_MAX = _FP64_BLANK_MIN + 16.0

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)', re.DOTALL)
_SIMPLE_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_ESCAPE_RE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}

MAX_REPORTED_ISSUES = 50


class NotExposition(ValueError):
    """The input carried no Prometheus exposition text at all."""


@dataclass
class LineIssue:
    lineno: int
    reason: str
    text: str

    def __str__(self) -> str:
        return t("msg.line", "en", n=self.lineno, reason=self.reason, text=self.text)


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

    def implausible_note(self) -> str | None:
        """One line for the sources page, naming each column, a device and its value."""
        if not self.implausible:
            return None
        n = sum(c[0] for c in self.implausible.values())
        parts = []
        for col, (count, device, value) in self.implausible.items():
            lo, hi = PLAUSIBLE_RANGES[col]
            allowed = f"{_num(lo)}..{_num(hi)}" if hi is not None else f">= {_num(lo)}"
            parts.append(t("msg.implausible_values", "en", column=col, value=_num(value), device=device,
                           more=count - 1, allowed=allowed) if count > 1 else
                         t("msg.implausible_value", "en", column=col, value=_num(value), device=device, allowed=allowed))
        return t("msg.implausible", "en", n=n, values="; ".join(parts))

    def add_issue(self, lineno: int, reason: str, line: str) -> None:
        self.malformed += 1
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(LineIssue(lineno, reason, line[:120]))

    @property
    def well_formed(self) -> int:
        return self.samples + self.unmapped + self.comments


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


def _unescape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def parse_labels(block: str) -> dict[str, str]:
    """Parse the inside of `{...}`; raise ValueError naming what is wrong."""
    if "\\" not in block:
        # fast path: one C-level findall, accepted only if it re-creates the block exactly
        pairs = _SIMPLE_LABEL_RE.findall(block)
        if ",".join(f'{k}="{v}"' for k, v in pairs) == block.rstrip(","):
            return dict(pairs)
    labels: dict[str, str] = {}
    pos = 0
    end = len(block.rstrip())
    while pos < end:
        m = _LABEL_RE.match(block, pos)
        if m is None:
            raise ValueError(f"bad label syntax at column {pos + 1}")
        value = m.group(2)
        labels[m.group(1)] = _unescape(value) if "\\" in value else value
        pos = m.end()
    return labels


def is_blank(v: float) -> bool:
    """DCGM's blank sentinels and NaN: "no value". (parse_devices inlines this test.)"""
    return v >= _INT64_BLANK_MIN or _FP64_BLANK_MIN <= v <= _FP64_BLANK_MAX or v != v


def device_identity(labels: dict[str, str], roles: dict[str, tuple[str, ...]],
                    host: str | None) -> tuple[str, dict]:
    """(device id, identity/attribution meta) of a label set; ValueError if it names no device.

    The id is the UUID, `UUID/GPU_I_ID` for a MIG instance, or `host/gpu<index>` when
    an old exporter prints no UUID. Every collector that reads labels uses this rule.
    """
    uuid = _first(labels, roles.get("uuid", ()))
    mig = _first(labels, roles.get("mig_instance", ()))
    idx = _first(labels, roles.get("gpu_index", ()))
    if uuid:
        key = uuid if mig is None else f"{uuid}/{mig}"
    elif host and idx is not None:
        key = f"{host}/gpu{idx}" if mig is None else f"{host}/gpu{idx}/{mig}"
    else:
        raise ValueError("cannot identify the device: no UUID label and no host + gpu labels")
    try:
        gpu_index = int(idx) if idx is not None else None
    except ValueError:
        gpu_index = None
    meta = {
        "host": host, "gpu_index": gpu_index, "uuid": uuid,
        "model": _first(labels, roles.get("model", ())),
        "pci_bus_id": _first(labels, roles.get("pci_bus_id", ())),
        "driver_version": _first(labels, roles.get("driver_version", ())),
        "mig_profile": _first(labels, roles.get("mig_profile", ())),
        "mig_instance": mig,
        "mig_parent": uuid if (mig is not None and uuid) else None,
    }
    for role in SAMPLE_LABELS:
        meta[role] = _first(labels, roles.get(role, ()))
    return key, meta


def _is_number_and_ts(rest: str) -> bool:
    """`value [timestamp]` as the text format allows (for lines without labels)."""
    parts = rest.split()
    if not 1 <= len(parts) <= 2:
        return False
    try:
        float(parts[0])
        if len(parts) == 2:
            int(parts[1])
    except ValueError:
        return False
    return True


def _first(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = labels.get(n)
        if v is not None and v != "":
            return v
    return None


def parse_devices(text: str, mapping: CompiledMapping, *, default_host: str | None = None,
                  host_from_label: bool = True) -> DeviceBatch:
    """Parse exporter text into one row per device (see module docstring).

    `default_host` names the host when the text carries none (or always, with
    `host_from_label=False`, for Kubernetes exporters whose Hostname is a pod).
    Raises NotExposition when nothing in the text looked like exposition.
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
    bad_blocks: dict[str, str] = {}
    valid_names: dict[str, bool] = {}

    def new_row(block: str) -> int:
        labels = parse_labels(block)
        host = default_host if not host_from_label else (_first(labels, roles.get("host", ())) or default_host)
        key, m = device_identity(labels, roles, host)
        row = row_of_key.get(key)
        if row is not None and m["gpu_index"] != meta[row]["gpu_index"]:
            # two devices under one id, e.g. AMD compute partitions sharing the card's serial number
            raise ValueError(f"device id {key} is also gpu {meta[row]['gpu_index']} "
                             f"(the exporter needs a per-device id label)")
        if row is None:
            row = len(ids)
            row_of_key[key] = row
            ids.append(key)
            meta.append(m)
            ts_ms.append(None)
            for lst in col_lists.values():
                lst.append(None)
        return row

    int64_blank, fp64_blank, fp64_blank_max = _INT64_BLANK_MIN, _FP64_BLANK_MIN, _FP64_BLANK_MAX
    blanks = numbers = 0
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    stats.lines = len(lines) - (1 if lines and lines[-1] == "" else 0)
    for lineno, line in enumerate(lines, 1):
        if not line or line[0] == "#":
            if line:
                stats.comments += 1
            continue
        if line[-1] == "\r":
            line = line[:-1]
            if not line:
                continue
        if line[0] in " \t":                       # the format allows leading blanks
            line = line.lstrip()
            if not line or line[0] == "#":
                if line:
                    stats.comments += 1
                continue
        brace = line.find("{")
        if brace == -1:
            parts = line.split(None, 1)
            if len(parts) != 2 or not _NAME_RE.match(parts[0]) or not _is_number_and_ts(parts[1]):
                if line.strip():
                    stats.add_issue(lineno, "not a sample line", line)
                continue
            name, rest, block = parts[0], parts[1], ""
            target = numeric.get(name)
        else:
            name = line[:brace]
            close = line.rfind("}")
            target = numeric.get(name)
            if target is None and name[-1:] in (" ", "\t"):   # `name {labels}` is allowed too
                name = name.rstrip()
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
                    if not ok:
                        stats.add_issue(lineno, f"invalid metric name {name[:40]!r}", line)
                    elif close < brace:
                        stats.add_issue(lineno, "label block not closed", line)
                    elif close == len(line) - 1 or not line[close + 1:].strip():
                        stats.add_issue(lineno, "no value", line)
                    else:
                        stats.unmapped += 1
                    continue
            if close < brace:
                stats.add_issue(lineno, "label block not closed", line)
                continue
            block = line[brace + 1:close]
            rest = line[close + 1:]
        if target is None:
            attr = strings.get(name)
            if attr is None:
                if rest.strip():
                    stats.unmapped += 1
                else:
                    stats.add_issue(lineno, "no value", line)
                continue
        row = row_of_block.get(block)
        if row is None:
            if block in bad_blocks:
                stats.add_issue(lineno, bad_blocks[block], line)
                continue
            try:
                row = new_row(block)
            except ValueError as exc:
                bad_blocks[block] = str(exc)
                stats.add_issue(lineno, str(exc), line)
                continue
            row_of_block[block] = row
        if target is None:
            value_text = rest.strip()
            if not value_text:
                stats.add_issue(lineno, "no value", line)
                continue
            head, _, tail = value_text.rpartition(" ")
            if head and tail.isdigit() and len(tail) >= 10:     # a millisecond timestamp
                value_text = head.rstrip()
            meta[row][attr] = value_text
            stats.samples += 1
            continue
        try:
            v = float(rest)
        except ValueError:
            parts = rest.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                v = float(parts[0])
                ts = int(parts[1])
            except ValueError:
                stats.add_issue(lineno, f"value is not a number: {rest.strip()[:40]!r}", line)
                continue
            if ts_ms[row] is None:
                ts_ms[row] = ts
        numbers += 1
        if v >= int64_blank or (fp64_blank <= v <= fp64_blank_max) or v != v:
            blanks += 1
            continue
        col, scale = target
        col_lists[col][row] = v * scale if scale != 1.0 else v
    stats.samples += numbers
    stats.blanks += blanks

    if stats.well_formed == 0:
        raise NotExposition(
            "no Prometheus exposition text found"
            + (f" ({stats.issues[0]})" if stats.issues else " (empty input)"))
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
       NULL and are counted in stats, with the first device and value.
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
    for i, (t, u) in enumerate(zip(total, used)):
        if free[i] is None and t is not None and u is not None and t >= u:
            free[i] = t - u


def _screen(columns: dict[str, list], ids: list[str], stats: ParseStats) -> None:
    for col, values in columns.items():
        bounds = PLAUSIBLE_RANGES.get(col)
        if bounds is None or not values:
            continue
        lo, hi = bounds
        # min/max in C first: a whole column in range (the usual case) costs no Python loop
        present = [v for v in values if v is not None] if None in values else values
        if not present or (min(present) >= lo and (hi is None or max(present) <= hi)):
            continue
        for i, v in enumerate(values):
            if v is not None and (v < lo or (hi is not None and v > hi)):
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


def parse_series(text: str) -> tuple[list[Series], ParseStats]:
    """Generic line-by-line parse for small texts (facility meters): every sample line."""
    stats = ParseStats()
    out: list[Series] = []
    lines = text.split("\n")
    stats.lines = len(lines) - (1 if lines and lines[-1] == "" else 0)
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r").lstrip(" \t\ufeff")
        if not line:
            continue
        if line[0] == "#":
            stats.comments += 1
            continue
        brace = line.find("{")
        if brace == -1:
            parts = line.split(None, 1)
            if len(parts) != 2 or not _NAME_RE.match(parts[0]):
                stats.add_issue(lineno, "not a sample line", line)
                continue
            name, rest, labels = parts[0], parts[1], {}
        else:
            name, close = line[:brace], line.rfind("}")
            if close < brace or not _NAME_RE.match(name):
                stats.add_issue(lineno, "label block not closed" if close < brace else "invalid metric name", line)
                continue
            try:
                labels = parse_labels(line[brace + 1:close])
            except ValueError as exc:
                stats.add_issue(lineno, str(exc), line)
                continue
            rest = line[close + 1:]
        parts = rest.split()
        try:
            value = float(parts[0])
            ts = int(parts[1]) if len(parts) > 1 else None
            if len(parts) > 2:
                raise ValueError
        except (ValueError, IndexError):
            stats.add_issue(lineno, f"value is not a number: {rest.strip()[:40]!r}", line)
            continue
        if is_blank(value):
            stats.blanks += 1
            value = None
        stats.samples += 1
        out.append(Series(name, labels, value, ts, lineno))
    if stats.well_formed == 0:
        raise NotExposition("no Prometheus exposition text found"
                            + (f" ({stats.issues[0]})" if stats.issues else " (empty input)"))
    return out, stats
