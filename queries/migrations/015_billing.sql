-- 015: what issuing a month of bills freezes (queries/tables/billing.py, docs/billing.md): one
-- row per issued bill, its line items as issued, and the rules each version of the figures used.
-- Drafts are computed from the history tiers on demand and never stored.

CREATE TABLE bill_issues (
    month              VARCHAR NOT NULL,
    tenant             VARCHAR NOT NULL,
    issued_at          TIMESTAMPTZ NOT NULL,
    issued_by          VARCHAR,
    rules_version      VARCHAR NOT NULL,
    currency           VARCHAR NOT NULL,
    gross              DOUBLE NOT NULL,
    subsidy            DOUBLE NOT NULL,
    adjustment         DOUBLE NOT NULL,
    net                DOUBLE NOT NULL,
    PRIMARY KEY (month, tenant)
);

CREATE TABLE bill_lines (
    month              VARCHAR NOT NULL,
    tenant             VARCHAR NOT NULL,
    line               INTEGER NOT NULL,
    kind               VARCHAR NOT NULL,
    contract           VARCHAR,
    programme          VARCHAR,
    model              VARCHAR,
    ref_month          VARCHAR,
    period_start       TIMESTAMPTZ,
    period_end         TIMESTAMPTZ,
    quantity           DOUBLE,
    unit               VARCHAR,
    unit_price         DOUBLE,
    base               DOUBLE,
    amount             DOUBLE NOT NULL,
    currency           VARCHAR NOT NULL,
    capped_by          VARCHAR,
    PRIMARY KEY (month, tenant, line)
);

CREATE TABLE bill_rules (
    rules_version      VARCHAR NOT NULL PRIMARY KEY,
    recorded_at        TIMESTAMPTZ NOT NULL,
    rules              VARCHAR NOT NULL
);
