ALTER TABLE user_session DROP COLUMN user_agent;
DROP TABLE user_password;
ALTER TABLE auth_user DROP COLUMN username;
