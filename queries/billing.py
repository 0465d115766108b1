"""Monthly bills per tenant, compute vouchers (算力券) and their reconciliation, and issuing.

A bill covers one calendar month of the billing site (`billing.site`, default the first site):
charges per contract (a lease at a monthly price per GPU pro-rated by the hour; platform usage
per GPU-hour of a model, within a commitment of GPUs whose unused part is still billed, and
beyond it at an overage price; energy passed through at its cost or at a surcharge per kWh),
then the voucher subsidies of the programmes the tenant holds, in their configured order, then
adjustments of earlier issued months. Usage is the history tiers' allocated GPU-time
(rollup_group_1h, read by billing_usage.sql), energy is queries/energy.tenant_energy's; nothing
here re-derives either.

The non-obvious rules, each documented in docs/billing.md:

- Price changes take effect at their date: a month is split at every effective date of the
  contract's model, each part priced (and its commitment pro-rated) on its own. A month in
  progress is billed to the last complete hour before `now`: leases and commitments accrue by
  the hour.
- Vouchers: a programme's base is the contract's fees in the line kinds it pays for, less what
  programmes applied before it this month already paid (fees actually paid), or the contract
  amount. The subsidy is rate x base, cut to the first limit it meets: what is left of the
  contract's fees this month (a voucher never makes a bill negative), the per-claim cap, what
  remains of the per-enterprise calendar-year cap, what remains of the programme's yearly
  budget. A cap reached mid-month therefore pays exactly what remained of it. Budgets are
  first come, first served: months in order, tenants by id within a month.
- Caps need the year so far, so a month is computed as the last of a sequence starting the
  January of the year before (adjustments reach back as far). An issued month in the sequence
  counts as issued (its frozen claims use the caps); a month not issued counts as computed.
- Issuing freezes a tenant's bill (bill_issues, bill_lines, and the rules in bill_rules). A
  later computation of an issued month never changes it: the difference (charges and each
  programme's subsidy) is shown beside it and carried as adjustment lines on the tenant's next
  bill not yet issued; issuing that bill issues the adjustment.

Every function takes `scope` (queries/scope.py) and returns only `scope.tenants(asked)`'s
rows; a tenant's view leaves out the programme budgets (whose use reveals other tenants).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa

import config
import i18n
from config.billing import Contract, Programme, add_months, lease_gpus, price_on
from queries import history, measures
from queries.catalogue import arrow_schema, table as catalogue_table
from queries.history import Col, HistoryTable, ParamError, tenant_names
from queries.scope import EVERYTHING, Scope
from queries.store import Store, transaction

ENGINE_VERSION = "billing-1"       # the rules' code: bump when the arithmetic changes
CHARGES = ("lease", "usage", "shortfall", "overage", "energy")
SUBSIDIES = ("voucher",)
ADJUSTMENTS = ("adjustment", "voucher_adjustment")
ISSUERS = (None, "manager", "admin")    # roles that may issue bills (None: sign-in off)
UTC = timezone.utc
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})\Z")
_YEAR_RE = re.compile(r"(\d{4})\Z")
LINE_FIELDS = ("tenant", "kind", "contract", "programme", "model", "ref_month", "period_start", "period_end",
               "quantity", "unit", "unit_price", "base", "amount", "currency", "capped_by")


class BillingError(Exception):
    """An action refused (issuing a month not yet over, a read-only store): `key` and `values`
    say why in the reader's language."""

    def __init__(self, key: str, **values: object):
        self.key, self.values = key, values
        super().__init__(i18n.t(key, "en", **values))

    def message(self, lang: str = i18n.DEFAULT) -> str:
        return i18n.t(self.key, lang, **self.values)


