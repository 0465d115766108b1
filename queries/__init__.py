"""The database's one owner in code: schema, migrations, writes and named reads.

Every read is a `.sql` file in queries/sql/ with `$named` parameters, run by
`Store.query(name, **params)` (or `run(cursor, name, ...)`) into a DataFrame.
"""

from queries.store import DatabaseOwned, Store, UnknownQuery, connect, migrate, query_names, run

__all__ = ["DatabaseOwned", "Store", "UnknownQuery", "connect", "migrate", "query_names", "run"]
