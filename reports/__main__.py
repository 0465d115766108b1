"""The monthly report from the shell, for cron-minded operators:

    .venv/bin/python -m reports generate --month 2026-11 --out DIR [--lang en|zh-CN] [--format pdf|xlsx]
        [--archive]

Writes report-<month>-<lang>.<format> for each language and format (default: those of
`[reports]`) into DIR. It opens the database itself: read-only, or for writing with `--archive`
(the files also go to the archive as the next version, as the job and the page file them).
While the dashboard (or `collectors run`) owns the database no other process can open it; the
command then says so and how to make the report from the dashboard's Reports page instead.

Exit codes: 0 done, 2 a bad month or argument, 3 the database cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import config
import i18n


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m reports", description="The monthly report (PDF and XLSX).")
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate one month's report into a folder")
    g.add_argument("--month", required=True, help="YYYY-MM, a site-local calendar month that has ended")
    g.add_argument("--out", required=True, type=Path, help="the folder to write the files into")
    g.add_argument("--lang", action="append", choices=list(i18n.LANGUAGES), help="a language (repeatable)")
    g.add_argument("--format", action="append", choices=["pdf", "xlsx"], help="a format (repeatable)")
    g.add_argument("--archive", action="store_true",
                   help="also file them in the archive (opens the database for writing)")
    return ap.parse_args(argv)


def generate(args: argparse.Namespace) -> int:
    from queries.store import DatabaseOwned, DatabaseUnavailable, Store
    from reports import archive, data

    try:
        cfg = config.load()
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    now = datetime.now(timezone.utc)
    try:
        data.month_bounds(cfg, args.month, now)
    except data.ReportError as exc:
        print(f"reports: {exc}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"reports: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    path = cfg.db_path
    if not args.archive and not path.exists():
        print(f"reports: no database at {path}: nothing has been collected yet", file=sys.stderr)
        return 3
    try:
        store = Store(path, read_only=not args.archive, memory_limit=cfg.database.memory_limit, owner=cfg.owner)
    except DatabaseOwned as exc:
        print(f"reports: {exc}", file=sys.stderr)
        if exc.owner_kind == "dashboard":
            print(i18n.t("reports.cli.use_page", "en", month=args.month), file=sys.stderr)
        return 3
    except DatabaseUnavailable as exc:
        print(f"reports: {exc}", file=sys.stderr)
        return 3
    try:
        if args.archive:
            report, outputs, _ = archive.generate(store, cfg, args.month, trigger="cli", now=now, langs=args.lang,
                                                  formats=args.format)
        else:
            report, outputs = archive.produce(store, cfg, args.month, now=now, langs=args.lang, formats=args.format)
    finally:
        store.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for o in outputs:
        (args.out / o.filename).write_bytes(o.content)
        print(args.out / o.filename)
    if not report.charts:
        print(f"reports: {report.notes[0]}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
