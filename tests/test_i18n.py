"""Every visible string goes through the table, in both languages."""

from __future__ import annotations

import re

import pytest

import config
import i18n

CODE_DIRS = ["pages", "collectors", "queries", "config", "api"]
CALL = re.compile(r"""\b(?:t|msg|Msg)\(\s*(f?)"([^"]+)\"""")


def used_keys():
    literal, patterns = set(), set()
    files = [config.PROJECT_ROOT / "app.py"] + [p for d in CODE_DIRS for p in (config.PROJECT_ROOT / d).rglob("*.py")]
    for path in files:
        for is_f, key in CALL.findall(path.read_text()):
            if is_f:
                patterns.add("^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(key)) + "$")
            else:
                literal.add(key)
    return literal, patterns


def test_every_key_has_both_languages():
    for key, entry in i18n.table().items():
        assert set(entry) == set(i18n.LANGUAGES), key
        assert all(v.strip() for v in entry.values()), key


def test_placeholders_match_between_languages():
    for key, entry in i18n.table().items():
        names = {lang: sorted(re.findall(r"\{(\w+)\}", text)) for lang, text in entry.items()}
        assert names["en"] == names["zh-CN"], key


def test_every_key_used_in_code_exists():
    literal, patterns = used_keys()
    assert literal, "no t(...) calls found"
    missing = sorted(k for k in literal if not i18n.has(k))
    assert not missing, missing
    for pat in patterns:
        assert any(re.match(pat, k) for k in i18n.table()), pat


def test_dynamic_families_are_complete():
    for kind in ("xid", "thermal", "lost", "exporter_down", "stale", "ecc", "unhealthy"):
        assert i18n.has(f"problem.{kind}")
    for state in ("ok", "lost", "xid", "thermal", "no_data"):
        assert i18n.has(f"state.{state}")
    for kind in config.SOURCE_KINDS:
        assert i18n.has(f"sources.kind.{kind}"), kind
    for vendor in ("nvidia", "amd", "huawei", "other"):
        assert i18n.has(f"vendor.{vendor}"), vendor
    for state in ("unhealthy",):
        assert i18n.has(f"state.{state}")


def test_normalise_and_fallback():
    assert i18n.normalise("zh") == "zh-CN" and i18n.normalise("fr") == "en" and i18n.normalise(None) == "en"
    assert i18n.t("no.such.key", "zh-CN") == "no.such.key"
    assert i18n.t("common.ago_s", "zh-CN", n=5) == "5 秒前"


def test_collector_messages_read_in_chinese():
    """Collectors store errors and notes in English from the msg.* templates; a page shows them
    in the reader's language, placeholders translated in turn, unknown text as it is."""
    from collectors.exposition import LineIssue, ParseStats
    from i18n import message, t

    zh = "zh-CN"
    timeout = t("msg.timeout", "en", s="5")
    assert message(timeout, zh) == "5 秒内无应答" and message(timeout, "en") == timeout
    retried = t("msg.retrying", "en", error=t("msg.http_status", "en", code=503, reason="Service Unavailable"),
                k=1, n=3)
    assert retried == "HTTP 503 Service Unavailable (attempt 1 of 3; retrying)"
    assert message(retried, zh) == "HTTP 错误 503 Service Unavailable（第 1 次尝试，共 3 次；正在重试）"
    prom = t("msg.prom_unreachable", "en", url="http://prom:9090", reason=timeout)
    assert message(prom, zh) == "无法访问 Prometheus（http://prom:9090）：5 秒内无应答"
    # a parse's notes, joined with "; " by the scheduler, each one translated
    stats = ParseStats()
    stats.implausible = {"util_pct": [2, "GPU-1", 808334905.0], "temp_c": [1, "GPU-2", 255.0]}
    note = stats.implausible_note()
    skipped = t("msg.malformed_first", "en", n=2, first=LineIssue(7, "unclosed label block", "DCGM_FI{"))
    shown = message(skipped + "; " + note, zh)
    assert shown.startswith("已跳过 2 行格式错误的数据；第一处：第 7 行：unclosed label block：DCGM_FI{")
    assert "3 个不合理的数值已存为空值：GPU-1 的 util_pct = 808,334,905（另有 1 个），允许范围 0..100" in shown
    assert "GPU-2 的 temp_c = 255，允许范围" in shown
    assert not re.search(r"implausible|stored as|allowed|skipped", shown)
    # an exporter's or Python's own words stay as they are
    assert message("KeyError: 'x'", zh) == "KeyError: 'x'" and message(None, zh) == ""


def test_every_collector_message_template_is_used():
    """Each msg.* key is one a collector writes (or a page reads): none left over."""
    literal, _ = used_keys()
    unused = sorted(k for k in i18n.table() if k.startswith("msg.") and k not in literal)
    assert not unused, unused


def test_collector_messages_that_are_not_ours_stay_as_they_are():
    from i18n import MAX_MESSAGE_CHARS, message, t

    zh = "zh-CN"
    assert message("HTTP Error 500: boom", zh) == "HTTP Error 500: boom"      # a code must be a number
    assert message(float("nan"), zh) == "" and message(3, zh) == "3"         # what a DataFrame cell holds
    long = t("msg.timeout", "en", s="5") + " " + "x" * MAX_MESSAGE_CHARS
    assert message(long, zh) == long
    # a URL is shown as it is even when it reads like one of our messages
    url = "http://connection-reset"
    assert message(t("msg.prom_unreachable", "en", url=url, reason=t("msg.conn_reset", "en")), zh) \
        == f"无法访问 Prometheus（{url}）：连接被重置"


def test_messages_stored_as_keys_render_in_the_readers_language():
    from i18n import dumps, english, loads, msg, render

    nested = msg("msg.prom_unreachable", url="http://p:9090", reason=msg("msg.timeout", s="5"))
    stored = dumps([nested, "KeyError: 'x'"])
    assert loads(stored)[0] == nested and loads(stored)[1] == "KeyError: 'x'"
    assert english([nested, "KeyError: 'x'"]) == \
        "Prometheus at http://p:9090 not reachable: no answer within 5 s; KeyError: 'x'"
    zh = render(stored, None, "zh-CN")
    assert "http://p:9090" in zh and "5 秒内无应答" in zh and zh.endswith("；KeyError: 'x'")
    assert render(stored, None, "en") == english([nested, "KeyError: 'x'"])
    # a row written before keys were stored is read from its English text
    old = str(msg("msg.timeout", s="5"))
    assert render(None, old, "zh-CN") == "5 秒内无应答"


def test_a_key_defined_in_two_files_is_refused(tmp_path, monkeypatch):
    import i18n

    (tmp_path / "a.toml").write_text('["x.y"]\nen = "a"\nzh-CN = "甲"\n')
    (tmp_path / "b.toml").write_text('["x.y"]\nen = "b"\nzh-CN = "乙"\n')
    monkeypatch.setattr(i18n, "_DIR", tmp_path)
    i18n.table.cache_clear()
    try:
        with pytest.raises(ValueError, match="b.toml: key 'x.y' is already defined in a.toml"):
            i18n.table()
    finally:
        monkeypatch.undo()
        i18n.table.cache_clear()
