//! The cache's listening connection: LISTEN on [`CHANNEL`], hand every
//! notification to the cache, ping, and reconnect with a bounded back-off,
//! bypassing the cache while it is down.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{Either, select};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Connection};

use super::{CHANNEL, Cache, CacheOptions, CacheStats};
use crate::error::{ConfigError, Error, Result, parse_database_url};
use crate::names::{TableName, TableNames};
use crate::postgres::PostgresAdapter;
use crate::session::{CacheHook, SessionManager};
use crate::source::ConnectionSource;
use crate::user_id::UserId;

/// The triggers [`migrations::cache_triggers_sql`](crate::migrations::cache_triggers_sql)
/// creates on each table.
pub(crate) const TRIGGERS: [&str; 2] = ["lucia_diesel_notify", "lucia_diesel_notify_truncate"];

/// The listening connection's `application_name` (unless its URL sets one),
/// to find it in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "lucia-diesel cache listener";

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<S, U, SA, UA> SessionManager<PostgresAdapter<S, U, SA, UA>>
where
    S: ConnectionSource,
    U: UserId,
    SA: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    UA: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Validates sessions from memory (feature `cache`; see the
    /// [`cache`](crate::cache) module): connects to `options`' URL, checks
    /// that the notification triggers exist on both tables, listens, and
    /// from then on answers validations with nothing to write from the
    /// cache. Must be called within a tokio runtime.
    ///
    /// # Examples
    /// ```no_run
    /// use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager, cache::CacheOptions};
    ///
    /// # async fn run() -> lucia_diesel::Result<()> {
    /// let url = "postgres://localhost/app";
    /// let pool = PoolOptions::new().build(url).await?;
    /// let sessions = SessionManager::new(PostgresAdapter::new(pool))
    ///     .with_cache(CacheOptions::new(url))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::CacheTriggers`] when a table lacks the triggers (run
    /// [`migrations::CACHE_MIGRATIONS`](crate::migrations::CACHE_MIGRATIONS)
    /// or [`migrations::cache_triggers_sql`](crate::migrations::cache_triggers_sql));
    /// [`ConfigError::DatabaseUrl`] for a URL that cannot be parsed;
    /// [`ConfigError::CacheMaxAge`] and [`ConfigError::CachePingInterval`]
    /// for settings out of range;
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub async fn with_cache(mut self, options: CacheOptions) -> Result<Self> {
        options.check()?;
        let names = self.adapter().table_names().clone();
        let listening = listen(&options, &names).await?;
        let read_lag = self.adapter().source().max_read_lag();
        let cache = Arc::new(Cache::<U, SA, UA>::new(&options, U::text, read_lag));
        cache.set_listening(true);
        let task = tokio::spawn(run(
            BypassOnExit(Arc::downgrade(&cache)),
            options,
            names,
            Some(listening),
        ));
        if let Ok(mut slot) = cache.listener.lock() {
            *slot = Some(task);
        }
        self.cache = CacheHook::new::<U, SA, UA>(cache);
        Ok(self)
    }

    /// What the cache has done so far; `None` without a cache.
    #[must_use]
    pub fn cache_stats(&self) -> Option<CacheStats> {
        let cache = self
            .cache()
            .get()?
            .as_any()
            .downcast_ref::<Cache<U, SA, UA>>()?;
        Some(cache.stats())
    }
}

/// A connection listening on [`CHANNEL`]: its client (for pings) and the
/// payloads its driver task forwards.
struct Listening {
    client: Client,
    payloads: mpsc::UnboundedReceiver<String>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects, checks the triggers and listens.
async fn listen(options: &CacheOptions, names: &TableNames) -> Result<Listening> {
    let mut config = parse_database_url(&options.listen_url)?;
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    let connecting = async {
        #[cfg(feature = "rustls")]
        if let Some(tls) = &options.tls {
            let (config, connector) = tls.connector(&config);
            let (client, connection) = config.connect(connector).await?;
            return Ok((client, drive(connection)));
        }
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        Ok::<_, tokio_postgres::Error>((client, drive(connection)))
    };
    let (client, (payloads, driver)) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::unavailable("the cache's listening connection timed out"))?
        .map_err(Error::unavailable_from)?;
    let listening = Listening {
        client,
        payloads,
        driver,
    };
    for table in [names.session(), names.user()] {
        check_triggers(&listening.client, table).await?;
    }
    listening
        .client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(Error::unavailable_from)?;
    Ok(listening)
}

