ALTER TABLE user_session DROP COLUMN last_seen_at, DROP COLUMN created_at;
