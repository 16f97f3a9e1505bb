-- The example app's additions to lucia-diesel's tables.
ALTER TABLE auth_user ADD COLUMN username TEXT NOT NULL UNIQUE;

CREATE TABLE user_password (
    user_id TEXT PRIMARY KEY REFERENCES auth_user(id) ON DELETE CASCADE,
    hash TEXT NOT NULL
);

-- A session attribute shown on the sessions page.
ALTER TABLE user_session ADD COLUMN user_agent TEXT;
