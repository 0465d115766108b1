-- params: none
-- The forecast job's newest fit of each series (the job deletes older runs; this also holds
-- while one is being replaced).
SELECT * FROM capacity_fits
QUALIFY row_number() OVER (PARTITION BY series ORDER BY run_at DESC) = 1
ORDER BY series
