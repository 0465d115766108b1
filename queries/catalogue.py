"""Every stored table declared once: columns (DuckDB type, nullability, a note) and natural key.

The migrations in queries/migrations/ build the tables; tests/test_catalogue.py checks every
migrated table against this catalogue, so the two cannot drift apart. From the declarations
come the Arrow schemas collectors build their batches with (`arrow_schema`) and the
idempotent insert the store runs for every batch (`insert_sql`, `first_of_each_key`).

Column order is the Arrow order: for the tables that had hand-written Arrow schemas
(device_samples, devices, device_events, facility_samples, collector_runs, targets,
facility_readings) it is the order those had, with the owner and message columns added
since at the end. A migrated table may hold its columns in another order (ALTER TABLE adds
at the end); every write is `INSERT ... BY NAME`, so only names and types matter.

The measure and label columns of device_samples come from config/canonical.py, the one
list the collectors translate exporters into.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from config.canonical import SAMPLE_LABELS, SAMPLE_MEASURES, SAMPLE_MEASURE_NOTES

DEFAULT_OWNER = ("-", "local")
OWNER_COLUMNS = ("owner_site", "owner_instance")

_ARROW = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}

# how information_schema.columns spells each declared type
INFORMATION_SCHEMA_TYPE = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str                 # DuckDB type, one of _ARROW's keys
    nullable: bool = True
    note: str = ""

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self.type]


@dataclass(frozen=True)
class Table:
    """A stored table. `key` is its natural key: what makes a row the same row again. With
    `primary_key` the database enforces it (PRIMARY KEY); without, only the insert does (the
    big append-only tables carry no index). `time_column`, a key column, bounds the probe
    for stored keys to the batch's time range, so DuckDB's zone maps skip older row groups."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    primary_key: bool = False
    time_column: str | None = None
    note: str = ""

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def owned(self) -> bool:
        """Rows carry the owner process that wrote them; the store fills in its own."""
        return set(OWNER_COLUMNS) <= set(self.names)


def _c(name: str, type_: str, note: str = "", *, null: bool = True) -> Column:
    return Column(name, type_, null, note)


col = _c            # for the area modules in queries/tables/


_OWNER = (_c("owner_site", "VARCHAR", "site of the owner process that wrote the row", null=False),
          _c("owner_instance", "VARCHAR", "instance (host) name of that owner process", null=False))

