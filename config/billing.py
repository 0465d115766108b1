"""Billing: tenants' contracts, the price list with effective dates, quotas and the compute-voucher
(算力券) programmes.

Written as the `[billing]` table of centre.toml, or as its own file billing.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.

Dates are the billing site's local calendar (`site`, default the first site): a contract from
2026-11-10 starts at local midnight, and its `end` is the first day it no longer covers, so a
one-year contract reads start = 2026-01-01, end = 2027-01-01. Voucher programmes are data, not
code, because real programmes differ (rate, base, caps, eligibility, one claim or many): the
rules that apply them are queries/billing.py's, and docs/billing.md explains each key.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from config.base import Ident, Problems, Strict

Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
LineKind = Literal["lease", "usage", "shortfall", "overage", "energy"]
LINE_KINDS: tuple[LineKind, ...] = ("lease", "usage", "shortfall", "overage", "energy")
COMPUTE_LINES: tuple[LineKind, ...] = ("lease", "usage", "shortfall", "overage")


class PriceEntry(Strict):
    """One model's prices from `effective` (local date) until the model's next entry."""

    model: str                                   # accelerators.toml id
    effective: date
    per_gpu_hour: Money | None = None            # platform usage, in the price list's currency
    per_gpu_month: Money | None = None           # leases: a whole calendar month of one GPU


class Contract(Strict):
    """A tenant's contract: a lease of GPUs at a monthly price (pro-rated by the hour), or platform
    usage by the GPU-hour of one model, optionally with committed GPUs and an overage price."""

    id: Ident
    tenant: str
    kind: Literal["lease", "usage"]
    model: str                                   # accelerators.toml id
    start: date
    end: date                                    # the first day not covered
    signed: date | None = None                   # default: start (voucher eligibility reads it)
    currency: Currency = "CNY"
    amount: Money | None = None                  # the contract amount (vouchers paid on it)
    gpus: Annotated[int, Field(gt=0, le=1_000_000)] | None = None          # lease: GPUs leased
    hosts: list[str] = []                        # lease: whole hosts (each its cluster's gpus_per_node)
    devices: list[str] = []                      # lease: single devices (one GPU each)
    per_gpu_month: Money | None = None           # lease price; default: the price list's
    per_gpu_hour: Money | None = None            # usage price; default: the price list's
    committed_gpus: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] = 0.0
    overage_per_gpu_hour: Money | None = None    # usage beyond the commitment; default: per_gpu_hour
    clusters: list[str] = []                     # usage counted on these clusters only (default: all)
    energy: Literal["none", "pass_through", "surcharge"] = "none"
    energy_per_kwh: Money | None = None          # surcharge per facility kWh

    @property
    def signed_on(self) -> date:
        return self.signed or self.start


class Programme(Strict):
    """A voucher programme: `rate` of a base (the fees billed, after programmes applied before it,
    or the contract amount), within a per-claim cap, a per-enterprise calendar-year cap and a
    programme budget per calendar year, for eligible contracts of enrolled tenants."""

    id: Ident
    name: str
    name_zh: str | None = None
    rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    base: Literal["fees", "contract"] = "fees"
    claims: Literal["monthly", "once"] = "monthly"      # once: one claim per contract
    per_claim_cap: Money | None = None
    enterprise_year_cap: Money | None = None
    budget_year: Money | None = None
    start: date | None = None                    # the programme pays for bills of months from here
    end: date | None = None                      # ... until (exclusive)
    signed_from: date | None = None              # contracts signed on or after
    signed_until: date | None = None             # ... and before
    max_term_months: Annotated[int, Field(gt=0, le=1200)] | None = None
    flags: list[str] = []                        # the tenant must carry every one
    lines: list[LineKind] = list(COMPUTE_LINES)          # the line kinds it pays on


class Enrolment(Strict):
    """A tenant's voucher standing: its flags (e.g. sme) and the programmes it holds, in the
    order they apply."""

    tenant: str
    flags: list[str] = []
    programmes: list[str] = []


class Quota(Strict):
    """GPUs a tenant deserves on one cluster or model (neither: the whole centre)."""

    tenant: str
    cluster: str | None = None
    model: str | None = None
    gpus: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]


class Section(Strict):
    """The [billing] settings."""

    currency: Currency = "CNY"                   # the price list's and the voucher caps' currency
    site: Ident | None = None                    # whose calendar months bills follow (default: first site)
    prices: list[PriceEntry] = []
    contracts: list[Contract] = []
    programmes: list[Programme] = []
    enrolments: list[Enrolment] = []
    quotas: list[Quota] = []
    quota_near_pct: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 90.0

    def contract(self, contract_id: str) -> Contract:
        for c in self.contracts:
            if c.id == contract_id:
                return c
        raise KeyError(contract_id)

    def programme(self, programme_id: str) -> Programme:
        for p in self.programmes:
            if p.id == programme_id:
                return p
        raise KeyError(programme_id)


def add_months(d: date, months: int) -> date:
    """`d` plus whole calendar months (the last day of a shorter month where the day is missing)."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise ValueError(d)


