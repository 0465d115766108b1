-- The measures of docs/history.md, for SQL that needs them (the rollup build, the pages'
-- and the API's queries). queries/measures.py holds the same definitions for Python; the two
-- are tested against the same hand-computed figures (tests/test_measures.py).
--
-- Bucket starts are computed from epoch seconds, so they do not depend on the session's
-- TimeZone (a cursor does not inherit the connection's): 5-minute and hourly buckets are UTC.
CREATE OR REPLACE MACRO bucket_5m(ts) AS to_timestamp(floor(epoch(ts) / 300) * 300);
CREATE OR REPLACE MACRO bucket_1h(ts) AS to_timestamp(floor(epoch(ts) / 3600) * 3600);
-- A site-local day, week (Monday) or month: the local calendar unit holding `ts`, as the UTC
-- instant it starts at (an hourly bucket's start goes in, the day/week/month's start comes out).
CREATE OR REPLACE MACRO bucket_local(unit, ts, tz) AS
    timezone(tz, date_trunc(unit, timezone(tz, ts)));

-- A MIG instance weighs its share of the board (slices / 7, as devices.peak_dense_tflops);
-- a whole GPU, or an instance whose profile does not name its slices, weighs 1.
CREATE OR REPLACE MACRO mig_weight(mig_profile) AS
    CASE WHEN mig_profile IS NOT NULL AND regexp_matches(mig_profile, '^[0-9]+g\.')
         THEN CAST(regexp_extract(mig_profile, '^([0-9]+)g\.', 1) AS DOUBLE) / 7
         ELSE 1.0 END;

-- available: reported and healthy (the exporter's own verdict is not 0, no XID)
CREATE OR REPLACE MACRO sample_available(health, xid_last) AS
    coalesce(health, 1) <> 0 AND coalesce(xid_last, 0) = 0;

-- held by a label: a pod, job, namespace or job user holds the device (leases are applied
-- by attribution, in the group tiers)
CREATE OR REPLACE MACRO labels_held(namespace, pod, job, job_user) AS
    namespace IS NOT NULL OR pod IS NOT NULL OR job IS NOT NULL OR job_user IS NOT NULL;

-- time-weighted mean utilisation from the tiers' sums; NULL where nothing was observed
CREATE OR REPLACE MACRO util_pct(util_s, util_obs_s) AS
    CASE WHEN util_obs_s > 0 THEN 100.0 * util_s / util_obs_s END;

-- a share of owned, in percent; NULL when nothing is owned
CREATE OR REPLACE MACRO share_pct(part_s, owned_s) AS
    CASE WHEN owned_s > 0 THEN 100.0 * part_s / owned_s END;

-- delivered PFLOPS over a bucket of `bucket_s` seconds from its tflop_s sum
CREATE OR REPLACE MACRO delivered_pflops(tflop_s, bucket_s) AS tflop_s / 1000.0 / bucket_s;

-- the group tiers' useful_basis over several rows: one basis, or mixed
CREATE OR REPLACE MACRO basis_of(n_bases, one_basis) AS
    CASE WHEN n_bases > 1 THEN 'mixed' ELSE one_basis END;
