//! The validation cache (feature `cache`) on a real PostgreSQL: two managers
//! with pools, pollers and caches of their own on one database, as two app
//! instances; revocations by the crate and by plain SQL; polls failing,
//! hanging, and the server restarted; the outbox trimmed past a stalled
//! reader; the stale-fill race held open at its two orderings.
//!
//! Each test has a database of its own, so no test sees another's
//! invalidations. This file holds the fixture (`CacheDb`) and the helpers
//! (the metrics tests use some of them too);
//! the tests are in `serving.rs`, `revocation.rs`, `polling.rs` and
//! `outbox.rs`.

mod outbox;
mod polling;
mod revocation;
mod serving;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::cache::{CacheOptions, CacheStats};
use lucia_diesel::migrations::{
    CACHE_MIGRATIONS, cache_triggers_sql, run_embedded_migrations, run_pending_migrations,
};
use lucia_diesel::{
    Attributes, ConfigError, Error, PgPool, PoolOptions, PostgresAdapter, SessionManager,
    TableNames,
};
use serde::Deserialize;

use crate::support::clock::ManualClock;
use crate::support::{server_url, unique_name};

pub(crate) type Manager<UA = Attributes> =
    SessionManager<PostgresAdapter<PgPool, String, Attributes, UA>>;

/// `server` with its database replaced by `db`.
fn database_url(server: &str, db: &str) -> String {
    let (base, query) = server.split_once('?').unwrap_or((server, ""));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{db}{query}", &base[..path])
}

/// A database of its own with the crate's tables, a `name` column on the
/// user table and a `country` column on the session table, and (unless
/// `triggers` is false) the cache's outbox and triggers.
pub(crate) struct CacheDb {
    name: String,
    url: String,
    server: String,
}

impl CacheDb {
    pub(crate) async fn new(triggers: bool) -> Self {
        Self::on(server_url(), triggers).await
    }

    async fn on(server: &str, triggers: bool) -> Self {
        let name = unique_name("ldc");
        let mut admin = AsyncPgConnection::establish(server).await.unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let db = Self {
            url: database_url(server, &name),
            name,
            server: server.to_owned(),
        };
        run_pending_migrations(db.connect().await).await.unwrap();
        if triggers {
            run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
                .await
                .unwrap();
        }
        db.exec(
            "ALTER TABLE auth_user ADD COLUMN name TEXT NOT NULL DEFAULT ''; \
             ALTER TABLE user_session ADD COLUMN country TEXT",
        )
        .await;
        db
    }

    async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

    pub(crate) async fn exec(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn pool(&self) -> PgPool {
        PoolOptions::new()
            .with_max_size(4)
            .build(&self.url)
            .await
            .unwrap()
    }

    /// An app instance: a pool, a manager and a cache of its own.
    pub(crate) async fn instance<UA>(&self) -> Manager<UA>
    where
        UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        SessionManager::new(PostgresAdapter::new(self.pool().await).with_user_attributes::<UA>())
            .with_cache(options())
            .await
            .unwrap()
    }

    pub(crate) async fn user(&self, id: &str, name: &str) -> String {
        self.exec(&format!(
            "INSERT INTO auth_user (id, name) VALUES ('{id}', '{name}')"
        ))
        .await;
        id.to_owned()
    }
}

impl Drop for CacheDb {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        crate::support::cleanup(&self.server, &[drop]);
    }
}

/// The tests' cache settings: the default poll interval, and serving for
/// 30 s after a successful poll (not five intervals), so that a poll made
/// late by a busy machine cannot turn an expected hit into a bypass. The
/// tests of the bypass itself set their own.
fn options() -> CacheOptions {
    CacheOptions::new().with_max_poll_age(Duration::from_secs(30))
}

pub(crate) fn stats<UA>(m: &Manager<UA>) -> CacheStats
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    m.cache_stats().expect("a cache")
}

/// Waits (up to 20 s) until `done`, and returns how long that took.
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    start.elapsed()
}

/// Whether `m` finds `token` valid (an error counts as a failure).
async fn valid<UA>(m: &Manager<UA>, token: &str) -> bool
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    m.validate_session(token).await.unwrap().is_some()
}

/// Validates until a validation of `token` is a hit (the first fills),
/// for up to 20 s: a busy machine may delay the polls that let the cache
/// serve.
pub(crate) async fn cached<UA>(m: &Manager<UA>, token: &str)
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let hits = stats(m).hits;
        assert!(valid(m, token).await);
        if stats(m).hits > hits {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("never served from the cache: {:?}", stats(m));
}

/// Validates `token`, whose revocation committed when `m` had handled
/// `committed` polls: a valid answer is stale (a failure) once two more
/// polls are handled, the second of which began after the commit and saw
/// it; before that, the answer may still be the cache's. Errors must be
/// transient (the server restarting).
async fn not_served_stale<UA>(m: &Manager<UA>, token: &str, committed: u64)
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let polls = stats(m).polls;
    match m.validate_session(token).await {
        Ok(Some(_)) => assert!(
            polls < committed + 2,
            "revoked, served after a poll that saw the revocation: {:?}",
            stats(m)
        ),
        Ok(None) => {}
        Err(e) => assert!(e.is_transient(), "{e}"),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// A user's `name` column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Named {
    name: String,
}

/// Waits until `m` has handled `n` more invalidations than `before`.
pub(crate) async fn handled<UA>(m: &Manager<UA>, before: &CacheStats, n: u64) -> Duration
where
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    until("the invalidation", || {
        stats(m).invalidations >= before.invalidations + n
    })
    .await
}
