-- params: tenant
-- The sites, clusters, models and tenants the hourly group tier holds: with the config's,
-- the values a history filter accepts (a Prometheus source may carry clusters the config
-- does not list). $tenant NULL: every row's; else only that tenant's rows (a tenant's scope).
SELECT DISTINCT site, cluster, model, tenant FROM rollup_group_1h
WHERE $tenant::VARCHAR IS NULL OR tenant = $tenant::VARCHAR
