//! The lucia-diesel example app: sign-up, login, logout and session
//! management with Rocket, server-rendered.
//!
//! ```sh
//! cargo run --example rocket_app --features rocket
//! ```
//!
//! Uses `DATABASE_URL` when set (the database should be empty or already
//! hold this app's tables), otherwise starts a private throwaway PostgreSQL
//! cluster, printing its URL, that is removed when the app exits (Ctrl-C,
//! SIGTERM or a crash). Serves on
//! <http://127.0.0.1:8000> (`ROCKET_PORT` to change). Every setting is in
//! the README's "Try it" section and in `server/startup.rs`.
//!
//! Session cookies are `Secure`. Browsers store `Secure` cookies from
//! `http://localhost` and `http://127.0.0.1`, so local use needs nothing
//! special; to test over plain http on another host, set
//! `APP_INSECURE_COOKIES=1` (never in production).

#[path = "../common/mod.rs"]
mod common;
mod server;

use std::process::ExitCode;
use std::time::Duration;

use lucia_diesel::{CookieConfig, PostgresAdapter, SessionManager};

use self::common::database;
use self::server::app;
use self::server::startup::{self, Settings};

/// The example's own migrations, applied after lucia-diesel's.
const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/rocket_app/migrations");

#[rocket::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
    let url = database::database_url(settings.database_url.clone())?;
    database::migrate(&url, APP_MIGRATIONS).await?;

    // Fail fast while the database is in trouble: a page waits at most the
    // checkout timeout for a connection and the statement timeout (plus a
    // margin) for its answer, then says so (503). The account queries
    // share the pool and its bounds.
    let pool = database::pool(&url, settings.db_timeout).await?;
    let mut cookie = CookieConfig::new();
    if settings.insecure_cookies {
        eprintln!(
            "WARNING: APP_INSECURE_COOKIES=1: session cookies without `Secure` (development only)"
        );
        cookie = cookie.with_secure(false);
    }
    let mut builder = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    )
    .with_cookie(cookie);
    if let Some(d) = settings.session_lifetime {
        builder = builder.with_session_lifetime(chrono::Duration::from_std(d)?);
    }
    if let Some(d) = settings.idle_timeout {
        // Record activity finely enough for the timeout to be honest.
        let resolution = (d / 10).min(Duration::from_secs(300));
        builder = builder
            .with_idle_timeout(chrono::Duration::from_std(d)?)
            .with_activity_resolution(chrono::Duration::from_std(resolution)?);
    }
    if let Some(d) = settings.absolute_lifetime {
        builder = builder.with_absolute_lifetime(chrono::Duration::from_std(d)?);
    }
    let sessions = builder.build()?;

    // Rocket's own settings (ROCKET_PORT, ROCKET_ADDRESS, ...) come from the
    // environment. The client address is the TCP peer's unless
    // ROCKET_IP_HEADER names a header a trusted proxy sets.
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("ip_header", false))
        .merge(rocket::figment::providers::Env::prefixed("ROCKET_").global());
    startup::launch(app::build(rocket::custom(figment), sessions, pool)).await?;
    Ok(())
}
