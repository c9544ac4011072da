-- Customers, and apps: named machine clients with their own permissions and tokens,
-- optionally attached to a user whose current state bounds them. Times are Unix seconds.

-- A user is staff, a customer, or both (enforced by the store on every change).
ALTER TABLE users ADD COLUMN is_customer BOOLEAN NOT NULL DEFAULT FALSE;
-- Until now every non-staff user was a shop customer.
UPDATE users SET is_customer = NOT is_staff;

CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    -- The attached user. Deleting a user first deactivates its apps (the store does),
    -- then SET NULL detaches them.
    user_id    TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Revoking everything of a user finds its apps by user.
CREATE INDEX apps_by_user ON apps (user_id);

CREATE TABLE app_permissions (
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (app_id, permission)
);

-- An app's tokens, each named so it can be told apart and revoked alone.
CREATE TABLE app_tokens (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- SHA-256 of the token.
    digest       BYTEA NOT NULL UNIQUE,
    -- The token's last four characters, so an operator can recognise it.
    last4        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Recorded in batches, so it may lag the last use by a little.
    last_used_at BIGINT,
    -- Also serves as the index listing an app's tokens.
    UNIQUE (app_id, name)
);
