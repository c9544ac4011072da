-- Guessing limits: failed attempts at a secret, counted per subject (an account, a
-- client id, a username) and per subject and source address, shared by every replica.
-- Times are Unix seconds.
CREATE TABLE guess_limits (
    -- 'password', 'client_secret' or 'api_token'.
    secret        TEXT NOT NULL,
    -- The account's canonical username, the pseudonym of a login name that is no account's, the
    -- client id, or the Basic username.
    subject       TEXT NOT NULL,
    -- The client's address (an IPv6 /64 prefix), or '' for the per-subject count.
    source        TEXT NOT NULL,
    -- Failures in the current window, including attempts still being checked.
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    -- Attempts are refused unchecked until then; 0 when not blocked.
    blocked_until BIGINT NOT NULL,
    -- The block the next trip imposes, in seconds: doubles with every trip.
    next_delay    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (secret, subject, source)
);

-- Listing the latest counters first.
CREATE INDEX guess_limits_by_update ON guess_limits (updated_at);
-- Purging counters whose window is over (a fresh counter would replace them).
CREATE INDEX guess_limits_by_window ON guess_limits (window_start);
