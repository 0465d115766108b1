"""The centre's description: load and validate the TOML files in config/.

`load()` reads centre.toml, accelerators.toml and mappings/*.toml from one
directory (ZHISUAN_CONFIG, or this package's own directory by default) and
returns a `Config`; `from_dict()` builds the same from dicts (tests, tools), with
the package's own catalogue and mappings unless given. Anything wrong stops
start-up with a `ConfigError` whose message names the file, the key and what was
expected, one problem per line and every problem at once, because an operator
editing TOML at 3 a.m. needs the lines to fix, not a traceback or one fix per start.

A source's kind-specific keys (targets, host_from, mappings, host, ...) are
validated by its kind's options model (collectors/kinds/); the kinds are read
lazily so that importing config never imports a collector.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from collectors.kinds.base import Options, SourceKind

from config import access as _access
from config import billing as _billing
from config import capacity as _capacity
from config import energy as _energy
from config import reports as _reports
from config.canonical import (
    DERIVED_MEASURES, DEVICE_ATTRIBUTES, FACILITY_LABEL_ROLES, FACILITY_MEASURES, LABEL_ROLES, SAMPLE_MEASURES,
)

from config.base import (  # noqa: F401  (re-exported: the package's names since before the split)
    _MEMORY_RE, _MEMORY_UNITS, MAX_INTERVAL_S, MAX_STALE_S, MAX_TIMEOUT_S, MIN_INTERVAL_S, MIN_MEMORY_LIMIT_BYTES,
    MIN_TIMEOUT_S, ConfigError, Ident, IntervalS, Number, PosFloat, PosInt, StaleS, TimeoutS,
)
from config.base import Problems as _Problems
from config.base import Strict as _Strict

# The areas beside the centre's core: each a module with a `Section` model and a `check`, written
# as a [<area>] table in centre.toml or as <area>.toml beside it (never both).
AREAS = {"energy": _energy, "billing": _billing, "capacity": _capacity, "access": _access, "reports": _reports}

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
ENV_VAR = "ZHISUAN_CONFIG"


class Centre(_Strict):
    name: str
    default_language: Literal["en", "zh-CN"] = "en"


class Database(_Strict):
    path: Annotated[str, Field(min_length=1)] = "data/centre.duckdb"
    # DuckDB's buffer pool; its own default is 80 % of the machine's memory
    memory_limit: Annotated[str, Field(pattern=_MEMORY_RE.pattern)] = "1GB"

    @field_validator("memory_limit")
    @classmethod
    def _enough_memory(cls, v: str) -> str:
        if memory_limit_bytes(v) < MIN_MEMORY_LIMIT_BYTES:
            raise ValueError(f"{v!r} is too little for DuckDB to run; give at least 64MB (e.g. \"1GB\")")
        return v


def memory_limit_bytes(text: str) -> float:
    """A memory_limit setting ("1GB", "512 MiB") in bytes (KB = 1000 bytes, KiB = 1024, as DuckDB)."""
    m = _MEMORY_RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an amount of memory such as \"1GB\" or \"512MiB\"")
    return float(m.group(1)) * _MEMORY_UNITS[m.group(2)]


# bytes 8..11 of every DuckDB database file
DUCKDB_MAGIC = b"DUCK"


def database_problem(path: str | os.PathLike, *, write: bool = True) -> str | None:
    """Why `path` cannot serve as the database file, in words; None when it can. A file that
    does not exist yet is fine when its folder exists or can be made (and, for `write`, can be
    written: DuckDB writes its WAL beside the file). Reads at most 12 bytes, writes nothing;
    used by config checks (check-config, start) and by queries.store.connect."""
    p = Path(path)
    if p.is_dir():
        return f"{p} is a folder, not a database file (name a file in it, e.g. {p / 'centre.duckdb'})"
    if p.exists():
        if not p.is_file():
            return f"{p} is not a regular file"
        try:
            with p.open("rb") as fh:
                head = fh.read(12)
        except OSError as exc:
            return f"{p} cannot be read: {exc.strerror}"
        if not head:
            return (f"{p} is empty (0 bytes), not a DuckDB database: a damaged or unfinished file. Move it "
                    "aside and restore a copy, or remove it to start with an empty database")
        if head[8:12] != DUCKDB_MAGIC:
            return (f"{p} is not a DuckDB database file (it does not start like one). If it was the "
                    "dashboard's database it is damaged: move it aside and restore a copy; otherwise "
                    "point database.path at another file")
        if write and not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK)):
            return f"{p} cannot be written by this user (the file and its folder must be writable)"
        return None
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, so the folder for {p} cannot be made"
    if write and not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} cannot be written by this user, so {p} cannot be made there"
    return None


class Collection(_Strict):
    interval_s: IntervalS = 15.0
    timeout_s: TimeoutS = 5.0
    concurrency: Annotated[int, Field(gt=0, le=4096)] = 32
    stale_after_s: StaleS = 60.0


class UI(_Strict):
    refresh_s: IntervalS = 15.0


class Site(_Strict):
    id: Ident
    name: str
    grid_emission_kg_per_kwh: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.58
    timezone: str = "Asia/Shanghai"      # local time of meter readings and bills


class Cluster(_Strict):
    id: Ident
    name: str
    site: str
    nodes: PosInt
    gpus_per_node: PosInt
    model: str
    host_prefix: Ident


class Tenant(_Strict):
    id: Ident
    name: str
    namespaces: list[str] = []
    workload: Literal["training", "inference"] = "training"


class AttributionRule(_Strict):
    """Labels -> tenant. Patterns are shell globs (`*`, `?`, `[...]`); every given one must match."""

    tenant: str
    namespace: str | None = None
    pod: str | None = None
    job: str | None = None          # Slurm / HPC job label (hpc_job, job_id)
    user: str | None = None         # the job's user (AMD exporter's job_user on Slurm)


class Lease(_Strict):
    """A static lease: hosts or devices rented to a tenant over [start, end) (bare-metal rental)."""

    tenant: str
    hosts: list[str] = []
    devices: list[str] = []
    start: datetime
    end: datetime | None = None     # open-ended when absent


class Simulator(_Strict):
    seed: int = 1
    bind: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    backfill_days: Annotated[float, Field(ge=0, le=3660, allow_inf_nan=False)] = 30.0
    backfill_step_s: Annotated[int, Field(ge=60, le=86_400)] = 900
    site_overhead_kw: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 180.0


def source_kinds() -> dict[str, "SourceKind"]:
    """The registered source kinds (collectors/kinds/), imported on first use."""
    from collectors.kinds import kinds

    return kinds()


def __getattr__(name: str) -> Any:
    """SOURCE_KINDS, EXPORTER_KINDS and DEFAULT_MAPPINGS, derived from the kinds' declarations
    (kept for callers that read them; computed lazily to keep config light to import)."""
    if name == "SOURCE_KINDS":
        return tuple(source_kinds())
    if name == "EXPORTER_KINDS":
        return tuple(k for k, kind in source_kinds().items() if kind.targets == "urls")
    if name == "DEFAULT_MAPPINGS":
        return {k: list(kind.default_mappings) for k, kind in source_kinds().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Source(_Strict):
    """One `[[sources]]` table: the keys every source has, and its kind's own keys (flat in
    the TOML), validated by the kind's options model and read through `options` (or the
    properties below, which give a key the kind does not take its neutral default)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: Ident
    kind: str
    site: str
    cluster: str
    timeout_s: TimeoutS | None = None           # overrides collection.timeout_s
    retries: Annotated[int, Field(ge=0, le=5)] = 2
    _options: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _read_options(self) -> "Source":
        """Valid options are read at once (so two equal sources compare equal whether or not
        one was used); invalid ones are reported by config's checks, or when read."""
        spec = source_kinds().get(self.kind)
        if spec is not None:
            try:
                self._options = spec.options.model_validate(self.model_extra or {})
            except ValidationError:
                pass
        return self

    @property
    def kind_spec(self) -> "SourceKind":
        kinds = source_kinds()
        if self.kind not in kinds:
            raise ConfigError(f"source {self.name!r}: unknown kind {self.kind!r}; expected one of {list(kinds)}")
        return kinds[self.kind]

    @property
    def options(self) -> "Options":
        """The kind's options, validated on first use (config loading validates them up front
        with file and key; a Source built in code is checked here)."""
        if self._options is None:
            try:
                self._options = self.kind_spec.options.model_validate(self.model_extra or {})
            except ValidationError as exc:
                raise ConfigError("\n".join(_validation_lines(f"source {self.name!r}", exc))) from None
        return self._options

    @property
    def targets(self) -> list[str]:
        return list(getattr(self.options, "targets", []))

    @property
    def host_from(self) -> str:
        return getattr(self.options, "host_from", "label")

    @property
    def mappings(self) -> list[str] | None:
        m = getattr(self.options, "mappings", None)
        return None if m is None else list(m)

    @property
    def host(self) -> str | None:
        return getattr(self.options, "host", None)

    @property
    def mapping_names(self) -> list[str]:
        return self.mappings if self.mappings is not None else list(self.kind_spec.default_mappings)


