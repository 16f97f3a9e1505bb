DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON "auth_user";
DROP TRIGGER IF EXISTS lucia_diesel_notify ON "auth_user";
DROP FUNCTION IF EXISTS "auth_user_notify"();
DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON "user_session";
DROP TRIGGER IF EXISTS lucia_diesel_notify ON "user_session";
DROP FUNCTION IF EXISTS "user_session_notify"();
