-- Canonical tables (DESIGN.md). Times are TIMESTAMPTZ in UTC; units live in
-- column names; missing values are NULL, never 0.

CREATE TABLE devices (
    device_id          VARCHAR PRIMARY KEY,   -- UUID, or UUID/GPU_I_ID for a MIG instance
    vendor             VARCHAR,
    model              VARCHAR,               -- as the exporter names it
    catalogue_model    VARCHAR,               -- accelerators.toml id, NULL when unknown
    peak_dense_tflops  DOUBLE,                -- this device's share (MIG: slices/7)
    host               VARCHAR,
    cluster            VARCHAR,
    site               VARCHAR,
    gpu_index          INTEGER,
    uuid               VARCHAR,
    pci_bus_id         VARCHAR,
    mig_parent         VARCHAR,
    mig_profile        VARCHAR,
    mem_total_mib      DOUBLE,
    driver_version     VARCHAR,
    source             VARCHAR,
    target             VARCHAR,               -- the endpoint that last reported it
    first_seen         TIMESTAMPTZ,
    last_seen          TIMESTAMPTZ
);

CREATE TABLE device_samples (
    ts                 TIMESTAMPTZ NOT NULL,
    device_id          VARCHAR NOT NULL,
    site               VARCHAR,
    cluster            VARCHAR,
    host               VARCHAR,
    util_pct           DOUBLE,
    gr_active          DOUBLE,
    sm_active          DOUBLE,
    tensor_active      DOUBLE,
    dram_active        DOUBLE,
    mem_used_mib       DOUBLE,
    mem_free_mib       DOUBLE,
    power_w            DOUBLE,
    energy_j           DOUBLE,
    temp_c             DOUBLE,
    mem_temp_c         DOUBLE,
    sm_clock_mhz       DOUBLE,
    throttle_reasons   BIGINT,
    xid_last           BIGINT,
    ecc_dbe_volatile   BIGINT,
    tenant             VARCHAR,
    namespace          VARCHAR,
    pod                VARCHAR,
    container          VARCHAR,
    job                VARCHAR,
    source             VARCHAR
);

CREATE TABLE device_events (
    ts                 TIMESTAMPTZ NOT NULL,
    device_id          VARCHAR,
    site               VARCHAR,
    cluster            VARCHAR,
    host               VARCHAR,
    gpu_index          INTEGER,
    kind               VARCHAR NOT NULL,      -- xid | thermal | lost | back | ecc
    code               BIGINT,
    detail             VARCHAR,
    source             VARCHAR
);

CREATE TABLE facility_samples (
    ts                 TIMESTAMPTZ NOT NULL,
    site               VARCHAR NOT NULL,
    meter              VARCHAR NOT NULL,
    scope              VARCHAR NOT NULL,      -- facility | it | cooling
    pue_category       INTEGER,               -- ISO/IEC 30134-2: 1 UPS out, 2 PDU out, 3 IT input
    power_w            DOUBLE,
    energy_kwh         DOUBLE,
    source             VARCHAR
);

CREATE TABLE targets (
    target             VARCHAR PRIMARY KEY,   -- URL
    source             VARCHAR NOT NULL,
    kind               VARCHAR NOT NULL,      -- dcgm | facility
    site               VARCHAR,
    cluster            VARCHAR,
    host               VARCHAR,
    registered_at      TIMESTAMPTZ
);

CREATE TABLE collector_runs (
    started_at         TIMESTAMPTZ NOT NULL,
    source             VARCHAR NOT NULL,
    kind               VARCHAR,
    target             VARCHAR NOT NULL,
    duration_s         DOUBLE,
    rows               INTEGER,
    lines_skipped      INTEGER,
    ok                 BOOLEAN NOT NULL,
    error              VARCHAR
);

CREATE TABLE kv (
    key                VARCHAR PRIMARY KEY,
    value              VARCHAR,
    updated_at         TIMESTAMPTZ
);
