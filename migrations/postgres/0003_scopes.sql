-- Scopes: what each session's tokens may use, non-expiring tokens, and the operator
-- documents (scope catalog, route policy) every replica serves. Times are Unix seconds.

-- The session's granted scopes, normalised and space-separated; '' when unscoped.
ALTER TABLE sessions ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
-- For a non-expiring token: SHA-256 of the opaque token. The session is the token.
ALTER TABLE sessions ADD COLUMN token_digest BYTEA;
-- For a non-expiring token that must be regenerated (e.g. with `decrypt`): when it stops.
ALTER TABLE sessions ADD COLUMN regenerate_at BIGINT;

CREATE UNIQUE INDEX sessions_by_token ON sessions (token_digest);
-- Revoked sessions are purged a day after revocation.
CREATE INDEX sessions_by_revocation ON sessions (revoked_at);

-- Operator documents by name ('scope_catalog', 'route_policy'). Absent means built-in.
CREATE TABLE documents (
    name        TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    -- SHA-256 of the file last applied at startup, so an unchanged file does not undo
    -- a replacement made through Admin.
    file_digest BYTEA,
    -- Increases with every change; replicas reload when it moves.
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
