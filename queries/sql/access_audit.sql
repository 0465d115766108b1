-- params: audit_start, audit_end, audit_action, audit_who, audit_max_rows
-- The audit trail in [$audit_start, $audit_end), newest first; $audit_action / $audit_who NULL for all.
SELECT ts, who, role, tenant, action, target, detail
FROM audit_log
WHERE ts >= $audit_start AND ts < $audit_end
  AND ($audit_action IS NULL OR action = $audit_action)
  AND ($audit_who IS NULL OR who = $audit_who)
ORDER BY ts DESC, event_id
LIMIT $audit_max_rows
