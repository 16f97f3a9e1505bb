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
//! cluster that is removed when the app exits. Serves on
//! <http://127.0.0.1:3000> (`APP_PORT` to change); `APP_INSECURE_COOKIES=1`
//! drops `Secure` from the cookie for plain http on another host (never in
//! production). Routes: `POST /api/signup`, `POST /api/login` (JSON
//! `{"username", "password"}`), `GET /api/me`, `GET /api/sessions`,
//! `DELETE /api/sessions/{id}`, `POST /api/logout`.

mod server;

use std::process::ExitCode;
use std::sync::Arc;

use lucia_diesel::{CookieConfig, PoolOptions, PostgresAdapter, SessionManager, migrations};

use self::server::{accounts, api};

/// The example's own migrations, applied after lucia-diesel's.
const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/axum_app/migrations");

/// Password hashes waiting for a core, beyond those running: past this,
/// sign-ups and logins get a 429.
const HASH_QUEUE_PER_CORE: usize = 2;

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

    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("DATABASE_URL is not set: starting a throwaway PostgreSQL cluster");
            let cluster = testkit::Cluster::start()?;
            let url = cluster.url("postgres");
            // Removed when this process exits, however it exits (Ctrl-C too).
            cluster.stop_when_process_exits();
            url
        }
    };
    migrations::run_pending_migrations_at(&url).await?;
    migrations::run_embedded_migrations(
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url).await?,
        APP_MIGRATIONS,
    )
    .await?;

    let pool = PoolOptions::new().build(&url).await?;
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let state = api::AppState {
        sessions: Arc::new(sessions),
        pool,
        hasher: Arc::new(accounts::Hasher::new(cores, cores * HASH_QUEUE_PER_CORE)),
    };

    println!("lucia-diesel axum example: http://127.0.0.1:{port}/api (Ctrl-C to stop)");
    axum::serve(listener, api::router(state)).await?;
    Ok(())
}
