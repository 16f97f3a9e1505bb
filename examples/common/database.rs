//! The examples' database: `DATABASE_URL`, or a throwaway cluster removed
//! however the example ends; the migrations; and the pool every page uses,
//! with bounds that make a database in trouble a quick `503`.

use std::time::Duration;

use diesel_migrations::EmbeddedMigrations;
use lucia_diesel::{PgPool, PoolOptions, migrations};

/// How long a request waits for a database connection by default.
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a statement may run: every query here is an index lookup,
/// so a slower answer means the database is in trouble. A call on a lent
/// connection gets a client-side deadline of this plus a margin (a tenth,
/// at least 250 ms: 1.75 s), which also ends it when the server stops
/// answering altogether.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(1500);

/// What a `503` tells the client to wait, in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// The pool's settings: `checkout` for a connection (at most), then
/// [`STATEMENT_TIMEOUT`].
pub fn pool_options(checkout: Duration) -> PoolOptions {
    PoolOptions::new()
        .with_checkout_timeout(checkout)
        .with_statement_timeout(Some(STATEMENT_TIMEOUT))
}

/// The pool: the session manager's operations and the example's own
/// account queries (through `ConnectionSource::run`) all go through it.
pub async fn pool(url: &str, checkout: Duration) -> lucia_diesel::Result<PgPool> {
    pool_options(checkout).build(url).await
}

/// The database URL: `configured` (`DATABASE_URL`) when set, else a new
/// throwaway cluster's. Says which on stderr (without a password).
///
/// The cluster is removed once this process has exited, however it exits:
/// Ctrl-C, SIGTERM, a panic or a crash (a watcher process of its own
/// group, which a terminal's Ctrl-C does not reach, cleans up after it).
pub fn database_url(configured: Option<String>) -> Result<String, String> {
    if let Some(url) = configured {
        eprintln!("using DATABASE_URL: {}", display_url(&url));
        return Ok(url);
    }
    let cluster = testkit::Cluster::start()?;
    let url = cluster.url("postgres");
    eprintln!(
        "DATABASE_URL is not set: started a throwaway PostgreSQL cluster at {url} \
         (removed when the example exits)"
    );
    cluster.stop_when_process_exits();
    Ok(url)
}

/// Applies lucia-diesel's migrations, then the example's own.
pub async fn migrate(url: &str, app: EmbeddedMigrations) -> Result<(), lucia_diesel::Error> {
    migrations::run_pending_migrations_at(url).await?;
    let conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(url).await?;
    migrations::run_embedded_migrations(conn, app).await?;
    Ok(())
}

/// `url` without its password, for printing.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}
