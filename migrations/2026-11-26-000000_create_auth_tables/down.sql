DROP TABLE user_session;
DROP TABLE auth_user;
