-- params: key_name, key_value, tenant
-- Whether the hourly group tier holds $key_value as a $key_name ('site', 'cluster', 'model' or
-- 'tenant'): how a filter value the config does not list is accepted (a Prometheus source may
-- carry clusters the config does not). $tenant set (a tenant's scope): among its rows alone.
-- One row, `held`; '_unallocated' (nobody's time) is never a filter value.
SELECT count(*) > 0 AS held FROM (
    SELECT 1 FROM rollup_group_1h
    WHERE CASE $key_name WHEN 'site' THEN site WHEN 'cluster' THEN cluster WHEN 'model' THEN model
                         WHEN 'tenant' THEN tenant END = $key_value::VARCHAR
      AND $key_value::VARCHAR <> '_unallocated'
      AND ($tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR)
    LIMIT 1
)
