ALTER TABLE user_session DROP COLUMN ip_address;
