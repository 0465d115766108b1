"""The one translation table: every visible string, in English and 简体中文.

Strings live in i18n/*.toml (strings.toml and one file per area, so that work on
different areas never edits one file) as `["key"] en = "..." zh-CN = "..."`, with
`{name}` placeholders filled by `t(key, lang, name=...)`. A key defined in two files
is an error. A missing key is a bug that tests catch (tests/test_i18n.py walks the
code for t("...") calls); at run time it shows the key itself rather than crash a
NOC screen.

Messages of collectors, jobs and parsers are stored as keys with parameters
(`Msg`, serialised by `dumps`) and rendered in the reader's language when shown
(`render`). Rows stored before that carry English text only; `message` turns such
text back into keys by matching the English templates, and is kept only for them.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

LANGUAGES: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def table() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    where: dict[str, str] = {}
    for path in sorted(_DIR.glob("*.toml")):
        with path.open("rb") as fh:
            for key, entry in tomllib.load(fh).items():
                if key in out:
                    raise ValueError(f"{path.name}: key {key!r} is already defined in {where[key]}")
                out[key] = entry
                where[key] = path.name
    return out


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


# ---- messages stored as keys ---------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """A message as a key and its parameters; `str()` is its English text.

    A parameter may itself be a `Msg` (a reason inside "Prometheus at ... not
    reachable: {reason}"): it is rendered in the same language. Everything else is
    shown as it is (URLs, an exporter's own words, numbers)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, lang: str = DEFAULT) -> str:
        values = {k: (v.render(lang) if isinstance(v, Msg) else v) for k, v in self.params.items()}
        return t(self.key, normalise(lang), **values)

    def __str__(self) -> str:
        return self.render(DEFAULT)

    def to_json(self) -> dict:
        return {"key": self.key,
                "params": {k: (v.to_json() if isinstance(v, Msg) else v) for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> "Msg":
        params = {k: (cls.from_json(v) if isinstance(v, dict) and "key" in v and "params" in v else v)
                  for k, v in (doc.get("params") or {}).items()}
        return cls(str(doc["key"]), params)


def msg(key: str, /, **params: Any) -> Msg:
    return Msg(key, params)


def dumps(msgs: "list[Msg | str] | Msg | str | None") -> str | None:
    """Messages as stored beside their English text: a JSON list of {key, params}; plain
    strings (an exporter's or a library's own words) are kept as {"text": ...}."""
    if msgs is None:
        return None
    if isinstance(msgs, (Msg, str)):
        msgs = [msgs]
    items = [m.to_json() if isinstance(m, Msg) else {"text": str(m)} for m in msgs]
    return json.dumps(items, ensure_ascii=False, default=str) if items else None


def loads(stored: str | None) -> list[Msg | str]:
    if not stored:
        return []
    out: list[Msg | str] = []
    for item in json.loads(stored):
        out.append(Msg.from_json(item) if "key" in item else str(item.get("text", "")))
    return out


def english(msgs: "list[Msg | str] | Msg | str | None", sep: str = "; ") -> str | None:
    """The English text stored beside the keys (logs, CSV exports, old readers)."""
    if msgs is None:
        return None
    if isinstance(msgs, (Msg, str)):
        msgs = [msgs]
    return sep.join(str(m) for m in msgs) or None


def render(stored_json: str | None, text: str | None, lang: str = DEFAULT) -> str:
    """A stored message in `lang`: from its keys when the row has them, else (rows written
    before messages were stored as keys) from its English text through `message`."""
    if isinstance(stored_json, str) and stored_json:
        try:
            parts = loads(stored_json)
        except (ValueError, KeyError, TypeError, AttributeError):
            parts = []
        if parts:
            sep = "；" if normalise(lang) == "zh-CN" else "; "
            return sep.join(p.render(lang) if isinstance(p, Msg) else p for p in parts)
    return message(text, lang)
