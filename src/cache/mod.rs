//! The validation cache (feature `cache`): sessions validated from memory,
//! invalidated by PostgreSQL itself.
//!
//! [`SessionManager::with_cache`](crate::SessionManager::with_cache) keeps validated sessions and their users
//! in memory (a [`moka`] cache, bounded in entries and in age). A hit is a
//! live session with nothing to write (no extension, no activity to record):
//! it costs no database round trip. Everything else goes to the database as
//! without the cache.
//!
//! # Invalidation
//! Triggers on the session and user tables (see
//! [`migrations::CACHE_MIGRATIONS`](crate::migrations::CACHE_MIGRATIONS)
//! and [`migrations::cache_triggers_sql`](crate::migrations::cache_triggers_sql))
//! send a notification on channel [`CHANNEL`] whenever a session or a user
//! is updated or deleted, or either table is truncated, whoever writes: this crate, the application's own
//! queries, plain SQL, a Lucia app sharing the tables. Every instance's cache
//! listens on a connection of its own and drops what changed as soon as the
//! notification arrives (PostgreSQL delivers it when the write commits;
//! typically within milliseconds). Payloads name a session by the SHA-256 of
//! its id, never the id itself (in Lucia-compatible storage the id is the
//! token).
//!
//! # Failing closed
//! While the listening connection is down (at start-up, lost, the server
//! restarting) the cache is bypassed: every validation goes to the
//! database. Notifications sent meanwhile are lost, so when the connection
//! is back the cache is emptied before it serves again. The connection is
//! pinged every few seconds, so a connection that dies without a reset is
//! noticed within [`CacheOptions::with_ping_interval`] plus the ping's
//! timeout; the entries' maximum age bounds what any missed notification
//! could cost. Reconnection backs off from 100 ms to 5 s.
//!
//! # No stale fill
//! A validation that read a row before a revocation committed must not put
//! it in the cache after the revocation's notification was handled: see
//! `Epochs` in the source. Over a [`ReplicatedPool`](crate::ReplicatedPool),
//! whose replicas may not have replayed a revocation yet when its
//! notification arrives, a row read within `max_replica_lag` after any
//! invalidation is answered but not kept.
//!
//! # When not to use it
//! When the tables see more writes than validations (each write sends a
//! notification and empties entries), when the listening connection must go
//! through a transaction-mode pooler (LISTEN needs a session; give the cache
//! a direct or session-mode URL), or when every validation must observe the
//! database itself (auditing, per-request `last_seen_at`).

mod listener;
mod options;

pub use listener::APPLICATION_NAME;
pub use options::CacheOptions;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::adapter::{DatabaseSession, DatabaseUser};
use crate::session::hook::{Ticket, ValidationCache};
use crate::token::SessionId;

/// The notification channel the triggers send on and the cache listens to.
pub const CHANNEL: &str = "lucia_diesel_sessions";

/// What a cache has done so far ([`SessionManager::cache_stats`](crate::SessionManager::cache_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Validations answered from memory.
    pub hits: u64,
    /// Validations that found nothing servable in memory (absent, or due
    /// for a write) and went to the database.
    pub misses: u64,
    /// Validations that skipped the cache because it was not listening.
    pub bypasses: u64,
    /// Sessions put in the cache.
    pub fills: u64,
    /// Fills dropped because an invalidation came in while they read the
    /// database.
    pub dropped_fills: u64,
    /// Notifications handled (a session, a user, or a table truncated).
    pub invalidations: u64,
    /// Times the whole cache was emptied (a `TRUNCATE`, a reconnection).
    pub flushes: u64,
    /// Whether the cache is listening, and so serving, now.
    pub listening: bool,
}

/// A cached session with its user and the user's id as text (as the
/// triggers send it).
pub(crate) struct Entry<U, SA, UA> {
    pub(crate) session: DatabaseSession<U, SA>,
    pub(crate) user: DatabaseUser<U, UA>,
    user_key: Box<str>,
}

