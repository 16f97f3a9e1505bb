//! Failed-login throttling that a stranger cannot turn against an
//! account's owner.
//!
//! Failures are counted in fixed windows that start at the first failure,
//! under three keys:
//! - **per address** (IPv4 one by one, IPv6 by /64): one client cannot
//!   try many accounts;
//! - **per (account, address)**: one client cannot try many passwords for
//!   one account;
//! - **per account**, over the addresses the account never signed in
//!   from: many clients together cannot either.
//!
//! An address the account signed in from before (a bounded set per
//! account, remembered for [`KNOWN_FOR`]) is not held back by the
//! account's count: it has its own (account, address) budget. So a flood
//! of wrong passwords from elsewhere, however spread, leaves the owner
//! free to sign in from a place it used before; only new places wait.
//!
//! Each attempt is counted as a failure when it is let through, before
//! the password is checked, and taken back if it turns out not to be one
//! (the right password, a busy hasher, a database error): requests let
//! through together cannot overrun a budget.
//!
//! The counts live in memory, in this process, in maps of bounded size
//! (pruned of finished windows, then of the oldest); with more than one
//! instance, keep them in the database or a shared store (see the README).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many failed sign-ins are allowed per window.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub failures: u32,
    pub window: Duration,
}

/// The three budgets (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Failures for one account from addresses it never signed in from,
    /// all together.
    pub account: Budget,
    /// Failures for one account from one address.
    pub account_address: Budget,
    /// Failures from one address, whatever the accounts.
    pub address: Budget,
}

impl Default for Budgets {
    /// In 15 minutes: 20 failures per account from new addresses, 5 per
    /// account from one address, 50 per address.
    fn default() -> Self {
        let window = Duration::from_secs(15 * 60);
        let budget = |failures| Budget { failures, window };
        Self {
            account: budget(20),
            account_address: budget(5),
            address: budget(50),
        }
    }
}

/// Why a sign-in is refused without checking the password, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failures for this account from addresses it never signed
    /// in from.
    Account { retry_after: Duration },
    /// Too many failures for this account from this address.
    AccountAddress { retry_after: Duration },
    /// Too many failures from this address (or network, for IPv6).
    Address { retry_after: Duration },
}

impl Throttled {
    pub fn retry_after(self) -> Duration {
        match self {
            Self::Account { retry_after }
            | Self::AccountAddress { retry_after }
            | Self::Address { retry_after } => retry_after,
        }
    }

    /// The wait in whole seconds, at least one (for `Retry-After`).
    pub fn retry_after_secs(self) -> u64 {
        let wait = self.retry_after();
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }

    /// What the JSON APIs answer: whose budget ran out, and the wait.
    #[allow(dead_code)] // The Rocket example words its pages itself.
    pub fn api_message(self) -> String {
        let whose = match self {
            Self::Account { .. } => {
                "for this account (a device or network that signed in before is not held back)"
            }
            Self::AccountAddress { .. } => "for this account from your network",
            Self::Address { .. } => "from your network",
        };
        let secs = self.retry_after_secs();
        format!("too many failed sign-ins {whose}; try again in {secs} seconds")
    }
}

/// The most keys each counter map holds (about 100 bytes each). At that
/// size, finished windows are dropped, then if need be the oldest tenth.
pub const MAX_KEYS: usize = 10_000;

/// The most accounts whose addresses are remembered (about 250 bytes
/// each); past it, the tenth that signed in longest ago is forgotten.
pub const MAX_ACCOUNTS: usize = 10_000;

/// The most addresses remembered per account (the latest ones).
const ADDRESSES_PER_ACCOUNT: usize = 8;

/// How long an address stays known after the account's last sign-in from it.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Failed sign-ins per address, per (account, address) and per account,
/// and the addresses each account signed in from. One lock over all of
/// it: a check and its count are one step.
#[derive(Debug)]
pub struct LoginThrottle {
    budgets: Budgets,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: Counters<String>,
    pairs: Counters<(String, IpAddr)>,
    addresses: Counters<IpAddr>,
    known: KnownAddresses,
}