def cents(x: float) -> float:
    """Money to the fen (0.01), halves away from zero (as a bill is rounded, not banker's)."""
    return float(Decimal(repr(float(x))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# ---- months -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    """A calendar month of the billing site: its local first day and the next month's, and the
    UTC instants they start at."""

    name: str                   # YYYY-MM
    tz: str
    first: date
    next_first: date

    @property
    def start(self) -> datetime:
        return local_midnight(self.first, self.tz)

    @property
    def end(self) -> datetime:
        return local_midnight(self.next_first, self.tz)

    @property
    def year(self) -> int:
        return self.first.year

    @property
    def hours(self) -> float:
        return (self.end - self.start) / timedelta(hours=1)

    def shifted(self, months: int) -> "Month":
        first = add_months(self.first, months)
        return Month(f"{first.year:04d}-{first.month:02d}", self.tz, first, add_months(first, 1))


def local_midnight(d: date, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def billing_tz(cfg: config.Config) -> str:
    """The time zone of the site whose calendar bills follow."""
    return measures.site_timezone(cfg, cfg.billing.site)


def month(cfg: config.Config, text: str | None) -> Month:
    """`YYYY-MM` as a Month of the billing site; ParamError("month") otherwise."""
    m = _MONTH_RE.match(text or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2100:
        raise ParamError("month", "history.expect.month")
    first = date(int(m.group(1)), int(m.group(2)), 1)
    return Month(text or "", billing_tz(cfg), first, add_months(first, 1))


def recent_months(cfg: config.Config, now: datetime, n: int = 24) -> list[str]:
    """The `n` months up to the current one in the billing site's calendar, newest first (YYYY-MM)."""
    return history.recent_months(now, billing_tz(cfg), n)


# ---- the rules and their version ----------------------------------------------------------

def rules(cfg: config.Config) -> dict[str, Any]:
    """What the figures depend on besides the data: engine version, currency, price list,
    contracts, programmes, enrolments (stored with every issued bill)."""
    b = cfg.billing
    return {"engine": ENGINE_VERSION, "currency": b.currency, "tz": billing_tz(cfg),
            "prices": [p.model_dump(mode="json") for p in b.prices],
            "contracts": [c.model_dump(mode="json") for c in b.contracts],
            "programmes": [p.model_dump(mode="json") for p in b.programmes],
            "enrolments": [e.model_dump(mode="json") for e in b.enrolments]}


def rules_version(cfg: config.Config) -> str:
    text = json.dumps(rules(cfg), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- charges ------------------------------------------------------------------------------

EnergyFn = Callable[[datetime, datetime], pd.DataFrame | None]


def _line(tenant: str, kind: str, currency: str, amount: float, **kw: Any) -> dict[str, Any]:
    row = dict.fromkeys(LINE_FIELDS)
    row.update(tenant=tenant, kind=kind, currency=currency, amount=cents(amount), **kw)
    return row


class _Usage:
    """Allocated GPU-seconds per (tenant, model) -> day -> cluster, from billing_usage.sql."""

    def __init__(self, df: pd.DataFrame):
        self.by: dict[tuple[str, str], dict[date, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for tenant, cluster, model, day, s in zip(df["tenant"], df["cluster"], df["model"], df["day"],
                                                  df["allocated_s"]):
            d = day.date() if hasattr(day, "date") else day
            cell = self.by[(str(tenant), str(model))][d]
            cell[str(cluster)] = cell.get(str(cluster), 0.0) + float(s)

    def gpu_hours(self, tenant: str, model: str, first: date, until: date, clusters: list[str]) -> float:
        days = self.by.get((tenant, model))
        if not days:
            return 0.0
        total = 0.0
        d = first
        while d < until:
            for cl, s in days.get(d, {}).items():
                if not clusters or cl in clusters:
                    total += s
            d += timedelta(days=1)
        return total / 3600.0


def _segments(cfg: config.Config, c: Contract, first: date, until: date, field_name: str,
              own_price: float | None) -> list[tuple[date, date, float]]:
    """[first, until) split at the price list's effective dates for the contract's model, each
    part with its price (the contract's own price, when it names one, throughout)."""
    if own_price is not None:
        return [(first, until, own_price)]
    cuts = sorted({p.effective for p in cfg.billing.prices
                   if p.model == c.model and first < p.effective < until and getattr(p, field_name) is not None})
    bounds = [first, *cuts, until]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        price = price_on(cfg.billing, c.model, a, field_name)
        if price is None:
            raise BillingError("billing.error.no_price", contract=c.id, model=c.model, day=a.isoformat())
        out.append((a, b, price))
    return out


def _contract_charges(cfg: config.Config, c: Contract, m: Month, usage: _Usage, energy: EnergyFn,
                      now: datetime) -> list[dict[str, Any]]:
    """One contract's charge lines in month `m` (up to `now`)."""
    first, until = max(c.start, m.first), min(c.end, m.next_first)
    if until <= first or local_midnight(first, m.tz) >= now:
        return []
    now = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)     # by the hour: complete hours
    lines: list[dict[str, Any]] = []
    tz = m.tz
    if c.kind == "lease":
        gpus = lease_gpus(c, cfg.clusters)
        for a, b, price in _segments(cfg, c, first, until, "per_gpu_month", c.per_gpu_month):
            s, e = local_midnight(a, tz), min(local_midnight(b, tz), now)
            if e <= s:
                continue
            qty = gpus * ((e - s) / timedelta(hours=1)) / m.hours       # GPU-months, pro-rated by the hour
            lines.append(_line(c.tenant, "lease", c.currency, qty * price, contract=c.id, model=c.model,
                               period_start=s, period_end=e, quantity=round(qty, 6), unit="GPU-month",
                               unit_price=price))
    else:
        for a, b, price in _segments(cfg, c, first, until, "per_gpu_hour", c.per_gpu_hour):
            s, e = local_midnight(a, tz), min(local_midnight(b, tz), now)
            if e <= s:
                continue
            used = usage.gpu_hours(c.tenant, c.model, a, b, c.clusters)
            committed = c.committed_gpus * ((e - s) / timedelta(hours=1))
            common = dict(contract=c.id, model=c.model, period_start=s, period_end=e, unit="GPU-h")
            if committed > 0:
                within = min(used, committed)
                lines.append(_line(c.tenant, "usage", c.currency, within * price, quantity=round(within, 6),
                                   unit_price=price, **common))
                if committed - within > 0:
                    lines.append(_line(c.tenant, "shortfall", c.currency, (committed - within) * price,
                                       quantity=round(committed - within, 6), unit_price=price, **common))
                if used - committed > 0:
                    over = c.overage_per_gpu_hour if c.overage_per_gpu_hour is not None else price
                    lines.append(_line(c.tenant, "overage", c.currency, (used - committed) * over,
                                       quantity=round(used - committed, 6), unit_price=over, **common))
            else:
                lines.append(_line(c.tenant, "usage", c.currency, used * price, quantity=round(used, 6),
                                   unit_price=price, **common))
    if c.energy != "none":
        s, e = local_midnight(first, tz), min(local_midnight(until, tz), now)
        df = energy(s, e)
        if df is not None and e > s:
            row = df[df["tenant"] == c.tenant]
            kwh = float(row["facility_kwh"].sum()) if len(row) else 0.0
            if c.energy == "pass_through":         # at cost: energy by time of use and the demand charge's share
                cost = float(row["cost_cny"].sum()) if len(row) else 0.0
                if "demand_cny" in row and len(row):
                    cost += float(row["demand_cny"].fillna(0.0).sum())
                lines.append(_line(c.tenant, "energy", c.currency, cost, contract=c.id, period_start=s,
                                   period_end=e, quantity=round(kwh, 6), unit="kWh",
                                   unit_price=round(cost / kwh, 6) if kwh else None))
            else:
                assert c.energy_per_kwh is not None
                lines.append(_line(c.tenant, "energy", c.currency, kwh * c.energy_per_kwh, contract=c.id,
                                   period_start=s, period_end=e, quantity=round(kwh, 6), unit="kWh",
                                   unit_price=c.energy_per_kwh))
    return lines


# ---- vouchers -----------------------------------------------------------------------------

@dataclass
class _Caps:
    """What the programmes have paid so far: per (tenant, programme, year), per (programme,
    year), and the (contract, programme) pairs that have claimed."""

    enterprise: dict[tuple[str, str, int], float] = field(default_factory=lambda: defaultdict(float))
    budget: dict[tuple[str, int], float] = field(default_factory=lambda: defaultdict(float))
    claimed: dict[tuple[str, str], str] = field(default_factory=dict)

    def take(self, tenant: str, programme: str, year: int, amount: float, contract: str | None, month: str) -> None:
        self.enterprise[(tenant, programme, year)] = cents(self.enterprise[(tenant, programme, year)] + amount)
        self.budget[(programme, year)] = cents(self.budget[(programme, year)] + amount)
        if contract is not None and amount > 0:
            self.claimed.setdefault((contract, programme), month)


def _eligible(p: Programme, c: Contract, currency: str) -> bool:
    if c.currency != currency:
        return False
    if p.signed_from is not None and c.signed_on < p.signed_from:
        return False
    if p.signed_until is not None and c.signed_on >= p.signed_until:
        return False
    if p.max_term_months is not None and c.end > add_months(c.start, p.max_term_months):
        return False
    return True


def _active(p: Programme, m: Month) -> bool:
    return (p.start is None or m.first >= p.start) and (p.end is None or m.first < p.end)


def _vouchers(cfg: config.Config, tenant: str, m: Month, charges: list[dict[str, Any]],
              caps: _Caps) -> list[dict[str, Any]]:
    """The voucher lines of one tenant's month, in programme order (see the module docstring);
    `caps` is read, not changed (the caller takes what it keeps)."""
    b = cfg.billing
    enrolment = next((e for e in b.enrolments if e.tenant == tenant), None)
    if enrolment is None:
        return []
    contracts = {c.id: c for c in b.contracts if c.tenant == tenant}
    paid: dict[str, float] = defaultdict(float)          # contract -> subsidies this month so far
    taken: dict[tuple[str, int], float] = defaultdict(float)
    lines: list[dict[str, Any]] = []
    for pid in enrolment.programmes:
        p = b.programme(pid)
        if not _active(p, m) or not set(p.flags) <= set(enrolment.flags):
            continue
        for cid in sorted({ln["contract"] for ln in charges if ln["contract"] is not None}):
            c = contracts.get(cid)
            if c is None or not _eligible(p, c, b.currency):
                continue
            if p.claims == "once" and (cid, pid) in caps.claimed:
                continue
            fees = cents(sum(ln["amount"] for ln in charges if ln["contract"] == cid and ln["kind"] in p.lines))
            left = cents(fees - paid[cid])
            if left <= 0:
                continue
            base = left if p.base == "fees" else float(c.amount or 0.0)
            subsidy, capped_by = cents(p.rate * base), None
            limits = [("fees", left)]
            if p.per_claim_cap is not None:
                limits.append(("per_claim", p.per_claim_cap))
            if p.enterprise_year_cap is not None:
                limits.append(("enterprise_year", p.enterprise_year_cap - caps.enterprise[(tenant, pid, m.year)]
                               - taken[(pid, 0)]))
            if p.budget_year is not None:
                limits.append(("budget", p.budget_year - caps.budget[(pid, m.year)] - taken[(pid, 1)]))
            for name, limit in limits:
                if cents(limit) < subsidy:
                    subsidy, capped_by = max(0.0, cents(limit)), name
            if subsidy <= 0 and capped_by is None:
                continue
            paid[cid] += subsidy
            taken[(pid, 0)] += subsidy
            taken[(pid, 1)] += subsidy
            lines.append(_line(tenant, "voucher", c.currency, -subsidy, contract=cid, programme=pid,
                               base=cents(base), unit_price=p.rate, capped_by=capped_by,
                               period_start=m.start, period_end=m.end))
    return lines


# ---- the sequence of months ---------------------------------------------------------------

@dataclass
class _Issued:
    summary: pd.DataFrame           # bill_issues rows
    lines: pd.DataFrame             # bill_lines rows
    adjustments: pd.DataFrame       # adjustment lines of issued bills of any month, by the month they correct

    def has(self, month_name: str, tenant: str) -> bool:
        return (month_name, tenant) in self._keys

    def __post_init__(self) -> None:
        self._keys = set(zip(self.summary["month"], self.summary["tenant"]))
        self._lines: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for rec in self.lines.to_dict("records"):
            self._lines[(rec["month"], rec["tenant"])].append(rec)
        self._adjusted: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for rec in self.adjustments.to_dict("records"):
            self._adjusted[(rec["ref_month"], rec["tenant"])].append(rec)

    def lines_of(self, month_name: str, tenant: str) -> list[dict[str, Any]]:
        return [{k: _none(r.get(k)) for k in LINE_FIELDS} for r in self._lines.get((month_name, tenant), [])]

    def adjusted(self, ref_month: str, tenant: str) -> list[dict[str, Any]]:
        """Adjustment lines of issued bills that correct `ref_month`."""
        return [{k: _none(r.get(k)) for k in LINE_FIELDS} for r in self._adjusted.get((ref_month, tenant), [])]


def _none(v: Any) -> Any:
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def _split(lines: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """Charges and each programme's subsidy (positive) of a bill's own month (no adjustments)."""
    gross = cents(sum(ln["amount"] for ln in lines if ln["kind"] in CHARGES))
    sub: dict[str, float] = defaultdict(float)
    for ln in lines:
        if ln["kind"] in SUBSIDIES:
            sub[ln["programme"]] = cents(sub[ln["programme"]] - ln["amount"])
    return gross, dict(sub)


def _difference(fresh: list[dict[str, Any]], issued: list[dict[str, Any]],
                adjusted: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """What a computation now finds that the issued bill and the adjustments issued since do
    not carry: charges, and each programme's subsidy (positive: more subsidy)."""
    g1, s1 = _split(fresh)
    g0, s0 = _split(issued)
    dg = g1 - g0 - sum(ln["amount"] for ln in adjusted if ln["kind"] == "adjustment")
    ds = {p: s1.get(p, 0.0) - s0.get(p, 0.0) for p in set(s1) | set(s0)}
    for ln in adjusted:
        if ln["kind"] == "voucher_adjustment":
            ds[ln["programme"]] = ds.get(ln["programme"], 0.0) + ln["amount"]
    return cents(dg), {p: cents(v) for p, v in ds.items() if cents(v) != 0}


@dataclass
class MonthBills:
    """Every tenant's bill of one month, as issued (frozen) or as computed now (draft)."""

    month: Month
    lines: list[dict[str, Any]]                 # bill order per tenant: charges, vouchers, adjustments
    status: dict[str, str]                      # tenant -> issued | draft
    fresh: dict[str, list[dict[str, Any]]]      # tenant -> lines computed now (issued months: to compare)
    difference: dict[str, tuple[float, dict[str, float]]]   # issued tenant -> not yet adjusted difference
    caps_after: _Caps                           # the caps used after this month
    issued: pd.DataFrame                        # bill_issues rows of the month


def _sequence(store: Store, cfg: config.Config, last: Month, now: datetime, tenants: list[str] | None,
              energy: EnergyFn | None = None) -> list[MonthBills]:
    """Months from the January of the year before `last` up to `last`, each tenant's bill in
    each (see the module docstring)."""
    b = cfg.billing
    first = Month(f"{last.year - 1:04d}-01", last.tz, date(last.year - 1, 1, 1), date(last.year - 1, 2, 1))
    months = []
    m = first
    while m.first <= last.first:
        months.append(m)
        m = m.shifted(1)
    one = tenants[0] if tenants is not None and len(tenants) == 1 else None
    usage = _Usage(store.query("billing_usage", bill_from=first.start, bill_to=min(last.end, _hour_after(now)),
                               bill_tz=last.tz, tenant=one))
    issued = _Issued(store.query("billing_issued", month_from=first.name, month_to=last.name, tenant=one),
                     store.query("billing_issued_lines", month_from=first.name, month_to=last.name, tenant=one),
                     store.query("billing_adjustments", month_from=first.name, tenant=one))
    caps = _Caps()
    for rec in store.query("billing_claimed", month_to=first.name).to_dict("records"):
        caps.claimed[(rec["contract"], rec["programme"])] = rec["month"]
    energy_fn = _cached(energy) if energy is not None else _energy_reader(store, cfg, now)
    every = sorted({c.tenant for c in b.contracts} | {e.tenant for e in b.enrolments}
                   | set(issued.summary["tenant"]))
    wanted = every if tenants is None else [t for t in every if t in tenants]
    by_tenant: dict[str, list[Contract]] = defaultdict(list)
    for c in sorted(b.contracts, key=lambda c: c.id):
        by_tenant[c.tenant].append(c)
    history: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)   # tenant -> month -> fresh
    # an earlier month's energy changes nothing the month asked for unless a programme pays on it
    # or the month is issued (its difference is recomputed): the energy reads are most of the time
    issued_months = set(issued.summary["month"])
    energy_paid = any("energy" in p.lines for p in b.programmes)
    out: list[MonthBills] = []
    for m in months:
        if m.start >= now:
            break
        lines_m: list[dict[str, Any]] = []
        status: dict[str, str] = {}
        fresh_m: dict[str, list[dict[str, Any]]] = {}
        diff_m: dict[str, tuple[float, dict[str, float]]] = {}
        month_energy = energy_fn if (m.name == last.name or m.name in issued_months or energy_paid) else _no_energy
        for t in wanted:
            charges = [ln for c in by_tenant.get(t, []) for ln in _contract_charges(cfg, c, m, usage, month_energy,
                                                                                   now)]
            if issued.has(m.name, t):
                fresh = charges + _vouchers(cfg, t, m, charges, caps)
                frozen = issued.lines_of(m.name, t)
                for ln in frozen:
                    if ln["kind"] in ("voucher", "voucher_adjustment") and ln["programme"]:
                        caps.take(t, ln["programme"], m.year, -ln["amount"],
                                  ln["contract"] if ln["kind"] == "voucher" else None, m.name)
                fresh_m[t], status[t] = fresh, "issued"
                history[t][m.name] = fresh
                lines_m.extend(frozen)
                continue
            adjustments = _adjustments(t, m, history[t], issued, months)
            for ln in adjustments:
                if ln["kind"] == "voucher_adjustment":
                    caps.take(t, ln["programme"], m.year, -ln["amount"], None, m.name)
            vouchers = _vouchers(cfg, t, m, charges, caps)
            for ln in vouchers:
                caps.take(t, ln["programme"], m.year, -ln["amount"], ln["contract"], m.name)
            bill = charges + vouchers + adjustments
            history[t][m.name] = charges + vouchers
            fresh_m[t] = bill
            if bill:
                status[t] = "draft"
                lines_m.extend(bill)
        for t in status:
            if status[t] == "issued":
                diff_m[t] = _difference(fresh_m[t], issued.lines_of(m.name, t), issued.adjusted(m.name, t))
        out.append(MonthBills(m, lines_m, status, fresh_m, diff_m, _copy_caps(caps),
                              issued.summary[issued.summary["month"] == m.name]))
    return out


def _no_energy(s: datetime, e: datetime) -> None:
    return None


def _copy_caps(c: _Caps) -> _Caps:
    out = _Caps()
    out.enterprise.update(c.enterprise)
    out.budget.update(c.budget)
    out.claimed.update(c.claimed)
    return out


def _adjustments(tenant: str, m: Month, fresh: dict[str, list[dict[str, Any]]], issued: _Issued,
                 months: list[Month]) -> list[dict[str, Any]]:
    """The adjustment lines the draft of `m` carries: for each earlier issued month of the tenant
    whose next bill not yet issued is this one, the difference a computation now finds."""
    out: list[dict[str, Any]] = []
    names = [x.name for x in months]
    i = names.index(m.name)
    currency = "CNY"
    for j in range(i - 1, -1, -1):
        x = names[j]
        if not issued.has(x, tenant):
            break                     # an earlier draft carries the months before it
        if x not in fresh:
            continue
        frozen = issued.lines_of(x, tenant)
        if frozen:
            currency = frozen[0]["currency"]
        dg, ds = _difference(fresh[x], frozen, issued.adjusted(x, tenant))
        if dg:
            out.append(_line(tenant, "adjustment", currency, dg, ref_month=x))
        for pid, v in sorted(ds.items()):
            out.append(_line(tenant, "voucher_adjustment", currency, -v, ref_month=x, programme=pid))
    return out


def _hour_after(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _energy_reader(store: Store, cfg: config.Config, now: datetime) -> EnergyFn:
    """queries.energy.tenant_energy over a span (cached per span); None when the energy module
    is not there to ask (bills then carry no energy line, and say so)."""
    fn = _tenant_energy()
    if fn is None:
        return lambda s, e: None
    return _cached(lambda s, e: fn(store, cfg, s, e, now=now))


def _cached(fn: EnergyFn) -> EnergyFn:
    """`fn` asked once per span (every contract of a month asks for the month's)."""
    cache: dict[tuple[datetime, datetime], pd.DataFrame | None] = {}

    def read(s: datetime, e: datetime) -> pd.DataFrame | None:
        if (s, e) not in cache:
            cache[(s, e)] = fn(s, e)
        return cache[(s, e)]
    return read


def _tenant_energy() -> Callable[..., pd.DataFrame] | None:
    """queries.energy.tenant_energy (the energy issue's), or None where it is not there."""
    try:
        module = importlib.import_module("queries.energy")
    except ImportError:
        return None
    return getattr(module, "tenant_energy", None)


def energy_available() -> bool:
    return _tenant_energy() is not None


# ---- bills --------------------------------------------------------------------------------

@dataclass
class Bills:
    """A month's bills: `lines` (every line of every tenant's bill, in bill order), `summary`
    (per tenant: status, currency, gross, subsidy per programme and in all, adjustment, net,
    difference since issue), `claims` (the voucher lines with each cap's use and what remains)."""

    month: Month
    lines: pd.DataFrame
    summary: pd.DataFrame
    claims: pd.DataFrame
    programmes: list[str]
    scope: Scope
    names: dict[str, str]
    energy_missing: bool
    headers: dict[str, dict[str, str]] = field(default_factory=dict)   # programme names, en and zh-CN

    def tenant_lines(self, tenant: str) -> pd.DataFrame:
        return self.lines[self.lines["tenant"] == tenant].reset_index(drop=True)


def _tenants_needed(cfg: config.Config, tenant: str | None) -> list[str] | None:
    """Only the one tenant's months need computing unless a programme budget (shared by every
    tenant) must count the others' claims."""
    if tenant is None or any(p.budget_year is not None for p in cfg.billing.programmes):
        return None
    return [tenant]


def bills(store: Store, cfg: config.Config, month_name: str, *, now: datetime | None = None,
          scope: Scope = EVERYTHING, tenant: str | None = None, energy: EnergyFn | None = None) -> Bills:
    """Every tenant's bill of `month_name` (YYYY-MM, the billing site's calendar), or one
    tenant's (`tenant`, forced to the scope's own for a tenant): issued bills as issued, the
    others as computed now (a month in progress up to `now`). ParamError("month") on a bad month."""
    now = now or datetime.now(UTC)
    m = month(cfg, month_name)
    only = scope.tenants(tenant)
    seq = _sequence(store, cfg, m, now, _tenants_needed(cfg, only), energy)
    mb = next((x for x in seq if x.month.name == m.name), None)
    return _bills_of(cfg, m, mb, scope, only)


def _bills_of(cfg: config.Config, m: Month, mb: MonthBills | None, scope: Scope, only: str | None) -> Bills:
    progs = [p.id for p in cfg.billing.programmes]
    names = tenant_names(cfg, scope=scope)
    cols = ["month", "line", *LINE_FIELDS]
    if mb is None:
        empty = pd.DataFrame(columns=cols)
        return Bills(m, empty, _summary(cfg, m, None, progs, only), _claims(cfg, m, None, empty, only, scope),
                     progs, scope, names, False, programme_headers(cfg))
    rows = []
    counter: dict[str, int] = defaultdict(int)
    for ln in mb.lines:
        if only is not None and ln["tenant"] != only:
            continue
        counter[ln["tenant"]] += 1
        rows.append({"month": m.name, "line": counter[ln["tenant"]], **ln})
    lines = pd.DataFrame(rows, columns=cols)
    uses_energy = any(c.energy != "none" for c in cfg.billing.contracts)
    return Bills(m, lines, _summary(cfg, m, mb, progs, only), _claims(cfg, m, mb, lines, only, scope), progs,
                 scope, names, uses_energy and not energy_available(), programme_headers(cfg))


def _summary(cfg: config.Config, m: Month, mb: MonthBills | None, progs: list[str],
             only: str | None) -> pd.DataFrame:
    cols = ["tenant", "status", "currency", "gross", *(f"subsidy_{p}" for p in progs), "subsidy", "adjustment",
            "net", "difference", "issued_at", "issued_by", "rules_version"]
    if mb is None:
        return pd.DataFrame(columns=cols)
    issued = {r["tenant"]: r for r in mb.issued.to_dict("records")}
    per: dict[str, dict[str, Any]] = {}
    for ln in mb.lines:
        t = ln["tenant"]
        if only is not None and t != only:
            continue
        row = per.setdefault(t, {"tenant": t, "status": mb.status.get(t, "draft"), "currency": ln["currency"],
                                 "gross": 0.0, **{f"subsidy_{p}": 0.0 for p in progs}, "subsidy": 0.0,
                                 "adjustment": 0.0})
        if ln["kind"] in CHARGES:
            row["gross"] += ln["amount"]
        elif ln["kind"] in SUBSIDIES:
            row[f"subsidy_{ln['programme']}"] -= ln["amount"]
            row["subsidy"] -= ln["amount"]
        else:
            row["adjustment"] += ln["amount"]
    out = []
    for t in sorted(per):
        row = per[t]
        for k in ("gross", "subsidy", "adjustment", *(f"subsidy_{p}" for p in progs)):
            row[k] = cents(row[k])
        row["net"] = cents(row["gross"] - row["subsidy"] + row["adjustment"])
        if t in mb.difference:
            dg, ds = mb.difference[t]
            row["difference"] = cents(dg - sum(ds.values()))
        else:
            row["difference"] = None
        rec = issued.get(t)
        row["issued_at"] = rec["issued_at"] if rec else None
        row["issued_by"] = rec["issued_by"] if rec else None
        row["rules_version"] = rec["rules_version"] if rec else None
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def _claims(cfg: config.Config, m: Month, mb: MonthBills | None, lines: pd.DataFrame, only: str | None,
            scope: Scope) -> pd.DataFrame:
    cols = ["month", "programme", "tenant", "contract", "base", "rate", "subsidy", "capped_by",
            "enterprise_year_used", "enterprise_year_remaining", "budget_year_used", "budget_year_remaining",
            "status"]
    if mb is None or lines.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    v = lines[lines["kind"] == "voucher"]
    for rec in v.to_dict("records"):
        p = cfg.billing.programme(rec["programme"]) if rec["programme"] in {x.id for x in cfg.billing.programmes} \
            else None
        used = mb.caps_after.enterprise.get((rec["tenant"], rec["programme"], m.year), 0.0)
        budget = mb.caps_after.budget.get((rec["programme"], m.year), 0.0)
        rows.append({
            "month": m.name, "programme": rec["programme"], "tenant": rec["tenant"], "contract": rec["contract"],
            "base": rec["base"], "rate": rec["unit_price"], "subsidy": cents(-rec["amount"]),
            "capped_by": rec["capped_by"], "enterprise_year_used": used,
            "enterprise_year_remaining": (cents(max(0.0, p.enterprise_year_cap - used))
                                          if p is not None and p.enterprise_year_cap is not None else None),
            "budget_year_used": budget if scope.everything else None,
            "budget_year_remaining": (cents(max(0.0, p.budget_year - budget))
                                      if scope.everything and p is not None and p.budget_year is not None else None),
            "status": mb.status.get(rec["tenant"], "draft")})
    return pd.DataFrame(rows, columns=cols)


# ---- tables for people --------------------------------------------------------------------

@dataclass
class BillTable(HistoryTable):
    """A HistoryTable whose money columns (kind "cny") show fen, whose status and line kinds read in
    the reader's language, and whose programme columns are headed by the programme's name
    (`headers`: column name or "programme:<id>" -> {language: text})."""

    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def for_people(self, lang: str) -> pd.DataFrame:
        data: dict[str, list[str]] = {}
        for col in self.columns:
            values = self.rows[col.name] if col.name in self.rows else pd.Series([None] * len(self.rows))
            if col.name in self.headers:
                header = self.headers[col.name].get(lang) or self.headers[col.name]["en"]
            else:
                header = i18n.t(col.label, lang)
            if col.unit:
                header = f"{header} ({col.unit})"
            if col.kind == "cny":
                shown = [_money(v) for v in values]
            elif col.kind == "number":
                shown = ["—" if _missing(v) else f"{float(v):,.4f}".rstrip("0").rstrip(".") for v in values]
            elif col.kind == "word":
                shown = ["—" if _missing(v) else i18n.t(f"billing.word.{v}", lang) for v in values]
            elif col.kind == "programme":
                shown = ["—" if _missing(v) else self.programme_name(str(v), lang) for v in values]
            else:               # the history tables' own kinds: times in the table's zone, names, numbers
                one = HistoryTable((col,), pd.DataFrame({col.name: values.to_numpy()}), tz=self.tz, names=self.names)
                shown = one.for_people(lang).iloc[:, 0].tolist()
            data[header] = shown
        return pd.DataFrame(data)

    def programme_name(self, pid: str, lang: str) -> str:
        h = self.headers.get(f"programme:{pid}")
        return (h.get(lang) or h["en"]) if h else pid

    def to_people_csv(self, lang: str) -> bytes:
        """The table as people read it, in `lang`, numbers kept as numbers: CSV with a BOM so that
        spreadsheet programs read the Chinese headers right."""
        people = self.for_people(lang)
        raw = people.copy()
        for col, header in zip(self.columns, people.columns):
            if col.kind in ("cny", "hours", "kwh", "gpus", "pct", "share", "count", "number") and col.name in self.rows:
                raw[header] = [None if _missing(v) else v for v in self.rows[col.name]]
        return raw.to_csv(index=False).encode("utf-8-sig")


def _missing(v: Any) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and v != v)


def _money(v: Any) -> str:
    return "—" if _missing(v) else f"{float(v):,.2f}"


def programme_headers(cfg: config.Config) -> dict[str, dict[str, str]]:
    out = {}
    for p in cfg.billing.programmes:
        out[f"programme:{p.id}"] = {"en": p.name, "zh-CN": p.name_zh or p.name}
    return out


SUMMARY_COLUMNS = (
    Col("tenant", "", "billing.col.tenant"),
    Col("status", "", "billing.col.status", "word"),
    Col("currency", "", "billing.col.currency"),
    Col("gross", "", "billing.col.gross", "cny"),
)


def bill_table(b: Bills) -> BillTable:
    """The month's summary: one row per tenant with a bill (gross, each programme's subsidy, the
    subsidies in all, adjustments, net, the difference a computation now finds on an issued
    bill, when it was issued)."""
    heads = dict(b.headers)
    for p in b.programmes:
        name = b.headers.get(f"programme:{p}", {"en": p})
        heads[f"subsidy_{p}"] = {lang: i18n.t("billing.col.subsidy_of", lang, programme=text)
                                 for lang, text in name.items()}
    cols = [*SUMMARY_COLUMNS,
            *(Col(f"subsidy_{p}", "", "billing.col.subsidy", "cny") for p in b.programmes),
            Col("subsidy", "", "billing.col.subsidy_total", "cny"),
            Col("adjustment", "", "billing.col.adjustment", "cny"),
            Col("net", "", "billing.col.net", "cny"),
            Col("difference", "", "billing.col.difference", "cny"),
            Col("issued_at", "", "billing.col.issued_at", "time")]
    rows = b.summary[[c.name for c in cols]].reset_index(drop=True)
    return BillTable(tuple(cols), rows, tz=b.month.tz, names=b.names, headers=heads)


LINE_COLUMNS = (
    Col("tenant", "", "billing.col.tenant"),
    Col("line", "", "billing.col.line", "count"),
    Col("kind", "", "billing.col.kind", "word"),
    Col("contract", "", "billing.col.contract"),
    Col("model", "", "billing.col.model"),
    Col("programme", "", "billing.col.programme", "programme"),
    Col("ref_month", "", "billing.col.ref_month"),
    Col("period_start", "", "billing.col.period_start", "time"),
    Col("period_end", "", "billing.col.period_end", "time"),
    Col("quantity", "", "billing.col.quantity", "number"),
    Col("unit", "", "billing.col.unit"),
    Col("unit_price", "", "billing.col.unit_price", "number"),
    Col("base", "", "billing.col.base", "cny"),
    Col("amount", "", "billing.col.amount", "cny"),
    Col("currency", "", "billing.col.currency"),
    Col("capped_by", "", "billing.col.capped_by", "word"),
)


def lines_table(b: Bills, tenant: str | None = None) -> BillTable:
    """The line items (one tenant's, or every tenant's in the scope), in bill order."""
    df = b.lines if tenant is None else b.tenant_lines(tenant)
    rows = df[[c.name for c in LINE_COLUMNS]].reset_index(drop=True)
    return BillTable(LINE_COLUMNS, rows, tz=b.month.tz, names=b.names, headers=b.headers)


CLAIM_COLUMNS = (
    Col("month", "", "billing.col.month"),
    Col("programme", "", "billing.col.programme", "programme"),
    Col("tenant", "", "billing.col.tenant"),
    Col("contract", "", "billing.col.contract"),
    Col("base", "", "billing.col.base", "cny"),
    Col("rate", "", "billing.col.rate", "number"),
    Col("subsidy", "", "billing.col.subsidy_total", "cny"),
    Col("capped_by", "", "billing.col.capped_by", "word"),
    Col("enterprise_year_used", "", "billing.col.enterprise_used", "cny"),
    Col("enterprise_year_remaining", "", "billing.col.enterprise_remaining", "cny"),
    Col("budget_year_used", "", "billing.col.budget_used", "cny"),
    Col("budget_year_remaining", "", "billing.col.budget_remaining", "cny"),
    Col("status", "", "billing.col.status", "word"),
)


def claims_table(b: Bills) -> BillTable:
    """The month's voucher claims with each cap's use (year to date, after the claim) and what
    remains; a tenant's scope leaves the budget columns out."""
    cols = tuple(c for c in CLAIM_COLUMNS if b.scope.everything or not c.name.startswith("budget"))
    return BillTable(cols, b.claims[[c.name for c in cols]].reset_index(drop=True), tz=b.month.tz, names=b.names,
                     headers=b.headers)


# ---- reconciliation -------------------------------------------------------------------------

def reconciliation(store: Store, cfg: config.Config, period: str, *, programme: str | None = None,
                   now: datetime | None = None, scope: Scope = EVERYTHING, tenant: str | None = None,
                   energy: EnergyFn | None = None) -> BillTable:
    """The claims of one programme (or every programme) over a month (YYYY-MM) or a calendar year
    (YYYY): tenant, contract, base, subsidy, the enterprise cap used and remaining (and, for
    everything's scope, the budget), issued or draft; ready to submit. ParamError on a bad
    period or programme."""
    now = now or datetime.now(UTC)
    if programme is not None and programme not in {p.id for p in cfg.billing.programmes}:
        raise ParamError("programme", "history.expect.one_of",
                         options=", ".join(p.id for p in cfg.billing.programmes))
    if _YEAR_RE.match(period or ""):
        year = int(period)
        last = month(cfg, f"{year:04d}-12")
        wanted = {f"{year:04d}-{k:02d}" for k in range(1, 13)}
    else:
        last = month(cfg, period)
        wanted = {last.name}
    only = scope.tenants(tenant)
    seq = _sequence(store, cfg, last, now, _tenants_needed(cfg, only), energy)
    frames = []
    for mb in seq:
        if mb.month.name in wanted:
            b = _bills_of(cfg, mb.month, mb, scope, only)
            frames.append(b.claims)
    cols = tuple(c for c in CLAIM_COLUMNS if scope.everything or not c.name.startswith("budget"))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.name for c in cols])
    if programme is not None and len(df):
        df = df[df["programme"] == programme]
    df = df.reindex(columns=[c.name for c in cols]).reset_index(drop=True)
    return BillTable(cols, df, tz=last.tz, names=tenant_names(cfg, scope=scope), headers=programme_headers(cfg))


def reconciliation_table(store: Store, cfg: config.Config, period: str, programme: str | None = None, *,
                         now: datetime | None = None, scope: Scope = EVERYTHING) -> BillTable:
    """reconciliation() under the name the monthly report calls."""
    return reconciliation(store, cfg, period, programme=programme, now=now, scope=scope)


# ---- issuing --------------------------------------------------------------------------------

def issue_month(store: Store, cfg: config.Config, month_name: str, who: Scope | str | None, *,
                now: datetime | None = None, tenant: str | None = None,
                energy: EnergyFn | None = None) -> list[str]:
    """Freeze the month's draft bills (every tenant's, or one tenant's) as issued: their lines,
    totals, the rules version, who and when; bills already issued stay as they are. Refused
    (BillingError) for a month not yet over and on a read-only store. Recorded in the audit
    trail. Only managers and admins issue (a Scope of another role, or a tenant's, is refused);
    `who` as a plain name is a job's or a script's. Returns the tenants whose bills were issued."""
    now = now or datetime.now(UTC)
    m = month(cfg, month_name)
    if m.end > now:
        raise BillingError("billing.error.month_open", month=m.name)
    if store.read_only:
        raise BillingError("billing.error.read_only")
    if isinstance(who, Scope) and (who.tenant is not None or who.role not in ISSUERS):
        raise BillingError("billing.error.not_allowed", role=who.role or "-")
    scope = who if isinstance(who, Scope) else EVERYTHING
    b = bills(store, cfg, month_name, now=now, scope=scope, tenant=tenant, energy=energy)
    drafts = b.summary[b.summary["status"] == "draft"]
    if drafts.empty:
        return []
    version = rules_version(cfg)
    who_name = who.who if isinstance(who, Scope) else who
    issues = [{"month": m.name, "tenant": r["tenant"], "issued_at": now, "issued_by": who_name or "local",
               "rules_version": version, "currency": r["currency"], "gross": r["gross"], "subsidy": r["subsidy"],
               "adjustment": r["adjustment"], "net": r["net"]} for r in drafts.to_dict("records")]
    chosen = set(drafts["tenant"])
    lines = [{k: _none(v) for k, v in r.items()} for r in b.lines.to_dict("records") if r["tenant"] in chosen]
    rule_row = [{"rules_version": version, "recorded_at": now,
                 "rules": json.dumps(rules(cfg), sort_keys=True, ensure_ascii=False)}]
    batches = (("bill_rules", rule_row), ("bill_issues", issues), ("bill_lines", lines))
    with store.write_lock, store.cursor() as cur, transaction(cur):
        for name, rows in batches:
            t = pa.Table.from_pylist(rows, schema=arrow_schema(name))
            cur.register(f"batch_{name}", t)
            key = " AND ".join(f"s.{k} = b.{k}" for k in catalogue_table(name).key)
            cur.execute(f"INSERT INTO {name} BY NAME SELECT b.* FROM batch_{name} b "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {name} s WHERE {key})").fetchall()
            cur.unregister(f"batch_{name}")
    from queries import audit
    audit.record(store, who, "bill_issue", m.name,
                 {"month": m.name, "tenants": sorted(chosen), "rules_version": version,
                  "net": cents(sum(r["net"] for r in issues))}, at=now)
    return sorted(chosen)


# ---- downloads ------------------------------------------------------------------------------

def bills_xlsx(store: Store, cfg: config.Config, month_name: str, lang: str, *, now: datetime | None = None,
               scope: Scope = EVERYTHING, tenant: str | None = None, b: Bills | None = None) -> bytes:
    """The month's bills as a workbook in `lang`: the summary, every line item and the voucher
    claims, one sheet each, headers in `lang` with money as numbers (two decimals)."""
    import xlsxwriter

    b = b or bills(store, cfg, month_name, now=now, scope=scope, tenant=tenant)
    sheets = (("billing.sheet.summary", bill_table(b)), ("billing.sheet.lines", lines_table(b, tenant)),
              ("billing.sheet.vouchers", claims_table(b)))
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "remove_timezone": True})
    money = book.add_format({"num_format": "#,##0.00"})
    bold = book.add_format({"bold": True})
    title = i18n.t("billing.xlsx.title", lang, month=b.month.name, centre=cfg.centre.name)
    for key, table in sheets:
        ws = book.add_worksheet(i18n.t(key, lang)[:31])
        ws.write(0, 0, title, bold)
        people = table.for_people(lang)
        for j, header in enumerate(people.columns):
            ws.write(2, j, header, bold)
            ws.set_column(j, j, max(10, min(40, len(str(header)) + 4)))
        for i in range(len(people)):
            for j, col in enumerate(table.columns):
                raw = table.rows[col.name].iloc[i] if col.name in table.rows else None
                if col.kind in ("cny", "number", "count") and not _missing(raw):
                    ws.write_number(3 + i, j, float(raw), money if col.kind == "cny" else None)  # type: ignore[arg-type]
                else:
                    ws.write(3 + i, j, people.iloc[i, j])
    book.close()
    return buf.getvalue()


# ---- the API's answer -----------------------------------------------------------------------

def api_bills(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
              scope: Scope) -> tuple[HistoryTable, str]:
    """GET /api/v1/bills?month=YYYY-MM[&tenant=][&lines=true][&format=csv]: the month's
    summary per tenant, or with lines=true every line item. ParamError on a bad parameter."""
    known = {"month", "tenant", "lines", "format"}
    for name in params:
        if name not in known:
            raise ParamError(name, "history.expect.known", names=", ".join(sorted(known)))
    if not params.get("month"):
        raise ParamError("month", "history.expect.month")
    fmt = _one_of("format", params.get("format"), ("json", "csv"), "json")
    want_lines = _one_of("lines", params.get("lines"), ("true", "false"), "false") == "true"
    tenant = params.get("tenant") or None
    if scope.tenant is None and tenant is not None:
        _one_of("tenant", tenant, sorted({t.id for t in cfg.tenants}))
    b = bills(store, cfg, params["month"], now=now, scope=scope, tenant=tenant)
    return (lines_table(b) if want_lines else bill_table(b)), fmt or "json"


def api_vouchers(store: Store, cfg: config.Config, params: dict[str, str], now: datetime,
                 scope: Scope) -> tuple[HistoryTable, str]:
    """GET /api/v1/vouchers?period=YYYY|YYYY-MM[&programme=][&format=csv]: the reconciliation."""
    known = {"period", "programme", "format"}
    for name in params:
        if name not in known:
            raise ParamError(name, "history.expect.known", names=", ".join(sorted(known)))
    period = params.get("period") or ""
    if not (_YEAR_RE.match(period) or _MONTH_RE.match(period)):
        raise ParamError("period", "billing.expect.period")
    fmt = _one_of("format", params.get("format"), ("json", "csv"), "json")
    return reconciliation(store, cfg, period, programme=params.get("programme") or None, now=now,
                          scope=scope), fmt or "json"


def _one_of(param: str, value: str | None, options: Iterable[str], default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    opts = list(options)
    if value not in opts:
        raise ParamError(param, "history.expect.one_of", options=", ".join(opts))
    return value