_TABLES: tuple[Table, ...] = (
    Table("devices", (
        _c("device_id", "VARCHAR", "UUID, or UUID/GPU_I_ID for a MIG instance", null=False),
        _c("vendor", "VARCHAR"),
        _c("model", "VARCHAR", "as the exporter names it"),
        _c("catalogue_model", "VARCHAR", "accelerators.toml id, NULL when unknown"),
        _c("peak_dense_tflops", "DOUBLE", "this device's share (MIG: slices/7)"),
        _c("host", "VARCHAR"), _c("cluster", "VARCHAR"), _c("site", "VARCHAR"),
        _c("gpu_index", "INTEGER"), _c("uuid", "VARCHAR"), _c("pci_bus_id", "VARCHAR"),
        _c("mig_parent", "VARCHAR"), _c("mig_profile", "VARCHAR"),
        _c("mem_total_mib", "DOUBLE"), _c("driver_version", "VARCHAR"), _c("source", "VARCHAR"),
        _c("target", "VARCHAR", "the endpoint that last reported it"),
        _c("first_seen", "TIMESTAMPTZ"), _c("last_seen", "TIMESTAMPTZ"),
    ), key=("device_id",), primary_key=True, note="one row per accelerator; upserted, see store._DeviceRows"),

    Table("device_samples", (
        _c("ts", "TIMESTAMPTZ", "sample time, UTC", null=False),
        _c("device_id", "VARCHAR", null=False),
        _c("site", "VARCHAR"), _c("cluster", "VARCHAR"), _c("host", "VARCHAR"),
        *(_c(name, type_, SAMPLE_MEASURE_NOTES.get(name, "")) for name, type_ in SAMPLE_MEASURES.items()),
        _c("tenant", "VARCHAR", "attributed when collected"),
        *(_c(name, "VARCHAR", "attribution label") for name in SAMPLE_LABELS),
        _c("source", "VARCHAR"),
    ), key=("device_id", "ts"), time_column="ts", note="one wide row per device per scrape"),

    Table("device_events", (
        _c("ts", "TIMESTAMPTZ", null=False),
        _c("device_id", "VARCHAR", "NULL: an event of the host, not of one device"),
        _c("site", "VARCHAR"), _c("cluster", "VARCHAR"), _c("host", "VARCHAR"), _c("gpu_index", "INTEGER"),
        _c("kind", "VARCHAR", "xid | thermal | lost | back | ecc | unhealthy", null=False),
        _c("code", "BIGINT"), _c("detail", "VARCHAR", "what kind of ECC event; a thermal one's temperature"),
        _c("source", "VARCHAR"),
    ), key=("device_id", "ts", "kind", "detail"), time_column="ts",
        note="one sample may raise several ECC events (dbe, remap_pending, remap_failed): detail tells them apart"),

    Table("facility_samples", (
        _c("ts", "TIMESTAMPTZ", null=False),
        _c("site", "VARCHAR", null=False), _c("meter", "VARCHAR", null=False),
        _c("scope", "VARCHAR", "facility | it | cooling", null=False),
        _c("pue_category", "INTEGER", "ISO/IEC 30134-2: 1 UPS out, 2 PDU out, 3 IT input"),
        _c("power_w", "DOUBLE"), _c("energy_kwh", "DOUBLE"), _c("source", "VARCHAR"),
    ), key=("site", "meter", "ts"), time_column="ts"),

    Table("facility_readings", (
        _c("site", "VARCHAR", null=False), _c("meter", "VARCHAR", null=False),
        _c("scope", "VARCHAR", "facility | it | cooling", null=False),
        _c("pue_category", "INTEGER", "for IT meters: ISO/IEC 30134-2 category 1, 2 or 3"),
        _c("period_start", "TIMESTAMPTZ", null=False), _c("period_end", "TIMESTAMPTZ", null=False),
        _c("energy_kwh", "DOUBLE", null=False),
        _c("source_file", "VARCHAR"), _c("source_line", "INTEGER"), _c("imported_at", "TIMESTAMPTZ"),
    ), key=("site", "meter", "period_start", "period_end"), primary_key=True,
        note="meter readings off the bill or read by hand: energy over a period"),

    Table("targets", (
        _c("target", "VARCHAR", "URL", null=False),
        _c("source", "VARCHAR", null=False), _c("kind", "VARCHAR", "source kind", null=False),
        _c("site", "VARCHAR"), _c("cluster", "VARCHAR"), _c("host", "VARCHAR"),
        _c("registered_at", "TIMESTAMPTZ"),
        *_OWNER,
    ), key=("owner_site", "owner_instance", "target"), primary_key=True,
        note="each owner's current scrape targets"),

    Table("collector_runs", (
        _c("started_at", "TIMESTAMPTZ", null=False),
        _c("source", "VARCHAR", null=False), _c("kind", "VARCHAR"), _c("target", "VARCHAR", null=False),
        _c("duration_s", "DOUBLE"), _c("rows", "INTEGER"), _c("lines_skipped", "INTEGER"),
        _c("ok", "BOOLEAN", null=False),
        _c("error", "VARCHAR", "the error and notes in English"),
        _c("sample_ts", "TIMESTAMPTZ", "the cycle's tick its samples are stamped with"),
        _c("error_msg", "VARCHAR", "the same as message keys (i18n.dumps JSON)"),
        *_OWNER,
    ), key=("owner_site", "owner_instance", "target", "started_at"), time_column="started_at",
        note="every scrape attempt"),

    Table("kv", (
        *_OWNER,
        _c("key", "VARCHAR", null=False), _c("value", "VARCHAR"), _c("updated_at", "TIMESTAMPTZ"),
    ), key=("owner_site", "owner_instance", "key"), primary_key=True,
        note="an owner's small state: back-fill and import progress"),

    Table("job_runs", (
        *_OWNER,
        _c("job", "VARCHAR", null=False), _c("started_at", "TIMESTAMPTZ", null=False),
        _c("duration_s", "DOUBLE"), _c("ok", "BOOLEAN", null=False), _c("rows", "BIGINT"),
        _c("error", "VARCHAR", "in English"), _c("error_msg", "VARCHAR", "as message keys (i18n.dumps JSON)"),
        _c("detail", "VARCHAR"),
    ), key=("owner_site", "owner_instance", "job", "started_at"), primary_key=True, time_column="started_at",
        note="every run of a scheduled job"),

    Table("owner_status", (
        *_OWNER,
        _c("name", "VARCHAR", null=False), _c("value", "VARCHAR", "JSON object"),
        _c("updated_at", "TIMESTAMPTZ"),
    ), key=("owner_site", "owner_instance", "name"), primary_key=True,
        note="what an owner process reports about itself, newest only"),
)


