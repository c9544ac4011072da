-- The audit log: every change and every login, written in the same transaction as the
-- change it records. Never holds a secret. Times are Unix seconds.
CREATE TABLE audit_events (
    -- Increases with every event; orders events written within one second.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    -- 'user:<id>', 'integration:<id>', 'app:<id>', 'system', 'cli' or 'anonymous'.
    actor      TEXT NOT NULL,
    -- The actor's username or name, for people.
    actor_name TEXT NOT NULL,
    -- The credential the actor used (its credential id, or how it logged in).
    credential TEXT NOT NULL,
    -- What was done, e.g. 'user.create', 'login', 'token.refresh'.
    action     TEXT NOT NULL,
    -- What it was done to, e.g. 'user:alice', 'session:<id>'.
    target     TEXT NOT NULL,
    -- 'success', 'failure' or 'limited'.
    outcome    TEXT NOT NULL,
    -- Why it failed, for operators; '' on success.
    reason     TEXT NOT NULL,
    -- The end client's address, as passed by the calling service (it may be false) or
    -- reported by Envoy; '' when unknown.
    source     TEXT NOT NULL,
    -- The address the request itself came from; '' when unknown.
    peer       TEXT NOT NULL,
    request_id TEXT NOT NULL,
    -- What changed, a JSON object.
    details    TEXT NOT NULL
);

CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_actor ON audit_events (actor, id);
CREATE INDEX audit_events_by_actor_name ON audit_events (actor_name, id);
CREATE INDEX audit_events_by_target ON audit_events (target, id);
CREATE INDEX audit_events_by_action ON audit_events (action, id);
