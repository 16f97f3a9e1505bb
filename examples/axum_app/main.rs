//! The lucia-diesel axum example: a JSON API with sign-up, login, logout
//! and session management, for browsers (cookie) and API clients (bearer
//! token).
//!
//! ```sh
//! cargo run --example axum_app --features axum
//! ```
//!
//! Uses `DATABASE_URL` when set (the database should be empty or already
//! hold this app's tables), otherwise starts a private throwaway PostgreSQL
//! cluster, printing its URL, that is removed when the app exits (Ctrl-C,
//! SIGTERM or a crash). Serves on <http://127.0.0.1:3000/api>, which lists
//! the routes (`APP_PORT` to change); `APP_INSECURE_COOKIES=1` drops
//! `Secure` from the cookie for plain http on another host (never in
//! production). Routes: `POST /api/signup`, `POST /api/login` (JSON
//! `{"username", "password"}`), `GET /api/me`, `GET /api/sessions`,
//! `DELETE /api/sessions/{id}`, `POST /api/sessions/revoke-others` (signs
//! out every other session), `POST /api/logout`, `POST /api/reauthenticate`
//! (`{"password"}`: the sign-in becomes recent, with a new token) and
//! `DELETE /api/account` (needs a sign-in within 5 minutes).
//!
//! With the crate's feature `metrics` (`--features axum,metrics`), also
//! `GET /metrics`: the session store's metrics in the Prometheus text
//! format.

#[path = "../common/mod.rs"]
mod common;
mod server;

use std::process::ExitCode;

use lucia_diesel::{CookieConfig, PostgresAdapter, SessionManager};

use self::common::{PasswordLimits, database};
use self::server::api;
use self::server::metrics::Metrics;

/// The example's own migrations, applied after lucia-diesel's.
const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/axum_app/migrations");

#[tokio::main]
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
    let port = match std::env::var("APP_PORT") {
        Ok(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("APP_PORT={p:?} is not a port number"))?,
        Err(_) => 3000,
    };
    // The port first: when it is taken, say so before starting anything.
    let listener = api::listen(port).await?;
    // The recorder before anything records (feature `metrics`; else nothing).
    let metrics = Metrics::install()?;

    let configured = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    let url = database::database_url(configured)?;
    database::migrate(&url, APP_MIGRATIONS).await?;

    // Fail fast while the database is in trouble: a request waits at most
    // 1 s for a connection and the statement timeout (plus a margin) for
    // its answer, then gets a 503. The account queries share the pool.
    let pool = database::pool(&url, database::CHECKOUT_TIMEOUT).await?;
    let mut cookie = CookieConfig::new();
    if std::env::var("APP_INSECURE_COOKIES").is_ok_and(|v| v == "1") {
        eprintln!(
            "WARNING: APP_INSECURE_COOKIES=1: session cookies without `Secure` (development only)"
        );
        cookie = cookie.with_secure(false);
    }
    let sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<api::SessionInfo>()
            .with_user_attributes::<api::UserInfo>(),
    )
    .with_cookie(cookie)
    .build()?;
    let mut state = api::AppState::new(sessions, pool, PasswordLimits::default());
    state.metrics = metrics;

    println!("{}", api::banner(listener.local_addr()?));
    if let Some(line) = state.metrics.banner() {
        println!("{line}");
    }
    api::serve(listener, state).await?;
    Ok(())
}
