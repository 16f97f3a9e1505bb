//! Limits on password work: Argon2 with bounded concurrency, and login
//! throttling per account and per client address.
//!
//! One Argon2 hash (the `argon2` crate's defaults: 19 MiB, 2 passes) holds
//! 19 MiB and a core for tens of milliseconds. Run unbounded on the
//! blocking pool, a flood of logins piles up hundreds of them: gigabytes of
//! memory, and every other request waits. Here one thread per core hashes,
//! a short queue (a semaphore's permits) waits its turn, and anything
//! beyond is refused at once (the routes answer 429 with `Retry-After`).
//!
//! The throttle counts failed sign-ins in memory, in this process: with
//! more than one instance, keep the counts in the database or a shared
//! store instead (see the README).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The hasher is at capacity: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What a client is told to wait when the hasher is busy, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// Runs password hashing on `workers` threads of its own, with at most
/// `queue` more hashes waiting.
///
/// Threads of its own, not tokio's blocking pool: a thread's allocator
/// keeps the 19 MiB of its last hash for later use, and the blocking pool
/// hands successive hashes to ever new threads. Measured with hashing
/// bounded to two at a time on the blocking pool, five rounds of 200
/// concurrent logins left 750 MB behind; a fixed set of threads keeps one
/// hash's memory each.
#[derive(Debug, Clone)]
pub struct Hasher {
    /// One permit per hash admitted: running or waiting.
    admitted: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// A place in the hasher's queue, taken before any other work (such as a
/// database lookup) so that a refused request costs nothing.
#[derive(Debug)]
pub struct Ticket {
    admitted: OwnedSemaphorePermit,
    jobs: mpsc::Sender<Job>,
}

impl Hasher {
    /// `workers` threads (at least one), `queue` more hashes waiting. The
    /// threads end when the last clone of the hasher is dropped.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for n in 0..workers {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("password-hasher-{n}"))
                .spawn(move || work_through(&inbox))
                .expect("the OS starts a password-hashing thread");
        }
        Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            jobs,
        }
    }

    /// One worker per core and a queue of twice that: a waiting request
    /// waits for at most two rounds of hashing.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 2 * cores)
    }

    /// A place in the queue, or [`Busy`] when it is full.
    pub fn ticket(&self) -> Result<Ticket, Busy> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        Ok(Ticket {
            admitted,
            jobs: self.jobs.clone(),
        })
    }

    /// Runs `work` when a worker is free, or refuses at once when the queue
    /// is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        Ok(self.ticket()?.run(work).await)
    }
}

impl Ticket {
    /// Runs `work` on the next free worker. The place is held until `work`
    /// ends, even if the request is dropped meanwhile: the bound holds for
    /// the work itself, not for whoever waits on it.
    pub async fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let place = self.admitted;
        let job: Job = Box::new(move || {
            let _place = place;
            let _ = answer.send(work());
        });
        self.jobs
            .send(job)
            .expect("the hashing threads live as long as the hasher");
        answered.await.expect("password hashing does not panic")
    }
}

/// A worker: runs jobs until every sender is gone. A job that panics loses
/// its answer (its request fails), not the thread.
fn work_through(inbox: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv()
        {
            Ok(job) => job,
            Err(mpsc::RecvError) => return,
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// How many failed sign-ins are allowed per window.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub failures: u32,
    pub window: Duration,
}

/// Why a sign-in is refused without checking the password, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failures for this username.
    Account { retry_after: Duration },
    /// Too many failures from this client address (or network, for IPv6).
    Address { retry_after: Duration },
}

impl Throttled {
    pub fn retry_after(self) -> Duration {
        match self {
            Self::Account { retry_after } | Self::Address { retry_after } => retry_after,
        }
    }
}

/// The most keys a counter map holds (about 100 bytes each).
const MAX_KEYS: usize = 10_000;

/// Failed sign-ins per account and per client address, each with a budget
/// per fixed window that starts at the first failure.
#[derive(Debug)]
pub struct LoginThrottle {
    account: Budget,
    address: Budget,
    accounts: Mutex<Counters<String>>,
    addresses: Mutex<Counters<IpAddr>>,
}

impl Default for LoginThrottle {
    /// 5 failures per account and 50 per address in 15 minutes.
    fn default() -> Self {
        let window = Duration::from_secs(15 * 60);
        Self::new(
            Budget {
                failures: 5,
                window,
            },
            Budget {
                failures: 50,
                window,
            },
        )
    }
}

impl LoginThrottle {
    pub fn new(account: Budget, address: Budget) -> Self {
        Self {
            account,
            address,
            accounts: Mutex::new(Counters::default()),
            addresses: Mutex::new(Counters::default()),
        }
    }

    /// Whether a sign-in may try a password now. `account` is the
    /// normalized username (`None` for a name no account can have),
    /// `address` the client's (`None` when unknown).
    pub fn check(
        &self,
        account: Option<&str>,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Throttled> {
        if let Some(name) = account
            && let Some(retry_after) = lock(&self.accounts).blocked(name, self.account, now)
        {
            return Err(Throttled::Account { retry_after });
        }
        if let Some(ip) = address
            && let Some(retry_after) =
                lock(&self.addresses).blocked(&address_key(ip), self.address, now)
        {
            return Err(Throttled::Address { retry_after });
        }
        Ok(())
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, account: Option<&str>, address: Option<IpAddr>, now: Instant) {
        if let Some(name) = account {
            lock(&self.accounts).fail(name, self.account, now);
        }
        if let Some(ip) = address {
            lock(&self.addresses).fail(&address_key(ip), self.address, now);
        }
    }

    /// A successful sign-in forgets the account's failures (not the
    /// address's: one good password does not buy more guesses elsewhere).
    pub fn succeeded(&self, account: &str) {
        lock(&self.accounts).map.remove(account);
    }
}

/// The throttle's state stays consistent under a panic (each change is one
/// map operation), so a poisoned lock is used as it is.
fn lock<K>(counters: &Mutex<Counters<K>>) -> std::sync::MutexGuard<'_, Counters<K>> {
    counters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// IPv4 addresses count one by one; IPv6 ones by their /64 network, which
/// one client usually holds whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
struct Counters<K> {
    map: HashMap<K, Window>,
}

impl<K> Default for Counters<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Counters<K> {
    /// How long `key` must wait, if it has spent its budget.
    fn blocked<Q>(&self, key: &Q, budget: Budget, now: Instant) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let w = self.map.get(key)?;
        let ends = w.started + budget.window;
        (w.failures >= budget.failures && now < ends).then(|| ends - now)
    }

    fn fail<Q>(&mut self, key: &Q, budget: Budget, now: Instant)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(w) = self.map.get_mut(key) {
            if now >= w.started + budget.window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
            return;
        }
        if self.map.len() >= MAX_KEYS {
            // Forget finished windows; if every window is still running,
            // forget the oldest (an attacker spraying names from many
            // addresses could push out a count this way: the address
            // budget stops one address from doing it).
            self.map.retain(|_, w| now < w.started + budget.window);
            if self.map.len() >= MAX_KEYS
                && let Some(oldest) = self.map.values().map(|w| w.started).min()
            {
                self.map.retain(|_, w| w.started != oldest);
            }
        }
        self.map.insert(
            key.to_owned(),
            Window {
                started: now,
                failures: 1,
            },
        );
    }
}
