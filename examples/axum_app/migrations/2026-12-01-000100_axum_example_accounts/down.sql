DROP TABLE user_password;
ALTER TABLE auth_user DROP COLUMN username;