def price_on(section: Section, model: str, day: date, field: str) -> float | None:
    """The price list's `field` (per_gpu_hour, per_gpu_month) for `model` in force on `day`."""
    best: PriceEntry | None = None
    for p in section.prices:
        if p.model == model and p.effective <= day and getattr(p, field) is not None:
            if best is None or p.effective > best.effective:
                best = p
    return None if best is None else getattr(best, field)


def host_cluster(clusters: Any, host: str) -> Any:
    """The cluster whose host_prefix names `host` (the simulator's and the config's convention:
    trn-a-001 is in the cluster with host_prefix trn-a), else None."""
    for cl in clusters:
        if host == cl.host_prefix or host.startswith(f"{cl.host_prefix}-"):
            return cl
    return None


def lease_gpus(c: Contract, clusters: Any) -> int:
    """The GPUs a lease rents: `gpus`, or its devices plus each host's cluster's gpus_per_node."""
    if c.gpus is not None:
        return c.gpus
    total = len(c.devices)
    for host in c.hosts:
        cl = host_cluster(clusters, host)
        total += cl.gpus_per_node if cl is not None else 0
    return total


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("billing." inside centre.toml, "" in its own file)."""
    tenants = {t.id for t in cf.tenants}
    models = {m.id for m in catalogue.models}
    clusters = {c.id for c in cf.clusters}
    sites = {s.id for s in cf.sites}
    programmes = {p.id for p in section.programmes}

    def add(where: str, text: str) -> None:
        problems.add(path, f"{key}{where}", text)

    if section.site is not None and section.site not in sites:
        add("site", f"unknown site {section.site!r}; expected one of {sorted(sites)}")
    seen_prices: set[tuple[str, date]] = set()
    for i, p in enumerate(section.prices):
        if p.model not in models:
            add(f"prices[{i}].model", f"unknown model {p.model!r}; expected an accelerators.toml id, one of "
                f"{sorted(models)}")
        if (p.model, p.effective) in seen_prices:
            add(f"prices[{i}].effective", f"{p.model} already has a price effective {p.effective}")
        seen_prices.add((p.model, p.effective))
        if p.per_gpu_hour is None and p.per_gpu_month is None:
            add(f"prices[{i}]", "give per_gpu_hour, per_gpu_month or both")
    ids: set[str] = set()
    enrolled = {e.tenant: e for e in section.enrolments}
    for i, c in enumerate(section.contracts):
        here = f"contracts[{i}]"
        if c.id in ids:
            add(f"{here}.id", f"duplicate id {c.id!r}")
        ids.add(c.id)
        if c.tenant not in tenants:
            add(f"{here}.tenant", f"unknown tenant {c.tenant!r}; expected one of {sorted(tenants)}")
        if c.model not in models:
            add(f"{here}.model", f"unknown model {c.model!r}; expected an accelerators.toml id, one of "
                f"{sorted(models)}")
        if c.end <= c.start:
            add(f"{here}.end", f"must be after start ({c.start})")
        for j, cl in enumerate(c.clusters):
            if cl not in clusters:
                add(f"{here}.clusters[{j}]", f"unknown cluster {cl!r}; expected one of {sorted(clusters)}")
        own = c.currency != section.currency
        if c.kind == "lease":
            if c.gpus is None and not c.hosts and not c.devices:
                add(f"{here}.gpus", "a lease needs the GPUs it rents: gpus, hosts or devices")
            if c.gpus is not None and (c.hosts or c.devices):
                add(f"{here}.gpus", "give gpus, or hosts and devices (whose GPUs are counted), not both")
            for j, host in enumerate(c.hosts):
                if host_cluster(cf.clusters, host) is None:
                    add(f"{here}.hosts[{j}]", f"host {host!r} is in no cluster (no cluster's host_prefix starts it: "
                        f"{sorted(cl.host_prefix for cl in cf.clusters)})")
            if c.per_gpu_month is None and (own or price_on(section, c.model, c.start, "per_gpu_month") is None):
                add(f"{here}.per_gpu_month", f"no lease price for {c.model} on {c.start}: give per_gpu_month here "
                    f"or a [[prices]] entry with per_gpu_month effective by then"
                    + (f" (the price list is in {section.currency}, this contract in {c.currency})" if own else ""))
            for name in ("committed_gpus", "overage_per_gpu_hour", "per_gpu_hour"):
                if getattr(c, name) not in (None, 0.0):
                    add(f"{here}.{name}", "is a usage contract's key; a lease is billed by the month")
        else:
            for name in ("gpus", "per_gpu_month", "hosts", "devices"):
                if getattr(c, name) not in (None, []):
                    add(f"{here}.{name}", "is a lease's key; a usage contract is billed by the GPU-hour")
            if c.per_gpu_hour is None and (own or price_on(section, c.model, c.start, "per_gpu_hour") is None):
                add(f"{here}.per_gpu_hour", f"no GPU-hour price for {c.model} on {c.start}: give per_gpu_hour here "
                    f"or a [[prices]] entry with per_gpu_hour effective by then"
                    + (f" (the price list is in {section.currency}, this contract in {c.currency})" if own else ""))
        if c.energy == "surcharge" and c.energy_per_kwh is None:
            add(f"{here}.energy_per_kwh", "energy = \"surcharge\" needs the price per kWh")
        if c.energy != "surcharge" and c.energy_per_kwh is not None:
            add(f"{here}.energy_per_kwh", "applies only with energy = \"surcharge\"")
        e = enrolled.get(c.tenant)
        if e is not None and c.amount is None:
            for prog in section.programmes:
                if prog.base == "contract" and prog.id in e.programmes:
                    add(f"{here}.amount", f"programme {prog.id!r} pays on the contract amount; give amount")
                    break
    powered: dict[str, list[tuple[int, Contract]]] = {}
    for i, c in enumerate(section.contracts):
        if c.energy == "none":
            continue
        for j, other in powered.get(c.tenant, []):
            if c.start < other.end and other.start < c.end:
                add(f"contracts[{i}].energy", f"contracts[{j}] ({other.id}) already bills {c.tenant}'s energy over "
                    "an overlapping time; a tenant's energy is billed by one contract at a time")
        powered.setdefault(c.tenant, []).append((i, c))
    seen_prog: set[str] = set()
    for i, prog in enumerate(section.programmes):
        here = f"programmes[{i}]"
        if prog.id in seen_prog:
            add(f"{here}.id", f"duplicate id {prog.id!r}")
        seen_prog.add(prog.id)
        if prog.base == "contract" and prog.claims != "once":
            add(f"{here}.claims", "a programme paid on the contract amount is claimed once per contract "
                "(claims = \"once\")")
        if prog.start and prog.end and prog.end <= prog.start:
            add(f"{here}.end", f"must be after start ({prog.start})")
        if prog.signed_from and prog.signed_until and prog.signed_until <= prog.signed_from:
            add(f"{here}.signed_until", f"must be after signed_from ({prog.signed_from})")
        if not prog.lines:
            add(f"{here}.lines", f"name at least one of {list(LINE_KINDS)}")
    seen_enrol: set[str] = set()
    for i, e in enumerate(section.enrolments):
        here = f"enrolments[{i}]"
        if e.tenant not in tenants:
            add(f"{here}.tenant", f"unknown tenant {e.tenant!r}; expected one of {sorted(tenants)}")
        if e.tenant in seen_enrol:
            add(f"{here}.tenant", f"tenant {e.tenant!r} is enrolled twice; list all its programmes in one entry")
        seen_enrol.add(e.tenant)
        for j, pid in enumerate(e.programmes):
            if pid not in programmes:
                add(f"{here}.programmes[{j}]", f"unknown programme {pid!r}; expected one of {sorted(programmes)}")
        if len(set(e.programmes)) != len(e.programmes):
            add(f"{here}.programmes", "a programme is listed twice")
    seen_quota: set[tuple] = set()
    for i, q in enumerate(section.quotas):
        here = f"quotas[{i}]"
        if q.tenant not in tenants:
            add(f"{here}.tenant", f"unknown tenant {q.tenant!r}; expected one of {sorted(tenants)}")
        if q.cluster is not None and q.cluster not in clusters:
            add(f"{here}.cluster", f"unknown cluster {q.cluster!r}; expected one of {sorted(clusters)}")
        if q.model is not None and q.model not in models:
            add(f"{here}.model", f"unknown model {q.model!r}; expected an accelerators.toml id")
        if q.cluster is not None and q.model is not None:
            add(f"{here}", "give cluster or model, not both")
        k = (q.tenant, q.cluster, q.model)
        if k in seen_quota:
            add(f"{here}", f"tenant {q.tenant!r} already has a quota on this {'cluster' if q.cluster else 'model'}")
        seen_quota.add(k)
