//! The SQL of every adapter operation, rendered once per adapter.

use super::names::{Ident, TableNames};
use super::query::{
    DeleteExpiredBatch, DeleteSession, DeleteUserSessions, ExtendExpiration, GetSessionAndUser,
    GetUserSessions, InsertSession, Sql, SqlBuilder, UpdateExpiration, UserExists,
};

/// Strips the managed columns from a session row turned into JSON. Used
/// until the attribute columns are known (see [`super::columns`]).
const SESSION_ATTRIBUTES: &str = "to_jsonb(s.*) - ARRAY['id', 'expires_at', 'user_id']";

#[derive(Debug, Clone)]
pub(crate) struct Statements {
    names: TableNames,
    /// `$1` session id -> id, expires_at, user_id, session attrs, user attrs.
    pub(crate) get_session_and_user: Sql<GetSessionAndUser>,
    /// `$1` user id -> id, expires_at, user_id, session attrs.
    pub(crate) get_user_sessions: Sql<GetUserSessions>,
    /// `$1` id, `$2` user id, `$3` expires_at; no attribute columns.
    pub(crate) insert_session: Sql<InsertSession>,
    /// `$1` expires_at, `$2` id.
    pub(crate) update_expiration: Sql<UpdateExpiration>,
    /// `$1` id, `$2` new expires_at, `$3` extend only if expires_at is at or before this.
    pub(crate) extend_expiration: Sql<ExtendExpiration>,
    /// `$1` id.
    pub(crate) delete_session: Sql<DeleteSession>,
    /// `$1` user id.
    pub(crate) delete_user_sessions: Sql<DeleteUserSessions>,
    /// `$1` now, `$2` batch size.
    pub(crate) delete_expired_batch: Sql<DeleteExpiredBatch>,
    /// `$1` user id -> bool.
    pub(crate) user_exists: Sql<UserExists>,
}

impl Statements {
    pub(crate) fn new(names: &TableNames) -> Self {
        let s = names.session();
        let u = names.user();
        // With the default names the SQL is the same in every adapter.
        let fixed = *names == TableNames::default();
        Self {
            names: names.clone(),
            get_session_and_user: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(SESSION_ATTRIBUTES)
                .sql(", to_jsonb(u.*) - 'id' FROM ")
                .table(s)
                .sql(" AS s INNER JOIN ")
                .table(u)
                .sql(" AS u ON u.id = s.user_id WHERE s.id = ")
                .bind()
                .build()
                .fixed(fixed),
            get_user_sessions: SqlBuilder::new()
                .sql("SELECT s.id, s.expires_at, s.user_id, ")
                .sql(SESSION_ATTRIBUTES)
                .sql(" FROM ")
                .table(s)
                .sql(" AS s WHERE s.user_id = ")
                .bind()
                .build()
                .fixed(fixed),
            insert_session: SqlBuilder::new()
                .sql("INSERT INTO ")
                .table(s)
                .sql(" (id, user_id, expires_at) VALUES (")
                .bind()
                .sql(", ")
                .bind()
                .sql(", ")
                .bind()
                .sql(") ON CONFLICT (id) DO NOTHING")
                .build()
                .fixed(fixed),
            update_expiration: SqlBuilder::new()
                .sql("UPDATE ")
                .table(s)
                .sql(" SET expires_at = ")
                .bind()
                .sql(" WHERE id = ")
                .bind()
                .build()
                .fixed(fixed),
            // Lock the row first (waiting for a concurrent delete to finish),
            // then move the expiry only if it still needs moving: a deleted
            // session stays deleted, and racing requests write once.
            extend_expiration: SqlBuilder::new()
                .sql("WITH cur AS (SELECT id, expires_at FROM ")
                .table(s)
                .sql(" WHERE id = ")
                .bind()
                .sql(" FOR NO KEY UPDATE), upd AS (UPDATE ")
                .table(s)
                .sql(" AS t SET expires_at = ")
                .bind()
                .sql(" FROM cur WHERE t.id = cur.id AND cur.expires_at <= ")
                .bind()
                .sql(
                    " RETURNING t.expires_at) \
                     SELECT COALESCE((SELECT expires_at FROM upd), cur.expires_at), \
                     EXISTS (SELECT 1 FROM upd) FROM cur",
                )
                .build()
                .fixed(fixed),
            delete_session: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE id = ")
                .bind()
                .build()
                .fixed(fixed),
            delete_user_sessions: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE user_id = ")
                .bind()
                .build()
                .fixed(fixed),
            // `id = ANY(ARRAY(..))`, not `id IN (..)`: the planner turns the
            // latter into a hash join over the whole table on every batch;
            // this way each batch is one index scan plus key lookups.
            delete_expired_batch: SqlBuilder::new()
                .sql("DELETE FROM ")
                .table(s)
                .sql(" WHERE id = ANY(ARRAY(SELECT id FROM ")
                .table(s)
                .sql(" WHERE expires_at <= ")
                .bind()
                .sql(" LIMIT ")
                .bind()
                .sql(" FOR UPDATE SKIP LOCKED))")
                .build()
                .fixed(fixed),
            user_exists: SqlBuilder::new()
                .sql("SELECT EXISTS (SELECT 1 FROM ")
                .table(u)
                .sql(" WHERE id = ")
                .bind()
                .sql(")")
                .build()
                .fixed(fixed),
        }
    }

    /// The insert for a session with these attribute columns, until their
    /// types are known (see [`super::columns`]). Values come
    /// from one `jsonb` parameter turned into a row of the session table's
    /// type, so each column gets its own type; columns not listed keep their
    /// defaults.
    pub(crate) fn insert_session_with(&self, columns: &[Ident]) -> Sql {
        let s = self.names.session();
        let mut b = SqlBuilder::new()
            .sql("INSERT INTO ")
            .table(s)
            .sql(" (id, user_id, expires_at");
        for c in columns {
            b = b.sql(", ").ident(c);
        }
        b = b.sql(") SELECT ").bind().sql(", ").bind().sql(", ").bind();
        for c in columns {
            b = b.sql(", r.").ident(c);
        }
        b.sql(" FROM jsonb_populate_record(NULL::")
            .table(s)
            .sql(", ")
            .bind()
            .sql(") AS r ON CONFLICT (id) DO NOTHING")
            .build()
    }
}
