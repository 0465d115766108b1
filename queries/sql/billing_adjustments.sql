-- params: month_from, tenant
-- Adjustment lines of issued bills (of any month) that correct a month from $month_from on: what
-- has been carried already of an issued month's difference, wherever the bill that carried it lies.
-- $tenant NULL: every tenant's.
SELECT month, tenant, line, kind, contract, programme, model, ref_month, period_start, period_end,
       quantity, unit, unit_price, base, amount, currency, capped_by
FROM bill_lines
WHERE kind IN ('adjustment', 'voucher_adjustment') AND ref_month >= $month_from
  AND ($tenant IS NULL OR tenant = $tenant)
ORDER BY month, tenant, line
