//! A primary and its streaming read replicas as one connection source:
//! [`ReplicatedPool`], built by [`PoolOptions::build_replicated`].
//!
//! Sessions are read far more often than written: every request validates
//! one, a login writes one. When one server is no longer enough, streaming
//! replicas can serve the reads. A `ReplicatedPool` keeps one [`PgPool`]
//! per server and routes the adapter's operations itself; it is used
//! wherever a pool is (`PostgresAdapter::new(pool)`).
//!
//! # Routing
//! - The two reads that decide validity, `get_session_and_user` (what
//!   [`validate_session`](crate::SessionManager::validate_session) reads)
//!   and `get_user_sessions`, go to a replica, the usable replicas taking
//!   turns.
//! - A read that finds nothing on a replica is asked again on the primary
//!   before it counts: a session created a moment ago (a login) validates
//!   at once, however far behind the replicas are. A read that fails on a
//!   replica is asked on the primary as well, unless it timed out (the
//!   call's time is spent: [`Error::Timeout`](crate::Error::Timeout)).
//! - Everything else runs on the primary: creating, extending and deleting
//!   sessions, cleanup, [`verify_schema`](crate::PostgresAdapter::verify_schema).
//!   A validation that extends or deletes a session writes on the primary,
//!   and the extension re-checks the row there: a session deleted on the
//!   primary is never brought back by a replica's older copy. Run
//!   migrations against the primary's URL.
//! - A replica is skipped while it is down, not in recovery any more
//!   (promoted), or lagging past [`max_replica_lag`](PoolOptions::with_max_replica_lag).
//!   With no usable replica every read goes to the primary.
//!
//! # Consistency
//! A replica serves what the primary had written at most
//! `max_replica_lag` ago (1 s by default). So:
//! - A new session always validates (the primary answers a replica's miss).
//! - A revoked session (logout, [`invalidate_user_sessions`](crate::SessionManager::invalidate_user_sessions),
//!   a password change) may still validate through a replica for at most
//!   `max_replica_lag` after the revocation committed, then never. A
//!   validation that would extend it gives `None` at once: the extension
//!   runs on the primary and finds it gone.
//! - A list of a user's sessions may be as old as the bound: it can miss a
//!   session created meanwhile (an empty list is asked again on the
//!   primary) and show one revoked meanwhile.
//! - A session extended on the primary within the bound before its old
//!   expiry can read as expired on a replica; the validation then deletes
//!   it on the primary, and the user signs in again.
//!
//! For revocation that takes effect everywhere at once:
//! - Read the primary where it matters (a password change, a payment):
//!   a second manager over [`ReplicatedPool::primary`], which shares the
//!   primary's pool, as in the example below.
//! - Or have the primary wait for its replicas: with `synchronous_commit =
//!   remote_apply` and the replicas in `synchronous_standby_names`, a
//!   commit returns only once those replicas have applied it, so every
//!   revocation is visible on them when it returns. Commits then cost a
//!   round trip to a replica, and stall while no synchronous replica is
//!   connected. The crate's adapter test suite runs through a
//!   `ReplicatedPool` this way.
//! - Or lower `max_replica_lag`: a smaller window, more reads on the primary.
//!
//! # How lag is measured
//! A task per pool (the sampler, stopped when the last clone of the pool is
//! dropped) asks each server where it stands every quarter of
//! `max_replica_lag`, over a connection of its own: the primary its
//! `pg_current_wal_lsn()`, each replica `pg_is_in_recovery()`,
//! `pg_last_wal_replay_lsn()` and `pg_last_wal_receive_lsn()`. A replica
//! that has replayed up to a position the primary reported at some moment
//! has applied every write made by then; its lag is the time since the
//! latest such moment. Each read checks that lag against the bound (two
//! atomic loads per replica, no query), so a replica that stops applying
//! WAL (paused, cut off from the primary, overloaded) leaves the rotation
//! at most `max_replica_lag` after the first write it has not applied, and
//! comes back once it has caught up. Unlike `now() -
//! pg_last_xact_replay_timestamp()`, the measure does not grow while the
//! primary is idle, and compares no two machines' clocks. A probe
//! unanswered within `max_replica_lag` counts as the server being down.
//! Under asynchronous commit (`synchronous_commit = off` on the primary)
//! a commit can return before it is written to the WAL, and the bound
//! grows by the WAL writer's delay (`wal_writer_delay`, 200 ms by default).
//!
//! # Failover
//! Give the primary as every host that may become primary, with
//! `target_session_attrs=read-write`
//! (`postgres://app@db1:5432,db2:5432/app?target_session_attrs=read-write`):
//! each new connection goes to the first host that accepts writes, so once
//! a replica is promoted, writes find it. Until then writes fail with
//! transient errors ([`Error::PoolTimeout`](crate::Error::PoolTimeout),
//! [`Error::Unavailable`](crate::Error::Unavailable)). Reads meanwhile keep
//! going to replicas: while the primary does not answer the sampler it is
//! taken to be down, where nothing new can be committed, and a replica
//! that has applied all it received counts as current. (Should only this
//! process be cut off from a primary that others still write to, its
//! replicas' reads may be older than the bound until the primary answers
//! again.) A read a replica cannot answer (an unknown or revoked token)
//! needs the primary and fails with a transient error meanwhile. The
//! promoted replica answers the sampler's next probe as no longer in
//! recovery and leaves the rotation (until then the reads it serves are
//! the new primary's own); its reads then go through the primary's pool
//! to it. An error
//! is never a valid session. [`ReplicatedPool::replica_status`] tells
//! health checks and metrics what the sampler knows.
//!
//! # Under faults
//! As tested in `tests/replicas/` on a real primary and hot standby:
//!
//! | fault | what callers see |
//! |---|---|
//! | replay paused (or slow) | reads stay on the replica until `max_replica_lag` after its first unapplied write, then go to the primary; back when it has caught up |
//! | a replica stopped | no errors: reads under way are asked again on the primary; a read that finds the replica's pool unable to connect waits up to the checkout timeout, then goes to the primary; the replica is skipped until it answers again |
//! | the primary stopped, a replica promoted | writes fail with transient errors until the promotion, then succeed on the new primary; valid sessions keep validating from the replica meanwhile, other tokens get transient errors (after the checkout timeout); a token that is not a valid session never validates |
//!
//! # Examples
//! ```no_run
//! use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
//! use std::time::Duration;
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! let pool = PoolOptions::new()
//!     .with_max_replica_lag(Duration::from_secs(1))
//!     .build_replicated(
//!         "postgres://app@db1,db2/app?target_session_attrs=read-write",
//!         &["postgres://app@db2/app", "postgres://app@db3/app"],
//!     )
//!     .await?;
//! // Reads on the replicas, writes on the primary.
//! let sessions = SessionManager::new(PostgresAdapter::new(pool.clone()));
//! // Every read on the primary, for where a revocation must count at once.
//! let strict = SessionManager::new(PostgresAdapter::new(pool.primary().clone()));
//! # let _ = (sessions, strict);
//! # Ok(()) }
//! ```

