-- params: none
-- Every API token without its hash, newest first (the admin page).
SELECT token_id, name, role, tenant, created_at, created_by, last_used_at, revoked_at, revoked_by
FROM api_tokens
ORDER BY created_at DESC, token_id
