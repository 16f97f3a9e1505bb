//! With the database unreachable: pages fail fast (the example's short
//! checkout timeout) with a styled 503 that offers to sign out, and
//! signing out still clears the cookie. With the database frozen (every
//! server process stopped, see `frozen.rs`): every page, sign-in, sign-up
//! and the password change included, answers within 3.5 s, and the account
//! queries themselves end with a transient error within that bound.

use std::time::{Duration, Instant};

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};

use super::clients::assert_error_page;
use super::common::PasswordLimits;
use super::common::accounts::{self, AccountError};
use super::common::database;
use super::common::hashing::Hasher;
use super::common::throttle::LoginThrottle;
use super::frozen::{self, FROZEN_BOUND};
use super::{
    APP_MIGRATIONS, HOST, ORIGIN, app, assert_cookie_attributes, location, session_set_cookie,
    sign_up,
};

/// The 503 page's sign-out form.
const SIGN_OUT_FORM: &str =
    "<form method=\"post\" action=\"/logout\"><p>You can still sign out of this browser.</p>";

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
        let html = res.into_string().await.unwrap();
        assert!(html.contains(SIGN_OUT_FORM), "{path}: {html}");
    }
    let res = browser
        .get("/")
        .header(Header::new("Host", HOST))
        .header(Header::new("Cookie", cookie.clone()))
        .dispatch()
        .await;
    assert_error_page(res, 503, "Temporarily unavailable").await;
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

/// `call`, which must answer within the bound (a hang fails the test after
/// 15 s instead of blocking it).
async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 15 s"));
    let took = started.elapsed();
    eprintln!("frozen database: {what} answered in {took:?}");
    assert!(took < FROZEN_BOUND, "{what}: {took:?}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_within_the_bound_on_a_frozen_database() {
    let db = frozen::Server::start(APP_MIGRATIONS).await;
    // The example's pool: its checkout and statement timeouts.
    let pool = database::pool(&db.url, database::CHECKOUT_TIMEOUT)
        .await
        .unwrap();
    let sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    );
    let hasher = Hasher::new(2, 4);
    let limits = PasswordLimits {
        hasher: hasher.clone(),
        throttle: LoginThrottle::default(),
    };
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let client = Client::untracked(app::build_with(
        rocket::custom(config),
        sessions,
        pool.clone(),
        limits,
    ))
    .await
    .unwrap();
    let token = sign_up(&client, "wes", "long-enough-pw").await;
    let user_id = match accounts::log_in(&pool, &hasher, "wes", "long-enough-pw".into()).await {
        Ok(Some(id)) => id,
        other => panic!("{other:?}"),
    };
    let cookie = format!("auth_session={token}");

    // Every call below meets a connection to the frozen server.
    frozen::fill(&pool, 10).await;
    let frozen = db.freeze();
    let send = async |method: &str, path: &'static str, body: &'static str, with_cookie: bool| {
        let mut req = if method == "GET" {
            client.get(path)
        } else {
            client
                .post(path)
                .header(ContentType::Form)
                .header(Header::new("Origin", ORIGIN))
                .body(body)
        };
        req = req.header(Header::new("Host", HOST));
        if with_cookie {
            req = req.header(Header::new("Cookie", cookie.clone()));
        }
        let what = format!(
            "{method} {path}{}",
            if with_cookie { " (signed in)" } else { "" }
        );
        let res: LocalResponse<'_> = bounded(&what, req.dispatch()).await;
        (what, res)
    };
    let pages = [
        ("GET", "/", "", true),
        ("GET", "/sessions", "", true),
        ("GET", "/password", "", true),
        ("GET", "/login", "", true),
        (
            "POST",
            "/login",
            "username=wes&password=long-enough-pw",
            false,
        ),
        (
            "POST",
            "/login",
            "username=wes&password=long-enough-pw",
            true,
        ),
        (
            "POST",
            "/signup",
            "username=xia&password=long-enough-pw&confirm=long-enough-pw",
            false,
        ),
        (
            "POST",
            "/password",
            "current=long-enough-pw&new=new-password-2&confirm=new-password-2",
            true,
        ),
        ("POST", "/sessions/revoke-others", "", true),
    ];
    for (method, path, body, with_cookie) in pages {
        let (what, res) = send(method, path, body, with_cookie).await;
        assert_eq!(res.status(), Status::ServiceUnavailable, "{what}");
        assert_eq!(res.headers().get_one("Retry-After"), Some("5"), "{what}");
        assert!(session_set_cookie(&res).is_none(), "{what}");
        let html = res.into_string().await.unwrap();
        assert!(
            html.contains("<h1>Temporarily unavailable</h1>"),
            "{what}: {html}"
        );
        assert!(html.contains(SIGN_OUT_FORM), "{what}: {html}");
    }
    // Signing out clears the cookie, and says the server could not be told.
    let (what, res) = send("POST", "/logout", "", true).await;
    assert_eq!(res.status(), Status::SeeOther, "{what}");
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert_eq!(
        session_set_cookie(&res).expect("cleared")[0],
        "auth_session="
    );

    // The account queries themselves: a transient error, not a hang.
    let pw = |p: &str| p.to_owned();
    assert_transient(
        bounded(
            "log_in",
            accounts::log_in(&pool, &hasher, "wes", pw("long-enough-pw")),
        )
        .await,
    );
    assert_transient(
        bounded(
            "sign_up",
            accounts::sign_up(&pool, &hasher, "yan", pw("long-enough-pw")),
        )
        .await,
    );
    assert_transient(
        bounded(
            "change_password",
            accounts::change_password(
                &pool,
                &hasher,
                &user_id,
                pw("long-enough-pw"),
                pw("new-password-2"),
            ),
        )
        .await,
    );

    // Thawed, the same app serves again: the session the frozen sign-out
    // could not end is still valid (the browser's cookie is gone).
    drop(frozen);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, res) = send("GET", "/", "", true).await;
        if res.status() == Status::Ok {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, res) = send(
        "POST",
        "/login",
        "username=wes&password=long-enough-pw",
        false,
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

/// A database error that waiting may fix (a 503).
fn assert_transient<T: std::fmt::Debug>(result: Result<T, AccountError>) {
    match result {
        Err(AccountError::Store(e)) => assert!(e.is_transient(), "{e:?}"),
        other => panic!("{other:?}"),
    }
}
