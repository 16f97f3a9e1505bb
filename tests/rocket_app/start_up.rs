//! Start-up: the example's settings, URLs printed without passwords, and
//! one clear line when the port is taken.

use std::collections::HashMap;
use std::time::Duration;

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};

use super::app;
use super::common::database::display_url;
use super::startup::{Settings, launch};

fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn settings_and_their_defaults() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.database_url, None);
    assert!(!s.insecure_cookies);
    assert_eq!(s.db_timeout, Duration::from_secs(1));
    assert_eq!(
        (s.session_lifetime, s.idle_timeout, s.absolute_lifetime),
        (None, None, None)
    );

    let s = settings(&[
        ("DATABASE_URL", "postgres://app@db/app"),
        ("APP_INSECURE_COOKIES", "1"),
        ("APP_DB_TIMEOUT", "500ms"),
        ("APP_SESSION_LIFETIME", "7d"),
        ("APP_IDLE_TIMEOUT", "15m"),
        ("APP_ABSOLUTE_LIFETIME", "8h"),
    ])
    .unwrap();
    assert_eq!(s.database_url.as_deref(), Some("postgres://app@db/app"));
    assert!(s.insecure_cookies);
    assert_eq!(s.db_timeout, Duration::from_millis(500));
    assert_eq!(s.session_lifetime, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(s.idle_timeout, Some(Duration::from_secs(900)));
    assert_eq!(s.absolute_lifetime, Some(Duration::from_secs(8 * 3_600)));

    assert_eq!(
        settings(&[("APP_IDLE_TIMEOUT", "90")])
            .unwrap()
            .idle_timeout,
        Some(Duration::from_secs(90))
    );
    assert!(
        !settings(&[("APP_INSECURE_COOKIES", "yes")])
            .unwrap()
            .insecure_cookies
    );
    assert_eq!(
        settings(&[("DATABASE_URL", "  ")]).unwrap().database_url,
        None
    );
    for bad in ["0", "15 m", "1w", "-5s", "m", "99999999999s"] {
        let err = settings(&[("APP_IDLE_TIMEOUT", bad)]).unwrap_err();
        assert!(
            err.starts_with("APP_IDLE_TIMEOUT: expected a duration"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn urls_are_printed_without_passwords() {
    for (url, shown) in [
        (
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        (
            "postgres://app:s3cret@db.internal:5432/app?sslmode=require",
            "postgres://app:***@db.internal:5432/app?sslmode=require",
        ),
        ("postgresql://:only-pw@db/app", "postgresql://:***@db/app"),
        ("postgres://db/app", "postgres://db/app"),
        ("not a url", "not a url"),
    ] {
        assert_eq!(display_url(url), shown);
        assert!(!display_url(url).contains("s3cret"));
    }
}

#[tokio::test]
async fn a_taken_port_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let pool = PoolOptions::new()
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    );
    let config = rocket::Config {
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let err = launch(app::build(rocket::custom(config), sessions, pool))
        .await
        .expect_err("the port is taken");
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("ROCKET_PORT"), "{err}");
    assert!(!err.contains("Os {"), "{err}");
}
