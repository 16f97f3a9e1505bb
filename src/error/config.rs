//! Configuration rejected when it is built: one variant per setting.

/// A configuration value rejected when it was built. Each variant names
/// the setting that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A table, schema or column name is empty (or has an empty part around a dot).
    #[error("the name {0:?} is empty or has an empty part")]
    EmptyIdentifier(String),
    /// A name contains a NUL character, which PostgreSQL identifiers cannot hold.
    #[error("the name {0:?} contains a NUL character")]
    NulInIdentifier(String),
    /// A name part is longer than PostgreSQL's 63-byte limit (it would be
    /// silently truncated and then name a different object).
    #[error("the name {name:?} has a part of {len} bytes; PostgreSQL identifiers hold at most 63")]
    IdentifierTooLong {
        /// The name as given.
        name: String,
        /// The byte length of its longest part.
        len: usize,
    },
    /// A name has more than one dot; use `schema.table`.
    #[error("the name {0:?} has more than one dot; write `table` or `schema.table`")]
    TooManyDots(String),
    /// A column name that the crate manages itself (`id`, `user_id`,
    /// `expires_at`) was given as an attribute.
    #[error("{0:?} is managed by lucia-diesel and cannot be set as an attribute")]
    ReservedColumn(String),
    /// The session lifetime is shorter than 2 seconds or longer than ten
    /// years (3650 days).
    #[error("the session lifetime must be at least 2 seconds and at most 3650 days")]
    SessionLifetime,
    /// The idle timeout is not positive or longer than ten years.
    #[error("the idle timeout must be positive and at most 3650 days")]
    IdleTimeout,
    /// The absolute lifetime is not positive or longer than ten years.
    #[error("the absolute session lifetime must be positive and at most 3650 days")]
    AbsoluteLifetime,
    /// The activity resolution is not positive, longer than ten years, or
    /// not shorter than the idle timeout.
    #[error("the activity resolution must be positive and shorter than the idle timeout")]
    ActivityResolution,
    /// The pool size is zero.
    #[error("the pool size must be at least 1")]
    PoolSize,
    /// The pool's checkout timeout is zero.
    #[error("the checkout timeout must be positive")]
    CheckoutTimeout,
    /// The pool's statement timeout is zero.
    #[error("the statement timeout must be positive (or None to keep the server's)")]
    StatementTimeout,
    /// `max_replica_lag` is zero.
    #[error("the maximum replica lag must be positive")]
    MaxReplicaLag,
    /// A replicated pool's primary URL lists several hosts without
    /// `target_session_attrs=read-write`, so connections could land on a
    /// replica.
    #[error(
        "the primary's URL lists several hosts: add `target_session_attrs=read-write` so that connections go to the one that accepts writes"
    )]
    PrimaryNotReadWrite,
    /// The database URL cannot be parsed; the reason never repeats the URL.
    #[error("the database URL cannot be parsed: {0}")]
    DatabaseUrl(String),
    /// The cookie name is empty or not an RFC 6265 token.
    #[error(
        "the cookie name {0:?} is not a valid cookie name: use ASCII letters, digits and `!#$%&'*+-.^_`|~`"
    )]
    CookieName(String),
    /// A `__Host-` cookie must be `Secure`, have path `/` and no domain.
    #[error(
        "the cookie name {0:?} has the `__Host-` prefix, which requires Secure, path \"/\" and no domain"
    )]
    HostPrefix(String),
    /// A `__Secure-` cookie must be `Secure`.
    #[error("the cookie name {0:?} has the `__Secure-` prefix, which requires Secure")]
    SecurePrefix(String),
    /// `SameSite=None` without `Secure`, which browsers reject.
    #[error("SameSite=None requires Secure; browsers reject the cookie otherwise")]
    SameSiteNoneWithoutSecure,
    /// The cookie path does not start with `/` or holds `;` or a control character.
    #[error("the cookie path {0:?} must start with `/` and contain no `;` or control characters")]
    CookiePath(String),
    /// The cookie domain is not a host name of ASCII letters, digits, `-` and `.`.
    #[error(
        "the cookie domain {0:?} must be a host name of at most 253 ASCII letters, digits, `-` and `.`"
    )]
    CookieDomain(String),
    /// The cleanup interval is zero.
    #[error("the cleanup interval must be positive")]
    CleanupInterval,
    /// The cleanup batch size is zero.
    #[error("the cleanup batch size must be at least 1")]
    CleanupBatchSize,
    /// A background task was to be started outside a tokio runtime.
    #[error("{0} must be started within a tokio runtime")]
    NoRuntime(&'static str),
    /// A CA certificate for TLS cannot be read or used as a trust anchor.
    #[error("the CA certificate cannot be used: {0}")]
    CaCertificate(String),
    /// The CA bundle for TLS holds no certificate.
    #[error("the CA PEM holds no certificate")]
    NoCaCertificate,
    /// `run` was called on a `PoolerPool`, which lends tokio-postgres
    /// clients, not diesel connections.
    #[error(
        "a PoolerPool lends no diesel connection for the application's queries: run them on a PgPool (diesel-async's prepared statements do not work through a pooler in transaction mode)"
    )]
    PoolerQueries,
    /// The session cache was enabled on tables without its outbox or
    /// triggers; says which are missing.
    #[error(
        "the validation cache's outbox is incomplete, missing {0}: run migrations::CACHE_MIGRATIONS, or the DDL of migrations::cache_triggers_sql for custom names"
    )]
    CacheTriggers(String),
    /// The cache's poll source does not reach the primary server and
    /// database the adapter writes to (another server or database, or a
    /// standby): polls there would miss invalidations. Says what each
    /// reaches.
    #[error("the validation cache must poll the primary database the adapter writes to: {0}")]
    CachePollSource(String),
    /// The cache's maximum entry age is longer than a day.
    #[error("the cache's maximum entry age must be at most a day (86400 s)")]
    CacheMaxAge,
    /// The cache's poll interval is under a millisecond or over a minute.
    #[error("the cache's poll interval must be at least 1 ms and at most a minute")]
    CachePollInterval,
    /// The outbox's retention is under ten poll intervals or over a day.
    #[error("the cache's outbox retention must be at least ten poll intervals and at most a day")]
    CacheRetention,
    /// The cache's maximum poll age is under a poll interval or over the
    /// outbox retention.
    #[error(
        "the cache's maximum poll age must be at least a poll interval and at most the outbox retention"
    )]
    CacheMaxPollAge,
    /// A web framework integration found no session manager where it looks
    /// for one (Rocket's managed state).
    #[error(
        "no SessionManager<{0}> in the web framework's state: add it (Rocket: `rocket.manage(session_manager)`)"
    )]
    MissingSessionManager(&'static str),
    /// Rocket's session guards ran without `rocket::SessionFairing`
    /// attached, so no cross-origin check ran.
    #[error(
        "the session guards need the SessionFairing, which checks cross-origin requests: attach it (`rocket.attach(SessionFairing::new())`)"
    )]
    MissingSessionFairing,
}

/// `url` as a connection configuration, or the error naming what is wrong
/// with it (never the URL itself, which may hold a password).
#[cfg(feature = "bb8")]
pub(crate) fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    url.parse()
        .map_err(|e: tokio_postgres::Error| ConfigError::DatabaseUrl(e.to_string()))
}
