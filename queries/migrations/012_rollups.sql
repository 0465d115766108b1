-- 012: the history tiers (docs/history.md "Tiers"): per device per 5 minutes and per hour, keyed
-- by the labels a sample carried; per site/cluster/model/tenant per 5 minutes and per hour,
-- attributed when built. GPU-second sums (weighted by a MIG instance's share), never averages,
-- so coarser buckets are exact sums. Label and group key columns may be NULL, so the keys are
-- the rollup's to keep (it deletes and inserts whole buckets), not PRIMARY KEYs.
-- rollup_dirty: the UTC hours a write touched since the rollup job last built them.

CREATE TABLE rollup_device_5m (
    bucket             TIMESTAMPTZ NOT NULL,
    device_id          VARCHAR NOT NULL,
    namespace          VARCHAR,
    pod                VARCHAR,
    job                VARCHAR,
    job_user           VARCHAR,
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
    energy_j           DOUBLE NOT NULL
);

CREATE TABLE rollup_device_1h (
    bucket             TIMESTAMPTZ NOT NULL,
    device_id          VARCHAR NOT NULL,
    namespace          VARCHAR,
    pod                VARCHAR,
    job                VARCHAR,
    job_user           VARCHAR,
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
    energy_j           DOUBLE NOT NULL
);

CREATE TABLE rollup_group_5m (
    bucket             TIMESTAMPTZ NOT NULL,
    site               VARCHAR,
    cluster            VARCHAR,
    model              VARCHAR,
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
    energy_j           DOUBLE NOT NULL
);

CREATE TABLE rollup_group_1h (
    bucket             TIMESTAMPTZ NOT NULL,
    site               VARCHAR,
    cluster            VARCHAR,
    model              VARCHAR,
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
    energy_j           DOUBLE NOT NULL
);

CREATE TABLE rollup_dirty (
    hour               TIMESTAMPTZ PRIMARY KEY,   -- a UTC hour a write touched
    marked_at          TIMESTAMPTZ NOT NULL       -- when it was last marked
);
