"""Command line: `python -m collectors {parse,run,check-config}`.

parse FILE   read exporter text (FILE or - for stdin), print one JSON object per
             canonical device sample, then a summary on stderr. Exit 0 when it
             parsed, 1 when the input was not exposition text at all. --kind
             names the exporter (a kind that reads device text: its mapping table
             and vendor). With --series: every sample as parsed, before any
             mapping (collectors/series_cli.py; starts without the heavy imports).
run          headless collect-only mode: own the database and collect until
             interrupted (for sites that run the dashboard elsewhere or later).
import-meters FILE
             import facility meter readings (CSV) into the database; bad rows are
             rejected with their line numbers, good rows kept, re-import changes nothing.
check-config validate config/ and say what was found, or every problem at once.

Exit codes: 2 for a configuration or input problem, 3 when the database cannot
be opened (another process owns it, it is damaged, or the path cannot hold it);
the message says what to do.
"""

from __future__ import annotations

import sys


def _series(argv: list[str]) -> int:
    """`parse --series ...`: P's light parser CLI, handed the arguments without --series."""
    try:
        from collectors.series_cli import main as series_main
    except ImportError as exc:
        print(f"parse --series is not available in this build: {exc}", file=sys.stderr)
        return 2
    return series_main([a for a in argv if a != "--series"])


