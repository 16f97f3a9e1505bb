-- The validation cache's invalidations: an outbox that triggers fill in
-- the writing transaction and every cache polls. Kinds: 1 a session (the
-- hex SHA-256 of its id), 2 a user (its id as text), 3 everything.

-- The notification triggers of an earlier version, if present.
DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON "user_session";
DROP TRIGGER IF EXISTS lucia_diesel_notify ON "user_session";
DROP FUNCTION IF EXISTS "user_session_notify"();
DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON "auth_user";
DROP TRIGGER IF EXISTS lucia_diesel_notify ON "auth_user";
DROP FUNCTION IF EXISTS "auth_user_notify"();

CREATE TABLE "user_session_invalidations" (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind smallint NOT NULL,
    key text NOT NULL
);
CREATE INDEX "user_session_invalidations_xid" ON "user_session_invalidations" (xid);

-- Rows of transactions visible in `trimmed` may be gone: a cache whose
-- previous poll's snapshot does not see all of them empties itself.
CREATE TABLE "user_session_invalidations_horizon" (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    trimmed pg_snapshot NOT NULL,
    next pg_snapshot NOT NULL,
    next_at timestamptz NOT NULL
);
INSERT INTO "user_session_invalidations_horizon" (trimmed, next, next_at)
    VALUES (pg_current_snapshot(), pg_current_snapshot(), now());

CREATE FUNCTION "user_session_invalidate"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO "user_session_invalidations" (kind, key) VALUES (3, '');
        RETURN NULL;
    END IF;
    INSERT INTO "user_session_invalidations" (kind, key)
        VALUES (1, encode(sha256(convert_to(OLD.id::text, 'UTF8')), 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
        INSERT INTO "user_session_invalidations" (kind, key)
            VALUES (1, encode(sha256(convert_to(NEW.id::text, 'UTF8')), 'hex'));
    END IF;
    RETURN NULL;
END
$$;

-- An extension or a recorded use (later times, nothing else changed)
-- inserts nothing.
CREATE TRIGGER lucia_diesel_invalidate AFTER UPDATE ON "user_session"
    FOR EACH ROW WHEN (NOT (
        NEW.expires_at >= OLD.expires_at
        AND NEW.last_seen_at >= OLD.last_seen_at
        AND to_jsonb(NEW) - 'expires_at' - 'last_seen_at'
            = to_jsonb(OLD) - 'expires_at' - 'last_seen_at'
    ))
    EXECUTE FUNCTION "user_session_invalidate"();
CREATE TRIGGER lucia_diesel_invalidate_delete AFTER DELETE ON "user_session"
    FOR EACH ROW EXECUTE FUNCTION "user_session_invalidate"();
CREATE TRIGGER lucia_diesel_invalidate_truncate AFTER TRUNCATE ON "user_session"
    FOR EACH STATEMENT EXECUTE FUNCTION "user_session_invalidate"();

CREATE FUNCTION "auth_user_invalidate"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO "user_session_invalidations" (kind, key) VALUES (3, '');
    ELSE
        INSERT INTO "user_session_invalidations" (kind, key) VALUES (2, OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_invalidate AFTER UPDATE ON "auth_user"
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION "auth_user_invalidate"();
CREATE TRIGGER lucia_diesel_invalidate_delete AFTER DELETE ON "auth_user"
    FOR EACH ROW EXECUTE FUNCTION "auth_user_invalidate"();
CREATE TRIGGER lucia_diesel_invalidate_truncate AFTER TRUNCATE ON "auth_user"
    FOR EACH STATEMENT EXECUTE FUNCTION "auth_user_invalidate"();
