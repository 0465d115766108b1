-- params: cap_start, cap_end
-- Per model over [$cap_start, $cap_end): the tensor work done (tflop_s: seconds x tensor_active x
-- peak TFLOPS) and the allocated GPU-seconds, from the hourly group tier: the calculator's
-- effective-compute ratio is tflop_s / (allocated_s x the model's peak TFLOPS).
SELECT model, sum(tflop_s) AS tflop_s, sum(allocated_s) AS allocated_s, sum(observed_s) AS observed_s
FROM rollup_group_1h
WHERE bucket >= $cap_start::TIMESTAMPTZ AND bucket < $cap_end::TIMESTAMPTZ AND tenant <> '_unallocated'
GROUP BY model
ORDER BY model
