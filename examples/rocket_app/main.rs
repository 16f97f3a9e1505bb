//! The lucia-diesel example app: sign-up, login, logout and session
//! management with Rocket, server-rendered.
//!
//! ```sh
//! cargo run --example rocket_app --features rocket
//! ```
//!
//! Uses `DATABASE_URL` when set (the database should be empty or already
//! hold this app's tables), otherwise starts a private throwaway PostgreSQL
//! cluster that is removed when the app exits. Serves on
//! <http://127.0.0.1:8000> (`ROCKET_PORT` to change).
//!
//! Session cookies are `Secure`. Browsers store `Secure` cookies from
//! `http://localhost` and `http://127.0.0.1`, so local use needs nothing
//! special; to test over plain http on another host, set
//! `APP_INSECURE_COOKIES=1` (never in production).

mod accounts;
mod app;
mod pages;

use lucia_diesel::{CookieConfig, PoolOptions, PostgresAdapter, SessionManager, migrations};

/// The example's own migrations, applied after lucia-diesel's.
const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/rocket_app/migrations");

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut _cluster = None;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("DATABASE_URL is not set: starting a throwaway PostgreSQL cluster");
            let c = testkit::Cluster::start()?;
            let url = c.url("postgres");
            _cluster = Some(c);
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
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    )
    .with_cookie(cookie)
    .build()?;

    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(rocket::figment::providers::Env::prefixed("ROCKET_").global());
    let rocket = app::build(rocket::custom(figment), sessions, pool);
    let ignited = rocket.ignite().await?;
    println!(
        "lucia-diesel example: open http://{}:{}/ (Ctrl-C to stop)",
        ignited.config().address,
        ignited.config().port
    );
    ignited.launch().await?;
    Ok(())
}
