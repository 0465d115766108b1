"""The access tables (migration 016_access.sql): the audit trail and the API's bearer tokens.

No owner columns: sign-ins, tokens and the audit belong to the dashboard server that answers
them (the one owner of the file), not to a collector instance.
"""

from __future__ import annotations

from queries.catalogue import Table, col

TABLES: tuple[Table, ...] = (
    Table("audit_log", (
        col("ts", "TIMESTAMPTZ", "when, UTC", null=False),
        col("event_id", "VARCHAR", "random id of the event (two events may share a time)", null=False),
        col("who", "VARCHAR", "the signed-in person (e-mail or subject), a token's name, or 'local'", null=False),
        col("role", "VARCHAR", "noc | manager | planner | admin | tenant; NULL while sign-in is off"),
        col("tenant", "VARCHAR", "the tenant of a tenant's session or token"),
        col("action", "VARCHAR", "sign_in | sign_out | session_timeout | denied | meter_import | bill_issue"
            " | token_use | token_create | token_revoke | view_as", null=False),
        col("target", "VARCHAR", "what it was done to: a page, an API route, a bill, a token id, a file"),
        col("detail", "VARCHAR", "more, as the caller worded it (JSON for structured detail)"),
    ), key=("event_id",), primary_key=True, note="who did what when; an admin reads and downloads it"),

    Table("api_tokens", (
        col("token_id", "VARCHAR", "the public part of the token (zs_<token_id>_<secret>)", null=False),
        col("secret_sha256", "VARCHAR", "SHA-256 of the secret part, hex; the secret itself is never stored",
            null=False),
        col("name", "VARCHAR", "the person or service it was made for", null=False),
        col("role", "VARCHAR", "noc | manager | planner | admin | tenant", null=False),
        col("tenant", "VARCHAR", "for role tenant: the one tenant it may read"),
        col("created_at", "TIMESTAMPTZ", null=False),
        col("created_by", "VARCHAR", null=False),
        col("revoked_at", "TIMESTAMPTZ", "NULL while it is valid"),
        col("revoked_by", "VARCHAR"),
        col("last_used_at", "TIMESTAMPTZ", "the last API call made with it"),
    ), key=("token_id",), primary_key=True, note="API bearer tokens, stored hashed"),
)
