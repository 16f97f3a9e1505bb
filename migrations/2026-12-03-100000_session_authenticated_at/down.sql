ALTER TABLE "user_session" DROP COLUMN authenticated_at;