class Retention(_Strict):
    """How long each history tier keeps its rows (docs/history.md "Tiers"); hourly rows are kept."""

    raw_days: Annotated[int, Field(ge=1, le=36_600)] = 14            # device_samples
    five_minute_days: Annotated[int, Field(ge=1, le=36_600)] = 90    # rollup_*_5m


class Utilisation(_Strict):
    target_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 60.0   # policy target line


class Price(_Strict):
    """What a GPU-hour of one catalogue model costs (the reclaim list prices idle time with it)."""

    model: str                      # accelerators.toml model id
    cny_per_gpu_hour: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class OwnerTable(_Strict):
    site: Ident | None = None           # default: the first site
    instance: Ident | None = None       # default: this machine's host name


@dataclass(frozen=True)
class Owner:
    """Who owns a database file: (site, instance). Rows of owner state carry it, so files
    of several owners can be combined later."""

    site: str
    instance: str


class CentreFile(_Strict):
    centre: Centre
    database: Database = Database()
    collection: Collection = Collection()
    ui: UI = UI()
    owner: OwnerTable = OwnerTable()
    sites: Annotated[list[Site], Field(min_length=1)]
    clusters: Annotated[list[Cluster], Field(min_length=1)]
    tenants: list[Tenant] = []
    simulator: Simulator = Simulator()
    sources: list[Source] = []
    attribution: list[AttributionRule] = []
    leases: list[Lease] = []
    retention: Retention = Retention()
    utilisation: Utilisation = Utilisation()
    prices: list[Price] = []


