ALTER TABLE user_session DROP COLUMN created_at;
DROP TABLE user_password;
ALTER TABLE auth_user DROP COLUMN username;
