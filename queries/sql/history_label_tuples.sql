-- params: first_hour, end_ts
-- The distinct label tuples rollup_device_1h holds over [$first_hour, $end_ts): attributed to
-- tenants in Python by the config's rules (collectors/attribution.py), once per tuple.
SELECT DISTINCT namespace, pod, job, job_user FROM rollup_device_1h
WHERE bucket >= $first_hour::TIMESTAMPTZ AND bucket < $end_ts::TIMESTAMPTZ
  AND labels_held(namespace, pod, job, job_user)
