-- Meter readings typed off the electricity bill or read by hand: energy over a
-- period. One row per (site, meter, period); re-importing the same reading
-- changes nothing.
CREATE TABLE facility_readings (
    site               VARCHAR NOT NULL,
    meter              VARCHAR NOT NULL,
    scope              VARCHAR NOT NULL,      -- facility | it | cooling
    pue_category       INTEGER,               -- for IT meters: ISO/IEC 30134-2 category 1, 2 or 3
    period_start       TIMESTAMPTZ NOT NULL,
    period_end         TIMESTAMPTZ NOT NULL,
    energy_kwh         DOUBLE NOT NULL,
    source_file        VARCHAR,
    source_line        INTEGER,
    imported_at        TIMESTAMPTZ,
    PRIMARY KEY (site, meter, period_start, period_end)
);
