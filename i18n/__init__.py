"""The one translation table: every visible string, in English and 简体中文.

Strings live in strings.toml as `["key"] en = "..." zh-CN = "..."`, with
`{name}` placeholders filled by `t(key, lang, name=...)`. A missing key is a
bug that tests catch (tests/test_i18n.py walks the code for t("...") calls);
at run time it shows the key itself rather than crash a NOC screen.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

LANGUAGES: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
_PATH = Path(__file__).resolve().parent / "strings.toml"


@lru_cache(maxsize=1)
def table() -> dict[str, dict[str, str]]:
    with _PATH.open("rb") as fh:
        return tomllib.load(fh)


def normalise(lang: str | None) -> str:
    if not lang:
        return DEFAULT
    if lang in LANGUAGES:
        return lang
    low = lang.lower()
    if low.startswith("zh"):
        return "zh-CN"
    return DEFAULT


def t(key: str, lang: str = DEFAULT, /, **values: object) -> str:
    entry = table().get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get(DEFAULT) or key
    return text.format(**values) if values else text


def has(key: str) -> bool:
    return key in table()