mod health;
mod sampler;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, TargetSessionAttrs};

use self::health::State;
use crate::error::{ConfigError, Result, parse_database_url};
use crate::pool::{PgPool, PoolOptions, PooledPgConnection};
use crate::source::ConnectionSource;

#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
impl PoolOptions {
    /// How stale a replica of a [`ReplicatedPool`] may be and still serve
    /// reads (default 1 s): it must have applied every write the primary
    /// had made this long ago. It bounds how long a revoked session can
    /// still validate on a replica; see the [`replica`](crate::replica)
    /// module. The servers are sampled every quarter of it.
    pub fn with_max_replica_lag(mut self, lag: Duration) -> Self {
        self.max_replica_lag = lag;
        self
    }

    /// Builds a [`ReplicatedPool`]: a pool for the primary (opening its
    /// first connection, as [`build`](Self::build) does) and one for each
    /// replica (connecting when first used: a replica that is down does not
    /// stop the application from starting), each with these options, and
    /// starts the sampler that measures the replicas' lag. Replicas serve
    /// reads once the sampler has seen them caught up, within about half of
    /// `max_replica_lag`; until then the primary does.
    ///
    /// For failover, give the primary as every host that may become primary
    /// with `target_session_attrs=read-write`; see the
    /// [`replica`](crate::replica) module.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a URL that cannot be
    /// parsed, a zero pool size, timeout or `max_replica_lag`, or a primary
    /// URL of several hosts without `target_session_attrs=read-write`;
    /// [`Error::Unavailable`](crate::Error::Unavailable) or
    /// [`Error::PoolTimeout`](crate::Error::PoolTimeout) when the primary
    /// cannot be reached within the checkout timeout.
    pub async fn build_replicated(
        self,
        primary_url: &str,
        replica_urls: &[&str],
    ) -> Result<ReplicatedPool> {
        if self.max_replica_lag.is_zero() {
            return Err(ConfigError::MaxReplicaLag.into());
        }
        let primary_config = parse_database_url(primary_url)?;
        let hosts = primary_config.get_hosts().len();
        if hosts.max(primary_config.get_hostaddrs().len()) > 1
            && primary_config.get_target_session_attrs() != TargetSessionAttrs::ReadWrite
        {
            return Err(ConfigError::PrimaryNotReadWrite.into());
        }
        let mut names = Vec::with_capacity(replica_urls.len());
        let mut replicas = Vec::with_capacity(replica_urls.len());
        for url in replica_urls {
            names.push(server_name(&parse_database_url(url)?));
            replicas.push(self.clone().with_name("replica").build_lazy(url)?);
        }
        let primary_name = match self.name {
            crate::pool::DEFAULT_NAME => "primary",
            named => named,
        };
        let primary = self
            .clone()
            .with_name(primary_name)
            .build(primary_url)
            .await?;
        let state = Arc::new(State::new(self.max_replica_lag, names));
        if !replica_urls.is_empty() {
            sampler::spawn(&state, &self, primary_url, replica_urls);
        }
        Ok(ReplicatedPool {
            primary,
            primary_name: server_name(&primary_config).into(),
            replicas: replicas.into(),
            state,
        })
    }
}

