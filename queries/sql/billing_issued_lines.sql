-- params: month_from, month_to, tenant
-- The line items of the issued bills of the months from $month_from to $month_to (YYYY-MM, both
-- included), in bill order; $tenant NULL: every tenant's.
SELECT month, tenant, line, kind, contract, programme, model, ref_month, period_start, period_end,
       quantity, unit, unit_price, base, amount, currency, capped_by
FROM bill_lines
WHERE month >= $month_from AND month <= $month_to AND ($tenant IS NULL OR tenant = $tenant)
ORDER BY month, tenant, line