# The history tiers (migration 012, docs/history.md): GPU-second sums weighted by a MIG
# instance's share, so coarser buckets are exact sums of finer ones.
_SUMS = (
    _c("samples", "BIGINT", "raw samples counted", null=False),
    _c("observed_s", "DOUBLE", "GPU-seconds the device(s) reported (device time)", null=False),
    _c("available_s", "DOUBLE", "observed and healthy", null=False),
    _c("allocated_s", "DOUBLE", "available and held (device tiers: held by a label)", null=False),
    _c("busy_s", "DOUBLE", "util_pct > 0 (device tiers: while available; group tiers: while allocated)",
       null=False),
    _c("useful_s", "DOUBLE", "weighted by tensor_active, else sm_active (as busy_s)", null=False),
    _c("useful_basis", "VARCHAR", "tensor | sm | NULL; group tiers also mixed"),
    _c("alloc_idle_s", "DOUBLE", "util_pct = 0 (as busy_s): the reclaim list", null=False),
    _c("util_s", "DOUBLE", "sum(dt x util_pct / 100)", null=False),
    _c("util_obs_s", "DOUBLE", "device time of samples with a util_pct", null=False),
    _c("tflop_s", "DOUBLE", "sum(dt x tensor_active x peak_dense_tflops)", null=False),
    _c("energy_j", "DOUBLE", "board energy, once per physical board", null=False),
)
_DEVICE_KEY = (_c("bucket", "TIMESTAMPTZ", "bucket start, UTC", null=False),
               _c("device_id", "VARCHAR", null=False),
               *(_c(name, "VARCHAR", "label the samples carried") for name in ("namespace", "pod", "job", "job_user")))
_GROUP_KEY = (_c("bucket", "TIMESTAMPTZ", "bucket start, UTC", null=False),
              _c("site", "VARCHAR"), _c("cluster", "VARCHAR"),
              _c("model", "VARCHAR", "catalogue model id, else the exporter's model name"),
              _c("tenant", "VARCHAR", "tenant id, _unattributed or _unallocated", null=False),
              _c("devices", "BIGINT", "distinct devices seen", null=False))
