-- When the session's user last proved who they are (signed in, or entered
-- their password again), for actions that need a recent sign-in. New rows
-- default to their insert (a sign-in); existing rows take their created_at.
ALTER TABLE "user_session" ADD COLUMN authenticated_at TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE "user_session" SET authenticated_at = created_at;
