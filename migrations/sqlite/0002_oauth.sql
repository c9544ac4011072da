-- OAuth2: integrations (client_credentials), sessions with rotating refresh tokens, and
-- the keys that sign access tokens. Times are Unix seconds.

-- When the password last changed; sessions older than this were revoked with it.
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;

CREATE TABLE integrations (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL UNIQUE,
    active            BOOLEAN NOT NULL DEFAULT TRUE,
    -- SHA-256 of the current client secret.
    secret_digest     BLOB NOT NULL UNIQUE,
    secret_created_at BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE integration_permissions (
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    permission     TEXT NOT NULL,
    PRIMARY KEY (integration_id, permission)
);

-- A session is one login (or one client_credentials grant): its access tokens carry its
-- id, and its refresh tokens form one rotation family. Revoking it ends them all.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    integration_id TEXT REFERENCES integrations (id) ON DELETE CASCADE,
    -- The client the session was issued to: an integration's client_id or 'public'.
    client_id      TEXT NOT NULL,
    grant_type     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    -- Absolute end: no token of the session is valid after it, however often refreshed.
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    CHECK ((user_id IS NULL) <> (integration_id IS NULL))
);

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_integration ON sessions (integration_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Every refresh token ever issued in a live session, so a reused one is recognised.
CREATE TABLE refresh_tokens (
    digest      BLOB PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- SHA-256 of the CSRF token bound to this refresh token.
    csrf_digest BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    algorithm          TEXT NOT NULL,
    public_key         BLOB NOT NULL,
    -- The private key, sealed with the master key (nonce || ChaCha20-Poly1305 ciphertext).
    sealed_private_key BLOB NOT NULL,
    created_at         BIGINT NOT NULL,
    -- Set when a newer key took over signing.
    retired_at         BIGINT,
    -- Set with retired_at: when the last token this key signed has expired.
    published_until    BIGINT
);
