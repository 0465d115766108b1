-- 016: access (docs/access.md): the audit trail (sign-ins, sign-outs, denied access, meter
-- imports, bill issues, token use) and the API's bearer tokens, stored hashed.

CREATE TABLE audit_log (
    ts        TIMESTAMPTZ NOT NULL,
    event_id  VARCHAR NOT NULL PRIMARY KEY,
    who       VARCHAR NOT NULL,
    role      VARCHAR,
    tenant    VARCHAR,
    action    VARCHAR NOT NULL,
    target    VARCHAR,
    detail    VARCHAR
);

CREATE TABLE api_tokens (
    token_id       VARCHAR NOT NULL PRIMARY KEY,
    secret_sha256  VARCHAR NOT NULL,
    name           VARCHAR NOT NULL,
    role           VARCHAR NOT NULL,
    tenant         VARCHAR,
    created_at     TIMESTAMPTZ NOT NULL,
    created_by     VARCHAR NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_by     VARCHAR,
    last_used_at   TIMESTAMPTZ
);