/// A URL's settings, or the configuration error (which never repeats it).
/// `host:port` of each host in `config`, for logs: never the user or
/// password.
fn server_name(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts = config.get_hosts().iter().enumerate().map(|(i, host)| {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            #[cfg(unix)]
            Host::Unix(path) => format!("{}:{port}", path.display()),
        }
    });
    hosts.collect::<Vec<_>>().join(",")
}

/// A primary and its read replicas, one [`PgPool`] each, as one
/// [`ConnectionSource`]: reads that decide validity on a replica, the rest
/// on the primary. See the [`replica`](crate::replica) module for the
/// routing, the consistency it gives and failover.
///
/// Cloning is cheap and shares the pools and the sampler, which stops once
/// the last clone is dropped.
#[derive(Clone)]
pub struct ReplicatedPool {
    primary: PgPool,
    primary_name: Arc<str>,
    replicas: Arc<[PgPool]>,
    state: Arc<State>,
}

/// What a [`ReplicatedPool`] knows of one replica now, from its sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaStatus {
    /// Serving reads: it has applied every write the primary had made `lag`
    /// ago (at most `max_replica_lag`).
    Usable {
        /// How stale its data may be.
        lag: Duration,
    },
    /// Skipped: a standby that answers, but it was last seen caught up
    /// more than `max_replica_lag` ago (`lag`), or never (`None`).
    Lagging {
        /// The time since it was last seen caught up.
        lag: Option<Duration>,
    },
    /// Skipped: its last probe or connection failed (or it has not been
    /// asked yet).
    Down,
    /// Skipped: it answers, but is not in recovery: promoted, or not a
    /// standby at all.
    NotInRecovery,
}

impl ReplicatedPool {
    /// The primary's pool: for the application's own writes, or for a
    /// second adapter that reads the primary only, where a revocation must
    /// count at once (see the [`replica`](crate::replica) module).
    #[must_use]
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// The replicas' pools, in the order given.
    #[must_use]
    pub fn replicas(&self) -> &[PgPool] {
        &self.replicas
    }

    /// What is known of each replica now, in the order given: for health
    /// checks and metrics.
    #[must_use]
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        (0..self.replicas.len())
            .map(|i| self.state.status(i))
            .collect()
    }
}

impl fmt::Debug for ReplicatedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replicas: Vec<_> = self.state.names().zip(self.replica_status()).collect();
        f.debug_struct("ReplicatedPool")
            .field("primary", &self.primary_name)
            .field("replicas", &replicas)
            .field("max_replica_lag", &self.state.max_lag)
            .finish_non_exhaustive()
    }
}

impl ConnectionSource for ReplicatedPool {
    type Connection<'a> = PooledPgConnection<'a>;

    fn connection(&self) -> impl Future<Output = Result<Self::Connection<'_>>> + Send {
        self.primary.connection()
    }

    fn operation_timeout(&self) -> Option<Duration> {
        self.primary.operation_timeout()
    }

    /// A usable replica's connection, in turn; `None` when there is none,
    /// or when the replica's pool could not lend one within the checkout
    /// timeout (then the replica is skipped until the sampler hears from
    /// it again).
    async fn read_connection(&self) -> Option<Self::Connection<'_>> {
        let i = self.state.pick()?;
        match self.replicas[i].connection().await {
            Ok(conn) => Some(conn),
            Err(error) => {
                self.state.mark_down(i, &error);
                None
            }
        }
    }

    /// `max_replica_lag`: a usable replica is never further behind.
    fn max_read_lag(&self) -> Duration {
        if self.replicas.is_empty() {
            Duration::ZERO
        } else {
            self.state.max_lag
        }
    }
}
