-- The client address a session signed in from, shown on the sessions page.
ALTER TABLE user_session ADD COLUMN ip_address TEXT;
