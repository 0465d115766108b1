-- 017: capacity planning (docs/capacity.md). The forecast job's newest fit of each daily series
-- (capacity_fits) with its points over the horizon (capacity_forecasts), and the saved what-if
-- scenarios (capacity_scenarios: a name and its dated changes as JSON).

CREATE TABLE capacity_fits (
    run_at             TIMESTAMPTZ NOT NULL,
    series             VARCHAR NOT NULL,
    measure            VARCHAR NOT NULL,
    by_key             VARCHAR NOT NULL,
    key                VARCHAR,
    unit               VARCHAR NOT NULL,
    tz                 VARCHAR NOT NULL,
    model              VARCHAR,
    trusted            BOOLEAN NOT NULL,
    reason_msg         VARCHAR,
    history_days       INTEGER NOT NULL,
    history_start      TIMESTAMPTZ,
    history_end        TIMESTAMPTZ,
    backtests          VARCHAR,
    scores             VARCHAR,
    capacity           DOUBLE,
    measured_now       DOUBLE,
    headroom_now       DOUBLE,
    exhaust_median     TIMESTAMPTZ,
    exhaust_upper      TIMESTAMPTZ,
    band               INTEGER NOT NULL,
    fit_s              DOUBLE,
    PRIMARY KEY (series, run_at)
);

CREATE TABLE capacity_forecasts (
    run_at             TIMESTAMPTZ NOT NULL,
    series             VARCHAR NOT NULL,
    day                TIMESTAMPTZ NOT NULL,
    median             DOUBLE NOT NULL,
    lo80               DOUBLE NOT NULL,
    hi80               DOUBLE NOT NULL,
    lo95               DOUBLE NOT NULL,
    hi95               DOUBLE NOT NULL,
    median_smooth      DOUBLE NOT NULL,
    upper_smooth       DOUBLE NOT NULL,
    PRIMARY KEY (series, run_at, day)
);

CREATE TABLE capacity_scenarios (
    name               VARCHAR PRIMARY KEY,
    title              VARCHAR,
    changes            VARCHAR NOT NULL,
    horizon_months     INTEGER NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    created_by         VARCHAR
);
