"""Every visible string goes through the table, in both languages."""

from __future__ import annotations

import re

import config
import i18n

CODE_DIRS = ["pages", "collectors", "queries", "config"]
CALL = re.compile(r"""\bt\(\s*(f?)"([^"]+)\"""")


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
