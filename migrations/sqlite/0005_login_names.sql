-- One namespace for login identifiers. Usernames become their canonical form (RFC 8265
-- UsernameCaseMapped on ASCII: lower case), and every username and email is entered in
-- login_names under its normalised key, so no username can equal another username or
-- any other user's email. identityd checks for clashes before applying this migration
-- and names them instead of picking one.

UPDATE users SET username = lower(username);

CREATE TABLE login_names (
    -- The normalised identifier: a canonical username, or an email (lower case, NFC).
    name    TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- 'username' or 'email'. A user whose email equals its own username has one row.
    kind    TEXT NOT NULL
);

CREATE INDEX login_names_by_user ON login_names (user_id);

INSERT INTO login_names (name, user_id, kind) SELECT username, id, 'username' FROM users;
INSERT INTO login_names (name, user_id, kind)
    SELECT email, id, 'email' FROM users WHERE email IS NOT NULL AND email <> username;
