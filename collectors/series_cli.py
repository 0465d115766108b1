"""`python -m collectors parse --series FILE|-`: every sample of exposition text as parsed.

One JSON object per line on stdout, in input order:
  {"name", "labels", "value", "timestamp_ms", "line"}   per sample kept; value is a number,
      "+Inf" or "-Inf", or null where a documented rule made it NULL (NaN and DCGM's blank
      sentinels, collectors/exposition.py); timestamp_ms is an int or null
  {"skipped": <line number>, "reason": "..."}            per line skipped (the English reason)
Exit 0 when it parsed, 1 when the input was not exposition text at all (the reason on
stderr), 2 on a usage or read error. No mapping, no device pivot: this is the sample-level
parser the scrape path agrees with (docs/parser.md).

Conformance checkers start it once per case, so it imports only what parsing needs (no
`config`, no pydantic); collectors/__main__.py hands `parse --series` here before its own
heavy imports.
"""

from __future__ import annotations

import json
import math
import sys

from collectors.exposition import NotExposition, parse_series

USAGE = "usage: python -m collectors parse --series FILE|-   (or: python -m collectors.series_cli FILE|-)"


def _value(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return "+Inf" if v > 0 else "-Inf"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    path = argv[0]
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    text = data.decode("utf-8", "replace")
    try:
        series, stats = parse_series(text, max_issues=sys.maxsize)
    except NotExposition as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    out: list[tuple[int, str]] = [(s.lineno, json.dumps(
        {"name": s.name, "labels": s.labels, "value": _value(s.value), "timestamp_ms": s.ts_ms,
         "line": s.lineno}, ensure_ascii=False)) for s in series]
    out += [(i.lineno, json.dumps({"skipped": i.lineno, "reason": i.reason}, ensure_ascii=False))
            for i in stats.issues]
    out.sort(key=lambda r: r[0])
    sys.stdout.write("".join(line + "\n" for _, line in out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