/// Drives a connection from a task of its own, forwarding notification
/// payloads until the connection ends.
fn drive<S, T>(
    mut connection: Connection<S, T>,
) -> (mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(poll_fn(move |cx| {
        loop {
            match connection.poll_message(cx) {
                Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(target: super::TARGET, error = %error, "listening connection ended");
                    return Poll::Ready(());
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }));
    (rx, driver)
}

/// Fails unless both notification triggers exist, enabled, on `table`.
async fn check_triggers(client: &Client, table: &TableName) -> Result<()> {
    let found = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_trigger \
             WHERE tgrelid = to_regclass($1) AND tgname = ANY($2) AND tgenabled <> 'D'",
            &[&table.to_sql(), &&TRIGGERS[..]],
        )
        .await
        .map_err(Error::unavailable_from)?
        .try_get::<_, i64>(0)
        .map_err(Error::unavailable_from)?;
    if found < 2 {
        return Err(ConfigError::CacheTriggers(table.to_sql()).into());
    }
    Ok(())
}

/// The listener task: serves notifications while connected, and reconnects
/// (with a back-off from [`MIN_BACKOFF`] to [`MAX_BACKOFF`]) when the
/// connection is lost, the cache bypassed meanwhile. Ends when the cache is
/// dropped.
async fn run<U, SA, UA>(
    bypass: BypassOnExit<U, SA, UA>,
    options: CacheOptions,
    names: TableNames,
    mut listening: Option<Listening>,
) where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    let cache = bypass.0.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        let current = match listening.take() {
            Some(current) => current,
            None => match listen(&options, &names).await {
                Ok(current) => {
                    let Some(cache) = cache.upgrade() else { return };
                    cache.set_listening(true);
                    tracing::info!(target: super::TARGET, "cache listening again; emptied it first");
                    backoff = MIN_BACKOFF;
                    current
                }
                Err(error) => {
                    tracing::warn!(target: super::TARGET, error = %error, retry_in = ?backoff, "cache listener cannot connect; the cache is bypassed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if cache.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            },
        };
        if !serve(&cache, current, options.ping_interval).await {
            return;
        }
        let Some(cache) = cache.upgrade() else { return };
        cache.set_listening(false);
        tracing::warn!(target: super::TARGET, "cache listener lost; the cache is bypassed until it reconnects");
    }
}

/// Marks the cache not listening however the listener task ends (a panic,
/// or dropped with its runtime, polled or not): a correctness property, as
/// a cache nobody invalidates must not serve. An argument of [`run`], so it
/// is dropped with the task even before its first poll.
struct BypassOnExit<U, SA, UA>(Weak<Cache<U, SA, UA>>)
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static;

impl<U, SA, UA> Drop for BypassOnExit<U, SA, UA>
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if let Some(cache) = self.0.upgrade() {
            cache.set_listening(false);
        }
    }
}

/// Hands notifications to the cache and pings, until the connection is
/// lost (`true`) or the cache is dropped (`false`).
async fn serve<U, SA, UA>(
    cache: &Weak<Cache<U, SA, UA>>,
    mut listening: Listening,
    ping_interval: Duration,
) -> bool
where
    U: Clone + Send + Sync + 'static,
    SA: Clone + Send + Sync + 'static,
    UA: Clone + Send + Sync + 'static,
{
    let mut ping = tokio::time::interval(ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = match select(pin!(listening.payloads.recv()), pin!(ping.tick())).await {
            Either::Left((payload, _)) => Some(payload),
            Either::Right(_) => None,
        };
        let Some(cache) = cache.upgrade() else {
            return false;
        };
        match next {
            Some(Some(payload)) => cache.notified(&payload),
            Some(None) => return true,
            None => {
                let pong = tokio::time::timeout(PING_TIMEOUT, listening.client.simple_query(""));
                if !matches!(pong.await, Ok(Ok(_))) {
                    return true;
                }
            }
        }
    }
}