_TABLES = _TABLES + tuple(
    Table(f"rollup_device_{step}", (*_DEVICE_KEY, *_SUMS),
          key=("bucket", "device_id", "namespace", "pod", "job", "job_user"), time_column="bucket",
          note=f"per device and label tuple per {span}, from raw samples (queries/rollup.py)")
    for step, span in (("5m", "5 minutes"), ("1h", "UTC hour"))
) + tuple(
    Table(f"rollup_group_{step}", (*_GROUP_KEY, *_SUMS),
          key=("bucket", "site", "cluster", "model", "tenant"), time_column="bucket",
          note=f"per site, cluster, model and tenant per {span}, from the device tier with attribution")
    for step, span in (("5m", "5 minutes"), ("1h", "UTC hour"))
) + (
    Table("rollup_device_tenant_1h", (
        _c("bucket", "TIMESTAMPTZ", "bucket start, UTC", null=False),
        _c("device_id", "VARCHAR", null=False),
        _c("tenant", "VARCHAR", "tenant id, _unattributed or _unallocated", null=False),
        *(c for c in _SUMS if c.name != "useful_basis")),
          key=("bucket", "device_id", "tenant"), time_column="bucket",
          note="per device and tenant per UTC hour: the device tier's sums (as it counts them), "
               "attributed with the group tiers (migration 013)"),
    Table("rollup_dirty", (
        _c("hour", "TIMESTAMPTZ", "a UTC hour a write touched", null=False),
        _c("marked_at", "TIMESTAMPTZ", "when it was last marked", null=False),
    ), key=("hour",), primary_key=True, note="hours the rollup job has to (re)build"),
)

OWNER = _OWNER      # the owner columns, for area tables written by the owner process

# the areas' tables: their modules import Table, col and OWNER from here, defined above
from queries.tables import access, billing, capacity, energy, history, reports  # noqa: E402

_TABLES = _TABLES + history.TABLES + energy.TABLES + billing.TABLES + access.TABLES + capacity.TABLES + reports.TABLES
TABLES: dict[str, Table] = {t.name: t for t in _TABLES}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no stored table named {name!r}; the catalogue has {sorted(TABLES)}") from None


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of a batch for table `name`, in catalogue column order. Every field is
    nullable, as the hand-written schemas were: the database enforces NOT NULL, and Arrow
    refuses to concatenate tables whose fields differ only in nullability (the spool merges
    batches written before and after a change)."""
    return pa.schema([pa.field(c.name, c.arrow) for c in table(name).columns])


def insert_sql(name: str, batch: str) -> str:
    """INSERT the rows of the registered relation `batch` whose natural key is not stored yet;
    its parameters come from `insert_params`.

    Rows repeated within the batch must be dropped before (`first_of_each_key`): the
    anti-join sees only what was stored before the statement. A nullable key column
    compares with IS NOT DISTINCT FROM, so a NULL key matches a stored NULL. The time range
    is given as constants ($lo, $hi), not as subqueries on the batch: DuckDB prunes row
    groups by a constant filter when it plans the scan (a quarter less CPU per batch of
    1,000 samples than with the subqueries, measured on a file of 300 batches)."""
    t = table(name)
    match = " AND ".join(
        f"s.{k} = b.{k}" if not t.column(k).nullable else f"s.{k} IS NOT DISTINCT FROM b.{k}" for k in t.key)
    window = f"s.{t.time_column} BETWEEN $lo AND $hi AND " if t.time_column else ""
    return (f"INSERT INTO {t.name} BY NAME SELECT b.* FROM {batch} b "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t.name} s WHERE {window}{match})")


def insert_params(name: str, batch: pa.Table) -> dict | None:
    """The parameters of `insert_sql` for `batch`: the range of its time column."""
    t = table(name)
    if not t.time_column:
        return None
    span = pc.min_max(batch[t.time_column])
    return {"lo": span["min"].as_py(), "hi": span["max"].as_py()}


def first_of_each_key(name: str, batch: pa.Table) -> pa.Table:
    """`batch` with only the first row of each natural key (unchanged when none repeats)."""
    key = list(table(name).key)
    if batch.num_rows < 2:
        return batch
    if batch.select(key).group_by(key).aggregate([]).num_rows == batch.num_rows:
        return batch
    index = "__row"
    numbered = batch.select(key).append_column(index, pa.array(range(batch.num_rows), pa.int64()))
    first = numbered.group_by(key, use_threads=False).aggregate([(index, "min")])[f"{index}_min"]
    return batch.take(pc.take(first, pc.sort_indices(first)))
