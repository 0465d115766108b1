"""The database's one owner in code: schema, migrations, writes and named reads.

Every stored table is declared once in queries/catalogue.py. Every read is a `.sql` file
in queries/sql/ with `$named` parameters, declared on its first line, run by
`Store.query(name, **params)` (or `run(cursor, name, ...)`) into a DataFrame.
"""

from queries.catalogue import TABLES, arrow_schema
from queries.store import (
    DatabaseDamaged, DatabaseOwned, DatabaseUnavailable, DatabaseUnusable, OwnerKey, Store, UnknownQuery, connect,
    migrate, query_names, run,
)

__all__ = ["DatabaseDamaged", "DatabaseOwned", "DatabaseUnavailable", "DatabaseUnusable", "OwnerKey", "Store",
           "TABLES", "UnknownQuery", "arrow_schema", "connect", "migrate", "query_names", "run"]
