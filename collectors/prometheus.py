"""Prometheus collector: PromQL through prometheus-api-client -> canonical device and facility rows.

For centres where only Prometheus can reach the exporters. The mapping tables
(config/mappings) are reused as they are: every field name is a metric name, so
one query per table, `{__name__=~"A|B|C"}`, reads every series of that table;
a table with `table = "facility_samples"` becomes facility rows. The query results go
through the series -> rows stage (collectors/rows.py) that exporter text feeds too, so a
GPU or meter read through Prometheus is the same row as one read from its exporter; this
module keeps what is Prometheus' own: the PromQL windows, cursors, scrape detection and
thinning.

Why raw samples and not instant or `query_range` values: both of those stamp a
value with the *evaluation* time and resample (a value repeats or is skipped
when the step differs from the scrape interval), so a back-filled row and a
live row of the same scrape would land twice in the store under different
times. Here every query is a range-vector selection, `{...}[<w>ms]` evaluated
at the window's end, which returns each series' raw samples with the time
Prometheus stored them under (ms). A row is stamped with that time, so every
delivery of one scrape is the same (device_id, ts) and the store keeps it once.

Delivery is incremental and in time order. Per target the collector remembers,
for each exporter Prometheus scrapes (job, instance, host), the newest sample it
has delivered (its cursor), and each `collect` delivers only what is newer, up
to the cycle's tick. A read starts at the oldest cursor, so a scrape Prometheus
committed after the previous read is still delivered, but never before what is
settled (read at least LATE_S after its time), so a silent exporter or a gap
with no data does not hold the window open. After an outage of Prometheus the
next collect continues where the last one stopped, in windows sized to a sample
budget (a long gap is caught up over a few cycles), so no interval Prometheus
still holds goes missing. `backfill` reads (since, until] the same way for a
restart, with `since` the newest stored sample; `resume_from` lets the
scheduler's collects do that catch-up instead.

Because samples reach the shared EventTracker in time order, energy deltas and
XID/thermal/lost events are computed exactly as DcgmCollector computes them:
each exporter's scrape is one `observe` call, a GPU missing from its exporter's
scrape is "lost", an exporter Prometheus could not scrape is simply absent (not
every GPU lost). A device's `devices.target` is `<prometheus url>#<job>/<instance>`,
the exporter behind Prometheus that reported it.

An exporter that stamps its series itself (Huawei's npu-exporter: each chip at the time it
read it) reaches Prometheus, which keeps such stamps by default, as a run of instants well
under a second apart; `_scrapes` makes each run one scrape again, its rows at their own times,
and holds back a run a read window may have cut until the next read. Such stamps can be older
than the scrape by the exporter's cache age; LATE_S must cover that age plus Prometheus's
scrape interval for a live read to see them (a back-fill reads them whatever their age).

`step_s` thins the delivered samples to at most one per exporter per step (the
collection interval by default), so a Prometheus scraping every 5 s does not
triple the store; 0 keeps every raw sample.

Every HTTP call has a timeout (the source's `timeout_s`) and no client-side
retries (the scheduler retries); Prometheus also gets it as its query timeout.

A central Prometheus covers many clusters and sites: the source's `cluster_label` and
`site_label` name the series labels that carry them, and a row takes its cluster and site
from its series (the target's own where the label is absent; a value the config does not
list is kept and noted). `HistoryImport` imports `history_days` of history on a source's first
start as a job (docs/prometheus-import.md); its windows are read as arrays
(`_process_columnar`), the same rows as the per-sample `_process` at a few times its speed.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Generator, Iterator, Protocol

import numpy as np
import pyarrow as pa

from collectors.batch import ECC_COLUMNS, EVENT_SCHEMA, SAMPLE_SCHEMA, BatchBuilder, EventTracker, Scrape
from collectors.exposition import _TS_MAX_MS, _TS_MIN_MS, CompiledMapping, DeviceBatch, ParseStats
from collectors.kinds import vendor_of_mapping
from collectors.kinds.base import Collector
from collectors.rows import (FACILITY_SCHEMA, DevicePivot, FacilityMapping, FacilityPivot, Rows, blank_mask, nullable,
                             parse_matrix, query_series, screen_columns, series_text)
from collectors.targets import ScrapeError, Target
from config import Config, Source
from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES
from i18n import Msg, msg


FIRST_LOOKBACK_S = 120.0        # a target's first collect, with nothing to resume from, reads this far back
LATE_S = 20.0                   # a scrape is committed within this long of its timestamp (scrape_timeout 10 s)
SAMPLE_BUDGET = 250_000         # samples per query, sizes the windows of a catch-up or back-fill
MAX_WINDOW_S = 3600.0
MIN_WINDOW_S = 1.0
UNKNOWN_RATE_WINDOW_S = 300.0   # window while the sample rate of a target is not known yet
MAX_CHUNKS_PER_COLLECT = 4      # a collect catching up reads at most this many windows
# Two sample times of one exporter closer than this are not two scrapes (Prometheus scrapes
# no faster than every second): the exporter stamps its series itself, each with its own time
OWN_STAMPS_MS = 1000
_TOO_MANY_SAMPLES = "too many samples"
_QUERY_SHOWN = 200              # characters of a query quoted in an error


class PrometheusClient(Protocol):
    """What the collector needs of prometheus_api_client.PrometheusConnect."""

    def custom_query(self, query: str, params: dict | None = None) -> list[dict]: ...


ClientFactory = Callable[[str, float], PrometheusClient]


def default_client(url: str, timeout: float) -> PrometheusClient:
    """PrometheusConnect with `timeout` on every request and no retries of its own.

    prometheus-api-client 0.7 takes `timeout` in the constructor and passes it to
    every requests call; its default Retry (3 tries with backoff) would turn a
    refused connection into seconds of waiting, so retries are off here."""
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    return PrometheusConnect(url=url.rstrip("/"), timeout=timeout, retry=Retry(total=0, raise_on_status=False))


class BackfillIncomplete(ScrapeError):
    """A back-fill stopped at a failing window; `scrapes` holds what was read before it (store them)."""

    def __init__(self, message: Msg | str, scrapes: list[Scrape]):
        super().__init__(message)
        self.scrapes = scrapes


# ---------------------------------------------------------------- tables

@dataclass
class _DeviceTable:
    name: str
    mapping: CompiledMapping
    builder: BatchBuilder


@dataclass
class _FacilityTable:
    name: str
    mapping: FacilityMapping


@dataclass
class _Progress:
    """What one target has delivered (see module docstring)."""

    floor_ms: int | None = None           # samples at or before this are not delivered for an exporter without cursor
    settled_ms: int | None = None         # everything at or before this has been read after Prometheus committed it
    cursors: dict[tuple, int] = field(default_factory=dict)   # (table, group) -> newest delivered sample
    rate: float | None = None             # samples per second of data, sizes windows
    max_window_ms: int | None = None      # the largest window Prometheus accepted after refusing a bigger one
    grow: int = 1                         # while no sample was seen: windows double after each empty one
    own_stamps: set[tuple] = field(default_factory=set)       # exporters that stamp their series themselves
    lock: threading.Lock = field(default_factory=threading.Lock)


def _scrapes(rows: dict[tuple, dict[str, list]], lo: int, hi: int, own: set[tuple],
             hold: bool = True) -> tuple[dict[tuple, dict[str, list]], int | None]:
    """One window's instants, (group, t) -> device -> [meta, columns, t] (DevicePivot.instants),
    as the exporters' scrapes:
    (group, T) -> device -> [meta, columns, the device's own time], T the scrape's newest time.

    An exporter whose series carry their own times (Huawei's npu-exporter stamps each chip, and
    each metric family, with the time it read it) reaches Prometheus, which honours the stamps by
    default, as a run of instants less than OWN_STAMPS_MS apart. Such a run is one scrape; it
    ends at a gap of OWN_STAMPS_MS or where a series it already holds comes again (the next
    refresh of the exporter's cache). Each device row keeps the earliest time it was read at.
    `own` remembers the exporters seen doing this. With `hold`, their last scrape in the window
    is held back when it ends within OWN_STAMPS_MS of `hi` (it may go on after it) and does not
    begin at the window's start; the earliest time held back is returned, the next read must
    start before it."""
    times: dict[tuple, list[int]] = {}
    for group, t in rows:
        times.setdefault(group, []).append(t)
    out: dict[tuple, dict[str, list]] = {}
    held: int | None = None

    def series(group, t) -> set:
        return {(k, c) for k, r in rows[(group, t)].items() for c in (r[1] or ("",))}

    for group, ts in times.items():
        ts.sort()
        runs, cur, seen = [], [ts[0]], None
        for t in ts[1:]:
            if t - cur[-1] < OWN_STAMPS_MS:
                if seen is None:
                    seen = series(group, cur[0])
                new = series(group, t)
                if not new & seen:
                    cur.append(t)
                    seen |= new
                    continue
            runs.append(cur)
            cur, seen = [t], None
        runs.append(cur)
        if any(len(r) > 1 for r in runs):
            own.add(group)
        if hold and group in own and hi - runs[-1][-1] < OWN_STAMPS_MS and runs[-1][0] - 1 > lo:
            held = runs[-1][0] if held is None else min(held, runs[-1][0])
            runs.pop()
        for run in runs:
            merged: dict[str, list] = {}
            for t in run:
                for key, (meta, cols, _) in rows[(group, t)].items():
                    m = merged.get(key)
                    if m is None:
                        merged[key] = [meta, dict(cols), t]
                    else:
                        m[1].update(cols)
            out[(group, run[-1])] = merged
    return out, held


def _ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("timestamps given to the Prometheus collector must be timezone-aware")
    return round(ts.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _host_of(instance: str) -> str | None:
    """The host part of an `instance` label: `10.0.0.5:9400` -> `10.0.0.5`, `[::1]:9400` -> `::1`."""
    if not instance:
        return None
    if instance.startswith("["):
        end = instance.find("]")
        return instance[1:end] if end > 0 else instance
    head, sep, port = instance.rpartition(":")
    return head if sep and port.isdigit() and head else instance


def _api_error(exc: Exception) -> tuple[int | None, str, bool]:
    """(HTTP status, Prometheus' own error text, whether Prometheus said it) out of a
    PrometheusApiClientException ("HTTP Status Code 400 (b'{...}')")."""
    text = str(exc)
    m = re.match(r"HTTP Status Code (\d+) \((.*)\)\Z", text, re.DOTALL)
    if m is None:
        return None, text, False
    code, body = int(m.group(1)), m.group(2)
    try:
        raw = ast.literal_eval(body)
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        pass
    try:
        doc = json.loads(body)
        return code, f"{doc.get('errorType', 'error')}: {doc.get('error', '')}", True
    except (ValueError, AttributeError):
        return code, " ".join(body.split())[:200] or "(empty body)", False


def _reason(exc: Exception, timeout: float) -> Msg | str:
    """Why a request failed, as a message key where we know the words (else the library's own)."""
    text = str(exc)
    if "timed out" in text or "TimeoutError" in text:      # with retries off urllib3 wraps timeouts too
        return msg("msg.timeout", s=f"{timeout:g}")
    if "Connection refused" in text:
        return msg("msg.conn_refused")
    if "Name or service not known" in text or "Failed to resolve" in text or "nodename nor servname" in text:
        return msg("msg.host_not_found")
    if "Connection reset" in text:
        return msg("msg.conn_reset")
    if "RemoteDisconnected" in text or "closed connection without response" in text:
        return msg("msg.closed_before")
    return text[-200:]


class Matrix(list):
    """A range-vector answer read as arrays (collectors.rows.parse_matrix): (labels with __name__,
    times in ms, values) per series."""


def _raw_query(client, query: str, params: dict, timeout: float) -> list:
    """PrometheusConnect.custom_query's request, its body read by `parse_matrix` (a Matrix), or
    by json where the body is laid out otherwise; errors raised as the library raises them."""
    from prometheus_api_client.exceptions import PrometheusApiClientException

    session = client._session
    response = session.request(method="GET", url=f"{client.url}/api/v1/query", params={"query": query, **params},
                               verify=session.verify, headers=client.headers, auth=client.auth, cert=session.cert,
                               timeout=timeout)
    if response.status_code != 200:
        raise PrometheusApiClientException(f"HTTP Status Code {response.status_code} ({response.content!r})")
    parsed = parse_matrix(response.content)
    return response.json()["data"]["result"] if parsed is None else Matrix(parsed)


def _settle(ahead: tuple[int, Future] | None) -> None:
    """Wait for a window fetched ahead that is not wanted (its error too: the window is read again)."""
    if ahead is not None:
        try:
            ahead[1].result()
        except Exception:  # noqa: BLE001 - the window it read is read again, and fails again there
            pass


def _as_json(result: list) -> list:
    """A query's result as the JSON API gives it (a Matrix turned back, for the generic path)."""
    if not isinstance(result, Matrix):
        return result
    return [{"metric": labels, "values": [[t / 1000, repr(v) if v == v else "NaN"] for t, v in
                                          zip(ts.tolist(), vals.tolist())]} for labels, ts, vals in result]


class _Ids:
    """Row i's device id, without an array of them (screen_columns names one per column)."""

    def __init__(self, keys: list[str], rows: np.ndarray):
        self.keys, self.rows = keys, rows

    def __getitem__(self, i: int) -> str:
        return self.keys[self.rows[i]]


# ---------------------------------------------------------------- collector

class PrometheusCollector(Collector):
    """See module docstring. `collect(target, ts)`: target.url is the Prometheus base URL."""

    kind = "prometheus"

    def __init__(self, cfg: Config, source: Source, *, client_factory: ClientFactory | None = None,
                 tracker: EventTracker | None = None, step_s: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.source = source
        self.timeout = float(source.timeout_s or cfg.collection.timeout_s)
        self.step_s = cfg.collection.interval_s if step_s is None else float(step_s)
        self.host_from_label = source.host_from == "label"
        self.cluster_label: str | None = getattr(source.options, "cluster_label", None)
        self.site_label: str | None = getattr(source.options, "site_label", None)
        self.history_days: int = getattr(source.options, "history_days", 0)
        self.known_clusters = frozenset(c.id for c in cfg.clusters)
        self.known_sites = frozenset(s.id for s in cfg.sites)
        self.cfg = cfg
        self.sample_budget = SAMPLE_BUDGET      # samples per query: sizes the windows of a catch-up
        # back-fill windows read as arrays (`_process_columnar`); the history import sets it
        self.columnar = False
        self._cpivots: dict[str, DevicePivot] = {}
        self.max_window_s = MAX_WINDOW_S
        self.client_factory = client_factory or default_client
        self.tracker = tracker or EventTracker()
        self.clock = clock
        self.device_tables: list[_DeviceTable] = []
        self.facility_tables: list[_FacilityTable] = []
        self.queries: dict[str, str] = {}          # table -> selector
        for name in source.mapping_names:
            m = cfg.mappings[name]
            if m.table == "facility_samples":
                fm = FacilityMapping.from_config(m)
                fields = list(fm.fields)
                self.facility_tables.append(_FacilityTable(name, fm))
            else:
                cm = CompiledMapping.from_config(m)
                fields = list(cm.numeric) + list(cm.selected)   # string-valued fields cannot live in Prometheus
                builder = BatchBuilder(cfg, vendor_of_mapping(name))
                self.device_tables.append(_DeviceTable(name, cm, builder))
            if fields:
                self.queries[name] = '{__name__=~"' + "|".join(fields) + '"}'
        self._clients: dict[str, PrometheusClient] = {}
        self._progress: dict[str, _Progress] = {}
        self._targets: dict[tuple, Target] = {}
        self._guard = threading.Lock()

    # ---- public API ------------------------------------------------

    def collect(self, target: Target, ts: datetime) -> Scrape:
        """Every sample Prometheus holds for this target newer than what was delivered, up to `ts`.

        Raises ScrapeError when Prometheus is unreachable or rejects a query. While
        catching up after an outage at most MAX_CHUNKS_PER_COLLECT windows are read;
        if a later window fails, what was read before it is returned."""
        p = self._state(target.url)
        hi = _ms(ts)
        acc = Rows()
        with p.lock:
            lo = self._lower(p, hi)
            chunks = 0
            while lo < hi and chunks < MAX_CHUNKS_PER_COLLECT:
                end = min(hi, lo + self._window_ms(p))
                try:
                    results, end = self._fetch(target.url, p, lo, end)
                except ScrapeError:
                    if chunks == 0:
                        raise
                    break
                held = self._process(target, p, results, p.floor_ms if p.floor_ms is not None else lo, lo, end, acc)
                if held is not None and p.settled_ms is not None:
                    p.settled_ms = min(p.settled_ms, held - 1)      # so the next read starts before it
                if held is not None and end == hi:
                    break                   # the rest of that scrape comes with the next collect
                lo = end if held is None else held - 1
                chunks += 1
        return acc.scrape(target, ts)

    def backfill(self, target: Target, since: datetime, until: datetime, step_s: float | None = None) -> list[Scrape]:
        """Samples in (since, until] not delivered yet, one Scrape per window, in time order.

        Raises BackfillIncomplete (a ScrapeError carrying the Scrapes read so far) if
        a window fails after others succeeded, ScrapeError if the first one fails."""
        out: list[Scrape] = []
        try:
            for s in self.iter_backfill(target, since, until, step_s):
                out.append(s)
        except ScrapeError as exc:
            if not out:
                raise
            raise BackfillIncomplete(msg("msg.backfill_stopped", n=len(out), error=exc.msg), out) from None
        return out

    def iter_backfill(self, target: Target, since: datetime, until: datetime,
                      step_s: float | None = None) -> Iterator[Scrape]:
        """`backfill` as a generator: store each Scrape as it comes."""
        for scrape, _done in self.iter_history(target, since, until, step_s):
            yield scrape

    def iter_history(self, target: Target, since: datetime, until: datetime,
                     step_s: float | None = None) -> Generator[tuple[Scrape, datetime], None, None]:
        """The windows of a back-fill of (since, until], each with the time up to which everything
        is delivered once it is stored (a resume point: a scrape held back for the next window
        lies after it)."""
        lo, hi = _ms(since), _ms(until)
        if lo >= hi:
            return
        p = self._state(target.url)
        # array windows: the next window is fetched while this one is turned into rows (Prometheus
        # and this process work at the same time, one core each)
        pool = ThreadPoolExecutor(1, thread_name_prefix="prom-ahead") if self.columnar else None
        ahead: tuple[int, Future] | None = None
        try:
            while lo < hi:
                acc = Rows()
                with p.lock:        # collects of the same target interleave between windows, never inside one
                    if ahead is not None and ahead[0] == lo:
                        results, end = ahead[1].result()
                    else:
                        _settle(ahead)
                        end = min(hi, lo + self._window_ms(p))
                        results, end = self._fetch(target.url, p, lo, end)
                    ahead = None
                    if pool is not None and end < hi:
                        ahead = (end, pool.submit(self._fetch, target.url, p, end,
                                                  min(hi, end + self._window_ms(p))))
                    scrape = None
                    if results and all(isinstance(r, Matrix) for r in results.values()):
                        scrape = self._process_columnar(target, p, results, _ms(since), lo, end, step_s=step_s)
                    held = None
                    if scrape is None:
                        # a scrape cut by a window's end is read again by the next window; the last
                        # window holds nothing back (no later read of this back-fill would deliver it)
                        held = self._process(target, p, {k: _as_json(r) for k, r in results.items()},
                                             _ms(since), lo, end, acc, step_s=step_s, hold=end < hi)
                        scrape = acc.scrape(target, _dt(end))
                    del results
                lo = end if held is None else held - 1
                yield scrape, _dt(lo)
        finally:
            _settle(ahead)
            if pool is not None:
                pool.shutdown(wait=True)

    def resume_from(self, target: Target, since: datetime) -> None:
        """Let the next collects deliver everything after `since` (the newest stored sample) first."""
        p = self._state(target.url)
        with p.lock:
            if not p.cursors:
                p.floor_ms = _ms(since)

    def close(self) -> None:
        with self._guard:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            close = getattr(c, "close", None)
            if close is not None:
                close()

    # ---- state --------------------------------------------------------

    def _state(self, url: str) -> _Progress:
        with self._guard:
            p = self._progress.get(url)
            if p is None:
                p = self._progress[url] = _Progress()
            return p

    def _client(self, url: str) -> PrometheusClient:
        with self._guard:
            c = self._clients.get(url)
            if c is None:
                c = self._clients[url] = self.client_factory(url, self.timeout)
            return c

    def _lower(self, p: _Progress, hi: int) -> int:
        """Where the next read starts: the oldest cursor (a scrape committed after the last read is
        still fetched), but never before what is settled (an exporter gone silent, or a gap that
        held no data, does not hold the window open)."""
        if not p.cursors and p.floor_ms is None:
            p.floor_ms = hi - int(FIRST_LOOKBACK_S * 1000)
            return p.floor_ms
        candidates = list(p.cursors.values())
        if p.floor_ms is not None:
            candidates.append(p.floor_ms)
        lower = min(candidates)
        return lower if p.settled_ms is None else max(lower, p.settled_ms)

    def _window_ms(self, p: _Progress) -> int:
        if p.rate is None or p.rate <= 0:
            # a back-fill starting before Prometheus' oldest sample (an import of more days than
            # it keeps) crosses the empty stretch in a few doubling windows
            w = min(self.max_window_s, UNKNOWN_RATE_WINDOW_S * p.grow)
        else:
            w = min(self.max_window_s, max(MIN_WINDOW_S, self.sample_budget / p.rate))
        return int(w * 1000) if p.max_window_ms is None else min(int(w * 1000), p.max_window_ms)

    # ---- queries --------------------------------------------------------

    def _query(self, url: str, query: str, at_ms: int) -> list:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        params = {"time": f"{at_ms / 1000:.3f}", "timeout": f"{self.timeout:g}"}
        shown = query if len(query) <= _QUERY_SHOWN else query[:_QUERY_SHOWN] + "..."
        try:
            client = self._client(url)
            if self.columnar and getattr(client, "_session", None) is not None:
                result = _raw_query(client, query, params, self.timeout)
            else:
                result = client.custom_query(query, params=params)
        except requests.exceptions.Timeout:
            raise ScrapeError(msg("msg.prom_unreachable", url=url,
                                  reason=msg("msg.timeout", s=f"{self.timeout:g}"))) from None
        except requests.exceptions.RequestException as exc:
            raise ScrapeError(msg("msg.prom_unreachable", url=url, reason=_reason(exc, self.timeout))) from None
        except PrometheusApiClientException as exc:
            code, detail, from_prometheus = _api_error(exc)
            if not from_prometheus and code is not None and code >= 500:
                # a proxy's 502/504, or Prometheus still starting (503): not an answer to the query
                raise ScrapeError(msg("msg.prom_unreachable", url=url,
                                      reason=msg("msg.prom_http", code=code, detail=detail))) from None
            raise ScrapeError(msg("msg.prom_query_failed", url=url, query=shown, detail=detail if code is None
                                  else msg("msg.prom_http", code=code, detail=detail))) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ScrapeError(msg("msg.prom_not_json", url=url, query=shown,
                                  detail=f"{type(exc).__name__}: {str(exc)[:100]}")) from None
        if not isinstance(result, list):
            raise ScrapeError(msg("msg.prom_not_list", url=url, query=shown, kind=type(result).__name__))
        return result

    def _fetch(self, url: str, p: _Progress, lo: int, hi: int) -> tuple[dict[str, list[dict]], int]:
        """Every table's raw samples in (lo, hi]; a window Prometheus finds too big is halved,
        and later windows stay within the size that worked.

        Returns the results and the window's end (earlier than `hi` after halving)."""
        halved = False
        while True:
            read_at = int(self.clock() * 1000)
            try:
                out = {name: self._query(url, f"{sel}[{hi - lo}ms]", hi) for name, sel in self.queries.items()}
            except ScrapeError as exc:
                if _TOO_MANY_SAMPLES in str(exc) and hi - lo > MIN_WINDOW_S * 1000:
                    hi = lo + (hi - lo) // 2
                    halved = True
                    continue
                raise
            if halved:
                p.max_window_ms = hi - lo
            settled = min(hi, read_at - int(LATE_S * 1000))
            p.settled_ms = settled if p.settled_ms is None else max(p.settled_ms, settled)
            n = sum(len(s[1]) if isinstance(res, Matrix) else len(s.get("values") or ())
                    for res in out.values() for s in res)
            if n:
                p.rate = n / max((hi - lo) / 1000, 1e-3)
            elif p.rate is None:
                p.grow = min(p.grow * 2, 1 << 12)
            return out, hi

    # ---- series -> rows --------------------------------------------------------

    def _group_target(self, target: Target, kind: str, group: tuple) -> Target:
        """A stand-in target per exporter: the tracker's presence and devices.target are per
        exporter. `group` is (job, instance, cluster, site[, host]) (see `_process`)."""
        key = (target, kind, group)
        t = self._targets.get(key)
        if t is None:
            job, instance, cluster, site = group[:4]
            url = f"{target.url}#{job}/{instance}"
            if kind == "tracker":
                url += f"/{group[4] or ''}"
            t = self._targets[key] = Target(url=url, source=target.source, kind=target.kind, site=site,
                                            cluster=cluster, host=target.host)
        return t

    def _placed(self, target: Target, labels: dict[str, str], exporter: tuple[str, str],
                unknown: set[tuple[str, str]]) -> tuple[str, str, str | None, str | None]:
        """(job, instance, cluster, site) of a series: its exporter, and the cluster and site its
        `cluster_label` / `site_label` name (the target's own without them). A cluster or site
        the config does not list is kept as the label says and noted in `unknown`."""
        cluster = labels.get(self.cluster_label) if self.cluster_label else None
        site = labels.get(self.site_label) if self.site_label else None
        if cluster and cluster != target.cluster and cluster not in self.known_clusters:
            unknown.add(("cluster", cluster))
        if site and site != target.site and site not in self.known_sites:
            unknown.add(("site", site))
        return exporter[0], exporter[1], cluster or target.cluster, site or target.site

    def _select(self, p: _Progress, table: str, keys, floor: int, step_s: float) -> list[tuple[tuple, int]]:
        """The (group, time) instants to deliver, oldest first; moves the cursors."""
        step_ms = step_s * 1000
        slack = min(step_ms * 0.1, 1000.0)
        kept = []
        for group, t in sorted(keys, key=lambda k: k[1]):
            ck = (table, group)
            last = p.cursors.get(ck)
            # an exporter with a cursor gets everything after it (a scrape Prometheus committed
            # late is still delivered); one without gets what is newer than the floor
            if t <= (floor if last is None else last):
                continue
            if last is not None and step_ms > 0 and t - last < step_ms - slack:
                continue
            p.cursors[ck] = t
            kept.append((group, t))
        return kept

    def _process(self, target: Target, p: _Progress, results: dict[str, list[dict]], floor: int, lo: int, hi: int,
                 acc: Rows, *, step_s: float | None = None, hold: bool = True) -> int | None:
        """One window (lo, hi]'s results through the series -> rows stage into acc, feeding the
        tracker in time order.

        Returns the earliest time of a scrape held back because the window may have cut it
        (see `_scrapes`), or None; the floor is kept before it, and the caller reads from
        before it again (a collect also keeps `settled` before it)."""
        t0 = time.perf_counter()
        step = self.step_s if step_s is None else step_s
        instants: list[tuple[int, _DeviceTable, DevicePivot, tuple, dict[str, list]]] = []
        held: int | None = None
        hosts: dict[str, str | None] = {}
        unknown: set[tuple[str, str]] = set()
        placed = self._placed
        for dt in self.device_tables:
            pivot = DevicePivot(dt.mapping, acc.stats, host_from_label=self.host_from_label, by_time=True)
            for name, labels, values, exporter in query_series(results.get(dt.name, ())):
                if exporter[1] not in hosts:
                    hosts[exporter[1]] = _host_of(exporter[1])
                pivot.feed(name, labels, values, default_host=hosts[exporter[1]],
                           exporter=placed(target, labels, exporter, unknown), raw=True)
            rows, h = _scrapes(pivot.instants, lo, hi, p.own_stamps, hold)
            if h is not None:
                held = h if held is None else min(held, h)
            for group, t in self._select(p, dt.name, rows.keys(), floor, step):
                instants.append((t, dt, pivot, group, rows[(group, t)]))
        for ft in self.facility_tables:
            fpivot = FacilityPivot(ft.mapping, acc.stats, site=target.site, source=target.source, by_time=True)
            for name, labels, values, exporter in query_series(results.get(ft.name, ())):
                fpivot.site = placed(target, labels, exporter, unknown)[3] or target.site
                fpivot.feed(name, labels, values, exporter=exporter, raw=True)
            for group, t in self._select(p, ft.name, fpivot.instants.keys(), floor, step):
                acc.facility.extend(fpivot.rows(fpivot.instants[(group, t)], _dt(t)))
        instants.sort(key=lambda x: x[0])
        own = (target.cluster, target.site)
        for t, dt, pivot, group, devs in instants:        # each exporter's scrape through the tracker, in time order
            place = (group[2], group[3])
            acc.add_devices(dt.name, dt.builder, pivot.batch(devs),
                            self._group_target(target, "devices", group[:4]).url,
                            self.tracker, self._group_target(target, "tracker", group), _dt(t),
                            place=None if place == own else place)
        for what, value in sorted(unknown):
            note = (msg("msg.prom.unknown_cluster", value=value, label=self.cluster_label) if what == "cluster"
                    else msg("msg.prom.unknown_site", value=value, label=self.site_label))
            if note not in acc.notes:
                acc.notes.append(note)
        done = hi if held is None else held - 1
        p.floor_ms = done if p.floor_ms is None else max(p.floor_ms, done)
        acc.parse_s += time.perf_counter() - t0
        return held

    # ---- series -> rows, as arrays (the history import) ------------------------------

    def _process_columnar(self, target: Target, p: _Progress, results: dict[str, list], floor: int, lo: int,
                          hi: int, *, step_s: float | None = None) -> Scrape | None:
        """One back-fill window (lo, hi] read as arrays into a Scrape: what `_process` and
        `Rows.scrape` make of it, row for row (tests/test_prom_import.py compares the two),
        with numpy doing per sample what they do in Python.

        Per series, the identity, column and place are resolved once (the same DevicePivot
        rules); the samples become (device, time) rows by sorting, not by dicts. Thinning and
        cursors are `_select` per exporter instant. The event tracker sees, in time order, every
        instant where something it follows may change (an exporter's first instant in the
        window, a device set that differs from the exporter's previous instant, an XID, throttle,
        health or ECC value that differs from the device's previous one); at the other instants
        it would change nothing. Energy deltas are per device differences with the tracker's
        last counter first.

        Returns None, before moving any cursor, where the window needs the per-sample path: an
        exporter stamping its own series (instants under OWN_STAMPS_MS apart), two label sets
        of one device at one time, a time a row cannot carry."""
        t0 = time.perf_counter()
        step = self.step_s if step_s is None else step_s
        stats = ParseStats()
        unknown: set[tuple[str, str]] = set()
        tables = []
        for dt in self.device_tables:
            prep = self._columns(target, dt, results.get(dt.name, Matrix()), stats, unknown)
            if prep is None:
                return None
            tables.append((dt, prep))
        fac_rows: list[dict] = []
        for ft in self.facility_tables:
            fpivot = FacilityPivot(ft.mapping, stats, site=target.site, source=target.source, by_time=True)
            for labels, ts, vals in results.get(ft.name, Matrix()):
                labels = dict(labels)
                name = labels.pop("__name__", "")
                exporter = (labels.get("job", ""), labels.get("instance", ""))
                fpivot.site = self._placed(target, labels, exporter, unknown)[3] or target.site
                fpivot.feed(name, labels, list(zip(ts.tolist(), vals.tolist())), exporter=exporter)
            for group, t in self._select(p, ft.name, fpivot.instants.keys(), floor, step):
                fac_rows.extend(fpivot.rows(fpivot.instants[(group, t)], _dt(t)))
        tick = _dt(hi)
        samples, devices, events = [], [], []
        for dt, prep in tables:
            if prep:
                s, d, e = self._table_rows(target, p, dt, prep, floor, step, stats, tick)
                samples.append(s)
                devices.append(d)
                events.extend(e)
        p.floor_ms = hi if p.floor_ms is None else max(p.floor_ms, hi)
        scrape = Scrape.parsed(target, tick, stats)
        for what, value in sorted(unknown):
            scrape.notes.append(msg("msg.prom.unknown_cluster", value=value, label=self.cluster_label)
                                if what == "cluster" else msg("msg.prom.unknown_site", value=value,
                                                              label=self.site_label))
        samples = [t for t in samples if t is not None and t.num_rows]
        if samples:
            scrape.samples = samples[0] if len(samples) == 1 else pa.concat_tables(samples)
            scrape.devices = pa.concat_tables([d for d in devices if d is not None])
        if fac_rows:
            scrape.facility = pa.Table.from_pylist(fac_rows, schema=FACILITY_SCHEMA)
        if events:
            scrape.events = pa.Table.from_pylist(events, schema=EVENT_SCHEMA)
        scrape.rows = (scrape.samples.num_rows if scrape.samples is not None else 0) + len(fac_rows)
        scrape.parse_s = time.perf_counter() - t0
        return scrape

    def _columns(self, target: Target, dt: _DeviceTable, series: list, stats: ParseStats,
                 unknown: set[tuple[str, str]]) -> dict | None:
        """A device table's series as long arrays and rows: see `_process_columnar`."""
        pv = self._cpivots.get(dt.name)
        if pv is None:
            pv = self._cpivots[dt.name] = DevicePivot(dt.mapping, stats, host_from_label=self.host_from_label,
                                                      by_time=True)
        pv.stats = stats
        columns = list(dict.fromkeys(c for c, _ in dt.mapping.numeric.values()))
        columns += [c for sel in dt.mapping.selected.values() for c, _ in sel[2].values() if c not in columns]
        cidx = {c: i for i, c in enumerate(columns)}
        idents: dict[int, int] = {}
        ident_list: list[tuple] = []
        parts: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        hosts: dict[str, str | None] = {}
        for labels, ts, vals in series:
            labels = dict(labels)
            name = labels.pop("__name__", "")
            tc = pv.column(name, labels)
            if tc is None:
                stats.unmapped += len(ts)
                continue
            exporter = (labels.get("job", ""), labels.get("instance", ""))
            if exporter[1] not in hosts:
                hosts[exporter[1]] = _host_of(exporter[1])
            ident = pv._identity(labels, hosts[exporter[1]], self._placed(target, labels, exporter, unknown))
            if isinstance(ident, Msg):
                stats.add_issue(0, ident, series_text(name, labels))
                continue
            if len(ts) and (ts.min() < _TS_MIN_MS or ts.max() > _TS_MAX_MS):
                return None
            i = idents.get(id(ident))
            if i is None:
                i = idents[id(ident)] = len(ident_list)
                ident_list.append(ident)
            col, scale = tc
            blank = blank_mask(vals)
            stats.blanks += int(blank.sum())
            stats.samples += len(ts)
            v = vals * scale if scale != 1.0 else vals.copy()
            v[blank] = np.nan
            parts.append((i, cidx[col], ts, v))
        if not parts:
            return {}
        D = np.concatenate([np.full(len(ts), i, np.int64) for i, _, ts, _ in parts])
        C = np.concatenate([np.full(len(ts), c, np.int64) for _, c, ts, _ in parts])
        T = np.concatenate([ts for _, _, ts, _ in parts])
        V = np.concatenate([v for _, _, _, v in parts])
        tu, tinv = np.unique(T, return_inverse=True)
        nt = len(tu)
        rows, rinv = np.unique(D * nt + tinv, return_inverse=True)
        r_ident, r_tpos = rows // nt, rows % nt
        keys: dict[str, int] = {}
        key_of_ident = np.array([keys.setdefault(ident[1], len(keys)) for ident in ident_list], np.int64)
        r_key = key_of_ident[r_ident]
        if len(np.unique(r_key * nt + r_tpos)) != len(rows):
            return None                     # one device under two label sets at one time
        groups: dict[tuple, int] = {}
        group_of_ident = np.array([groups.setdefault(ident[0], len(groups)) for ident in ident_list], np.int64)
        r_group = group_of_ident[r_ident]
        inst = np.unique(r_group * nt + r_tpos)
        ig, it = inst // nt, tu[inst % nt]
        if ((ig[1:] == ig[:-1]) & (np.diff(it) < OWN_STAMPS_MS)).any():
            return None                     # an exporter stamping its series itself
        group_list = list(groups)
        if any(g in self._state_own(target) for g in group_list):
            return None
        wide = {c: np.full(len(rows), np.nan) for c in columns}
        for c, i in cidx.items():
            m = C == i
            if m.any():
                wide[c][rinv[m]] = V[m]
        return {"columns": wide, "r_ident": r_ident, "r_key": r_key, "r_group": r_group, "r_t": tu[r_tpos],
                "idents": ident_list, "keys": list(keys), "groups": group_list, "nt": nt}

    def _state_own(self, target: Target) -> set[tuple]:
        return self._state(target.url).own_stamps

    def _table_rows(self, target: Target, p: _Progress, dt: _DeviceTable, prep: dict, floor: int, step: float,
                    stats: ParseStats, tick: datetime) -> tuple[pa.Table | None, pa.Table | None, list[dict]]:
        """Thinning, energy deltas, events and the samples and devices tables of one device table."""
        r_group, r_t = prep["r_group"], prep["r_t"]
        groups, idents, keys = prep["groups"], prep["idents"], prep["keys"]
        # thinning: the instants `_select` keeps (it moves the cursors)
        inst = np.unique(np.stack([r_group, r_t], axis=1), axis=0)
        kept = self._select(p, dt.name, [(groups[g], t) for g, t in inst.tolist()], floor, step)
        if not kept:
            return None, None, []
        gi = {g: i for i, g in enumerate(groups)}
        kg = np.array([gi[g] for g, _ in kept], np.int64)
        kt = np.array([t for _, t in kept], np.int64)
        base = int(r_t.min())
        span = int(r_t.max()) - base + 1
        mask = np.isin(r_group * span + (r_t - base), kg * span + (kt - base))
        order = np.flatnonzero(mask)
        order = order[np.lexsort((prep["r_ident"][order], r_group[order], r_t[order]))]   # time order
        r_ident, r_key, r_group, r_t = prep["r_ident"][order], prep["r_key"][order], r_group[order], r_t[order]
        cols = {c: v[order] for c, v in prep["columns"].items()}
        screen_columns(cols, _Ids(keys, r_key), stats)
        n = len(order)
        tracker = self.tracker
        # energy deltas: per device, from the tracker's last counter
        delta = np.full(n, np.nan)
        energy = cols.get("energy_j")
        if energy is not None and not np.isnan(energy).all():
            idx = np.flatnonzero(~np.isnan(energy))
            idx = idx[np.argsort(r_key[idx], kind="stable")]
            ek, ev = r_key[idx], energy[idx]
            first = np.r_[True, ek[1:] != ek[:-1]]
            last = np.r_[ek[1:] != ek[:-1], True]
            prev = np.r_[np.nan, ev[:-1]]
            with tracker._lock:
                prev[first] = [tracker.energy.get(keys[k], np.nan) for k in ek[first].tolist()]
                for k, e in zip(ek[last].tolist(), ev[last].tolist()):
                    tracker.energy[keys[k]] = e
            delta[idx] = np.where(np.isnan(prev), np.nan, np.where(ev >= prev, ev - prev, ev))
        cols["energy_delta_j"] = delta
        events = self._events(target, cols, r_ident, r_key, r_group, r_t, idents, keys, groups)
        # the samples table
        meta = [ident[2] for ident in idents]
        take = pa.array(r_ident)
        out: dict[str, pa.Array] = {
            "ts": pa.array(r_t * 1000, pa.timestamp("us", tz="UTC")),
            "device_id": pa.array([ident[1] for ident in idents], pa.string()).take(take),
            "site": pa.array([ident[0][3] for ident in idents], pa.string()).take(take),
            "cluster": pa.array([ident[0][2] for ident in idents], pa.string()).take(take),
            "host": pa.array([m["host"] for m in meta], pa.string()).take(take),
        }
        for c, typ in SAMPLE_MEASURES.items():
            arrow_type = pa.int64() if typ == "BIGINT" else pa.float64()
            v = cols.get(c)
            out[c] = pa.nulls(n, arrow_type) if v is None else nullable(v, arrow_type)
        out["tenant"] = self._tenants(dt.builder.attributor, idents, r_ident, r_t)
        for c in SAMPLE_LABELS:
            out[c] = pa.array([m[c] for m in meta], pa.string()).take(take)
        out["source"] = pa.array([target.source] * n, pa.string())
        samples = pa.Table.from_pydict(out, schema=SAMPLE_SCHEMA)
        # the devices table: each device's newest row, first seen at its oldest
        by_key = np.argsort(r_key, kind="stable")
        sk = r_key[by_key]
        newest = by_key[np.r_[sk[1:] != sk[:-1], True]]
        oldest = by_key[np.r_[True, sk[1:] != sk[:-1]]]
        sub_cols = {c: [None if x != x else x for x in cols[c][newest].tolist()]
                    for c in ("mem_used_mib", "mem_free_mib") if c in cols}
        sub = DeviceBatch([keys[k] for k in r_key[newest].tolist()], [meta[i] for i in r_ident[newest].tolist()],
                          sub_cols, r_t[newest].tolist(), ParseStats())
        devices = dt.builder.build(sub, target, tick).devices
        if devices is not None:
            ident_new = [idents[i] for i in r_ident[newest].tolist()]
            first_seen = pa.array(r_t[oldest] * 1000, pa.timestamp("us", tz="UTC"))
            for name, values in (("target", pa.array([self._group_target(target, "devices", ident[0][:4]).url
                                                      for ident in ident_new], pa.string())),
                                 ("cluster", pa.array([ident[0][2] for ident in ident_new], pa.string())),
                                 ("site", pa.array([ident[0][3] for ident in ident_new], pa.string())),
                                 ("first_seen", first_seen.cast(devices.schema.field("first_seen").type))):
                devices = devices.set_column(devices.schema.get_field_index(name), name, values)
        return samples, devices, events

    def _tenants(self, attributor, idents: list[tuple], r_ident: np.ndarray, r_t: np.ndarray) -> pa.Array:
        """The tenant column: per label set, and per row only for devices or hosts with leases
        (whose tenant depends on the time)."""
        per: list[str | None] = []
        leased = []
        for i, (_, key, m) in enumerate(idents):
            if key in attributor.device_leases or m["host"] in attributor.host_leases:
                leased.append(i)
                per.append(None)
            else:
                per.append(attributor._labels(m["namespace"], m["pod"], m["job"], m["job_user"]))
        col = pa.array(per, pa.string()).take(pa.array(r_ident))
        if not leased:
            return col
        values = col.to_pylist()
        for row in np.flatnonzero(np.isin(r_ident, leased)).tolist():
            _, key, m = idents[r_ident[row]]
            values[row] = attributor.tenant(key, m["host"], _dt(int(r_t[row])), m["namespace"], m["pod"], m["job"],
                                            m["job_user"])
        return pa.array(values, pa.string())

    def _events(self, target: Target, cols: dict[str, np.ndarray], r_ident: np.ndarray, r_key: np.ndarray,
                r_group: np.ndarray, r_t: np.ndarray, idents: list[tuple], keys: list[str],
                groups: list[tuple]) -> list[dict]:
        """The tracker's events of the window's rows (in time order): `tracker.observe` at every
        instant where it may change something (see `_process_columnar`)."""
        n = len(r_t)
        if not n:
            return []
        # instants: runs of rows of one exporter at one time (rows are in (time, exporter) order)
        starts = np.flatnonzero(np.r_[True, (r_t[1:] != r_t[:-1]) | (r_group[1:] != r_group[:-1])])
        ends = np.r_[starts[1:], n]
        inst_group = r_group[starts]
        interesting = np.zeros(len(starts), bool)
        # an exporter's first instant here, and every instant whose device set differs from its previous one
        k1 = (r_key + 1).astype(np.float64)
        sig = np.stack([np.add.reduceat(k1, starts), np.add.reduceat(k1 * k1, starts), ends - starts], axis=1)
        by_group = np.lexsort((np.arange(len(starts)), inst_group))
        g_sorted = inst_group[by_group]
        first = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
        s_sorted = sig[by_group]
        changed = np.r_[True, (s_sorted[1:] != s_sorted[:-1]).any(axis=1)]
        interesting[by_group[first | changed]] = True
        # a followed value that differs from the device's previous one
        inst_of_row = np.repeat(np.arange(len(starts)), ends - starts)
        for c in ("xid_last", "throttle_reasons", "health", *ECC_COLUMNS):
            v = cols.get(c)
            if v is None or np.isnan(v).all():
                continue
            o = np.argsort(r_key, kind="stable")
            vk, vv = r_key[o], v[o]
            same_dev = np.r_[False, vk[1:] == vk[:-1]]
            prev = np.r_[np.nan, vv[:-1]]
            differs = ~((vv == prev) | (np.isnan(vv) & np.isnan(prev)))
            interesting[inst_of_row[o[differs | ~same_dev]]] = True
        followed = ("xid_last", "throttle_reasons", "temp_c", "health", *ECC_COLUMNS)
        present = {c: cols[c] for c in followed if c in cols}
        out: list[dict] = []
        for j in np.flatnonzero(interesting).tolist():
            a, b = int(starts[j]), int(ends[j])
            rows = range(a, b)
            batch = DeviceBatch([keys[r_key[r]] for r in rows], [idents[r_ident[r]][2] for r in rows],
                                {c: [None if x != x else x for x in v[a:b].tolist()] for c, v in present.items()},
                                [int(r_t[a])] * (b - a), ParseStats())
            tracked = self._group_target(target, "tracker", groups[int(inst_group[j])])
            out.extend(self.tracker.observe(tracked, _dt(int(r_t[a])), batch))
        return out


# ---------------------------------------------------------------- history import

IMPORT_KEY = "prometheus.history."      # + source name: the import's plan and progress in kv (JSON)
IMPORT_SAMPLE_BUDGET = 1_000_000         # samples per query of the import (the live catch-up reads 250k)
IMPORT_MAX_WINDOW_S = 6 * 3600.0
IMPORT_SLICE_S = 60.0                    # one job run imports this long, then hands back (a run recorded)
# DuckDB holds memory for what is appended while the file is open (the owner's "reopen" job);
# an import appends in minutes what live collection appends in weeks, so it reopens the file
# itself after a run that brought the rows written since the last reopen past this
IMPORT_REOPEN_ROWS = 2_000_000
# ... and a run bounds what DuckDB holds meanwhile: its memory limit lowered to this (never
# raised above the configured database.memory_limit) and a CHECKPOINT after each window, so the
# appended rows are written out window by window instead of all at the close of the reopen.
# The reopen used to be the import's peak: 1,276 MiB of a 30-day import of 512 GPUs, with
# everything else at most 920 MiB (benchmarks/bench_prom_import.py --memory;
# docs/prometheus-import.md "Memory").
IMPORT_MEMORY_LIMIT = "384MB"


class HistoryImport:
    """`history_days` of a Prometheus source's history, imported once, as a job (see
    docs/prometheus-import.md).

    Made when the owner starts, before the scrapes (`history_import_job`): if nothing of the
    source is stored and no import was planned, the plan is [now - history_days, now] and is
    written to kv at once (IMPORT_KEY + source name), so a restart continues the same plan
    (never a second one) and a source that already holds data imports nothing (its gaps are
    the collector's `resume_from` back-fill). Each run reads windows oldest first through a
    collector of its own (its own cursors and event tracker: history runs in time order,
    apart from the live one), the same PromQL and series -> rows stage as the live reads,
    thinned to the collection interval; each window is written through the store's write
    path and its resume point saved in kv, so a stop loses at most the window in flight and
    the store's idempotent insert makes a re-read window harmless. A run stops after
    `slice_s` and the next run goes on, so the job runs record progress and a failing
    Prometheus is retried by the schedule (`schedule`)."""

    def __init__(self, collector: PrometheusCollector, store, source: Source, *,
                 write: Callable[[Scrape], int] | None = None, stop: threading.Event | None = None,
                 slice_s: float = IMPORT_SLICE_S, now: datetime | None = None,
                 timer: Callable[[], float] = time.perf_counter):
        self.live = collector
        self.store = store
        self.source = source
        self.key = IMPORT_KEY + source.name
        self.write = write or self._store
        self.stop = stop or threading.Event()
        self.slice_s = slice_s
        self.timer = timer
        self.target = Target(url=source.targets[0], source=source.name, kind=source.kind, site=source.site,
                             cluster=source.cluster)
        self.importer = self._importer()
        self.samples = 0                # rows delivered by this process's runs
        self.unreopened = 0             # rows written since the store was last reopened
        self.busy_s = 0.0               # seconds those runs took
        self.error: Msg | str | None = None
        self.plan = self._plan(now or datetime.fromtimestamp(collector.clock(), timezone.utc))
        self.state = "done" if self.plan["done"] >= self.plan["to"] else "running"

    # ---- the plan ---------------------------------------------------------

    def _importer(self) -> PrometheusCollector:
        c = PrometheusCollector(self.live.cfg, self.source, client_factory=self.live.client_factory,
                                tracker=EventTracker(), step_s=self.live.step_s, clock=self.live.clock)
        c.sample_budget, c.max_window_s = IMPORT_SAMPLE_BUDGET, IMPORT_MAX_WINDOW_S
        c.columnar = True
        return c

    def _plan(self, now: datetime) -> dict:
        """The stored plan, or a new one (stored at once); times as epoch milliseconds."""
        text = self.store.get_kv(self.key)
        if text:
            return json.loads(text)
        to = _ms(now)
        newest = self.store.query("source_newest")
        if self.source.name in set(newest["source"]):
            plan = {"from": to, "to": to, "done": to, "samples": 0, "skipped": "stored"}
        else:
            start = to - self.live.history_days * 86_400_000
            plan = {"from": start, "to": to, "done": start, "samples": 0}
        self.store.set_kv(self.key, json.dumps(plan))
        return plan

    @property
    def schedule(self) -> "ImportSchedule":
        """At once from the start and back to back until done (each run a slice; a failed run is
        tried again one collection interval later); never again once done."""
        return ImportSchedule(self, float(self.live.cfg.collection.interval_s))

    # ---- runs --------------------------------------------------------------

    def _store(self, scrape: Scrape) -> int:
        return self.store.write_scrape(samples=scrape.samples, devices=scrape.devices, events=scrape.events,
                                       facility=scrape.facility)

    def __call__(self, started_at: datetime | None = None):
        from collectors.jobs import JobResult
        from collectors.scheduler import release_free_memory

        plan = self.plan
        if plan["done"] >= plan["to"]:
            self.state = "done"
            return JobResult(rows=0, detail="done")
        if self.state == "failed":
            self.importer = self._importer()      # a failed window may have moved cursors and energy counters
        self.state, self.error = "running", None
        t0 = self.timer()
        busy0 = self.busy_s
        rows = 0
        notes: list[Msg | str] = []
        try:
            windows = self.importer.iter_history(self.target, _dt(plan["done"]), _dt(plan["to"]))
            with contextlib.closing(windows), self._bounded_memory():   # a window read ahead is dropped with the run
                for scrape, upto in windows:
                    self.write(scrape)
                    self._checkpoint()
                    n = scrape.rows
                    rows += n
                    notes.extend(x for x in scrape.notes if x not in notes)
                    del scrape
                    release_free_memory()           # a window's arrays, freed, go back to the system
                    plan["done"], plan["samples"] = _ms(upto), plan["samples"] + n
                    self.store.set_kv(self.key, json.dumps(plan))
                    self.samples += n
                    self.unreopened += n
                    self.busy_s = busy0 + self.timer() - t0
                    if self.stop.is_set() or self.timer() - t0 >= self.slice_s:
                        break
        except Exception as exc:
            self.state = "failed"
            own = getattr(exc, "msg", None)
            self.error = own if isinstance(own, Msg) else f"{type(exc).__name__}: {exc}"
            raise
        if self.unreopened >= IMPORT_REOPEN_ROWS and self.store.reopen():
            self.unreopened = 0
        if plan["done"] >= plan["to"]:
            self.state = "done"
        return JobResult(rows=rows, notes=notes, detail=f"{self.done_h} of {self.total_h} h")

    @contextlib.contextmanager
    def _bounded_memory(self) -> Iterator[None]:
        """DuckDB's memory limit at IMPORT_MEMORY_LIMIT for the run (when that is below the
        configured one), then back to the configured limit (or DuckDB's default)."""
        import config as config_mod

        configured = getattr(self.store, "memory_limit", None)
        lower = (configured is None or config_mod.memory_limit_bytes(IMPORT_MEMORY_LIMIT)
                 < config_mod.memory_limit_bytes(configured))
        if not lower or not hasattr(self.store, "cursor"):
            yield
            return
        self._set_memory_limit(IMPORT_MEMORY_LIMIT)
        try:
            yield
        finally:
            self._set_memory_limit(configured)

    def _set_memory_limit(self, limit: str | None) -> None:
        with self.store.cursor() as cur:
            cur.execute("RESET memory_limit" if limit is None else f"SET memory_limit = '{limit}'").fetchall()

    def _checkpoint(self) -> None:
        """Write the window's rows out of DuckDB's memory into the file now. Skipped when
        DuckDB refuses (another transaction is open, e.g. a page reading): the next window's
        checkpoint, or the close, writes them."""
        if not hasattr(self.store, "cursor") or getattr(self.store, "path", None) == ":memory:":
            return
        import duckdb

        try:
            with self.store.cursor() as cur:
                cur.execute("CHECKPOINT").fetchall()
        except duckdb.Error:
            pass

    # ---- progress -------------------------------------------------------------

    @property
    def total_h(self) -> float:
        return round((self.plan["to"] - self.plan["from"]) / 3_600_000, 1)

    @property
    def done_h(self) -> float:
        return round((self.plan["done"] - self.plan["from"]) / 3_600_000, 1)

    def status(self) -> dict:
        """For /healthz `history_imports` and the Sources page: state (running | done | failed),
        done and total in hours of history, samples imported (all runs, kept in kv), the rate of
        this process's runs in samples per second, the last error (English and as keys)."""
        import i18n

        err = self.error
        return {
            "source": self.source.name, "state": self.state, "done": self.done_h, "total": self.total_h,
            "unit": "h", "samples": self.plan["samples"],
            "rate": round(self.samples / self.busy_s) if self.busy_s > 0 else None,
            "from": _dt(self.plan["from"]).isoformat(), "to": _dt(self.plan["to"]).isoformat(),
            "skipped": self.plan.get("skipped"),
            "error": None if err is None else str(err),
            "error_msg": None if err is None else i18n.dumps([err]),
        }


@dataclass(frozen=True)
class ImportSchedule:
    """A HistoryImport's schedule (collectors.jobs.Schedule): every `seconds` while it is not
    done, the first run at once; no run at all for an import done before the start."""

    job: HistoryImport
    seconds: float

    def first(self, now: datetime) -> datetime | None:
        return None if self.job.state == "done" else now

    def next_run(self, after: datetime) -> datetime | None:
        from datetime import timedelta

        return None if self.job.state == "done" else after + timedelta(seconds=self.seconds)

    def describe(self) -> Msg:
        return msg("job.schedule.history_import")


def history_import_job(collector: PrometheusCollector, store, source: Source, **kw) -> HistoryImport | None:
    """The history import of a Prometheus source, or None when its `history_days` is 0. Make it
    when the owner starts, before the scrapes store anything (see HistoryImport), and register
    it with `runner.add(f"history-import-{source.name}", job.schedule, job)`."""
    if not getattr(source.options, "history_days", 0):
        return None
    return HistoryImport(collector, store, source, **kw)
