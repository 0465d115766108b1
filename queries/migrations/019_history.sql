-- 019: rollup_tenant_1h (docs/history.md "Tiers"): per tenant per UTC hour, the hourly group
-- tier's sums over every site, cluster and model, and the most GPUs the tenant held at once in
-- the hour (from the 5-minute group tier). Built by the rollup job with the group tiers, from
-- them; a store migrated with history in its group tiers gets it filled by the job's next run
-- (queries/rollup.py fill_tenants).

CREATE TABLE rollup_tenant_1h (
    bucket             TIMESTAMPTZ NOT NULL,
    tenant             VARCHAR NOT NULL,
    devices            BIGINT NOT NULL,
    samples            BIGINT NOT NULL,
    observed_s         DOUBLE NOT NULL,
    available_s        DOUBLE NOT NULL,
    allocated_s        DOUBLE NOT NULL,
    busy_s             DOUBLE NOT NULL,
    useful_s           DOUBLE NOT NULL,
    useful_basis       VARCHAR,
    alloc_idle_s       DOUBLE NOT NULL,
    util_s             DOUBLE NOT NULL,
    util_obs_s         DOUBLE NOT NULL,
    tflop_s            DOUBLE NOT NULL,
    energy_j           DOUBLE NOT NULL,
    peak_gpus          DOUBLE NOT NULL
);
