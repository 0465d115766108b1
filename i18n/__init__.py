"""The one translation table: every visible string, in English and 简体中文.

Strings live in strings.toml as `["key"] en = "..." zh-CN = "..."`, with
`{name}` placeholders filled by `t(key, lang, name=...)`. A missing key is a
bug that tests catch (tests/test_i18n.py walks the code for t("...") calls);
at run time it shows the key itself rather than crash a NOC screen.
"""

from __future__ import annotations

import re
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


# ---- collector messages ------------------------------------------------------------
#
# Collectors write their errors and notes in English (`t("msg.…", "en", …)`): they are data,
# stored in collector_runs, logged and exported. A page shows them in the reader's language by
# matching the stored text against the English templates of the `msg.*` keys and filling the
# same key's template in that language; a placeholder's value is translated the same way
# (a reason inside "Prometheus at … not reachable: {reason}"). Text no template matches (an
# exporter's own words, a Python exception) is shown as it is.

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# placeholders whose value may itself hold "; " (a list, a nested message); no other one
# spans it, so "a; b" is read as two messages, not as one template swallowing both
_MAY_HOLD_LISTS = frozenset({"values", "reads", "error", "detail"})
_NUMBERS = {"code": r"\d+", "n": r"\d+", "k": r"\d+", "got": r"\d+", "declared": r"\d+", "mib": r"\d+",
            "more": r"\d+", "s": r"[\d.]+"}
# placeholders that hold words of ours (a reason, a nested message), translated in turn;
# the others (a URL, a query, a device, an exporter's own words) are shown as they are
_NESTED = frozenset({"reason", "error", "detail", "values", "reads", "first"})
# longer text is an exporter's or a library's own words: shown as it is (and never fed to
# the lazy patterns, whose backtracking grows with the cube of the length)
MAX_MESSAGE_CHARS = 600


@lru_cache(maxsize=1)
def _message_patterns() -> list[tuple[str, re.Pattern]]:
    out = []
    for key, entry in table().items():
        if not key.startswith("msg."):
            continue
        en = entry[DEFAULT]
        parts, pos = [], 0
        for m in _PLACEHOLDER.finditer(en):
            name = m.group(1)
            value = _NUMBERS.get(name) or (".+?" if name in _MAY_HOLD_LISTS else "(?:(?!; ).)+?")
            parts.append(re.escape(en[pos:m.start()]) + f"(?P<{name}>{value})")
            pos = m.end()
        parts.append(re.escape(en[pos:]))
        out.append((key, re.compile("".join(parts) + r"\Z", re.DOTALL)))
    # the longest literal text first: "closed mid-response after {a} of {b} bytes" before "… after {a} bytes"
    out.sort(key=lambda kp: -len(_PLACEHOLDER.sub("", table()[kp[0]][DEFAULT])))
    return out


def _one_message(text: str, lang: str, depth: int) -> str | None:
    for key, pattern in _message_patterns():
        m = pattern.match(text)
        if m:
            values = {k: (message(v, lang, depth + 1) if depth < 3 and k in _NESTED else v)
                      for k, v in m.groupdict().items()}
            return t(key, lang, **values)
    return None


def message(text: str | None, lang: str = DEFAULT, depth: int = 0) -> str:
    """A collector's English message (see above) in `lang`; messages joined with "; " each."""
    if not isinstance(text, str):
        return "" if text is None or text != text else str(text)       # None, NaN from a DataFrame
    if not text or normalise(lang) == DEFAULT or len(text) > MAX_MESSAGE_CHARS:
        return text
    whole = _one_message(text, lang, depth)
    if whole is not None:
        return whole
    pieces = text.split("; ")
    if len(pieces) == 1:
        return text
    out, i = [], 0
    while i < len(pieces):                  # the longest run of pieces one template matches
        for j in range(len(pieces), i, -1):
            done = _one_message("; ".join(pieces[i:j]), lang, depth) if j - i < len(pieces) else None
            if done is not None:
                out.append(done)
                i = j
                break
        else:
            out.append(pieces[i])
            i += 1
    return "；".join(out)
