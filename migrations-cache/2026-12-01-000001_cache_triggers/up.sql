-- The validation cache's invalidations: every change to a session or a
-- user is announced on channel lucia_diesel_sessions, whoever makes it.
CREATE FUNCTION "user_session_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('lucia_diesel_sessions', '*');
        RETURN NULL;
    END IF;
    -- An extension or a recorded use (later times, nothing else changed)
    -- sends nothing: a cache still holding the earlier times only goes to
    -- the database sooner. Notifying transactions commit one at a time.
    IF TG_OP = 'UPDATE'
        AND NEW.expires_at >= OLD.expires_at
        AND (to_jsonb(NEW) ->> 'last_seen_at')::timestamptz
            >= (to_jsonb(OLD) ->> 'last_seen_at')::timestamptz
        AND to_jsonb(NEW) - 'expires_at' - 'last_seen_at'
            = to_jsonb(OLD) - 'expires_at' - 'last_seen_at'
    THEN
        RETURN NULL;
    END IF;
    -- A digest of the id: in Lucia-compatible storage the id is the token.
    PERFORM pg_notify('lucia_diesel_sessions',
        's:' || encode(sha256(convert_to(OLD.id::text, 'UTF8')), 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
        PERFORM pg_notify('lucia_diesel_sessions',
            's:' || encode(sha256(convert_to(NEW.id::text, 'UTF8')), 'hex'));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_notify AFTER UPDATE OR DELETE ON "user_session"
    FOR EACH ROW EXECUTE FUNCTION "user_session_notify"();
CREATE TRIGGER lucia_diesel_notify_truncate AFTER TRUNCATE ON "user_session"
    FOR EACH STATEMENT EXECUTE FUNCTION "user_session_notify"();

CREATE FUNCTION "auth_user_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        payload := '*';
    ELSE
        payload := 'u:' || OLD.id::text;
        -- Notifications hold under 8000 bytes; '*' empties every cache.
        IF octet_length(payload) >= 7900 THEN
            payload := '*';
        END IF;
    END IF;
    PERFORM pg_notify('lucia_diesel_sessions', payload);
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_notify AFTER UPDATE OR DELETE ON "auth_user"
    FOR EACH ROW EXECUTE FUNCTION "auth_user_notify"();
CREATE TRIGGER lucia_diesel_notify_truncate AFTER TRUNCATE ON "auth_user"
    FOR EACH STATEMENT EXECUTE FUNCTION "auth_user_notify"();