class AcceleratorModel(_Strict):
    id: Ident
    vendor: Literal["nvidia", "amd", "huawei", "other"]
    match: Annotated[list[str], Field(min_length=1)]
    peak_dense_tflops: PosFloat
    memory_gib: PosFloat
    tdp_w: PosFloat


class CatalogueFile(_Strict):
    models: Annotated[list[AcceleratorModel], Field(min_length=1)]


class FieldMap(_Strict):
    column: str
    scale: Number = 1.0
    kind: Literal["number", "string"] = "number"


class MappingFile(_Strict):
    table: Literal["device_samples", "facility_samples"] = "device_samples"
    fields: dict[str, FieldMap]
    labels: dict[str, Annotated[list[str], Field(min_length=1)]]
    # label role -> value for series that carry no such label (an IPMI power reading is
    # always IT load at category 3: `defaults = { scope = "it", pue_category = "3" }`)
    defaults: dict[str, str] = {}


# A [fields] key may select one series of a metric by one label, as PromQL writes it:
# 'gpu_clock{clock_type="system"}' (the AMD exporter prints every clock of a GPU under
# one name, told apart by clock_type).
SELECTOR_RE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\{([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"\}\Z')
# Columns a device mapping may fill that are not stored: the parser derives a stored
# column from them (mem_free_mib = mem_total_mib - mem_used_mib, for exporters such as
# Ascend's that print used and total memory but not free).
PARSE_ONLY_COLUMNS: tuple[str, ...] = ("mem_total_mib",)


@dataclass(frozen=True)
class Catalogue:
    """Accelerator models, looked up by the name an exporter reports."""

    models: tuple[AcceleratorModel, ...]
    _patterns: tuple[tuple[re.Pattern[str], AcceleratorModel], ...] = field(default=(), repr=False)

    @classmethod
    def build(cls, models: list[AcceleratorModel]) -> "Catalogue":
        pats = tuple((re.compile(p, re.IGNORECASE), m) for m in models for p in m.match)
        return cls(tuple(models), pats)

    def lookup(self, model_name: str | None) -> AcceleratorModel | None:
        if not model_name:
            return None
        return _lookup_cached(self, model_name)

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=4096)
def _lookup_cached(cat: Catalogue, name: str) -> AcceleratorModel | None:
    for pat, model in cat._patterns:
        if pat.search(name):
            return model
    return None


@dataclass(frozen=True)
class Config:
    directory: Path
    centre: Centre
    database: Database
    collection: Collection
    ui: UI
    sites: tuple[Site, ...]
    clusters: tuple[Cluster, ...]
    tenants: tuple[Tenant, ...]
    simulator: Simulator
    sources: tuple[Source, ...]
    attribution: tuple[AttributionRule, ...]
    leases: tuple[Lease, ...]
    catalogue: Catalogue
    mappings: dict[str, MappingFile]
    owner: Owner = Owner("-", "local")
    retention: Retention = Retention()
    utilisation: Utilisation = Utilisation()
    prices: tuple[Price, ...] = ()
    energy: _energy.Section = _energy.Section()
    billing: _billing.Section = _billing.Section()
    capacity: _capacity.Section = _capacity.Section()
    access: _access.Section = _access.Section()
    reports: _reports.Section = _reports.Section()

    def price_per_gpu_hour(self) -> dict[str, float]:
        """Catalogue model id -> CNY per GPU-hour, for the models `[[prices]]` names."""
        return {p.model: p.cny_per_gpu_hour for p in self.prices}

    @property
    def db_path(self) -> Path:
        return _resolve_db(self.database.path)

    @property
    def simulated(self) -> bool:
        """True when no real source is configured: the embedded simulator runs."""
        return not self.sources

    def cluster(self, cluster_id: str) -> Cluster:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        raise KeyError(cluster_id)

    def total_gpus(self) -> int:
        return sum(c.nodes * c.gpus_per_node for c in self.clusters)

    def tenant_for_namespace(self) -> dict[str, str]:
        return {ns: t.id for t in self.tenants for ns in t.namespaces}


def _resolve_db(path: str) -> Path:
    """database.path: relative paths resolve against the project root."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_EXPECT = {
    "int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
    "float_parsing": "a number", "string_type": "a string", "bool_type": "true or false",
    "list_type": "a list", "dict_type": "a table", "model_type": "a table",
    "finite_number": "a finite number", "bool_parsing": "true or false",
}


def _validation_lines(where: str | Path, err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem pydantic found: "<file>: key '<key>': <what was expected>, got ..."."""
    lines = []
    for e in err.errors():
        key = _loc(tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        if prefix:
            key = prefix if key == "(top level)" else f"{prefix}.{key}"
        etype = e["type"]
        if etype == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}' (check the spelling; it is not a setting)")
        elif etype == "missing":
            lines.append(f"{where}: required key '{key}' is missing")
        elif etype in _EXPECT:
            lines.append(f"{where}: key '{key}': expected {_EXPECT[etype]}, got {_describe(e.get('input'))}")
        elif etype == "value_error":
            # a kind's own rule: its message is the whole sentence
            lines.append(f"{where}: key '{key}': {e['ctx']['error']}")
        else:
            lines.append(f"{where}: key '{key}': {e['msg']}, got {_describe(e.get('input'))}")
    return lines


def _format_validation(path: Path, err: ValidationError) -> str:
    return "\n".join(_validation_lines(path, err))


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (set {ENV_VAR} to the directory holding your config)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}: line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8 "
                          "(TOML files are UTF-8; save the file as UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _validate(path: Path, model: type[_Strict], data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from None


def _check_unique(problems: _Problems, path: Path, key: str, ids: list[str], *, field: str = "id") -> None:
    seen: set[str] = set()
    for i, v in enumerate(ids):
        if v in seen:
            problems.add(path, f"{key}[{i}].{field}", f"duplicate {field} {v!r}")
        seen.add(v)


def _check_source(problems: _Problems, path: Path, i: int, s: Source) -> None:
    """The kind exists and its options model accepts the source's kind-specific keys."""
    kinds = source_kinds()
    if s.kind not in kinds:
        problems.add(path, f"sources[{i}].kind", f"unknown kind {s.kind!r}; expected one of {list(kinds)}")
        return
    try:
        kinds[s.kind].options.model_validate(s.model_extra or {})
    except ValidationError as exc:
        problems.extend(_validation_lines(path, exc, f"sources[{i}]"))


def _cross_check(problems: _Problems, path: Path, cf: CentreFile, cat: Catalogue) -> None:
    _check_unique(problems, path, "sites", [s.id for s in cf.sites])
    _check_unique(problems, path, "clusters", [c.id for c in cf.clusters])
    _check_unique(problems, path, "tenants", [t.id for t in cf.tenants])
    site_ids = {s.id for s in cf.sites}
    model_ids = {m.id for m in cat.models}
    _check_unique(problems, path, "prices", [p.model for p in cf.prices], field="model")
    for i, price in enumerate(cf.prices):
        if price.model not in model_ids:
            problems.add(path, f"prices[{i}].model",
                         f"unknown model {price.model!r}; expected an accelerators.toml id, one of {sorted(model_ids)}")
    for i, site in enumerate(cf.sites):
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.add(path, f"sites[{i}].timezone", f"unknown time zone {site.timezone!r} "
                         "(expected an IANA name such as Asia/Shanghai)")
    if cf.owner.site is not None and cf.owner.site not in site_ids:
        problems.add(path, "owner.site", f"unknown site {cf.owner.site!r}; expected one of {sorted(site_ids)}")
    cluster_ids = {c.id for c in cf.clusters}
    for i, c in enumerate(cf.clusters):
        if c.site not in site_ids:
            problems.add(path, f"clusters[{i}].site", f"unknown site {c.site!r}; expected one of {sorted(site_ids)}")
        if cat.lookup(c.model) is None:
            problems.add(path, f"clusters[{i}].model", f"{c.model!r} matches no model in accelerators.toml; "
                         "add it to the catalogue")
    owner: dict[str, str] = {}
    for i, t in enumerate(cf.tenants):
        for ns in t.namespaces:
            if ns in owner:
                problems.add(path, f"tenants[{i}].namespaces",
                             f"namespace {ns!r} already belongs to tenant {owner[ns]!r}")
            owner.setdefault(ns, t.id)
    _check_unique(problems, path, "sources", [s.name for s in cf.sources], field="name")
    prefixes: dict[str, int] = {}
    for i, c in enumerate(cf.clusters):
        if c.host_prefix in prefixes:
            problems.add(path, f"clusters[{i}].host_prefix",
                         f"host_prefix {c.host_prefix!r} is also clusters[{prefixes[c.host_prefix]}].host_prefix; "
                         "two clusters would name the same hosts and store their samples twice")
        prefixes.setdefault(c.host_prefix, i)
    tenant_ids = {t.id for t in cf.tenants}
    for i, r in enumerate(cf.attribution):
        if r.tenant not in tenant_ids:
            problems.add(path, f"attribution[{i}].tenant", f"unknown tenant {r.tenant!r}")
        if r.namespace is None and r.pod is None and r.job is None and r.user is None:
            problems.add(path, f"attribution[{i}]", "a rule needs at least one of namespace, pod, job, user")
        for key in ("namespace", "pod", "job", "user"):
            pattern = getattr(r, key)
            problem = glob_problem(pattern) if pattern is not None else None
            if problem:
                problems.add(path, f"attribution[{i}].{key}", f"{pattern!r}: {problem}")
    for i, lease in enumerate(cf.leases):
        if lease.tenant not in tenant_ids:
            problems.add(path, f"leases[{i}].tenant", f"unknown tenant {lease.tenant!r}")
        if not lease.hosts and not lease.devices:
            problems.add(path, f"leases[{i}]", "a lease needs hosts or devices")
        naive = False
        for key, when in (("start", lease.start), ("end", lease.end)):
            if when is not None and when.tzinfo is None:
                naive = True
                problems.add(path, f"leases[{i}].{key}", "give a time zone, e.g. 2026-11-01T00:00:00+08:00")
        if not naive and lease.end is not None and lease.end <= lease.start:
            problems.add(path, f"leases[{i}].end", "must be after start")
    _check_leases(problems, path, cf.leases)
    for i, s in enumerate(cf.sources):
        if s.site not in site_ids:
            problems.add(path, f"sources[{i}].site", f"unknown site {s.site!r}")
        if s.cluster not in cluster_ids:
            problems.add(path, f"sources[{i}].cluster", f"unknown cluster {s.cluster!r}")
        _check_source(problems, path, i, s)
    _check_urls_once(problems, path, cf.sources)


def glob_problem(pattern: str) -> str | None:
    """Why the shell glob `pattern` (fnmatch) would not mean what it says, else None: an
    unclosed '[' matches itself literally, and a range written backwards ('[z-a]') matches
    nothing."""
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] != "[":
            i += 1
            continue
        j = i + 1
        if j < n and pattern[j] == "!":
            j += 1
        if j < n and pattern[j] == "]":
            j += 1
        close = pattern.find("]", j)
        if close < 0:
            return f"the '[' at position {i + 1} is never closed (write '[[]' for a literal '[')"
        body = pattern[i + 1:close].lstrip("!")
        for k in range(1, len(body) - 1):
            if body[k] == "-" and body[k - 1] > body[k + 1]:
                return f"the range '{body[k - 1]}-{body[k + 1]}' is backwards and matches nothing"
        i = close + 1
    return None


