"""The billing tables (migration 015_billing.sql): what issuing a month freezes.

An issued bill is never changed: `bill_issues` holds one row per tenant and month (who issued it,
when, the rules version and the totals), `bill_lines` its line items exactly as issued (charges,
voucher subsidies, adjustments of earlier months), and `bill_rules` the billing rules (price
list, contracts, programmes) each version stands for, so an issued bill can be explained later
even after the config changed. Drafts are computed on demand (queries/billing.py), not stored.
"""

from __future__ import annotations

from queries.catalogue import Table, col

TABLES: tuple[Table, ...] = (
    Table("bill_issues", (
        col("month", "VARCHAR", "YYYY-MM, the billing site's calendar month", null=False),
        col("tenant", "VARCHAR", null=False),
        col("issued_at", "TIMESTAMPTZ", null=False),
        col("issued_by", "VARCHAR", "who issued it"),
        col("rules_version", "VARCHAR", "bill_rules.rules_version the figures were computed with", null=False),
        col("currency", "VARCHAR", null=False),
        col("gross", "DOUBLE", "charges", null=False),
        col("subsidy", "DOUBLE", "voucher subsidies (positive)", null=False),
        col("adjustment", "DOUBLE", "adjustments of earlier issued months", null=False),
        col("net", "DOUBLE", "gross - subsidy + adjustment", null=False),
    ), key=("month", "tenant"), primary_key=True, note="one issued bill per tenant and month; never updated"),
    Table("bill_lines", (
        col("month", "VARCHAR", null=False),
        col("tenant", "VARCHAR", null=False),
        col("line", "INTEGER", "position on the bill", null=False),
        col("kind", "VARCHAR", "lease | usage | shortfall | overage | energy | voucher | adjustment | "
            "voucher_adjustment", null=False),
        col("contract", "VARCHAR"),
        col("programme", "VARCHAR", "voucher lines"),
        col("model", "VARCHAR"),
        col("ref_month", "VARCHAR", "adjustments: the issued month they correct"),
        col("period_start", "TIMESTAMPTZ"),
        col("period_end", "TIMESTAMPTZ"),
        col("quantity", "DOUBLE"),
        col("unit", "VARCHAR", "GPU-month | GPU-h | kWh"),
        col("unit_price", "DOUBLE"),
        col("base", "DOUBLE", "voucher lines: the base the rate applied to"),
        col("amount", "DOUBLE", "charges positive, subsidies negative", null=False),
        col("currency", "VARCHAR", null=False),
        col("capped_by", "VARCHAR", "voucher lines: the cap that limited it, if any"),
    ), key=("month", "tenant", "line"), primary_key=True, note="an issued bill's line items, as issued"),
    Table("bill_rules", (
        col("rules_version", "VARCHAR", "hash of the rules below", null=False),
        col("recorded_at", "TIMESTAMPTZ", null=False),
        col("rules", "VARCHAR", "JSON: engine version, currency, prices, contracts, programmes, enrolments",
            null=False),
    ), key=("rules_version",), primary_key=True, note="the billing rules each issued bill was computed with"),
)
