//! DDL for the validation cache's outbox: a table of invalidations that
//! triggers on the session and user tables fill, in the writing
//! transaction, and that every cache polls (see the `cache` module).

use super::MigrationSql;
use crate::names::TableNames;

/// DDL for the validation cache's outbox of invalidations on tables of any
/// names (the crate's own names give [`CACHE_MIGRATIONS`](super::CACHE_MIGRATIONS)).
///
/// Beside the session table, in its schema, it creates
/// `<session>_invalidations` (the writing transaction's id as `xid8`, a
/// kind and a key; one index, on the transaction id) and
/// `<session>_invalidations_horizon` (one row: how far the outbox has been
/// trimmed). Each table gets a trigger function named
/// `<table>_invalidate` and triggers that insert, in the writing
/// transaction, one row for each session updated or deleted (the hex
/// SHA-256 of its id: never the id, which in Lucia-compatible storage is
/// the token), for each user updated or deleted (its id as text), and one
/// "everything" row when either table is truncated. The row commits or
/// rolls back with the write, whoever writes.
///
/// Writes that cannot make a cached session wrong insert nothing: inserts
/// (the cache never holds "not found"), a session's extension or recorded
/// use (`expires_at` and `last_seen_at` later, every other column the
/// same: a cache holding the earlier times only goes to the database
/// sooner), and an update of a user that changes nothing.
///
/// It first drops the notification triggers and functions of the earlier
/// cache migration, if present, so the same DDL installs and upgrades.
///
/// # Examples
/// ```
/// use lucia_diesel::{TableNames, migrations::cache_triggers_sql};
///
/// let sql = cache_triggers_sql(&TableNames::new("auth.users", "auth.sessions")?);
/// assert!(sql.up.contains(r#"AFTER TRUNCATE ON "auth"."sessions""#));
/// assert!(sql.up.contains(r#"CREATE TABLE "auth"."sessions_invalidations""#));
/// # Ok::<(), lucia_diesel::ConfigError>(())
/// ```
#[must_use]
pub fn cache_triggers_sql(names: &TableNames) -> MigrationSql {
    let (session, user) = (names.session().to_sql(), names.user().to_sql());
    let outbox = names.outbox().to_sql();
    let horizon = names.outbox_horizon().to_sql();
    let index = names.session().derived_ident_sql("invalidations_xid");
    let session_fn = names.session().sibling("invalidate").to_sql();
    let user_fn = names.user().sibling("invalidate").to_sql();
    let session_notify = names.session().sibling("notify").to_sql();
    let user_notify = names.user().sibling("notify").to_sql();
    let up = format!(
        "-- The validation cache's invalidations: an outbox that triggers fill in
-- the writing transaction and every cache polls. Kinds: 1 a session (the
-- hex SHA-256 of its id), 2 a user (its id as text), 3 everything.

-- The notification triggers of an earlier version, if present.
DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON {session};
DROP TRIGGER IF EXISTS lucia_diesel_notify ON {session};
DROP FUNCTION IF EXISTS {session_notify}();
DROP TRIGGER IF EXISTS lucia_diesel_notify_truncate ON {user};
DROP TRIGGER IF EXISTS lucia_diesel_notify ON {user};
DROP FUNCTION IF EXISTS {user_notify}();

CREATE TABLE {outbox} (
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind smallint NOT NULL,
    key text NOT NULL
);
CREATE INDEX {index} ON {outbox} (xid);

-- Rows of transactions visible in `trimmed` may be gone: a cache whose
-- previous poll's snapshot does not see all of them empties itself.
CREATE TABLE {horizon} (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    trimmed pg_snapshot NOT NULL,
    next pg_snapshot NOT NULL,
    next_at timestamptz NOT NULL
);
INSERT INTO {horizon} (trimmed, next, next_at)
    VALUES (pg_current_snapshot(), pg_current_snapshot(), now());

CREATE FUNCTION {session_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO {outbox} (kind, key) VALUES (3, '');
        RETURN NULL;
    END IF;
    INSERT INTO {outbox} (kind, key)
        VALUES (1, encode(sha256(convert_to(OLD.id::text, 'UTF8')), 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id THEN
        INSERT INTO {outbox} (kind, key)
            VALUES (1, encode(sha256(convert_to(NEW.id::text, 'UTF8')), 'hex'));
    END IF;
    RETURN NULL;
END
$$;

-- An extension or a recorded use (later times, nothing else changed)
-- inserts nothing.
CREATE TRIGGER lucia_diesel_invalidate AFTER UPDATE ON {session}
    FOR EACH ROW WHEN (NOT (
        NEW.expires_at >= OLD.expires_at
        AND NEW.last_seen_at >= OLD.last_seen_at
        AND to_jsonb(NEW) - 'expires_at' - 'last_seen_at'
            = to_jsonb(OLD) - 'expires_at' - 'last_seen_at'
    ))
    EXECUTE FUNCTION {session_fn}();
CREATE TRIGGER lucia_diesel_invalidate_delete AFTER DELETE ON {session}
    FOR EACH ROW EXECUTE FUNCTION {session_fn}();
CREATE TRIGGER lucia_diesel_invalidate_truncate AFTER TRUNCATE ON {session}
    FOR EACH STATEMENT EXECUTE FUNCTION {session_fn}();

CREATE FUNCTION {user_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO {outbox} (kind, key) VALUES (3, '');
    ELSE
        INSERT INTO {outbox} (kind, key) VALUES (2, OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER lucia_diesel_invalidate AFTER UPDATE ON {user}
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION {user_fn}();
CREATE TRIGGER lucia_diesel_invalidate_delete AFTER DELETE ON {user}
    FOR EACH ROW EXECUTE FUNCTION {user_fn}();
CREATE TRIGGER lucia_diesel_invalidate_truncate AFTER TRUNCATE ON {user}
    FOR EACH STATEMENT EXECUTE FUNCTION {user_fn}();
"
    );
    let down = format!(
        "DROP TRIGGER lucia_diesel_invalidate_truncate ON {user};
DROP TRIGGER lucia_diesel_invalidate_delete ON {user};
DROP TRIGGER lucia_diesel_invalidate ON {user};
DROP FUNCTION {user_fn}();
DROP TRIGGER lucia_diesel_invalidate_truncate ON {session};
DROP TRIGGER lucia_diesel_invalidate_delete ON {session};
DROP TRIGGER lucia_diesel_invalidate ON {session};
DROP FUNCTION {session_fn}();
DROP TABLE {horizon};
DROP TABLE {outbox};
"
    );
    MigrationSql { up, down }
}

/// The triggers [`cache_triggers_sql`] creates on each table, which the
/// cache checks for.
#[cfg(feature = "cache")]
pub(crate) const TRIGGERS: [&str; 3] = [
    "lucia_diesel_invalidate",
    "lucia_diesel_invalidate_delete",
    "lucia_diesel_invalidate_truncate",
];