def _check_leases(problems: _Problems, path: Path, leases: list[Lease]) -> None:
    """A host or device leased to two tenants at once would be attributed to whichever
    lease is read first: refuse it, naming both leases."""
    def overlap(a: Lease, b: Lease) -> bool:
        try:
            return (a.end is None or b.start < a.end) and (b.end is None or a.start < b.end)
        except TypeError:           # a naive time, reported above
            return False

    for j, b in enumerate(leases):
        for i, a in enumerate(leases[:j]):
            if a.tenant == b.tenant or not overlap(a, b):
                continue
            for what, shared in (("host", sorted(set(a.hosts) & set(b.hosts))),
                                 ("device", sorted(set(a.devices) & set(b.devices)))):
                if shared:
                    problems.add(path, f"leases[{j}]", f"{what} {shared[0]!r} is leased to {b.tenant!r} here and to "
                                 f"{a.tenant!r} in leases[{i}] over an overlapping time")


def _url_key(url: str) -> str:
    """A URL as the place it names (scheme and host in lower case, the default port made
    explicit, an empty path as '/'), so two spellings of one exporter compare equal."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return url
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}{parts.path or '/'}?{parts.query}"


def _check_urls_once(problems: _Problems, path: Path, sources: list[Source]) -> None:
    """Each URL is scraped by one source, once: a URL listed twice (in one source or in
    two) would store every sample of that exporter twice."""
    first: dict[str, str] = {}
    for i, s in enumerate(sources):
        urls = (s.model_extra or {}).get("targets")
        if not isinstance(urls, list):
            continue
        for j, url in enumerate(urls):
            if not isinstance(url, str):
                continue
            key = _url_key(url)
            here = f"sources[{i}].targets[{j}]"
            if key in first:
                problems.add(path, here, f"{url!r} is also {first[key]}; one exporter scraped twice stores "
                             "each sample twice")
            else:
                first[key] = here


_ALLOWED_COLUMNS = (set(SAMPLE_MEASURES) - set(DERIVED_MEASURES)) | set(DEVICE_ATTRIBUTES) | set(PARSE_ONLY_COLUMNS)


def _check_mapping(problems: _Problems, path: Path, m: MappingFile) -> None:
    if m.table == "facility_samples":
        allowed, roles = set(FACILITY_MEASURES), FACILITY_LABEL_ROLES
    else:
        allowed, roles = _ALLOWED_COLUMNS, LABEL_ROLES
    selector_label: dict[str, str] = {}
    for name, fm in m.fields.items():
        if "{" in name:
            sel = SELECTOR_RE.match(name)
            if sel is None:
                problems.add(path, f"fields.{name}", "expected a metric name, or a metric name with one label "
                             'selector such as \'gpu_clock{clock_type="system"}\'')
                continue
            if fm.kind == "string" or m.table != "device_samples":
                problems.add(path, f"fields.{name}", "a label selector works only on numeric fields of a "
                             "device_samples mapping")
                continue
            metric, label, _ = sel.groups()
            if selector_label.setdefault(metric, label) != label:
                problems.add(path, f"fields.{name}", f"the fields of {metric} must all select by the same label "
                             f"({selector_label[metric]!r})")
        if fm.kind == "string" and fm.column not in DEVICE_ATTRIBUTES:
            problems.add(path, f"fields.{name}.column", f"string field must fill one of {list(DEVICE_ATTRIBUTES)}, "
                         f"got {fm.column!r}")
        elif fm.column not in allowed:
            problems.add(path, f"fields.{name}.column", f"unknown canonical column {fm.column!r}; expected one of "
                         f"{sorted(allowed)}")
    for section in ("labels", "defaults"):
        for role in getattr(m, section):
            if role not in roles:
                problems.add(path, f"{section}.{role}", f"unknown label role; expected one of {list(roles)}")
    if m.defaults and m.table != "facility_samples":
        problems.add(path, "defaults", "defaults are for facility_samples mappings (a meter's scope and PUE category)")


def _read_mappings(map_dir: Path) -> dict[str, dict]:
    return {mp.stem: _read_toml(mp) for mp in sorted(map_dir.glob("*.toml"))}


def _default_accelerators() -> dict:
    return _read_toml(CONFIG_DIR / "accelerators.toml")


def _default_mappings() -> dict[str, dict]:
    return _read_mappings(CONFIG_DIR / "mappings")


def _catalogue(problems: _Problems, cat_path: Path, data: dict) -> Catalogue:
    try:
        cat_file = CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(cat_path, exc)) from None
    _check_unique(problems, cat_path, "models", [m.id for m in cat_file.models])
    for i, m in enumerate(cat_file.models):
        for j, pat in enumerate(m.match):
            try:
                re.compile(pat)
            except re.error as exc:
                problems.add(cat_path, f"models[{i}].match[{j}]", f"bad regular expression: {exc}")
    problems.raise_any()        # the centre's checks look models up in the catalogue
    return Catalogue.build(list(cat_file.models))


def _split_areas(problems: _Problems, centre: dict, centre_path: Path,
                 area_files: dict[str, tuple[dict, Path]]) -> dict[str, tuple[dict, Path, str]]:
    """Each area's settings, where they came from and their key prefix in messages; takes the
    area tables out of `centre` (the centre file's model does not know them)."""
    out: dict[str, tuple[dict, Path, str]] = {}
    for name in AREAS:
        inline = centre.pop(name, None)
        if name in area_files:
            data, path = area_files[name]
            if inline is not None:
                problems.add(centre_path, name, f"[{name}] is also given in {path}; keep it in one place")
            out[name] = (data, path, "")
        elif inline is not None:
            if not isinstance(inline, dict):
                problems.add(centre_path, name, f"expected a table [{name}], got {_describe(inline)}")
                inline = {}
            out[name] = (inline, centre_path, name)
        else:
            out[name] = ({}, centre_path, name)
    return out


def _areas(problems: _Problems, split: dict[str, tuple[dict, Path, str]]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for name, (data, path, prefix) in split.items():
        try:
            sections[name] = AREAS[name].Section.model_validate(data)
        except ValidationError as exc:
            problems.extend(_validation_lines(path, exc, prefix))
    return sections


def _build(centre: dict, accelerators: dict, mappings: dict[str, dict], *, directory: Path,
           centre_path: Path, cat_path: Path, map_dir: Path,
           area_files: dict[str, tuple[dict, Path]] | None = None) -> Config:
    problems = _Problems()
    catalogue = _catalogue(problems, cat_path, accelerators)
    split = _split_areas(problems, centre, centre_path, area_files or {})
    sections = _areas(problems, split)
    cf: CentreFile | None = None
    try:
        cf = CentreFile.model_validate(centre)
    except ValidationError as exc:
        problems.extend(_validation_lines(centre_path, exc))
    maps: dict[str, MappingFile] = {}
    for name, data in mappings.items():
        mp = map_dir / f"{name}.toml"
        try:
            m = MappingFile.model_validate(data)
        except ValidationError as exc:
            problems.extend(_validation_lines(mp, exc))
            continue
        _check_mapping(problems, mp, m)
        maps[name] = m
    if "dcgm" not in mappings:
        problems.lines.append(f"{map_dir}/dcgm.toml: file not found; the DCGM mapping table is required")
    if cf is not None:
        _cross_check(problems, centre_path, cf, catalogue)
        for name, section in sections.items():
            _, path, prefix = split[name]
            AREAS[name].check(problems, path, f"{prefix}." if prefix else "", section, cf, catalogue)
        kinds = source_kinds()
        for i, src in enumerate(cf.sources):
            if src.kind not in kinds:
                continue
            try:
                names = src.mapping_names
            except ConfigError:
                continue            # its options are wrong: reported above
            kind = kinds[src.kind]
            for name in names:
                if name not in mappings:
                    problems.add(centre_path, f"sources[{i}].mappings",
                                 f"no mapping table {name!r} in {map_dir} (have {sorted(mappings)})")
                elif name in maps and maps[name].table not in kind.mapping_tables:
                    problems.add(centre_path, f"sources[{i}].mappings",
                                 f"mapping {name!r} fills {maps[name].table}, but a {src.kind} source fills "
                                 f"{' or '.join(kind.mapping_tables)}; use one of "
                                 f"{sorted(n for n, m in maps.items() if m.table in kind.mapping_tables)}")
        db_problem = database_problem(_resolve_db(cf.database.path))
        if db_problem:
            problems.add(centre_path, "database.path", db_problem)
    problems.raise_any()
    assert cf is not None
    owner = Owner(site=cf.owner.site or cf.sites[0].id, instance=cf.owner.instance or socket.gethostname())
    return Config(
        directory=directory, centre=cf.centre, database=cf.database, collection=cf.collection, ui=cf.ui,
        sites=tuple(cf.sites), clusters=tuple(cf.clusters), tenants=tuple(cf.tenants),
        simulator=cf.simulator, sources=tuple(cf.sources), attribution=tuple(cf.attribution),
        leases=tuple(cf.leases), catalogue=catalogue, mappings=maps, owner=owner,
        retention=cf.retention, utilisation=cf.utilisation, prices=tuple(cf.prices), **sections,
    )


def from_dict(centre: dict, *, accelerators: dict | None = None, mappings: dict[str, dict] | None = None,
              directory: Path | None = None) -> Config:
    """A validated Config from the contents of centre.toml as a dict (plus accelerators.toml and
    mappings/<name>.toml as dicts; the package's own when not given). Problems are reported as
    for files, named "centre.toml" etc. (under `directory` when given). The dicts are not kept."""
    d = Path(directory).resolve() if directory is not None else None
    base = d if d is not None else Path()
    return _build(copy.deepcopy(centre),
                  _default_accelerators() if accelerators is None else copy.deepcopy(accelerators),
                  _default_mappings() if mappings is None else copy.deepcopy(mappings),
                  directory=d or CONFIG_DIR, centre_path=base / "centre.toml",
                  cat_path=base / "accelerators.toml", map_dir=base / "mappings")


def load(directory: str | os.PathLike | None = None) -> Config:
    """Load and validate the configuration directory; raise ConfigError listing every problem.

    A directory without accelerators.toml or mappings/ uses the package's own."""
    d = Path(directory or os.environ.get(ENV_VAR) or CONFIG_DIR).resolve()
    if not d.is_dir():
        raise ConfigError(f"{d}: configuration directory not found (from {ENV_VAR} or the default)")
    cat_path = d / "accelerators.toml"
    if not cat_path.exists():
        cat_path = CONFIG_DIR / "accelerators.toml"
    map_dir = d / "mappings"
    if not map_dir.is_dir():
        map_dir = CONFIG_DIR / "mappings"
    centre_path = d / "centre.toml"
    area_files = {name: (_read_toml(d / f"{name}.toml"), d / f"{name}.toml")
                  for name in AREAS if (d / f"{name}.toml").exists()}
    return _build(_read_toml(centre_path), _read_toml(cat_path), _read_mappings(map_dir), directory=d,
                  centre_path=centre_path, cat_path=cat_path, map_dir=map_dir, area_files=area_files)
