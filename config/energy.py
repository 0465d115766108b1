"""Energy: facility meters and their hierarchy (site -> hall -> cooling loop), PUE category and
targets, tariffs with time-of-use periods, carbon and coal factors, site power and cooling capacity.

Written as the `[energy]` table of centre.toml, or as its own file energy.toml beside centre.toml
(the same keys at its top level); config/__init__.py validates it with `Section` and then
calls `check` with the rest of the centre, so that every problem names its file and key.

What each part means (docs/energy.md has the whole story):

- `[pue]`: the target line, the GB 40879-2021 grade bands drawn on the chart, how long a meter
  may stay silent before its silence is a gap (`max_gap_s`), and the IT estimate used where a
  site has no IT meter (GPU board power plus `per_node_overhead_w` per node observed).
- `[[sites]]`: per site of centre.toml, its tariff, power / cooling / contracted capacity (kW,
  None where not known), which IT measurement category is its PUE denominator, and its own
  PUE target (cold regions: 1.25).
- `[[halls]]`, `[[loops]]` and `[[meters]]`: the meter hierarchy. A meter names its site, what it
  measures (facility | it | cooling, as the rows it writes), an IT meter's ISO/IEC 30134-2
  category, its hall and cooling loop, and `submeter_of` when its energy is already counted by
  another meter (site totals leave sub-meters out; pPUE per hall and loop reads them). A meter
  that is not listed still counts at its site by the scope and category its rows carry (a BMC
  per server through IPMI needs no entry); list a meter for its place in the hierarchy or for
  `register_max_kwh`, the value its energy register rolls over at.
- `[[tariffs]]`: time-of-use prices by season (months) and period (sharp, peak, flat, valley;
  尖峰/高峰/平段/低谷), the hours of the day each period holds, and the two-part tariff's
  monthly demand charge (CNY per kW of the month's maximum 15-minute demand) or capacity charge
  (CNY per kVA of the site's contracted capacity).
- `[carbon]` and `[[green]]`: the method (grid: kWh x the site's `grid_emission_kg_per_kwh` in
  centre.toml; coal: kWh x `coal_kgce_per_kwh` x `co2_t_per_tce`), the standard-coal factor
  (0.1229 kgce/kWh, the calorific equivalent), and green electricity bought per site and month
  (kWh or a share), which carbon leaves out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from config.base import Ident, Problems, Strict

PERIODS = ("sharp", "peak", "flat", "valley")          # 尖峰 / 高峰 / 平段 / 低谷
SCOPES = ("facility", "it", "cooling")
_HOURS_RE = re.compile(r"^(\d{2})-(\d{2})$")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")

Pue = Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)]
Kw = Annotated[float, Field(gt=0, le=10_000_000, allow_inf_nan=False)]
Price = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
HourRange = Annotated[str, Field(pattern=_HOURS_RE.pattern)]


class Grade(Strict):
    """A GB 40879-2021 grade band: PUE at most `max_pue` reaches `grade` (1 is the best)."""

    grade: Annotated[int, Field(ge=1, le=5)]
    max_pue: Pue


class PueSettings(Strict):
    target: Pue = 1.3                          # the policy line for new large centres
    grades: list[Grade] = [Grade(grade=1, max_pue=1.2), Grade(grade=2, max_pue=1.3), Grade(grade=3, max_pue=1.5)]
    max_gap_s: Annotated[float, Field(ge=10, le=86_400, allow_inf_nan=False)] = 900.0
    per_node_overhead_w: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] = 2000.0


class SiteEnergy(Strict):
    site: str
    tariff: str | None = None
    power_kw: Kw | None = None                 # facility power capacity (transformers, feeders)
    cooling_kw: Kw | None = None               # cooling plant capacity
    contracted_kw: Kw | None = None            # contracted demand with the grid
    contracted_kva: Kw | None = None           # contracted capacity (a capacity charge's base)
    it_category: Annotated[int, Field(ge=1, le=3)] | None = None   # PUE denominator; default: the highest metered
    pue_target: Pue | None = None              # the site's own (cold regions: 1.25)


class Hall(Strict):
    id: Ident
    site: str
    name: str = ""
    clusters: list[str] = []                   # the clusters whose servers stand in the hall


class Loop(Strict):
    id: Ident
    hall: str
    name: str = ""


class Meter(Strict):
    site: str
    meter: str
    scope: Literal["facility", "it", "cooling"]
    category: Annotated[int, Field(ge=1, le=3)] | None = None      # IT meters: ISO/IEC 30134-2
    hall: str | None = None
    loop: str | None = None
    submeter_of: str | None = None
    register_max_kwh: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class Season(Strict):
    name: str
    months: Annotated[list[Annotated[int, Field(ge=1, le=12)]], Field(min_length=1)]
    prices: dict[str, Price]                   # period -> CNY per kWh
    hours: dict[str, list[HourRange]]          # period -> ["08-11", "22-06"] (start included, end not)


class Tariff(Strict):
    id: Ident
    name: str = ""
    seasons: Annotated[list[Season], Field(min_length=1)]
    demand_cny_per_kw_month: Price | None = None       # on the month's maximum 15-minute demand
    capacity_cny_per_kva_month: Price | None = None    # on the site's contracted_kva


class Carbon(Strict):
    method: Literal["grid", "coal"] = "grid"
    coal_kgce_per_kwh: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1229
    co2_t_per_tce: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 2.46


class Green(Strict):
    """Green electricity bought for a site in a month (site-local calendar): kWh or a share."""

    site: str
    month: Annotated[str, Field(pattern=_MONTH_RE.pattern)]
    kwh: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    share_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None


class Section(Strict):
    """The [energy] settings."""

    pue: PueSettings = PueSettings()
    sites: list[SiteEnergy] = []
    halls: list[Hall] = []
    loops: list[Loop] = []
    meters: list[Meter] = []
    tariffs: list[Tariff] = []
    carbon: Carbon = Carbon()
    green: list[Green] = []

    def site(self, site: str) -> SiteEnergy:
        """The site's settings (all None where energy.toml does not list it)."""
        for s in self.sites:
            if s.site == site:
                return s
        return SiteEnergy(site=site)

    def tariff(self, tariff_id: str | None) -> Tariff | None:
        return next((t for t in self.tariffs if t.id == tariff_id), None)

    def meter(self, site: str, meter: str) -> Meter | None:
        return next((m for m in self.meters if m.site == site and m.meter == meter), None)


