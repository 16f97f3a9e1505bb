//! The outbox's three statements, rendered once per cache from the table
//! names: the check at start (which also takes the first snapshot), the
//! poll, and the trim. Each is one statement on a connection lent by the
//! adapter's source, under its client-side deadline, so it works wherever
//! the adapter works (a pool, a transaction-mode pooler, the primary of a
//! replicated pool).

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, SmallInt, Text};

use crate::error::{ConfigError, Error, Result};
use crate::exec::{Param, Row, Sql, SqlBuilder, Statement};
use crate::migrations::TRIGGERS;
use crate::names::TableNames;
use crate::source::{ConnectionSource, SourceConnection as _};

/// What an outbox row says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// One session, by the SHA-256 of its id.
    Session([u8; 32]),
    /// Every session of the user with this id (as text).
    User(String),
    /// Anything (a table truncated, or a row not understood).
    All,
}

/// One poll's answer.
#[derive(Debug)]
pub(crate) struct Polled {
    /// The snapshot the poll read in, to start the next poll from.
    pub(crate) snapshot: String,
    /// The outbox was trimmed of rows the previous snapshot had not seen:
    /// some invalidations may be lost.
    pub(crate) trimmed_past: bool,
    /// What became visible since the previous snapshot (duplicates
    /// possible).
    pub(crate) changes: Vec<Change>,
}

/// The poll's rows: kind 0 carries the new snapshot, 4 says the outbox was
/// trimmed past the previous one, 1-3 are the outbox's own rows.
const SNAPSHOT: i16 = 0;
const SESSION: i16 = 1;
const USER: i16 = 2;
const ALL: i16 = 3;
const TRIMMED_PAST: i16 = 4;

/// Which server and database a connection reaches: the cluster's system
/// identifier and the database's name (the same through a pooler).
const IDENTITY: &str =
    "(SELECT system_identifier FROM pg_control_system())::text || '/' || current_database()";

/// The statements of one cache.
#[derive(Debug)]
pub(crate) struct OutboxSql {
    names: TableNames,
    check: Sql,
    identity: Sql,
    poll: Sql,
    trim: Sql,
    /// The advisory lock key's text (the outbox's name): one trimmer at a
    /// time per outbox.
    lock: String,
}

impl OutboxSql {
    pub(crate) fn new(names: &TableNames) -> Self {
        let (outbox, horizon) = (names.outbox(), names.outbox_horizon());
        let triggers = TRIGGERS.map(|t| format!("'{t}'")).join(", ");
        let count_triggers = |param: &str| {
            format!(
                "(SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass({param}) \
                 AND tgname IN ({triggers}) AND tgenabled <> 'D')"
            )
        };
        let check = SqlBuilder::new()
            .template(&format!(
                "SELECT pg_current_snapshot()::text, to_regclass($1) IS NOT NULL, \
                 to_regclass($2) IS NOT NULL, {} = 3, {} = 3, {IDENTITY}, pg_is_in_recovery()",
                count_triggers("$3"),
                count_triggers("$4"),
            ))
            .build();
        let identity = SqlBuilder::new()
            .template(&format!("SELECT {IDENTITY}"))
            .build();
        // Rows of transactions the previous snapshot did not see (at or past
        // its xmax, or in progress then) that this statement's snapshot
        // sees: each committed invalidation comes back exactly once, however
        // late its transaction commits, and rows of transactions still open
        // wait for the poll after their commit without holding back others.
        let poll = SqlBuilder::new()
            .sql("WITH prev AS MATERIALIZED (SELECT CAST(")
            .bind()
            .sql(" AS pg_snapshot) AS p) SELECT 0::smallint, pg_current_snapshot()::text UNION ALL SELECT 4::smallint, '' FROM ")
            .table(&horizon)
            .sql(
                " AS h, prev WHERE NOT (pg_snapshot_xmax(h.trimmed) <= pg_snapshot_xmax(prev.p) \
                 AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(prev.p) AS x \
                 WHERE pg_visible_in_snapshot(x, h.trimmed))) UNION ALL SELECT o.kind, o.key FROM ",
            )
            .table(&outbox)
            .sql(
                " AS o, prev WHERE o.xid >= pg_snapshot_xmax(prev.p) \
                 OR o.xid = ANY(ARRAY(SELECT pg_snapshot_xip(prev.p)))",
            )
            .build();
        // One batch: under a try-lock (another instance trimming: nothing),
        // move the horizon on once a retention has passed since the last
        // move, and delete up to $2 rows of transactions visible in the
        // horizon's `trimmed` snapshot, taken at least a retention ago.
        let trim = SqlBuilder::new()
            .sql("WITH lock AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(hashtext(")
            .bind()
            .sql(")) AS got), moved AS (UPDATE ")
            .table(&horizon)
            .sql(
                " SET trimmed = next, next = pg_current_snapshot(), next_at = now() \
                 WHERE (SELECT got FROM lock) AND next_at <= now() - make_interval(secs => ",
            )
            .bind()
            .sql(" / 1000.0) RETURNING 1), gone AS (DELETE FROM ")
            .table(&outbox)
            .sql(" WHERE ctid = ANY(ARRAY(SELECT o.ctid FROM ")
            .table(&outbox)
            .sql(" AS o, ")
            .table(&horizon)
            .sql(
                " AS h WHERE (SELECT got FROM lock) AND o.xid < pg_snapshot_xmax(h.trimmed) \
                 AND pg_visible_in_snapshot(o.xid, h.trimmed) LIMIT ",
            )
            .bind()
            .sql(")) RETURNING 1) SELECT (SELECT count(*) FROM gone)")
            .build();
        Self {
            names: names.clone(),
            check,
            identity,
            poll,
            trim,
            lock: outbox.to_sql(),
        }
    }
}

