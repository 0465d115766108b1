-- params: month_from, month_to, tenant
-- Issued bills (bill_issues) of the months from $month_from to $month_to (YYYY-MM, both
-- included); $tenant NULL: every tenant's.
SELECT month, tenant, issued_at, issued_by, rules_version, currency, gross, subsidy, adjustment, net
FROM bill_issues
WHERE month >= $month_from AND month <= $month_to AND ($tenant IS NULL OR tenant = $tenant)
ORDER BY month, tenant