def hour_range(text: str) -> list[int]:
    """The hours of the day a range "HH-HH" holds (start included, end not; "22-06" wraps past
    midnight; "00-24" is the whole day)."""
    m = _HOURS_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not an hour range such as \"08-11\"")
    a, b = int(m.group(1)), int(m.group(2))
    if a > 23 or b > 24 or a == b:
        raise ValueError(f"{text!r}: hours run 00..24 and a range must not be empty")
    return list(range(a, b)) if a < b else list(range(a, 24)) + list(range(0, b))


def _check_tariff(problems: Problems, path: Path, key: str, t: Tariff) -> None:
    months: dict[int, str] = {}
    for j, season in enumerate(t.seasons):
        where = f"{key}.seasons[{j}]"
        for m in season.months:
            if m in months:
                problems.add(path, f"{where}.months", f"month {m} is also in season {months[m]!r}; "
                             "give each month one season")
            months.setdefault(m, season.name)
        for period in [*season.prices, *season.hours]:
            if period not in PERIODS:
                problems.add(path, f"{where}", f"unknown period {period!r}; expected some of {list(PERIODS)}")
        owner: dict[int, str] = {}
        for period, ranges in season.hours.items():
            if period not in season.prices:
                problems.add(path, f"{where}.hours.{period}", f"period {period!r} has hours but no price in "
                             f"{where}.prices")
            for text in ranges:
                try:
                    hours = hour_range(text)
                except ValueError as exc:
                    problems.add(path, f"{where}.hours.{period}", str(exc))
                    continue
                for h in hours:
                    if h in owner:
                        problems.add(path, f"{where}.hours.{period}",
                                     f"hour {h:02d}:00 is also in period {owner[h]!r}; give each hour one period")
                    owner.setdefault(h, period)
        missing = [h for h in range(24) if h not in owner]
        if missing:
            problems.add(path, f"{where}.hours", f"hours {', '.join(f'{h:02d}:00' for h in missing)} have no period; "
                         "cover all 24 hours of the day")
    absent = [m for m in range(1, 13) if m not in months]
    if absent:
        problems.add(path, f"{key}.seasons", f"months {absent} have no season; cover all 12 months")


