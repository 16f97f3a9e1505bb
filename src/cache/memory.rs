//! The cache in memory: entries on moka, the invalidation epoch that keeps
//! stale fills out, and what a poll's answer does to them.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::outbox::{Change, Polled};
use super::{CacheOptions, CacheStats, TARGET};
use crate::adapter::{DatabaseSession, DatabaseUser};
use crate::metrics;
use crate::session::hook::{Ticket, ValidationCache};
use crate::token::SessionId;

/// A cached session with its user.
pub(crate) struct Entry<U, SA, UA> {
    pub(crate) session: DatabaseSession<U, SA>,
    pub(crate) user: DatabaseUser<U, UA>,
}

/// The keys of the entries filled for one user (by the user's id as
/// text, as the outbox names users), so that a user's invalidation drops
/// exactly those: a correctness-neutral index that keeps a user's
/// invalidation O(their sessions). A predicate over every entry (moka's
/// `invalidate_entries_if`) is evaluated against the whole cache, once per
/// invalidation: a burst of user updates (a login that records the time on
/// the user row) piled up such scans until validations stalled.
type UserIndex = moka::sync::Cache<Box<str>, Arc<Mutex<Vec<[u8; 32]>>>>;

/// The cache of one manager, installed in its hook (`session::hook`).
pub(crate) struct Cache<U, SA, UA> {
    entries: moka::sync::Cache<[u8; 32], Arc<Entry<U, SA, UA>>>,
    users: UserIndex,
    epochs: Epochs,
    user_key: fn(&U) -> String,
    lookups: metrics::Lookups,
    /// The poller task; stopped when the cache is dropped.
    pub(crate) poller: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<U, SA, UA> Drop for Cache<U, SA, UA> {
    fn drop(&mut self) {
        if let Ok(mut task) = self.poller.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

/// The state shared with the poller: when it last polled, the counters,
/// and the invalidation epoch.
///
/// Why a fill can never store a revoked session: a validation reads the
/// epoch *before* it queries the database ([`Cache::take_ticket`]), and
/// stores the row only if the epoch is the same afterwards
/// ([`Cache::keep`]), under a read lock. Handling an invalidation bumps the
/// epoch and removes the entries under the write lock. A poll reports a
/// revocation only once it has committed. So either the validation's query
/// read after the revocation committed (and finds no session or the new
/// state), or the revocation committed after that read and the poll that
/// reports it is handled after the ticket was taken: then either the fill
/// comes first and the removal that follows (same lock) takes the entry
/// out, or the removal comes first and the fill sees a new epoch and is
/// dropped. Under many writes, fills are dropped more often; nothing stale
/// is ever kept.
///
/// A source that reads from replicas ([`ConnectionSource::max_read_lag`](crate::ConnectionSource::max_read_lag)
/// above zero) breaks the first case: a query that starts after the
/// invalidation was handled may still read a replica that has not replayed
/// the revocation, though it has once the lag bound has passed since the
/// revocation committed (before the poll that reported it). So with such a
/// source a fill is also dropped when any invalidation (or recovery) was
/// handled less than the bound before its ticket was taken: a correctness
/// property, at the price of fewer fills while invalidations come more
/// often than the bound.
///
/// Serving also needs a recent successful poll: a validation is answered
/// from memory (and a fill kept) only while the last successful poll
/// began less than `stale_after` ago, so a poller that stopped, hangs or
/// fails leaves the cache bypassed.
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
    /// Whether the last poll succeeded, and when it began (microseconds
    /// since `origin`); entries are served for `stale_after_us` after that.
    polling: AtomicBool,
    last_poll_us: AtomicU64,
    stale_after_us: u64,
    polls: AtomicU64,
    poll_failures: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    fills: AtomicU64,
    dropped_fills: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

impl Epochs {
    fn new(read_lag: Duration, stale_after: Duration) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            lock: RwLock::new(()),
            read_lag_us: micros(read_lag),
            last_invalidation_us: AtomicU64::new(0),
            origin: std::time::Instant::now(),
            polling: AtomicBool::new(false),
            last_poll_us: AtomicU64::new(0),
            stale_after_us: micros(stale_after),
            polls: AtomicU64::new(0),
            poll_failures: AtomicU64::new(0),
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
        micros(self.origin.elapsed())
    }

    /// Whether the cache may serve now: the last poll succeeded and began
    /// less than `stale_after` ago.
    fn serving(&self) -> bool {
        self.polling.load(Ordering::Acquire)
            && self
                .now_us()
                .saturating_sub(self.last_poll_us.load(Ordering::Acquire))
                < self.stale_after_us
    }

    /// A new epoch, and its time: under the write lock.
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.last_invalidation_us
            .store(self.now_us(), Ordering::Release);
    }
}

/// More changes than this in one poll empty the whole cache instead.
const FLUSH_OVER: usize = 1_000;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

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
        let stale_after = options.stale_after();
        let entries = moka::sync::Cache::builder()
            .max_capacity(options.max_entries)
            .time_to_live(options.max_age)
            .build();
        // Unbounded in number but not in age: a user's keys are inserted
        // again after each of their entries, so they outlive them.
        let users = moka::sync::Cache::builder()
            .time_to_live(options.max_age)
            .build();
        Self {
            entries,
            users,
            epochs: Epochs::new(read_lag, stale_after),
            user_key,
            lookups: metrics::Lookups::register(),
            poller: Mutex::new(None),
        }
    }

    /// The cached session with this id, if the cache is serving and
    /// `servable` accepts it (live, nothing to write).
    fn find(
        &self,
        id: &SessionId,
        servable: &dyn Fn(&DatabaseSession<U, SA>) -> bool,
    ) -> Option<Arc<Entry<U, SA, UA>>> {
        let e = &self.epochs;
        if !e.serving() {
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
    /// serving (then nothing is filled).
    fn take_ticket(&self) -> Option<Ticket> {
        let e = &self.epochs;
        e.serving().then(|| Ticket {
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
        if e.epoch.load(Ordering::Acquire) != ticket.epoch || !e.serving() || too_soon {
            e.dropped_fills.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: TARGET, event = "dropped_fill");
            return;
        }
        let key = key(&session.id);
        let entry = Entry {
            session: session.clone(),
            user: user.clone(),
        };
        self.entries.insert(key, Arc::new(entry));
        let user_key: Box<str> = (self.user_key)(&user.id).into();
        let keys = self.users.get(&user_key).unwrap_or_default();
        if let Ok(mut keys) = keys.lock()
            && !keys.contains(&key)
        {
            keys.push(key);
        }
        // After the entry, so that the user's keys expire no sooner.
        self.users.insert(user_key, keys);
        e.fills.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands the lookup counts to the metrics recorder (the poller calls
    /// it after each poll).
    pub(crate) fn publish_lookups(&self) {
        let e = &self.epochs;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.lookups
            .publish([n(&e.hits), n(&e.misses), n(&e.bypasses)]);
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
            polls: e.polls.load(Ordering::Acquire),
            poll_failures: n(&e.poll_failures),
            serving: e.serving(),
        }
    }

    /// Handles a successful poll that began at `began_us`: empties the cache
    /// when invalidations may have been missed (the poll before failed, or
    /// the outbox was trimmed past the previous snapshot), drops what
    /// changed, and serves until `stale_after` past `began_us`.
    pub(crate) fn polled(&self, polled: &Polled, began_us: u64) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.write() else { return };
        let recovered = !e.polling.load(Ordering::Acquire);
        if recovered || polled.trimmed_past {
            e.bump();
            self.flush_locked(if recovered { "recovered" } else { "trimmed" });
            if recovered {
                tracing::info!(target: TARGET, "cache polls again; emptied it first");
            }
        }
        // A burst (a bulk delete, a mass update) empties the cache once
        // instead of invalidating entry by entry under the lock.
        if polled.changes.len() > FLUSH_OVER {
            e.bump();
            self.flush_locked("burst");
            e.invalidations
                .fetch_add(polled.changes.len() as u64, Ordering::Release);
        } else {
            for change in &polled.changes {
                self.invalidate_locked(change);
            }
        }
        e.last_poll_us.store(began_us, Ordering::Release);
        e.polling.store(true, Ordering::Release);
        // Counted once done: whoever sees the count sees the entries gone.
        e.polls.fetch_add(1, Ordering::Release);
    }

    /// A poll failed: bypassed until one succeeds (and then emptied).
    pub(crate) fn poll_failed(&self) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.write() else { return };
        e.bump();
        e.polling.store(false, Ordering::Release);
        e.poll_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Microseconds on the cache's clock, for a poll's start.
    pub(crate) fn now_us(&self) -> u64 {
        self.epochs.now_us()
    }

    /// Drops what changed, and starts a new epoch so that no fill that read
    /// the database before can store it again (see [`Epochs`]).
    fn invalidate(&self, change: &Change) {
        let Ok(_guard) = self.epochs.lock.write() else {
            return;
        };
        self.invalidate_locked(change);
    }

    fn invalidate_locked(&self, change: &Change) {
        let e = &self.epochs;
        e.bump();
        match change {
            Change::Session(digest) => {
                self.entries.invalidate(digest);
                tracing::debug!(target: TARGET, event = "invalidate", of = "session");
            }
            Change::User(user) => {
                if let Some(keys) = self.users.remove(user.as_str())
                    && let Ok(keys) = keys.lock()
                {
                    for key in keys.iter() {
                        self.entries.invalidate(key);
                    }
                }
                tracing::debug!(target: TARGET, event = "invalidate", of = "user");
            }
            Change::All => self.flush_locked("truncate"),
        }
        // Counted once done: whoever sees the count sees the entries gone.
        e.invalidations.fetch_add(1, Ordering::Release);
    }

    /// Stops serving for good: the poller is gone.
    pub(crate) fn stop_serving(&self) {
        let e = &self.epochs;
        let Ok(_guard) = e.lock.write() else { return };
        e.bump();
        e.polling.store(false, Ordering::Release);
    }

    fn flush_locked(&self, why: &'static str) {
        self.entries.invalidate_all();
        self.users.invalidate_all();
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
        self.invalidate(&Change::Session(key(id)));
        metrics::invalidated_own();
    }

    fn forget_user(&self, user: &U) {
        self.invalidate(&Change::User((self.user_key)(user)));
        metrics::invalidated_own();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
