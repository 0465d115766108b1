"""The exposition format's rules, one hand-written text per rule, through both parsers and the CLI.

parse_series (every sample), parse_devices (the scrape path, with a small mapping written
here) and `python -m collectors parse --series` must agree on each rule: what a value may
look like (the text format's float syntax, not Python's), ±Inf versus NaN and DCGM blanks,
duplicate label names, blanks before the label block, OpenMetrics timestamps and exemplars,
Prometheus 3 quoted names, escapes and trailing commas. Reasons carry i18n keys.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.exposition import (
    CompiledMapping, LineError, NotExposition, ParseStats, is_openmetrics, parse_devices, parse_labels,
    parse_series,
)
from i18n import render

ROOT = Path(__file__).resolve().parent.parent

# power_w (0..10,000 W), energy_j (>= 0, open above) and temp_c (-40..150 C) have plausible ranges in
# config.canonical; "probe" has none, so it shows what the parser itself hands over
MAPPING = CompiledMapping(
    numeric={"gpu_power": ("power_w", 1.0), "gpu_energy_mj": ("energy_j", 0.001), "gpu_temp": ("temp_c", 1.0),
             "probe": ("probe", 1.0), "gpu.power.w": ("power_w", 1.0)},
    strings={}, labels={"uuid": ("UUID",), "gpu_index": ("gpu",)},
    columns=("power_w", "energy_j", "temp_c", "probe"))


def series(text: str, **kw) -> list[tuple]:
    return [(s.name, s.labels, s.value, s.ts_ms, s.lineno) for s in parse_series(text, **kw)[0]]


def issues(text: str, **kw) -> list[tuple[int, str]]:
    return [(i.lineno, i.reason) for i in parse_series(text, **kw)[1].issues]


def device_issues(text: str, **kw) -> list[tuple[int, str]]:
    return [(i.lineno, i.reason) for i in parse_devices(text, MAPPING, **kw).stats.issues]


def column(text: str, col: str, **kw) -> list:
    return parse_devices(text, MAPPING, **kw).columns[col]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "collectors", "parse", "--series", *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


# --- values: infinities, NaN and DCGM's blanks ----------------------------------------------

INF_TEXT = ('probe{UUID="GPU-i"} +Inf\n'
            'probe{UUID="GPU-j"} -Inf\n'
            'probe{UUID="GPU-k"} NaN\n'
            'probe{UUID="GPU-l"} Inf\n'
            'probe{UUID="GPU-m"} -infinity\n'
            'probe{UUID="GPU-n"} 9223372036854775794\n'
            'probe{UUID="GPU-o"} 140737488355329\n'
            'probe{UUID="GPU-p"} 1e300\n')


def test_plus_inf_is_a_value_like_minus_inf_and_only_nan_and_dcgm_blanks_are_no_value():
    got = [(s[1]["UUID"], s[2]) for s in series(INF_TEXT)]
    # 9223372036854775794 is DCGM's int64 blank (>= 9.2e18), 140737488355329 = 2^47 + 1 its fp64 one;
    # 1e300 is also >= 9.2e18 and finite, so it is a blank too; only +Inf itself escapes that rule
    assert got == [("GPU-i", math.inf), ("GPU-j", -math.inf), ("GPU-k", None), ("GPU-l", math.inf),
                   ("GPU-m", -math.inf), ("GPU-n", None), ("GPU-o", None), ("GPU-p", None)]
    assert parse_series(INF_TEXT)[1].blanks == 4
    # the scrape path hands the same values to a column without a plausible range
    assert column(INF_TEXT, "probe") == [math.inf, -math.inf, None, math.inf, -math.inf, None, None, None]
    assert parse_devices(INF_TEXT, MAPPING).stats.blanks == 4


def test_infinities_in_a_ranged_column_become_null_with_a_note():
    text = ('gpu_power{UUID="GPU-a"} +Inf\n'
            'gpu_power{UUID="GPU-b"} 300\n'
            'gpu_energy_mj{UUID="GPU-a"} +Inf\n'        # energy_j's range is open above: finite, >= 0
            'gpu_energy_mj{UUID="GPU-b"} 5000\n'
            'gpu_temp{UUID="GPU-a"} -Inf\n')
    b = parse_devices(text, MAPPING)
    # 5000 mJ x 0.001 = 5 J
    assert b.columns["power_w"] == [None, 300.0] and b.columns["energy_j"] == [None, 5.0]
    assert b.columns["temp_c"] == [None, None]
    note = b.stats.implausible_note()
    assert note == ("3 implausible value(s) stored as NULL: power_w = inf on GPU-a, allowed 0..10,000; "
                    "energy_j = inf on GPU-a, allowed finite, >= 0; temp_c = -inf on GPU-a, allowed -40..150")
    zh = b.stats.implausible_msg().render("zh-CN")
    assert zh.startswith("3 个不合理的数值已存为空值：GPU-a 的 power_w = inf，允许范围 0..10,000；")
    assert "允许范围 有限值且 ≥ 0" in zh
    # the English note is the message rendered in English
    assert str(b.stats.implausible_msg()) == note


def test_every_device_column_a_mapping_fills_is_screened(cfg):
    """The infinity rule above holds for stored rows only if every mapped column has a range."""
    from config.canonical import PLAUSIBLE_RANGES

    device_mappings = {k: m for k, m in cfg.mappings.items() if m.table == "device_samples"}
    assert {"dcgm", "amd", "ascend"} <= device_mappings.keys()
    for name, m in device_mappings.items():
        unscreened = [c for c in CompiledMapping.from_config(m).columns if c not in PLAUSIBLE_RANGES]
        assert unscreened == [], name


# --- values and timestamps: the format's syntax, not Python's --------------------------------

@pytest.mark.parametrize("value", ["1_2", "1_000.5", "+nan", "-NaN", "0x10", "1e", "١٢", "12abc", "1,5", "inf_"])
def test_values_python_reads_but_the_format_does_not(value):
    text = f'probe{{UUID="GPU-v"}} {value}\nprobe{{UUID="GPU-w"}} 2\n'
    want = [(1, f"value is not a number: {value!r}")]
    assert issues(text) == want
    assert device_issues(text) == want
    # GPU-v's label set names a device; its refused value leaves the column NULL
    assert column(text, "probe") == [None, 2.0]


@pytest.mark.parametrize("value, number", [("1e3", 1000.0), (".5", 0.5), ("5.", 5.0), ("-0", 0.0), ("+7", 7.0),
                                           ("1.5E-3", 0.0015), ("\t42", 42.0)])
def test_values_in_the_format(value, number):
    text = f'probe{{UUID="GPU-v"}} {value}\n'
    assert series(text)[0][2] == number
    assert column(text, "probe") == [number]


@pytest.mark.parametrize("ts, reason", [
    ("1_2", "timestamp is not a whole number of milliseconds: '1_2'"),
    ("1.5", "timestamp is not a whole number of milliseconds: '1.5'"),
    ("1e3", "timestamp is not a whole number of milliseconds: '1e3'"),
    ("9223372036854775808", "timestamp is not a whole number of milliseconds: '9223372036854775808'"),  # 2^63
    ("5 6", "unexpected text after the value: '6'"),
])
def test_timestamps_of_text_format_are_integer_milliseconds(ts, reason):
    text = f'probe{{UUID="GPU-t"}} 1 {ts}\nprobe{{UUID="GPU-u"}} 2\n'
    assert issues(text) == [(1, reason)]
    assert device_issues(text) == [(1, reason)]


def test_integer_timestamps_kept_as_milliseconds():
    text = 'probe{UUID="GPU-t"} 1 1700000000123\nprobe{UUID="GPU-u"} 1 +5\n'
    assert [s[3] for s in series(text)] == [1700000000123, 5]
    assert parse_devices(text, MAPPING).ts_ms == [1700000000123, 5]


def test_a_timestamp_no_row_can_carry_is_not_used_for_the_row():
    # 10^17 ms is in the year ~3.17 million: a valid int64, beyond what a stored timestamp holds
    text = 'probe{UUID="GPU-t"} 1 100000000000000000\n'
    assert series(text)[0][3] == 100000000000000000
    b = parse_devices(text, MAPPING)
    assert b.ts_ms == [None] and b.columns["probe"] == [1.0] and b.stats.ts_unusable == 1


# --- label sets ---------------------------------------------------------------------------------

def test_duplicate_label_names_reject_the_line_never_last_wins():
    text = ('gpu_power{UUID="GPU-a",gpu="0",gpu="1"} 100\n'
            'gpu_power{"UUID"="GPU-b",UUID="GPU-c"} 200\n'
            'gpu_power{UUID="GPU-d",gpu="2"} 300\n')
    want = [(1, "duplicate label name gpu"), (2, "duplicate label name UUID")]
    assert issues(text) == want and device_issues(text) == want
    b = parse_devices(text, MAPPING)
    assert b.ids == ["GPU-d"] and b.columns["power_w"] == [300.0]
    with pytest.raises(LineError, match="duplicate label name a"):
        parse_labels('a="1",a="1"')


def test_name_label_is_reserved():
    text = 'gpu_power{__name__="other",UUID="GPU-a"} 100\ngpu_power{UUID="GPU-b"} 1\n'
    assert issues(text) == device_issues(text) == [(1, "label name __name__ is reserved")]


def test_blanks_before_and_inside_the_label_block():
    text = ('gpu_power {UUID="GPU-a"} 1\n'
            'gpu_power\t{UUID="GPU-b"} 2\n'
            'gpu_power { UUID = "GPU-c" , gpu = "3" } 3\n'
            '  gpu_power{UUID="GPU-d"}4\n')
    assert [(s[0], s[1]["UUID"], s[2]) for s in series(text)] == [
        ("gpu_power", "GPU-a", 1.0), ("gpu_power", "GPU-b", 2.0), ("gpu_power", "GPU-c", 3.0),
        ("gpu_power", "GPU-d", 4.0)]
    b = parse_devices(text, MAPPING)
    assert b.ids == ["GPU-a", "GPU-b", "GPU-c", "GPU-d"] and b.columns["power_w"] == [1.0, 2.0, 3.0, 4.0]
    assert b.stats.issues == [] and b.meta[2]["gpu_index"] == 3


def test_trailing_commas():
    text = ('probe{UUID="GPU-a",} 1\n'
            'probe{,} 2\n'
            'probe{UUID="GPU-c",,} 3\n')
    assert [(s[1], s[2]) for s in series(text)] == [({"UUID": "GPU-a"}, 1.0), ({}, 2.0)]
    # the empty item after `UUID="GPU-c",` (12 characters and a comma) starts at column 12 + 1 + 1 = 14
    assert issues(text) == [(3, "bad label syntax at column 14")]
    assert device_issues(text) == [(2, "cannot identify the device: no UUID label and no host + gpu labels"),
                                   (3, "bad label syntax at column 14")]


def test_escapes_in_label_values():
    text = r'probe{UUID="GPU-e",a="q\"z",b="x\\y",c="l\nm",d="C:\temp"} 1' + "\n"
    labels = series(text)[0][1]
    # \", \\ and \n are escapes; a backslash before anything else stays (as client_python keeps it)
    assert labels == {"UUID": "GPU-e", "a": 'q"z', "b": "x\\y", "c": "l\nm", "d": "C:\\temp"}
    assert parse_labels(r'a="q\"z",d="C:\temp"') == {"a": 'q"z', "d": "C:\\temp"}


# --- Prometheus 3: quoted UTF-8 names -----------------------------------------------------------

def test_quoted_metric_and_label_names():
    text = ('{"gpu.power.w","UUID"="GPU-q","rack.slot"="7"} 250\n'
            'probe{"label.name"="v",UUID="GPU-r"} 1\n'
            '{UUID="GPU-s", "gpu.power.w"} 260\n'
            '{"name \\"with\\" quotes\\n"} 3\n')
    assert series(text) == [
        ("gpu.power.w", {"UUID": "GPU-q", "rack.slot": "7"}, 250.0, None, 1),
        ("probe", {"label.name": "v", "UUID": "GPU-r"}, 1.0, None, 2),
        ("gpu.power.w", {"UUID": "GPU-s"}, 260.0, None, 3),
        ('name "with" quotes\n', {}, 3.0, None, 4),
    ]
    # the scrape path reads a quoted name the mapping knows
    b = parse_devices(text, MAPPING)
    assert b.ids == ["GPU-q", "GPU-r", "GPU-s"] and b.columns["power_w"] == [250.0, None, 260.0]
    assert b.columns["probe"] == [None, 1.0, None] and b.stats.unmapped == 1


def test_quoted_names_that_are_not_allowed():
    text = ('{"a.b","c.d"} 1\n'
            'probe{"a.b"} 1\n'
            '{} 1\n'
            '{x="1"} 1\n'
            'metric.name{x="1"} 1\n')
    want = [(1, "metric name given twice"), (2, "metric name given twice"), (3, "no metric name"),
            (4, "no metric name"), (5, "invalid metric name 'metric.name'")]
    with pytest.raises(NotExposition):
        parse_series(text)
    assert issues(text + "ok 1\n") == want
    assert device_issues(text + "probe{UUID=\"GPU-z\"} 1\n") == want


# --- OpenMetrics ------------------------------------------------------------------------------

OM = ('# TYPE probe gauge\n'
      'probe{UUID="GPU-a"} 1 1.5\n'
      'probe{UUID="GPU-b"} 2 1700000000\n'
      'probe{UUID="GPU-c"} 3 1.5e3 # {trace_id="abc"} 0.5 1.25\n'
      'probe_total 4 # {trace_id="def"} 1\n'
      '# EOF\n')


def test_openmetrics_timestamps_are_seconds():
    assert is_openmetrics(OM) and not is_openmetrics(OM.replace("# EOF\n", ""))
    # 1.5 s = 1,500 ms; 1,700,000,000 s = 1,700,000,000,000 ms; 1.5e3 s = 1,500,000 ms
    assert [(s[0], s[2], s[3]) for s in series(OM)] == [
        ("probe", 1.0, 1500), ("probe", 2.0, 1700000000000), ("probe", 3.0, 1500000), ("probe_total", 4.0, None)]
    b = parse_devices(OM, MAPPING)
    assert b.ts_ms == [1500, 1700000000000, 1500000] and b.columns["probe"] == [1.0, 2.0, 3.0]
    assert b.stats.issues == [] and b.stats.unmapped == 1


def test_the_same_lines_without_eof_are_text_format():
    text = OM.replace("# EOF\n", "")
    assert issues(text) == [(2, "timestamp is not a whole number of milliseconds: '1.5'"),
                            (4, "timestamp is not a whole number of milliseconds: '1.5e3'"),
                            (5, "unexpected text after the value: '# {trace_id=\"def\"} 1'")]
    assert series(text)[0][3] == 1700000000            # an integer: milliseconds in 0.0.4 text
    # the caller may say what the content type said
    assert [s[3] for s in series(text, openmetrics=True)] == [1500, 1700000000000, 1500000, None]


@pytest.mark.parametrize("exemplar", ['# {a="b"} x', '#{a="b"} 1', '# {a="b"}', '# {a="b"} 1 ',
                                      '# {a="' + "x" * 128 + '"} 1', "# 1"])
def test_malformed_exemplars_reject_the_line(exemplar):
    text = f'probe{{UUID="GPU-a"}} 1 {exemplar}\nprobe{{UUID="GPU-b"}} 2\n# EOF\n'
    got = issues(text)
    assert [ln for ln, _ in got] == [1] and got[0][1].startswith("malformed exemplar: ")
    assert device_issues(text) == got
    assert [v for v in column(text, "probe") if v is not None] == [2.0]


# --- reasons as keys ------------------------------------------------------------------------

def test_reasons_carry_keys_and_render_in_chinese():
    stats = parse_series('probe{a="1",a="2"} 1\nprobe 1_2\nok 1\n')[1]
    dup, nan = stats.issues
    assert (dup.msg.key, dup.msg.params) == ("msg.parse.dup_label", {"label": "a"})
    assert dup.msg.render("zh-CN") == "标签名重复：a"
    assert nan.msg.key == "msg.parse.not_a_number" and nan.reason == str(nan.msg)
    assert str(nan) == "line 2: value is not a number: '1_2': probe 1_2"        # unchanged English
    assert nan.as_msg().render("zh-CN") == "第 2 行：数值不是数字：'1_2'：probe 1_2"
    with pytest.raises(NotExposition) as exc:
        parse_series("<html>\n")
    assert str(exc.value) == "no Prometheus exposition text found (line 1: not a sample line: <html>)"
    assert exc.value.msg.render("zh-CN") == "未找到 Prometheus 文本格式的数据（第 1 行：不是样本行：<html>）"
    with pytest.raises(NotExposition) as exc:
        parse_devices("", MAPPING)
    assert exc.value.msg.key == "msg.parse.empty"


def test_device_reasons_carry_keys():
    b = parse_devices('probe{gpu="0"} 1\nprobe{UUID="GPU-a"} 1\n', MAPPING, default_host=None)
    assert b.stats.issues[0].msg.key == "msg.parse.no_device"
    assert ParseStats().implausible_msg() is None and ParseStats().implausible_note() is None


def test_issue_messages_stored_as_keys_render_from_json():
    from i18n import dumps

    issue = parse_series('probe{a="1",a="2"} 1\nok 1\n')[1].issues[0]
    stored = dumps([issue.as_msg()])
    assert render(stored, str(issue), "zh-CN") == '第 1 行：标签名重复：a：probe{a="1",a="2"} 1'


# --- the --series command ----------------------------------------------------------------------

def test_series_cli_prints_the_contract(tmp_path):
    f = tmp_path / "m.prom"
    f.write_text('# HELP probe p\nprobe{UUID="GPU-a"} +Inf 1700000000000\nprobe{UUID="GPU-b"} -Inf\n'
                 'probe{UUID="GPU-c"} NaN\nprobe 1_2\n{"a.b","c.d"="é"} 9223372036854775794\nprobe 0.25\n',
                 encoding="utf-8")
    proc = cli(str(f))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"name": "probe", "labels": {"UUID": "GPU-a"}, "value": "+Inf", "timestamp_ms": 1700000000000, "line": 2},
        {"name": "probe", "labels": {"UUID": "GPU-b"}, "value": "-Inf", "timestamp_ms": None, "line": 3},
        {"name": "probe", "labels": {"UUID": "GPU-c"}, "value": None, "timestamp_ms": None, "line": 4},
        {"skipped": 5, "reason": "value is not a number: '1_2'"},
        {"name": "a.b", "labels": {"c.d": "é"}, "value": None, "timestamp_ms": None, "line": 6},
        {"name": "probe", "labels": {}, "value": 0.25, "timestamp_ms": None, "line": 7},
    ]


def test_series_cli_reads_stdin_and_openmetrics():
    proc = cli("-", stdin='a_total 1 2.5 # {id="x"} 1\n# EOF\n')
    assert proc.returncode == 0, proc.stderr
    # 2.5 s = 2,500 ms
    assert json.loads(proc.stdout) == {"name": "a_total", "labels": {}, "value": 1, "timestamp_ms": 2500, "line": 1}


def test_series_cli_every_skipped_line_and_exit_codes(tmp_path):
    bad = "".join(f"m{{a=}} {i}\n" for i in range(70)) + "ok 1\n"
    proc = cli("-", stdin=bad)
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(out) == 71          # 70 skipped lines, none left out, and ok
    assert out[0] == {"skipped": 1, "reason": "bad label syntax at column 1"}
    html = cli("-", stdin="<html><body>502 Bad Gateway</body></html>\n")
    assert html.returncode == 1 and html.stdout == ""
    assert "no Prometheus exposition text found (line 1: not a sample line" in html.stderr
    assert cli(str(tmp_path / "missing.prom")).returncode == 2


def test_series_cli_starts_without_config():
    code = ("import sys, collectors.series_cli; "
            "print(sorted(m for m in ('config', 'pydantic', 'duckdb', 'pyarrow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


# --- bounds: one bad line costs that line, never the exporter (issue 11) ----------------------

def test_an_out_of_range_gpu_index_costs_its_line_only():
    """gpu="99999999999" overflowed the int32 gpu_index when the Arrow batch was built and lost
    the whole exporter; now the line is skipped, named, and the other GPU is kept."""
    text = ('gpu_power{gpu="99999999999",UUID="GPU-a"} 100\n'
            'gpu_power{gpu="١",UUID="GPU-c"} 120\n'                 # a digit, but not an ASCII one
            'gpu_power{gpu="1",UUID="GPU-b"} 200\n')
    batch = parse_devices(text, MAPPING)
    assert batch.ids == ["GPU-b"] and batch.columns["power_w"] == [200.0]
    assert [(n, r.startswith("GPU index")) for n, r in device_issues(text)] == [(1, True), (2, True)]


def test_overlong_lines_and_identity_labels_are_refused():
    """A 50 MB label value would become a host name; a line past MAX_LINE_CHARS is skipped in both
    parsers, an identity label past MAX_ID_CHARS in the scrape path."""
    from collectors.exposition import MAX_ID_CHARS, MAX_LINE_CHARS

    long_line = 'gpu_power{UUID="GPU-x",note="' + "x" * MAX_LINE_CHARS + '"} 1\n'
    long_id = 'gpu_power{UUID="GPU-' + "y" * MAX_ID_CHARS + '"} 2\n'
    good = 'gpu_power{UUID="GPU-ok"} 3\n'
    text = long_line + long_id + good
    assert parse_devices(text, MAPPING).ids == ["GPU-ok"]
    reasons = dict(device_issues(text))
    assert reasons[1].startswith("line of 65,5") and "longer than the 65,536" in reasons[1]
    assert reasons[2].startswith("the uuid label is 260 characters long")
    assert [s[4] for s in series(text)] == [2, 3] and issues(text)[0][0] == 1
