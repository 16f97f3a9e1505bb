DROP TRIGGER lucia_diesel_notify_truncate ON "auth_user";
DROP TRIGGER lucia_diesel_notify ON "auth_user";
DROP FUNCTION "auth_user_notify"();
DROP TRIGGER lucia_diesel_notify_truncate ON "user_session";
DROP TRIGGER lucia_diesel_notify ON "user_session";
DROP FUNCTION "user_session_notify"();
