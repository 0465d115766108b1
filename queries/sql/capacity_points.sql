-- params: cap_series, cap_run_at
-- One fitted series' daily points over the horizon, oldest first.
SELECT day, median, lo80, hi80, lo95, hi95, median_smooth, upper_smooth
FROM capacity_forecasts
WHERE series = $cap_series AND run_at = $cap_run_at::TIMESTAMPTZ
ORDER BY day
