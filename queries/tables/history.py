"""The history tables added after migration 013 (migration 019_history.sql); the rollup tiers
of migrations 012-013 stay declared in queries/catalogue.py.

rollup_tenant_1h: per tenant per UTC hour, the hourly group tier's sums over every site,
cluster and model, and the most GPUs the tenant held at once in the hour (at 5-minute
resolution). The per-tenant answers without a site, cluster or model filter (the API's
/tenants, the tenant-usage page) read it: 24 rows a tenant-day, where the peak from the
5-minute group tier read 288 buckets of every group a day (13 ms of a 15 ms answer over 30
days at 512 GPUs; docs/history.md "Issue 12's open goals, re-measured").

rollup_cluster_1h: per site, cluster and model per UTC hour, the hourly group tier summed over
its tenants: the ladder of the fleet, a site, a cluster or a model with no tenant filter reads
a row per cluster-hour instead of one per cluster, model and tenant."""

from __future__ import annotations

from queries.catalogue import Table, col

_SUMS = (
    col("samples", "BIGINT", "raw samples counted", null=False),
    col("observed_s", "DOUBLE", "GPU-seconds held time was observed (as rollup_group_1h)", null=False),
    col("available_s", "DOUBLE", "observed and healthy", null=False),
    col("allocated_s", "DOUBLE", "available and held", null=False),
    col("busy_s", "DOUBLE", "util_pct > 0 while allocated", null=False),
    col("useful_s", "DOUBLE", "weighted by tensor_active, else sm_active, while allocated", null=False),
    col("useful_basis", "VARCHAR", "tensor | sm | mixed | NULL"),
    col("alloc_idle_s", "DOUBLE", "util_pct = 0 while allocated: the reclaim list", null=False),
    col("util_s", "DOUBLE", "sum(dt x util_pct / 100)", null=False),
    col("util_obs_s", "DOUBLE", "device time of samples with a util_pct", null=False),
    col("tflop_s", "DOUBLE", "sum(dt x tensor_active x peak_dense_tflops)", null=False),
    col("energy_j", "DOUBLE", "board energy, once per physical board", null=False),
)

TABLES: tuple[Table, ...] = (
    Table("rollup_tenant_1h", (
        col("bucket", "TIMESTAMPTZ", "bucket start, UTC", null=False),
        col("tenant", "VARCHAR", "tenant id, _unattributed or _unallocated", null=False),
        col("devices", "BIGINT", "the group rows' devices, summed (a device in two groups counts twice)",
            null=False),
        *_SUMS,
        col("peak_gpus", "DOUBLE", "most GPUs held at once: the largest 5-minute sum(allocated_s) / 300 "
            "of the hour, or allocated_s / 3600 when that is larger or the 5-minute tier has none", null=False),
    ), key=("bucket", "tenant"), time_column="bucket",
        note="per tenant per UTC hour, from the group tiers (queries/rollup.py), with the hour's peak"),
    Table("rollup_cluster_1h", (
        col("bucket", "TIMESTAMPTZ", "bucket start, UTC", null=False),
        col("site", "VARCHAR"), col("cluster", "VARCHAR"),
        col("model", "VARCHAR", "catalogue model id, else the exporter's model name"),
        *_SUMS,
    ), key=("bucket", "site", "cluster", "model"), time_column="bucket",
        note="per site, cluster and model per UTC hour: the hourly group tier summed over its tenants "
             "(_unallocated included), from it (queries/rollup.py)"),
)
