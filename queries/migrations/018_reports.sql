-- 018: the archive of generated monthly reports (issue 17, queries/tables/reports.py). The
-- files are in [reports] archive_dir; each row names one, and a month generated again gets
-- the next version, so earlier versions stay.
CREATE TABLE report_archive (
    month           VARCHAR NOT NULL,
    lang            VARCHAR NOT NULL,
    format          VARCHAR NOT NULL,
    version         INTEGER NOT NULL,
    generated_at    TIMESTAMPTZ NOT NULL,
    trigger         VARCHAR NOT NULL,
    path            VARCHAR NOT NULL,
    bytes           BIGINT NOT NULL,
    sha256          VARCHAR NOT NULL,
    charts          BOOLEAN NOT NULL,
    PRIMARY KEY (month, lang, format, version)
);