def check(problems: Problems, path: Path, key: str, section: Section, cf: Any, catalogue: Any) -> None:
    """Cross-checks against the rest of the centre (`cf`: the validated centre file). `key` is the
    prefix of this section's keys in messages ("energy." inside centre.toml, "" in its own file)."""
    site_ids = sorted(s.id for s in cf.sites)
    tariff_ids = [t.id for t in section.tariffs]
    grades = [g.grade for g in section.pue.grades]
    if len(set(grades)) != len(grades):
        problems.add(path, f"{key}pue.grades", f"a grade is listed twice in {grades}")
    ordered = sorted(section.pue.grades, key=lambda g: g.grade)
    for a, b in zip(ordered, ordered[1:]):
        if b.max_pue <= a.max_pue:
            problems.add(path, f"{key}pue.grades", f"grade {b.grade}'s max_pue ({b.max_pue}) must be above grade "
                         f"{a.grade}'s ({a.max_pue}): a better grade has the lower PUE")
    seen_sites: set[str] = set()
    for i, s in enumerate(section.sites):
        if s.site not in site_ids:
            problems.add(path, f"{key}sites[{i}].site", f"unknown site {s.site!r}; expected one of {site_ids}")
        if s.site in seen_sites:
            problems.add(path, f"{key}sites[{i}].site", f"site {s.site!r} is listed twice")
        seen_sites.add(s.site)
        if s.tariff is not None and s.tariff not in tariff_ids:
            problems.add(path, f"{key}sites[{i}].tariff", f"unknown tariff {s.tariff!r}; expected one of {tariff_ids}")
        t = section.tariff(s.tariff)
        if t is not None and t.capacity_cny_per_kva_month is not None and s.contracted_kva is None:
            problems.add(path, f"{key}sites[{i}].contracted_kva", f"tariff {t.id!r} charges per kVA of contracted "
                         "capacity; give the site's contracted_kva")
    if len(set(tariff_ids)) != len(tariff_ids):
        problems.add(path, f"{key}tariffs", f"a tariff id is listed twice in {tariff_ids}")
    for i, t in enumerate(section.tariffs):
        _check_tariff(problems, path, f"{key}tariffs[{i}]", t)
    hall_site = {}
    for i, h in enumerate(section.halls):
        if h.site not in site_ids:
            problems.add(path, f"{key}halls[{i}].site", f"unknown site {h.site!r}; expected one of {site_ids}")
        if h.id in hall_site:
            problems.add(path, f"{key}halls[{i}].id", f"hall {h.id!r} is listed twice")
        hall_site[h.id] = h.site
        for c in h.clusters:
            cl = next((x for x in cf.clusters if x.id == c), None)
            if cl is None:
                problems.add(path, f"{key}halls[{i}].clusters", f"unknown cluster {c!r}")
            elif cl.site != h.site:
                problems.add(path, f"{key}halls[{i}].clusters", f"cluster {c!r} is in site {cl.site!r}, not {h.site!r}")
    loop_hall = {}
    for i, lp in enumerate(section.loops):
        if lp.hall not in hall_site:
            problems.add(path, f"{key}loops[{i}].hall",
                         f"unknown hall {lp.hall!r}; expected one of {sorted(hall_site)}")
        if lp.id in loop_hall:
            problems.add(path, f"{key}loops[{i}].id", f"loop {lp.id!r} is listed twice")
        loop_hall[lp.id] = lp.hall
    names = {(m.site, m.meter): m for m in section.meters}
    seen: set[tuple[str, str]] = set()
    for i, m in enumerate(section.meters):
        where = f"{key}meters[{i}]"
        if m.site not in site_ids:
            problems.add(path, f"{where}.site", f"unknown site {m.site!r}; expected one of {site_ids}")
        if (m.site, m.meter) in seen:
            problems.add(path, f"{where}.meter", f"meter {m.meter!r} of site {m.site!r} is listed twice")
        seen.add((m.site, m.meter))
        if m.scope == "it" and m.category is None:
            problems.add(path, f"{where}.category", "an IT meter needs its ISO/IEC 30134-2 category: 1 (UPS output), "
                         "2 (PDU output) or 3 (IT equipment input)")
        if m.scope != "it" and m.category is not None:
            problems.add(path, f"{where}.category", f"only IT meters have a measurement category, not {m.scope!r} ones")
        if m.hall is not None:
            if m.hall not in hall_site:
                problems.add(path, f"{where}.hall", f"unknown hall {m.hall!r}; expected one of {sorted(hall_site)}")
            elif hall_site[m.hall] != m.site:
                problems.add(path, f"{where}.hall", f"hall {m.hall!r} is in site {hall_site[m.hall]!r}, not {m.site!r}")
        if m.loop is not None:
            if m.loop not in loop_hall:
                problems.add(path, f"{where}.loop", f"unknown loop {m.loop!r}; expected one of {sorted(loop_hall)}")
            elif m.hall is not None and loop_hall[m.loop] != m.hall:
                problems.add(path, f"{where}.loop", f"loop {m.loop!r} is in hall {loop_hall[m.loop]!r}, not {m.hall!r}")
            if m.scope != "cooling":
                problems.add(path, f"{where}.loop", "only cooling meters belong to a cooling loop")
        if m.submeter_of is not None:
            parent = names.get((m.site, m.submeter_of))
            if parent is None:
                problems.add(path, f"{where}.submeter_of", f"no meter {m.submeter_of!r} at site {m.site!r} is listed")
            elif parent.scope != m.scope:
                problems.add(path, f"{where}.submeter_of", f"meter {m.submeter_of!r} measures {parent.scope}, "
                             f"this one {m.scope}: a sub-meter measures part of its parent's load")
            elif parent.meter == m.meter:
                problems.add(path, f"{where}.submeter_of", "a meter cannot be its own sub-meter")
    for i, g in enumerate(section.green):
        if g.site not in site_ids:
            problems.add(path, f"{key}green[{i}].site", f"unknown site {g.site!r}; expected one of {site_ids}")
        if (g.kwh is None) == (g.share_pct is None):
            problems.add(path, f"{key}green[{i}]", "give either kwh or share_pct (one of them)")
        mo = int(g.month[5:7])
        if not 1 <= mo <= 12:
            problems.add(path, f"{key}green[{i}].month", f"{g.month!r} is not a month (YYYY-MM)")
    months = [(g.site, g.month) for g in section.green]
    if len(set(months)) != len(months):
        problems.add(path, f"{key}green", "a site's month is listed twice")