/// The cache of one manager. The manager holds it type-erased (see
/// [`Cache::of`]) so that `SessionManager<A>` needs no bounds on `A`.
pub(crate) struct Cache<U, SA, UA> {
    entries: moka::sync::Cache<[u8; 32], Arc<Entry<U, SA, UA>>>,
    epochs: Arc<Epochs>,
    user_key: fn(&U) -> String,
    /// The listener task; stopped when the cache is dropped.
    pub(crate) listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<U, SA, UA> Drop for Cache<U, SA, UA> {
    fn drop(&mut self) {
        if let Ok(mut task) = self.listener.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

/// The state shared with the listener: whether it listens, the counters,
/// and the invalidation epoch.
///
/// Why a fill can never store a revoked session: a validation reads the
/// epoch *before* it queries the database ([`Cache::ticket`]), and stores
/// the row only if the epoch is the same afterwards ([`Cache::fill`]), under
/// a read lock. Handling a notification bumps the epoch and removes the
/// entries under the write lock. PostgreSQL sends a revocation's
/// notification only once the revocation has committed. So either the
/// validation's query started after the notification was handled (then it
/// read the committed revocation, and finds no session or the new state),
/// or the notification was handled after the ticket was taken: then either
/// the fill comes first and the removal that follows (same lock) takes the
/// entry out, or the removal comes first and the fill sees a new epoch and
/// is dropped. Under many writes, fills are dropped more often; nothing
/// stale is ever kept.
///
/// A source that reads from replicas ([`ConnectionSource::max_read_lag`](crate::ConnectionSource::max_read_lag)
/// above zero) breaks the first case: a query that starts after the
/// notification was handled may still read a replica that has not
/// replayed the revocation, though it has once the lag bound has passed
/// since the revocation committed (before its notification was sent). So
/// with such a source a fill is also dropped when any invalidation (or
/// reconnection) was handled less than the bound before its ticket was
/// taken: a correctness property, at the price of fewer fills while
/// invalidations come more often than the bound.
#[derive(Debug)]
pub(crate) struct Epochs {
    epoch: AtomicU64,
    lock: RwLock<()>,
    /// The source's read lag bound, in microseconds (0: reads where it
    /// writes), and when the last invalidation was handled, in
    /// microseconds since `origin`.
    read_lag_us: u64,
    last_invalidation_us: AtomicU64,
    origin: std::time::Instant,
    listening: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    fills: AtomicU64,
    dropped_fills: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

/// What a notification (or the manager itself) says changed.
enum Change<'a> {
    /// One session, by the SHA-256 of its id.
    Session([u8; 32]),
    /// Every session of the user with this id (as text).
    User(&'a str),
    /// Anything (a table truncated, or a payload not understood).
    All,
}

impl Epochs {
    fn new(read_lag: Duration) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            lock: RwLock::new(()),
            read_lag_us: u64::try_from(read_lag.as_micros()).unwrap_or(u64::MAX),
            last_invalidation_us: AtomicU64::new(0),
            origin: std::time::Instant::now(),
            listening: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypasses: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            dropped_fills: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A new epoch, and its time: under the write lock.
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.last_invalidation_us
            .store(self.now_us(), Ordering::Release);
    }
}

/// The target of the cache's `tracing` events; each has an `event` field:
/// `hit`, `miss`, `bypass`, `dropped_fill`, `invalidate`, `flush`.
const TARGET: &str = "lucia_diesel::cache";

fn key(id: &SessionId) -> [u8; 32] {
    Sha256::digest(id.as_str().as_bytes()).into()
}

impl<U, SA, UA> Cache<U, SA, UA>
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        options: &CacheOptions,
        user_key: fn(&U) -> String,
        read_lag: Duration,
    ) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(options.max_entries)
            .time_to_live(options.max_age)
            .support_invalidation_closures()
            .build();
        Self {
            entries,
            epochs: Arc::new(Epochs::new(read_lag)),
            user_key,
            listener: Mutex::new(None),
        }
    }

