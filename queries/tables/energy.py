"""The energy tables (migration 014_energy.sql): the meters' quarter-hour energy, built by the
`energy` job (queries/energy.py) from facility_samples, so that PUE, cost by tariff period,
the month's maximum 15-minute demand and every energy page read a few rows per meter and
quarter hour, never the raw readings."""

from __future__ import annotations

from queries.catalogue import Table, col

TABLES: tuple[Table, ...] = (
    Table("energy_meter_15m", (
        col("quarter", "TIMESTAMPTZ", "quarter-hour start, UTC", null=False),
        col("site", "VARCHAR", null=False),
        col("meter", "VARCHAR", null=False),
        col("scope", "VARCHAR", "facility | it | cooling", null=False),
        col("pue_category", "INTEGER", "IT meters: ISO/IEC 30134-2 category 1, 2 or 3"),
        col("kwh", "DOUBLE", "energy in the quarter over the covered time", null=False),
        col("covered_s", "DOUBLE", "seconds of the quarter between readings no further apart than max_gap_s",
            null=False),
        col("samples", "BIGINT", "readings in the quarter", null=False),
        col("register_s", "DOUBLE", "of covered_s, the seconds counted from the energy register (else power)",
            null=False),
        col("resets", "INTEGER", "register resets or rollovers seen in the quarter", null=False),
    ), key=("site", "meter", "quarter"), primary_key=True, time_column="quarter",
        note="each meter's energy per quarter hour from facility_samples (queries/energy.py build)"),
)
