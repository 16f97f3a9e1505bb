-- The axum example's additions to lucia-diesel's tables.
ALTER TABLE auth_user ADD COLUMN username TEXT NOT NULL UNIQUE;

-- Argon2 password hashes, in a table of their own: a session validation
-- reads every column of auth_user, and the hashes need not come along.
CREATE TABLE user_password (
    user_id TEXT PRIMARY KEY REFERENCES auth_user(id) ON DELETE CASCADE,
    hash TEXT NOT NULL
);