/// Checks that `polls` reaches the primary server and database that
/// `writes` (the adapter's source) writes to, that the outbox, its horizon
/// and the triggers exist there, and takes the snapshot the first poll
/// starts from.
///
/// # Errors
/// [`ConfigError::CachePollSource`] when `polls` reaches another server or
/// database, or a standby; [`ConfigError::CacheTriggers`] naming what is
/// missing; any database error, typed.
pub(crate) async fn start<P, W>(polls: &P, writes: &W, sql: &OutboxSql) -> Result<String>
where
    P: ConnectionSource,
    W: ConnectionSource,
{
    let written = query(writes, &sql.identity, &[]).await?;
    let written = written
        .first()
        .map(|row| row.get::<Text, String>(0))
        .transpose()
        .map_err(Error::decode)?
        .ok_or_else(|| Error::unavailable("no answer to the identity check"))?;
    let names = &sql.names;
    let (outbox, horizon) = (names.outbox().to_sql(), names.outbox_horizon().to_sql());
    let (session, user) = (names.session().to_sql(), names.user().to_sql());
    let params = [
        Param::Text(&outbox),
        Param::Text(&horizon),
        Param::Text(&session),
        Param::Text(&user),
    ];
    let rows = query(polls, &sql.check, &params).await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::unavailable("no answer to the outbox check"))?;
    let decoded = (|| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
            row.get::<Text, String>(0)?,
            [
                (row.get::<Bool, bool>(1)?, format!("the table {outbox}")),
                (row.get::<Bool, bool>(2)?, format!("the table {horizon}")),
                (
                    row.get::<Bool, bool>(3)?,
                    format!("the triggers on {session}"),
                ),
                (row.get::<Bool, bool>(4)?, format!("the triggers on {user}")),
            ],
            row.get::<Text, String>(5)?,
            row.get::<Bool, bool>(6)?,
        ))
    })();
    let (snapshot, parts, polled, standby) = decoded.map_err(Error::decode)?;
    if standby {
        return Err(ConfigError::CachePollSource(format!(
            "the poll source reaches a standby of {polled}"
        ))
        .into());
    }
    if polled != written {
        return Err(ConfigError::CachePollSource(format!(
            "the poll source reaches {polled}, the adapter writes to {written} (server id/database)"
        ))
        .into());
    }
    let missing: Vec<String> = parts
        .into_iter()
        .filter(|(found, _)| !found)
        .map(|(_, what)| what)
        .collect();
    if !missing.is_empty() {
        return Err(ConfigError::CacheTriggers(missing.join(", ")).into());
    }
    Ok(snapshot)
}

/// One poll: what became visible since `prev`, and the new snapshot.
///
/// # Errors
/// Any database error, typed (the cache is then bypassed).
pub(crate) async fn poll<S: ConnectionSource>(
    source: &S,
    sql: &OutboxSql,
    prev: &str,
) -> Result<Polled> {
    let rows = query(source, &sql.poll, &[Param::Text(prev)]).await?;
    let mut polled = Polled {
        snapshot: String::new(),
        trimmed_past: false,
        changes: Vec::with_capacity(rows.len().saturating_sub(1)),
    };
    for row in &rows {
        let kind = row.get::<SmallInt, i16>(0).map_err(Error::decode)?;
        let key = row.get::<Text, String>(1).map_err(Error::decode)?;
        let mut digest = [0u8; 32];
        match kind {
            SNAPSHOT => polled.snapshot = key,
            TRIMMED_PAST => polled.trimmed_past = true,
            SESSION if hex::decode_to_slice(&key, &mut digest).is_ok() => {
                polled.changes.push(Change::Session(digest));
            }
            USER => polled.changes.push(Change::User(key)),
            ALL => polled.changes.push(Change::All),
            // Anything not understood empties the cache, as ALL does.
            _ => polled.changes.push(Change::All),
        }
    }
    if polled.snapshot.is_empty() {
        return Err(Error::unavailable("the outbox poll returned no snapshot"));
    }
    Ok(polled)
}

/// One trim batch: moves the horizon on once a retention has passed since
/// it last moved, and deletes at most `batch` rows of transactions the
/// horizon's `trimmed` snapshot sees, unless another instance is trimming
/// (then nothing); how many rows it deleted.
///
/// # Errors
/// Any database error, typed.
pub(crate) async fn trim<S: ConnectionSource>(
    source: &S,
    sql: &OutboxSql,
    retention: Duration,
    batch: u32,
) -> Result<u64> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let params = [
        Param::Text(&sql.lock),
        Param::BigInt(retention_ms),
        Param::BigInt(i64::from(batch)),
    ];
    let rows = query(source, &sql.trim, &params).await?;
    let gone = rows
        .first()
        .map(|row| row.get::<BigInt, i64>(0))
        .transpose();
    Ok(u64::try_from(gone.map_err(Error::decode)?.unwrap_or(0)).unwrap_or(0))
}

/// Runs one statement on a connection of the source's, for its rows.
async fn query<S: ConnectionSource>(
    source: &S,
    sql: &Sql,
    params: &[Param<'_>],
) -> Result<Vec<Row>> {
    let mut lent = source.connection().await?;
    let mut conn = lent.conn().within(source.operation_timeout());
    Ok(conn.query(Statement::new(sql, params)).await?)
}

/// The most rows one trim statement deletes.
pub(crate) const TRIM_BATCH: u32 = 1_000;
