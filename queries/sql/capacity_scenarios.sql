-- params: none
-- The saved what-if scenarios, newest first.
SELECT name, title, changes, horizon_months, created_at, updated_at, created_by
FROM capacity_scenarios
ORDER BY updated_at DESC, name
