//! The validation cache (feature `cache`): sessions validated from memory,
//! invalidated through a transactional outbox the cache polls.
//!
//! [`SessionManager::with_cache`](crate::SessionManager::with_cache) keeps
//! validated sessions and their users in memory (a [`moka`] cache, bounded
//! in entries and in age). A hit is a live session with nothing to write
//! (no extension, no activity to record): it costs no database round trip.
//! Everything else goes to the database as without the cache.
//!
//! # Invalidation
//! Triggers on the session and user tables (see
//! [`migrations::CACHE_MIGRATIONS`](crate::migrations::CACHE_MIGRATIONS)
//! and [`migrations::cache_triggers_sql`](crate::migrations::cache_triggers_sql))
//! insert a row into an outbox table whenever a session or a user is
//! updated or deleted, or either table is truncated, in the writing
//! transaction, whoever writes: this crate, the application's own queries,
//! plain SQL, a Lucia app sharing the tables. The row commits or rolls back
//! with the write, and costs the writer an insert, nothing more (writers
//! keep their group commit). Rows name a session by the SHA-256 of its id,
//! never the id itself (in Lucia-compatible storage the id is the token).
//!
//! Every instance's cache polls the outbox (every 20 ms by default,
//! [`CacheOptions::with_poll_interval`]) with one statement on a connection
//! of the adapter's source, so it works wherever the adapter works: a pool,
//! PgBouncer in transaction mode, the primary of a [`ReplicatedPool`](crate::ReplicatedPool),
//! TLS. Each poll keeps the snapshot it read in, and the next returns the
//! rows of the transactions that snapshot had not seen and its own does:
//! every committed invalidation exactly once (a duplicate is harmless),
//! however late its transaction commits, and a transaction left open holds
//! back nobody else's. Rows are trimmed after a retention (a minute by
//! default, [`CacheOptions::with_retention`]) in small batches, by one
//! instance at a time; an instance whose previous poll predates what was
//! trimmed empties its cache instead of trusting it.
//!
//! # Failing closed
//! A poll that fails (the connection lost, the server restarting) leaves
//! the cache bypassed, every validation going to the database, until a
//! poll succeeds; the cache is emptied then. A poll that does not answer
//! (a frozen server) is noticed sooner: the cache serves only within five
//! poll intervals of the start of its last successful poll. The entries'
//! maximum age bounds what anything else could cost.
//!
//! # No stale fill
//! A validation that read a row before a revocation committed must not put
//! it in the cache after the poll that reports the revocation was handled:
//! see `Epochs` in the source. Over a [`ReplicatedPool`](crate::ReplicatedPool),
//! whose replicas may not have replayed a revocation yet when a poll on the
//! primary reports it, a row read within `max_replica_lag` after any
//! invalidation is answered but not kept.
//!
//! # When not to use it
//! When the tables see more writes than validations (each write empties
//! entries), or when every validation must observe the database itself
//! (auditing, per-request `last_seen_at`).

mod memory;
mod options;
mod outbox;
mod poller;

pub use options::CacheOptions;

pub(crate) use memory::Cache;

/// The target of the cache's `tracing` events; each has an `event` field:
/// `hit`, `miss`, `bypass`, `dropped_fill`, `invalidate`, `flush`.
const TARGET: &str = "lucia_diesel::cache";

/// What a cache has done so far ([`SessionManager::cache_stats`](crate::SessionManager::cache_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Validations answered from memory.
    pub hits: u64,
    /// Validations that found nothing servable in memory (absent, or due
    /// for a write) and went to the database.
    pub misses: u64,
    /// Validations that skipped the cache because it was not serving (no
    /// recent successful poll).
    pub bypasses: u64,
    /// Sessions put in the cache.
    pub fills: u64,
    /// Fills dropped because an invalidation came in while they read the
    /// database.
    pub dropped_fills: u64,
    /// Invalidations handled (a session, a user, or a table truncated),
    /// including the manager's own.
    pub invalidations: u64,
    /// Times the whole cache was emptied (a `TRUNCATE`, a recovery after
    /// failed polls, the outbox trimmed past a poll).
    pub flushes: u64,
    /// Successful polls of the outbox.
    pub polls: u64,
    /// Polls that failed.
    pub poll_failures: u64,
    /// Whether the cache serves now: its last poll succeeded, recently.
    pub serving: bool,
}
