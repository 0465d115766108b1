-- params: month_to
-- Every (contract, programme) an issued bill before $month_to (YYYY-MM, excluded) carries a voucher
-- claim for, and the first month it did: a programme with one claim per contract pays no second time,
-- however long ago the first was issued.
SELECT contract, programme, min(month) AS month
FROM bill_lines
WHERE kind = 'voucher' AND month < $month_to AND contract IS NOT NULL AND programme IS NOT NULL
GROUP BY contract, programme
ORDER BY contract, programme
