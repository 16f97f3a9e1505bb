-- When each session was created and last used, for sessions pages and for
-- the optional idle timeout and absolute lifetime. Defaults, so rows that a
-- Lucia app sharing the table writes stay valid.
ALTER TABLE user_session
    ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now();
