-- Energy (issue 13): each facility meter's energy per quarter hour, built by the energy job
-- (queries/energy.py) from facility_samples: registers as deltas (resets and rollovers
-- handled), power-only meters integrated; only time between readings no further apart than
-- energy.pue.max_gap_s is covered, so a gap stays a gap.
CREATE TABLE energy_meter_15m (
    quarter            TIMESTAMPTZ NOT NULL,  -- quarter-hour start, UTC
    site               VARCHAR NOT NULL,
    meter              VARCHAR NOT NULL,
    scope              VARCHAR NOT NULL,      -- facility | it | cooling
    pue_category       INTEGER,               -- IT meters: ISO/IEC 30134-2 category 1, 2 or 3
    kwh                DOUBLE NOT NULL,       -- energy in the quarter over the covered time
    covered_s          DOUBLE NOT NULL,       -- seconds of the quarter between readings no further apart than max_gap_s
    samples            BIGINT NOT NULL,       -- readings in the quarter
    register_s         DOUBLE NOT NULL,       -- of covered_s, the seconds counted from the energy register (else power)
    resets             INTEGER NOT NULL,      -- register resets or rollovers seen in the quarter
    PRIMARY KEY (site, meter, quarter)
);