    /// The cached session with this id, if the cache is listening and
    /// `servable` accepts it (live, nothing to write).
    fn find(
        &self,
        id: &SessionId,
        servable: &dyn Fn(&DatabaseSession<U, SA>) -> bool,
    ) -> Option<Arc<Entry<U, SA, UA>>> {
        let e = &self.epochs;
        if !e.listening.load(Ordering::Acquire) {
            e.bypasses.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: TARGET, event = "bypass");
            return None;
        }
        match self
            .entries
            .get(&key(id))
            .filter(|entry| servable(&entry.session))
        {
            Some(entry) => {
                e.hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: TARGET, event = "hit");
                Some(entry)
            }
            None => {
                e.misses.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: TARGET, event = "miss");
                None
            }
        }
    }

    /// The epoch now, taken before reading the database; `None` while not
    /// listening (then nothing is filled).
    fn take_ticket(&self) -> Option<Ticket> {
        let e = &self.epochs;
        e.listening.load(Ordering::Acquire).then(|| Ticket {
            epoch: e.epoch.load(Ordering::Acquire),
            at_us: if e.read_lag_us > 0 { e.now_us() } else { 0 },
        })
    }

    /// Keeps a session read from the database, unless an invalidation came
    /// in since `ticket` was taken (see [`Epochs`]).
    fn keep(&self, ticket: Ticket, session: &DatabaseSession<U, SA>, user: &DatabaseUser<U, UA>) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.read() else { return };
        let too_soon = e.read_lag_us > 0
            && ticket.at_us
                < (e.last_invalidation_us.load(Ordering::Acquire)).saturating_add(e.read_lag_us);
        if e.epoch.load(Ordering::Acquire) != ticket.epoch
            || !e.listening.load(Ordering::Acquire)
            || too_soon
        {
            e.dropped_fills.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: TARGET, event = "dropped_fill");
            return;
        }
        let entry = Entry {
            session: session.clone(),
            user: user.clone(),
            user_key: (self.user_key)(&user.id).into(),
        };
        self.entries.insert(key(&session.id), Arc::new(entry));
        e.fills.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let e = &self.epochs;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: n(&e.hits),
            misses: n(&e.misses),
            bypasses: n(&e.bypasses),
            fills: n(&e.fills),
            dropped_fills: n(&e.dropped_fills),
            invalidations: e.invalidations.load(Ordering::Acquire),
            flushes: n(&e.flushes),
            listening: e.listening.load(Ordering::Acquire),
        }
    }

    /// Handles one notification's payload: `s:<sha256 of a session id>`,
    /// `u:<user id>`, or `*` (a table truncated; anything unknown counts as
    /// that).
    fn notified(&self, payload: &str) {
        let mut digest = [0u8; 32];
        let change = if let Some(hex) = payload.strip_prefix("s:")
            && hex::decode_to_slice(hex, &mut digest).is_ok()
        {
            Change::Session(digest)
        } else if let Some(user) = payload.strip_prefix("u:") {
            Change::User(user)
        } else {
            Change::All
        };
        self.invalidate(change);
    }

    /// Drops what changed, and starts a new epoch so that no fill that read
    /// the database before can store it again (see [`Epochs`]).
    fn invalidate(&self, change: Change<'_>) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.write() else { return };
        e.bump();
        match change {
            Change::Session(digest) => {
                self.entries.invalidate(&digest);
                tracing::debug!(target: TARGET, event = "invalidate", of = "session");
            }
            Change::User(user) => {
                let user: Arc<str> = user.into();
                let matches =
                    move |_: &[u8; 32], entry: &Arc<Entry<U, SA, UA>>| *entry.user_key == *user;
                if self.entries.invalidate_entries_if(matches).is_err() {
                    self.entries.invalidate_all();
                }
                tracing::debug!(target: TARGET, event = "invalidate", of = "user");
            }
            Change::All => self.flush_locked("truncate"),
        }
        // Counted once done: whoever sees the count sees the entries gone.
        e.invalidations.fetch_add(1, Ordering::Release);
    }

    /// Empties the cache and starts (or stops) serving, atomically with
    /// fills: used when the listener connects (notifications may have been
    /// missed) and when it is lost.
    fn set_listening(&self, listening: bool) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.write() else { return };
        e.bump();
        if listening {
            self.flush_locked("connected");
        }
        e.listening.store(listening, Ordering::Release);
    }

    fn flush_locked(&self, why: &'static str) {
        self.entries.invalidate_all();
        self.epochs.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: TARGET, event = "flush", why);
    }
}

/// The manager's own revocations are gone from its cache before their
/// invalidations arrive.
impl<U, SA, UA> ValidationCache<U, SA, UA> for Cache<U, SA, UA>
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    fn lookup(
        &self,
        id: &SessionId,
        servable: &dyn Fn(&DatabaseSession<U, SA>) -> bool,
    ) -> Option<(DatabaseSession<U, SA>, DatabaseUser<U, UA>)> {
        let entry = self.find(id, servable)?;
        Some((entry.session.clone(), entry.user.clone()))
    }

    fn ticket(&self) -> Option<Ticket> {
        self.take_ticket()
    }

    fn fill(&self, ticket: Ticket, session: &DatabaseSession<U, SA>, user: &DatabaseUser<U, UA>) {
        self.keep(ticket, session, user);
    }

    fn forget_session(&self, id: &SessionId) {
        self.invalidate(Change::Session(key(id)));
    }

    fn forget_user(&self, user: &U) {
        self.invalidate(Change::User(&(self.user_key)(user)));
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