/// A sign-in the throttle let through, counted as a failure until it is
/// settled: [`failed`](Self::failed) keeps the count,
/// [`succeeded`](Self::succeeded) takes it back, and so does dropping it
/// unsettled (the password was never checked: a busy hasher, a database
/// error).
#[derive(Debug)]
#[must_use = "an attempt dropped unsettled counts for nothing"]
pub struct Attempt<'t> {
    throttle: &'t LoginThrottle,
    account: Option<String>,
    address: Option<IpAddr>,
    /// Whether the account's own count was charged (a new address).
    charged_account: bool,
    at: Instant,
    settled: bool,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(Budgets::default())
    }
}

impl LoginThrottle {
    pub fn new(budgets: Budgets) -> Self {
        Self {
            budgets,
            state: Mutex::default(),
        }
    }

    /// Lets a sign-in try a password now, or says why not. `account` is
    /// the normalized username (`None` for a name no account can have),
    /// `address` the client's (`None` when unknown). The attempt counts as
    /// a failure until settled.
    pub fn begin(
        &self,
        account: Option<&str>,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt<'_>, Throttled> {
        let budgets = self.budgets;
        let address = address.map(address_key);
        let pair = account.zip(address).map(|(name, ip)| (name.to_owned(), ip));
        let mut state = self.lock();
        if let Some(ip) = address
            && let Some(retry_after) = state.addresses.blocked(&ip, budgets.address, now)
        {
            return Err(Throttled::Address { retry_after });
        }
        if let Some(pair) = &pair
            && let Some(retry_after) = state.pairs.blocked(pair, budgets.account_address, now)
        {
            return Err(Throttled::AccountAddress { retry_after });
        }
        let charged_account = account
            .is_some_and(|name| !address.is_some_and(|ip| state.known.contains(name, ip, now)));
        if charged_account
            && let Some(name) = account
            && let Some(retry_after) = state.accounts.blocked(name, budgets.account, now)
        {
            return Err(Throttled::Account { retry_after });
        }
        if let Some(ip) = address {
            state.addresses.fail(&ip, budgets.address, now);
        }
        if let Some(pair) = &pair {
            state.pairs.fail(pair, budgets.account_address, now);
        }
        if charged_account && let Some(name) = account {
            state.accounts.fail(name, budgets.account, now);
        }
        Ok(Attempt {
            throttle: self,
            account: account.map(str::to_owned),
            address,
            charged_account,
            at: now,
            settled: false,
        })
    }

    /// A successful sign-in or sign-up from `address`: it becomes known to
    /// the account, and the failures from it for the account are
    /// forgotten. Not the account's other failures, nor the address's:
    /// one good password does not buy more guesses elsewhere.
    pub fn signed_in(&self, account: &str, address: Option<IpAddr>, now: Instant) {
        let Some(ip) = address.map(address_key) else {
            return;
        };
        let mut state = self.lock();
        state.pairs.map.remove(&(account.to_owned(), ip));
        state.known.remember(account, ip, now);
    }

    /// Whether `account` signed in from `address` within [`KNOWN_FOR`]:
    /// for monitoring, and the tests.
    #[allow(dead_code)]
    pub fn is_known(&self, account: &str, address: Option<IpAddr>, now: Instant) -> bool {
        address.is_some_and(|ip| self.lock().known.contains(account, address_key(ip), now))
    }