if __name__ == "__main__" and sys.argv[1:2] == ["parse"] and "--series" in sys.argv[2:]:
    # before the imports below: a conformance checker starts this once per case
    sys.exit(_series(sys.argv[2:]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any  # noqa: E402

import config  # noqa: E402
from collectors.attribution import Attributor  # noqa: E402
from collectors.exposition import CompiledMapping, NotExposition, parse_devices  # noqa: E402
from collectors.kinds import kinds  # noqa: E402
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES  # noqa: E402

# the kinds whose exporter text `parse` reads into device samples
PARSE_KINDS = tuple(name for name, kind in kinds().items() if kind.parses_text)
ATTRIBUTION_LABELS = ("namespace", "pod", "job", "job_user")
OUTPUT_KEYS = ("device_id", "host", "model", "gpu_index", "uuid", "pci_bus_id", "driver_version",
               "mig_profile", "mig_instance", "mig_parent")


def _read(path: str) -> str:
    """The file (or standard input) as text; bytes that are not UTF-8 become U+FFFD, whatever
    the locale (under C/POSIX, sys.stdin would keep them as lone surrogates)."""
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8-sig", errors="replace")
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        return fh.read()


def _write_json_line(rec: dict) -> None:
    """One JSON line on stdout, always valid UTF-8 (a lone surrogate becomes U+FFFD)."""
    line = json.dumps(rec, ensure_ascii=False, default=str) + "\n"
    sys.stdout.flush()
    sys.stdout.buffer.write(line.encode("utf-8", errors="replace"))


def cmd_parse(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    exporter = kinds()[args.kind]
    args.mapping = args.mapping or exporter.default_mappings[0]
    if args.mapping not in cfg.mappings or cfg.mappings[args.mapping].table != "device_samples":
        names = [k for k, m in cfg.mappings.items() if m.table == "device_samples"]
        print(f"unknown device mapping {args.mapping!r}; expected one of {names}", file=sys.stderr)
        return 2
    try:
        text = _read(args.file)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    mapping = CompiledMapping.from_config(cfg.mappings[args.mapping])
    try:
        batch = parse_devices(text, mapping, default_host=args.host)
    except NotExposition as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    attributor = Attributor(cfg)
    now = datetime.now(timezone.utc)
    for i, dev in enumerate(batch.ids):
        m: dict[str, Any] = batch.meta[i]
        rec: dict[str, Any] = {"device_id": dev}
        rec.update({k: m.get(k) for k in OUTPUT_KEYS[1:]})
        known = cfg.catalogue.lookup(m.get("model"))
        rec["vendor"] = known.vendor if known else exporter.vendor
        rec["catalogue_model"] = known.id if known else None
        for col in SAMPLE_MEASURES:
            values = batch.columns.get(col)
            rec[col] = values[i] if values is not None else None
        for col in SAMPLE_LABELS:
            rec[col] = m.get(col)
        # the configured attribution (leases need a time: the sample's own, else now)
        stamp = batch.ts_ms[i]
        at = datetime.fromtimestamp(stamp / 1000, timezone.utc) if stamp else now
        rec["tenant"] = attributor.tenant(dev, m.get("host"), at, *(m.get(c) for c in ATTRIBUTION_LABELS))
        rec["exporter_ts_ms"] = batch.ts_ms[i]
        _write_json_line(rec)
    sys.stdout.flush()
    s = batch.stats
    print(f"{args.file}: {len(batch)} device sample(s) from {s.samples} value line(s); "
          f"{s.lines} line(s) read, {s.comments} comment(s), {s.unmapped} sample line(s) not in the "
          f"'{args.mapping}' mapping, {s.blanks} blank value(s) stored as null, "
          f"{s.malformed} malformed line(s) skipped",
          file=sys.stderr)
    for issue in s.issues:
        print(f"  skipped {issue}", file=sys.stderr)
    if s.malformed > len(s.issues):
        print(f"  ... and {s.malformed - len(s.issues)} more", file=sys.stderr)
    note = s.implausible_note()
    if note:
        print(f"  {note}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from collectors.runtime import Runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config.load(args.config)
    runtime = Runtime(cfg, backfill=not args.no_backfill).start()    # DatabaseUnavailable: main() says it
    store, scheduler = runtime.store, runtime.scheduler
    assert store is not None and scheduler is not None       # start() made them
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"collecting from {len(runtime.targets)} target(s) into {store.path}; Ctrl-C to stop",
          file=sys.stderr)
    try:
        while not stop.wait(1.0):
            if args.cycles and scheduler.cycles >= args.cycles:
                break
    finally:
        runtime.stop()
        store.close()
    print(json.dumps(runtime.health(), default=str), file=sys.stderr)
    return 0


def cmd_import_meters(args: argparse.Namespace) -> int:
    from collectors.meter_csv import conflict_msg, parse_readings
    from queries.store import DatabaseOwned, Store

    cfg = config.load(args.config)
    try:
        with open(args.file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    parsed = parse_readings(data, cfg, source_file=args.file)
    if parsed.error:
        print(parsed.error, file=sys.stderr)
        return 2
    try:
        store = Store(cfg.db_path, memory_limit=cfg.database.memory_limit, owner=cfg.owner)
    except DatabaseOwned as exc:
        advice = {"dashboard": "\nWhile the dashboard runs, import the file on its Sources page instead.",
                  "collector": "\nThen run this import again."}.get(exc.owner_kind, "")
        print(f"{exc}{advice}", file=sys.stderr)
        return 3
    try:
        result = store.import_facility_readings(parsed.rows)
    finally:
        store.close()
    print(f"{args.file}: {len(parsed.rows) + len(parsed.rejected)} row(s): {len(result['inserted'])} imported, "
          f"{len(result['unchanged'])} already present, {len(result['conflicts'])} conflicting, "
          f"{len(parsed.rejected)} rejected")
    for r in parsed.rejected:
        print(f"  line {r.line}: rejected: {r.reason}", file=sys.stderr)
    for r in result["conflicts"]:
        print(f"  line {r['source_line']}: conflict: {conflict_msg(r)}", file=sys.stderr)
    return 1 if parsed.rejected or result["conflicts"] else 0


def cmd_check(args: argparse.Namespace) -> int:
    """The configuration, then the database file as far as opening it read-only tells (a file
    damaged past its header; a file another process owns is fine and is said so)."""
    from queries.store import DatabaseOwned, Store

    cfg = config.load(args.config)
    note = ""
    if cfg.db_path.exists():
        try:
            Store(cfg.db_path, read_only=True).close()     # DatabaseDamaged and others: main() says it
        except DatabaseOwned as exc:
            note = f"; the database is in use by {f'process {exc.pid}' if exc.pid else 'another process'}"
    print(f"{cfg.directory}: OK: {len(cfg.sites)} site(s), {len(cfg.clusters)} cluster(s), "
          f"{cfg.total_gpus()} GPU(s) described, {len(cfg.tenants)} tenant(s), "
          f"{sum(len(s.targets) for s in cfg.sources)} configured target(s)"
          + (" (none: the embedded simulator runs)" if cfg.simulated else "")
          + f"; owner {cfg.owner.site}/{cfg.owner.instance}" + note)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["parse"] and "--series" in argv[1:]:
        return _series(argv[1:])
    p = argparse.ArgumentParser(prog="python -m collectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"configuration directory (default: ${config.ENV_VAR} or config/)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("parse", help="parse exporter text and print canonical samples as JSON lines")
    pp.add_argument("file", help="file with exporter text, or - for standard input")
    pp.add_argument("--kind", choices=PARSE_KINDS, default="dcgm",
                    help="which exporter printed the text (default: dcgm)")
    pp.add_argument("--mapping", help="mapping table in config/mappings (default: the kind's own)")
    pp.add_argument("--host", help="host name to use when the text carries none")
    pr = sub.add_parser("run", help="headless collect-only mode (owns the database)")
    pr.add_argument("--no-backfill", action="store_true", help="do not back-fill simulated history")
    pr.add_argument("--cycles", type=int, default=0, help="stop after N collection cycles (0 = run until stopped)")
    pi = sub.add_parser("import-meters", help="import facility meter readings from CSV (see collectors/meter_csv.py)")
    pi.add_argument("file", help="CSV with columns site,meter,category,period_start,period_end,kwh")
    sub.add_parser("check-config", help="validate the configuration")
    args = p.parse_args(argv)
    from queries.store import DatabaseUnavailable

    try:
        return {"parse": cmd_parse, "run": cmd_run, "import-meters": cmd_import_meters,
                "check-config": cmd_check}[args.cmd](args)
    except config.ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
