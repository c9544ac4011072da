-- Users, roles and per-user API tokens (HTTP Basic). Times are Unix seconds.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    email                TEXT UNIQUE,
    is_staff             BOOLEAN NOT NULL DEFAULT FALSE,
    active               BOOLEAN NOT NULL DEFAULT TRUE,
    -- argon2id PHC string; NULL when the user has no password.
    password_hash        TEXT,
    api_access           BOOLEAN NOT NULL DEFAULT FALSE,
    -- SHA-256 of the current API token; NULL when there is none.
    api_token_digest     BYTEA UNIQUE,
    api_token_created_at BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    builtin     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE role_permissions (
    role_name  TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role_name, permission)
);

CREATE TABLE user_roles (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_name TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_name)
);

CREATE INDEX user_roles_by_role ON user_roles (role_name);
