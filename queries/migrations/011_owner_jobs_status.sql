-- 011: rows keyed by owner (site, instance), so several owners' files can be combined later;
-- job runs and owner status for the jobs beside the scrapes; collector errors as message keys.
-- Rows written before belong to whoever owns the file: they get the default owner
-- ('-', 'local') here and the writer adopts them for its own owner when it opens the file
-- (Store.__init__). DuckDB cannot change a primary key in place: targets and kv are rebuilt.

CREATE TABLE targets_011 (
    target             VARCHAR NOT NULL,      -- URL
    source             VARCHAR NOT NULL,
    kind               VARCHAR NOT NULL,      -- source kind
    site               VARCHAR,
    cluster            VARCHAR,
    host               VARCHAR,
    registered_at      TIMESTAMPTZ,
    owner_site         VARCHAR NOT NULL,
    owner_instance     VARCHAR NOT NULL,
    PRIMARY KEY (owner_site, owner_instance, target)
);
INSERT INTO targets_011
SELECT target, source, kind, site, cluster, host, registered_at, '-', 'local' FROM targets;
DROP TABLE targets;
ALTER TABLE targets_011 RENAME TO targets;

CREATE TABLE kv_011 (
    owner_site         VARCHAR NOT NULL,
    owner_instance     VARCHAR NOT NULL,
    key                VARCHAR NOT NULL,
    value              VARCHAR,
    updated_at         TIMESTAMPTZ,
    PRIMARY KEY (owner_site, owner_instance, key)
);
INSERT INTO kv_011 SELECT '-', 'local', key, value, updated_at FROM kv;
DROP TABLE kv;
ALTER TABLE kv_011 RENAME TO kv;

ALTER TABLE collector_runs ADD COLUMN error_msg VARCHAR;       -- the error as message keys (i18n.dumps JSON)
ALTER TABLE collector_runs ADD COLUMN owner_site VARCHAR DEFAULT '-';
ALTER TABLE collector_runs ADD COLUMN owner_instance VARCHAR DEFAULT 'local';
ALTER TABLE collector_runs ALTER COLUMN owner_site SET NOT NULL;
ALTER TABLE collector_runs ALTER COLUMN owner_instance SET NOT NULL;
ALTER TABLE collector_runs ALTER COLUMN owner_site DROP DEFAULT;
ALTER TABLE collector_runs ALTER COLUMN owner_instance DROP DEFAULT;

-- every run of a scheduled job (rollups, retention, imports, reports, reopening the file)
CREATE TABLE job_runs (
    owner_site         VARCHAR NOT NULL,
    owner_instance     VARCHAR NOT NULL,
    job                VARCHAR NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    duration_s         DOUBLE,
    ok                 BOOLEAN NOT NULL,
    rows               BIGINT,
    error              VARCHAR,               -- in English
    error_msg          VARCHAR,               -- as message keys (i18n.dumps JSON)
    detail             VARCHAR,
    PRIMARY KEY (owner_site, owner_instance, job, started_at)
);

-- what an owner process reports about itself (last cycle, spool, back-fill, jobs): newest only
CREATE TABLE owner_status (
    owner_site         VARCHAR NOT NULL,
    owner_instance     VARCHAR NOT NULL,
    name               VARCHAR NOT NULL,
    value              VARCHAR,               -- JSON object
    updated_at         TIMESTAMPTZ,
    PRIMARY KEY (owner_site, owner_instance, name)
);
