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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

if TYPE_CHECKING:
    from collectors.kinds.base import Options, SourceKind

from config.canonical import (
    DERIVED_MEASURES, DEVICE_ATTRIBUTES, FACILITY_LABEL_ROLES, FACILITY_MEASURES, LABEL_ROLES, SAMPLE_MEASURES,
)

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
ENV_VAR = "ZHISUAN_CONFIG"


class ConfigError(Exception):
    """A configuration problem, worded for the person who edits the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PosFloat = Annotated[float, Field(gt=0, strict=False)]
PosInt = Annotated[int, Field(gt=0)]
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Centre(_Strict):
    name: str
    default_language: Literal["en", "zh-CN"] = "en"


class Database(_Strict):
    path: str = "data/centre.duckdb"
    # DuckDB's buffer pool; its own default is 80 % of the machine's memory
    memory_limit: Annotated[str, Field(pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")] = "1GB"


class Collection(_Strict):
    interval_s: PosFloat = 15.0
    timeout_s: PosFloat = 5.0
    concurrency: PosInt = 32
    stale_after_s: PosFloat = 60.0


class UI(_Strict):
    refresh_s: PosFloat = 15.0


class Site(_Strict):
    id: Ident
    name: str
    grid_emission_kg_per_kwh: Annotated[float, Field(ge=0, strict=False)] = 0.58
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
    backfill_days: Annotated[float, Field(ge=0, strict=False)] = 30.0
    backfill_step_s: Annotated[int, Field(ge=60)] = 900
    site_overhead_kw: Annotated[float, Field(ge=0, strict=False)] = 180.0


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
    timeout_s: PosFloat | None = None           # overrides collection.timeout_s
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
    scale: Annotated[float, Field(strict=False)] = 1.0
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

    @property
    def db_path(self) -> Path:
        p = Path(self.database.path)
        return p if p.is_absolute() else PROJECT_ROOT / p

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
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _validate(path: Path, model: type[_Strict], data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from None


class _Problems:
    """Every problem found, each a line naming its file and key; raised together at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: Path | str, key: str, text: str) -> None:
        self.lines.append(f"{path}: key '{key}': {text}")

    def extend(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def raise_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(dict.fromkeys(self.lines)))


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
    tenant_ids = {t.id for t in cf.tenants}
    for i, r in enumerate(cf.attribution):
        if r.tenant not in tenant_ids:
            problems.add(path, f"attribution[{i}].tenant", f"unknown tenant {r.tenant!r}")
        if r.namespace is None and r.pod is None and r.job is None and r.user is None:
            problems.add(path, f"attribution[{i}]", "a rule needs at least one of namespace, pod, job, user")
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
    for i, s in enumerate(cf.sources):
        if s.site not in site_ids:
            problems.add(path, f"sources[{i}].site", f"unknown site {s.site!r}")
        if s.cluster not in cluster_ids:
            problems.add(path, f"sources[{i}].cluster", f"unknown cluster {s.cluster!r}")
        _check_source(problems, path, i, s)


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


def _build(centre: dict, accelerators: dict, mappings: dict[str, dict], *, directory: Path,
           centre_path: Path, cat_path: Path, map_dir: Path) -> Config:
    problems = _Problems()
    catalogue = _catalogue(problems, cat_path, accelerators)
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
        kinds = source_kinds()
        for i, src in enumerate(cf.sources):
            if src.kind not in kinds:
                continue
            try:
                names = src.mapping_names
            except ConfigError:
                continue            # its options are wrong: reported above
            for name in names:
                if name not in mappings:
                    problems.add(centre_path, f"sources[{i}].mappings",
                                 f"no mapping table {name!r} in {map_dir} (have {sorted(mappings)})")
    problems.raise_any()
    assert cf is not None
    owner = Owner(site=cf.owner.site or cf.sites[0].id, instance=cf.owner.instance or socket.gethostname())
    return Config(
        directory=directory, centre=cf.centre, database=cf.database, collection=cf.collection, ui=cf.ui,
        sites=tuple(cf.sites), clusters=tuple(cf.clusters), tenants=tuple(cf.tenants),
        simulator=cf.simulator, sources=tuple(cf.sources), attribution=tuple(cf.attribution),
        leases=tuple(cf.leases), catalogue=catalogue, mappings=maps, owner=owner,
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
    return _build(_read_toml(centre_path), _read_toml(cat_path), _read_mappings(map_dir), directory=d,
                  centre_path=centre_path, cat_path=cat_path, map_dir=map_dir)
