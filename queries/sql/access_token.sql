-- params: token_id
-- One API token with its hash, for checking a bearer token (queries/tokens.py authenticate).
SELECT token_id, secret_sha256, name, role, tenant, revoked_at
FROM api_tokens
WHERE token_id = $token_id