    /// How many keys the throttle holds, all maps together (at most
    /// `3 * MAX_KEYS + MAX_ACCOUNTS`): for monitoring, and the tests.
    #[allow(dead_code)]
    pub fn entries(&self) -> usize {
        let state = self.lock();
        state.accounts.map.len()
            + state.pairs.map.len()
            + state.addresses.map.len()
            + state.known.map.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Attempt<'_> {
    /// The password was wrong: the failure stays counted.
    pub fn failed(mut self) {
        self.settled = true;
    }

    /// The password was right: the attempt counts for nothing, and the
    /// address becomes known to the account (see
    /// [`LoginThrottle::signed_in`]).
    pub fn succeeded(mut self, now: Instant) {
        self.take_back();
        self.settled = true;
        if let Some(name) = &self.account {
            self.throttle.signed_in(name, self.address, now);
        }
    }

    /// Takes the attempt's counts back (from the windows it was counted in).
    fn take_back(&self) {
        let mut state = self.throttle.lock();
        if let Some(ip) = self.address {
            state.addresses.take_back(&ip, self.at);
        }
        if let (Some(name), Some(ip)) = (&self.account, self.address) {
            state.pairs.take_back(&(name.clone(), ip), self.at);
        }
        if self.charged_account
            && let Some(name) = &self.account
        {
            state.accounts.take_back(name, self.at);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.take_back();
        }
    }
}

/// The throttle's state stays consistent under a panic (its changes are
/// plain map operations), so a poisoned lock is used as it is.
fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Takes back one failure counted at `at`, unless its window has
    /// restarted since.
    fn take_back<Q>(&mut self, key: &Q, at: Instant)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(w) = self.map.get_mut(key)
            && w.started <= at
        {
            w.failures = w.failures.saturating_sub(1);
        }
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
            // Forget finished windows; if most windows are still running,
            // forget the oldest tenth (a spray of names from many
            // addresses could push out a count this way: the address
            // budget stops one address from doing it).
            self.map.retain(|_, w| now < w.started + budget.window);
            if self.map.len() >= MAX_KEYS * 9 / 10 {
                let starts: Vec<Instant> = self.map.values().map(|w| w.started).collect();
                let cut = oldest_tenth(starts);
                self.map.retain(|_, w| w.started > cut);
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

/// The instant at or before which a tenth (at least one) of `times` lie.
/// `times` is not empty (a full map's).
fn oldest_tenth(mut times: Vec<Instant>) -> Instant {
    let nth = times.len() / 10;
    *times.select_nth_unstable(nth).1
}

/// The addresses each account signed in from, with when it last did.
#[derive(Debug, Default)]
struct KnownAddresses {
    map: HashMap<String, Vec<(IpAddr, Instant)>>,
}

impl KnownAddresses {
    fn contains(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        self.map.get(account).is_some_and(|seen| {
            seen.iter()
                .any(|&(known, at)| known == ip && now.saturating_duration_since(at) < KNOWN_FOR)
        })
    }

    fn remember(&mut self, account: &str, ip: IpAddr, now: Instant) {
        if !self.map.contains_key(account) && self.map.len() >= MAX_ACCOUNTS {
            // Forget accounts whose addresses are all stale; if most are
            // fresh, the tenth that signed in longest ago.
            let last = |seen: &Vec<(IpAddr, Instant)>| seen.iter().map(|&(_, at)| at).max();
            self.map.retain(|_, seen| {
                last(seen).is_some_and(|at| now.saturating_duration_since(at) < KNOWN_FOR)
            });
            if self.map.len() >= MAX_ACCOUNTS * 9 / 10 {
                let lasts: Vec<Instant> = self.map.values().filter_map(last).collect();
                let cut = oldest_tenth(lasts);
                self.map
                    .retain(|_, seen| last(seen).is_some_and(|at| at > cut));
            }
        }
        let seen = self.map.entry(account.to_owned()).or_default();
        match seen.iter_mut().find(|(known, _)| *known == ip) {
            Some((_, at)) => *at = now,
            None => {
                if seen.len() >= ADDRESSES_PER_ACCOUNT
                    && let Some(oldest) = seen
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(i, _)| i)
                {
                    seen.swap_remove(oldest);
                }
                seen.push((ip, now));
            }
        }
    }
}
