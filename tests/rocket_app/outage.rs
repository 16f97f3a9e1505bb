//! With the database unreachable: pages fail fast (the example's short
//! checkout timeout) with a styled 503, and signing out still clears the
//! cookie.

use std::time::{Duration, Instant};

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;

use super::clients::assert_error_page;
use super::{HOST, ORIGIN, app, assert_cookie_attributes, location, session_set_cookie};

/// The example's default checkout timeout (`APP_DB_TIMEOUT`).
const CHECKOUT: Duration = Duration::from_secs(1);

/// The app over a pool whose database never answers (nothing listens on
/// port 1), with a browser holding a well-formed session cookie.
async fn app_without_database() -> (Client, String) {
    let pool = PoolOptions::new()
        .with_checkout_timeout(CHECKOUT)
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    );
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let client = Client::tracked(app::build(rocket::custom(config), sessions, pool))
        .await
        .unwrap();
    (client, format!("auth_session={}", "b".repeat(40)))
}

#[tokio::test]
async fn logout_clears_the_cookie_while_the_database_is_down() {
    let (browser, cookie) = app_without_database().await;
    let started = Instant::now();
    let res = browser
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .header(Header::new("Cookie", cookie))
        .dispatch()
        .await;
    assert!(
        started.elapsed() < CHECKOUT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let blank = session_set_cookie(&res).expect("the cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));

    // The sign-in page (no session to look up) says what happened.
    let res = browser
        .get("/login")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let html = res.into_string().await.unwrap();
    assert!(
        html.contains("You are signed out in this browser. The session store could not be reached"),
        "{html}"
    );
}

#[tokio::test]
async fn pages_fail_fast_with_a_styled_503() {
    let (browser, cookie) = app_without_database().await;
    for path in ["/", "/sessions", "/login"] {
        let started = Instant::now();
        let res = browser
            .get(path)
            .header(Header::new("Host", HOST))
            .header(Header::new("Cookie", cookie.clone()))
            .dispatch()
            .await;
        assert!(
            started.elapsed() < CHECKOUT + Duration::from_secs(2),
            "{path}: {:?}",
            started.elapsed()
        );
        assert_eq!(res.headers().get_one("Retry-After"), Some("5"), "{path}");
        assert_error_page(res, 503, "Temporarily unavailable").await;
    }
    // A sign-in attempt needs the database too: 503, not a wrong password.
    let res = browser
        .post("/login")
        .header(rocket::http::ContentType::Form)
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .body("username=wendy&password=long-enough-pw")
        .dispatch()
        .await;
    assert_error_page(res, 503, "Temporarily unavailable").await;
}
