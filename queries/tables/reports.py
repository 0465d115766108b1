"""The reports tables (migration 018_reports.sql): the archive of generated monthly reports.

The files themselves live in the archive folder (`[reports] archive_dir`); a row says which
month, language and format a file holds, its version (1, 2, ... : generating a month again adds
a version and keeps the earlier ones), when and by what it was made, and its size and SHA-256,
so the page lists the archive from the database. No owner columns: the archive belongs to the
process that owns the file and files the reports (the dashboard, or the shell command with
--archive), as the files do.
"""

from __future__ import annotations

from queries.catalogue import Table, col

TABLES: tuple[Table, ...] = (
    Table("report_archive", (
        col("month", "VARCHAR", "YYYY-MM, the site-local calendar month", null=False),
        col("lang", "VARCHAR", "en | zh-CN", null=False),
        col("format", "VARCHAR", "pdf | xlsx", null=False),
        col("version", "INTEGER", "1 for the first report of the month, then 2, 3, ...", null=False),
        col("generated_at", "TIMESTAMPTZ", "when it was made, UTC", null=False),
        col("trigger", "VARCHAR", "job | page | cli", null=False),
        col("path", "VARCHAR", "the file, relative to the archive folder", null=False),
        col("bytes", "BIGINT", null=False),
        col("sha256", "VARCHAR", null=False),
        col("charts", "BOOLEAN", "false: made without charts (no chromium)", null=False),
    ), key=("month", "lang", "format", "version"), primary_key=True,
        note="every generated monthly report; files in [reports] archive_dir"),
)
