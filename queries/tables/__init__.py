"""The business tables of each area (energy, billing, access, capacity, reports), one module an
area, each declaring `TABLES` with queries.catalogue's `Table` and `col`. The catalogue adds
them to its own, so migrations, Arrow schemas and idempotent inserts treat them alike."""
