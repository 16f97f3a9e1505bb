-- Lucia v3's PostgreSQL schema, plus the indexes every query here needs.
CREATE TABLE auth_user (
    id TEXT PRIMARY KEY
);

CREATE TABLE user_session (
    id TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL,
    user_id TEXT NOT NULL REFERENCES auth_user(id)
);

CREATE INDEX user_session_user_id_idx ON user_session (user_id);
CREATE INDEX user_session_expires_at_idx ON user_session (expires_at);
