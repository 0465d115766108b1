"""The centre's description: load and validate the TOML files in config/.

`load()` reads centre.toml, accelerators.toml and mappings/*.toml from one
directory (ZHISUAN_CONFIG, or this package's own directory by default) and
returns a `Config`. Anything wrong stops start-up with a `ConfigError` whose
message names the file, the key and what was expected, because an operator
editing TOML at 3 a.m. needs the line to fix, not a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


EXPORTER_KINDS = ("dcgm", "amd", "ascend", "facility")
SOURCE_KINDS = (*EXPORTER_KINDS, "prometheus", "nvml")
# the mapping tables a source reads when `mappings` is not given
DEFAULT_MAPPINGS = {"dcgm": ["dcgm"], "amd": ["amd"], "ascend": ["ascend"], "facility": ["facility"],
                    "prometheus": ["dcgm"], "nvml": []}


class Source(_Strict):
    name: Ident
    kind: Literal["dcgm", "amd", "ascend", "facility", "prometheus", "nvml"]
    site: str
    cluster: str
    # exporter URLs (dcgm/amd/ascend), or the one Prometheus base URL; none for nvml
    targets: list[str] = []
    # where a sample's host comes from: the exporter's Hostname label, or the
    # target's host (for Kubernetes exporters whose Hostname is the pod name)
    host_from: Literal["label", "target"] = "label"
    # mapping tables in mappings/ (default by kind; prometheus may list several,
    # e.g. ["dcgm", "facility"], and queries each table's metric names)
    mappings: list[str] | None = None
    timeout_s: PosFloat | None = None           # overrides collection.timeout_s
    retries: Annotated[int, Field(ge=0, le=5)] = 2
    host: str | None = None                     # nvml: host name to report (default: this machine's)

    @property
    def mapping_names(self) -> list[str]:
        return list(self.mappings) if self.mappings is not None else list(DEFAULT_MAPPINGS[self.kind])


class CentreFile(_Strict):
    centre: Centre
    database: Database = Database()
    collection: Collection = Collection()
    ui: UI = UI()
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


def _format_validation(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = _loc(tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        etype = e["type"]
        if etype == "extra_forbidden":
            lines.append(f"{path}: unknown key '{key}' (check the spelling; it is not a setting)")
        elif etype == "missing":
            lines.append(f"{path}: required key '{key}' is missing")
        elif etype in _EXPECT:
            lines.append(f"{path}: key '{key}': expected {_EXPECT[etype]}, got {_describe(e.get('input'))}")
        else:
            lines.append(f"{path}: key '{key}': {e['msg']}, got {_describe(e.get('input'))}")
    return "\n".join(lines)


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


def _check_unique(path: Path, key: str, ids: list[str], *, field: str = "id") -> None:
    seen: set[str] = set()
    for i, v in enumerate(ids):
        if v in seen:
            raise ConfigError(f"{path}: key '{key}[{i}].{field}': duplicate {field} {v!r}")
        seen.add(v)


def _cross_check(path: Path, cf: CentreFile, cat: Catalogue) -> None:
    _check_unique(path, "sites", [s.id for s in cf.sites])
    _check_unique(path, "clusters", [c.id for c in cf.clusters])
    _check_unique(path, "tenants", [t.id for t in cf.tenants])
    site_ids = {s.id for s in cf.sites}
    for i, site in enumerate(cf.sites):
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{path}: key 'sites[{i}].timezone': unknown time zone {site.timezone!r} "
                              "(expected an IANA name such as Asia/Shanghai)") from None
    cluster_ids = {c.id for c in cf.clusters}
    for i, c in enumerate(cf.clusters):
        if c.site not in site_ids:
            raise ConfigError(f"{path}: key 'clusters[{i}].site': unknown site {c.site!r}; "
                              f"expected one of {sorted(site_ids)}")
        if cat.lookup(c.model) is None:
            raise ConfigError(f"{path}: key 'clusters[{i}].model': {c.model!r} matches no model "
                              f"in accelerators.toml; add it to the catalogue")
    owner: dict[str, str] = {}
    for i, t in enumerate(cf.tenants):
        for ns in t.namespaces:
            if ns in owner:
                raise ConfigError(f"{path}: key 'tenants[{i}].namespaces': namespace {ns!r} "
                                  f"already belongs to tenant {owner[ns]!r}")
            owner[ns] = t.id
    _check_unique(path, "sources", [s.name for s in cf.sources], field="name")
    tenant_ids = {t.id for t in cf.tenants}
    for i, r in enumerate(cf.attribution):
        if r.tenant not in tenant_ids:
            raise ConfigError(f"{path}: key 'attribution[{i}].tenant': unknown tenant {r.tenant!r}")
        if r.namespace is None and r.pod is None and r.job is None and r.user is None:
            raise ConfigError(f"{path}: key 'attribution[{i}]': a rule needs at least one of namespace, pod, job, user")
    for i, lease in enumerate(cf.leases):
        if lease.tenant not in tenant_ids:
            raise ConfigError(f"{path}: key 'leases[{i}].tenant': unknown tenant {lease.tenant!r}")
        if not lease.hosts and not lease.devices:
            raise ConfigError(f"{path}: key 'leases[{i}]': a lease needs hosts or devices")
        for key, when in (("start", lease.start), ("end", lease.end)):
            if when is not None and when.tzinfo is None:
                raise ConfigError(f"{path}: key 'leases[{i}].{key}': give a time zone, e.g. 2026-11-01T00:00:00+08:00")
        if lease.end is not None and lease.end <= lease.start:
            raise ConfigError(f"{path}: key 'leases[{i}].end': must be after start")
    for i, s in enumerate(cf.sources):
        if s.site not in site_ids:
            raise ConfigError(f"{path}: key 'sources[{i}].site': unknown site {s.site!r}")
        if s.cluster not in cluster_ids:
            raise ConfigError(f"{path}: key 'sources[{i}].cluster': unknown cluster {s.cluster!r}")
        if s.kind in EXPORTER_KINDS and not s.targets:
            raise ConfigError(f"{path}: key 'sources[{i}].targets': a {s.kind} source needs at least one "
                              "exporter URL")
        if s.kind == "prometheus" and len(s.targets) != 1:
            raise ConfigError(f"{path}: key 'sources[{i}].targets': a prometheus source takes exactly one "
                              f"base URL (e.g. [\"http://prometheus:9090\"]), got {len(s.targets)}")
        if s.kind == "nvml" and s.targets:
            raise ConfigError(f"{path}: key 'sources[{i}].targets': an nvml source reads the local GPUs "
                              "and takes no targets")
        for t in s.targets:
            if not t.startswith(("http://", "https://")):
                raise ConfigError(f"{path}: key 'sources[{i}].targets': {t!r} is not an http(s) URL")


_ALLOWED_COLUMNS = (set(SAMPLE_MEASURES) - set(DERIVED_MEASURES)) | set(DEVICE_ATTRIBUTES) | set(PARSE_ONLY_COLUMNS)


def _check_mapping(path: Path, m: MappingFile) -> None:
    if m.table == "facility_samples":
        allowed, roles = set(FACILITY_MEASURES), FACILITY_LABEL_ROLES
    else:
        allowed, roles = _ALLOWED_COLUMNS, LABEL_ROLES
    selector_label: dict[str, str] = {}
    for name, fm in m.fields.items():
        if "{" in name:
            sel = SELECTOR_RE.match(name)
            if sel is None:
                raise ConfigError(f"{path}: key 'fields.{name}': expected a metric name, or a metric name "
                                  'with one label selector such as \'gpu_clock{clock_type="system"}\'')
            if fm.kind == "string" or m.table != "device_samples":
                raise ConfigError(f"{path}: key 'fields.{name}': a label selector works only on numeric "
                                  "fields of a device_samples mapping")
            metric, label, _ = sel.groups()
            if selector_label.setdefault(metric, label) != label:
                raise ConfigError(f"{path}: key 'fields.{name}': the fields of {metric} must all select by "
                                  f"the same label ({selector_label[metric]!r})")
        if fm.kind == "string" and fm.column not in DEVICE_ATTRIBUTES:
            raise ConfigError(f"{path}: key 'fields.{name}.column': string field must fill one of "
                              f"{list(DEVICE_ATTRIBUTES)}, got {fm.column!r}")
        if fm.column not in allowed:
            raise ConfigError(f"{path}: key 'fields.{name}.column': unknown canonical column "
                              f"{fm.column!r}; expected one of {sorted(allowed)}")
    for role in m.labels:
        if role not in roles:
            raise ConfigError(f"{path}: key 'labels.{role}': unknown label role; expected one of "
                              f"{list(roles)}")


def load(directory: str | os.PathLike | None = None) -> Config:
    """Load and validate the configuration directory; raise ConfigError on any problem."""
    d = Path(directory or os.environ.get(ENV_VAR) or CONFIG_DIR).resolve()
    if not d.is_dir():
        raise ConfigError(f"{d}: configuration directory not found (from {ENV_VAR} or the default)")
    cat_path = d / "accelerators.toml"
    if not cat_path.exists():
        cat_path = CONFIG_DIR / "accelerators.toml"
    cat_file = _validate(cat_path, CatalogueFile, _read_toml(cat_path))
    _check_unique(cat_path, "models", [m.id for m in cat_file.models])
    for i, m in enumerate(cat_file.models):
        for j, pat in enumerate(m.match):
            try:
                re.compile(pat)
            except re.error as exc:
                raise ConfigError(f"{cat_path}: key 'models[{i}].match[{j}]': bad regular expression: {exc}") from None
    catalogue = Catalogue.build(list(cat_file.models))

    centre_path = d / "centre.toml"
    cf = _validate(centre_path, CentreFile, _read_toml(centre_path))
    _cross_check(centre_path, cf, catalogue)

    mappings: dict[str, MappingFile] = {}
    map_dir = d / "mappings"
    if not map_dir.is_dir():
        map_dir = CONFIG_DIR / "mappings"
    for mp in sorted(map_dir.glob("*.toml")):
        m = _validate(mp, MappingFile, _read_toml(mp))
        _check_mapping(mp, m)
        mappings[mp.stem] = m
    if "dcgm" not in mappings:
        raise ConfigError(f"{map_dir}/dcgm.toml: file not found; the DCGM mapping table is required")
    for i, src in enumerate(cf.sources):
        for name in src.mapping_names:
            if name not in mappings:
                raise ConfigError(f"{centre_path}: key 'sources[{i}].mappings': no mapping table {name!r} "
                                  f"in {map_dir} (have {sorted(mappings)})")

    return Config(
        directory=d, centre=cf.centre, database=cf.database, collection=cf.collection, ui=cf.ui,
        sites=tuple(cf.sites), clusters=tuple(cf.clusters), tenants=tuple(cf.tenants),
        simulator=cf.simulator, sources=tuple(cf.sources), attribution=tuple(cf.attribution),
        leases=tuple(cf.leases), catalogue=catalogue, mappings=mappings,
    )
