//! The example app through Rocket's local client, against PostgreSQL:
//! sign-up, login, sessions, revoke, logout, password change, cookie
//! attributes, fixation, replay, CSRF and malformed cookies.

// Compiled once per example's tests, as each example compiles it; parts
// of it serve the other examples' tests only.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/common/mod.rs"]
mod common;
#[path = "../../examples/rocket_app/server/mod.rs"]
mod server;
use common::{accounts, password};
use server::{agent, app, headers, pages, startup};

mod account;
mod browser;
mod clients;
#[allow(clippy::duplicate_mod)]
#[path = "../axum_app/frozen.rs"]
mod frozen;
mod outage;
mod password_hashes;
mod remote_sign_out;
mod security_headers;
mod sessions_list;
mod shared;
mod sign_out;
mod start_up;
mod step_up;
mod throttling;

use chrono::{Duration, Utc};
use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager, migrations};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};

use crate::support::TestDb;
use crate::support::clock::ManualClock;

const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/rocket_app/migrations");
const HOST: &str = "localhost:8000";
const ORIGIN: &str = "http://localhost:8000";

struct App {
    _db: TestDb,
    clock: ManualClock,
    url: String,
}

type Sessions = app::Sessions;

/// A test schema with lucia-diesel's and the example's migrations applied.
async fn app_database() -> TestDb {
    let db = TestDb::new().await;
    migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    migrations::run_embedded_migrations(db.connect().await, APP_MIGRATIONS)
        .await
        .unwrap();
    db
}

async fn app() -> App {
    let db = app_database().await;
    App {
        url: db.url.clone(),
        _db: db,
        clock: ManualClock::at(Utc::now()),
    }
}

impl App {
    /// A browser: its own cookie jar, same app and database.
    async fn browser(&self) -> Client {
        let pool = PoolOptions::new()
            .with_max_size(4)
            .build(&self.url)
            .await
            .unwrap();
        let sessions = SessionManager::builder(
            PostgresAdapter::new(pool.clone())
                .with_session_attributes::<app::SessionInfo>()
                .with_user_attributes::<app::UserInfo>(),
        )
        .with_clock(self.clock.clone())
        .build()
        .unwrap();
        let config = rocket::Config {
            log_level: rocket::config::LogLevel::Off,
            ..rocket::Config::debug_default()
        };
        Client::tracked(app::build(rocket::custom(config), sessions, pool))
            .await
            .unwrap()
    }
}

async fn post<'c>(client: &'c Client, path: &'c str, body: &str) -> LocalResponse<'c> {
    client
        .post(path)
        .header(ContentType::Form)
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .header(Header::new("Sec-Fetch-Site", "same-origin"))
        .body(body)
        .dispatch()
        .await
}

async fn get<'c>(client: &'c Client, path: &'c str) -> LocalResponse<'c> {
    client
        .get(path)
        .header(Header::new("Host", HOST))
        .dispatch()
        .await
}

fn location(res: &LocalResponse<'_>) -> Option<String> {
    res.headers().get_one("Location").map(str::to_owned)
}

/// The `Set-Cookie` header for the session cookie, split into attributes.
fn session_set_cookie(res: &LocalResponse<'_>) -> Option<Vec<String>> {
    res.headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("auth_session="))
        .map(|c| c.split("; ").map(str::to_owned).collect())
}

fn assert_cookie_attributes(parts: &[String], max_age: &str) {
    for want in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", max_age] {
        assert!(
            parts.iter().any(|p| p == want),
            "{want} missing from {parts:?}"
        );
    }
    assert!(!parts.iter().any(|p| p.starts_with("Domain")), "{parts:?}");
}

/// Changes the password from `current` to `new` in `client`: the answer,
/// which must redirect home with the notice.
async fn change_password<'c>(client: &'c Client, current: &str, new: &str) -> LocalResponse<'c> {
    let res = post(
        client,
        "/password",
        &format!("current={current}&new={new}&confirm={new}"),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/?notice=password-changed"));
    res
}

async fn sign_up(client: &Client, name: &str, password: &str) -> String {
    let res = post(
        client,
        "/signup",
        &format!("username={name}&password={password}&confirm={password}"),
    )
    .await;
    assert_eq!(
        res.status(),
        Status::SeeOther,
        "{:?}",
        res.into_string().await
    );
    let cookie = session_set_cookie(&res).expect("sign-up sets the session cookie");
    cookie[0].trim_start_matches("auth_session=").to_owned()
}

#[tokio::test]
async fn sign_up_visit_logout_and_replay() {
    let app = app().await;
    let browser = app.browser().await;

    let res = get(&browser, "/").await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));

    let res = post(
        &browser,
        "/signup",
        "username=Alice&password=correct-horse&confirm=correct-horse",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/"));
    let parts = session_set_cookie(&res).expect("cookie set on sign-up");
    assert_cookie_attributes(&parts, "Max-Age=2592000");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let token = parts[0].trim_start_matches("auth_session=").to_owned();
    assert_eq!(token.len(), 40);

    let res = get(&browser, "/").await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let body = res.into_string().await.unwrap();
    assert!(body.contains("Hello, alice!"), "{body}");

    let res = post(&browser, "/logout", "").await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let blank = session_set_cookie(&res).expect("logout clears the cookie");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));

    // Replaying the old cookie after logout fails and clears it.
    let other = app.browser().await;
    let res = other
        .get("/")
        .header(Header::new("Cookie", format!("auth_session={token}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert_eq!(
        session_set_cookie(&res).expect("invalid cookie cleared")[0],
        "auth_session="
    );
}

#[tokio::test]
async fn form_errors_are_clear_and_never_500() {
    let app = app().await;
    let browser = app.browser().await;
    sign_up(&browser, "bob", "long-enough-pw").await;
    post(&browser, "/logout", "").await;
    let cases = [
        (
            "/signup",
            "username=bob&password=long-enough-pw&confirm=long-enough-pw",
            Status::Conflict,
            "taken",
        ),
        (
            "/signup",
            "username=b&password=long-enough-pw&confirm=long-enough-pw",
            Status::UnprocessableEntity,
            "3 to 32",
        ),
        (
            "/signup",
            "username=bo%20b&password=long-enough-pw&confirm=long-enough-pw",
            Status::UnprocessableEntity,
            "letters, digits",
        ),
        (
            "/signup",
            "username=carol&password=short&confirm=short",
            Status::UnprocessableEntity,
            "at least 8",
        ),
        (
            "/signup",
            "username=carol&password=long-enough-pw&confirm=other-password",
            Status::UnprocessableEntity,
            "do not match",
        ),
        (
            "/login",
            "username=bob&password=wrong-password",
            Status::Unauthorized,
            "Wrong username or password",
        ),
        (
            "/login",
            "username=nobody&password=whatever-pw",
            Status::Unauthorized,
            "Wrong username or password",
        ),
        (
            "/login",
            "username=&password=",
            Status::Unauthorized,
            "Wrong username or password",
        ),
        (
            "/login",
            "username=a%00b&password=whatever-pw",
            Status::Unauthorized,
            "Wrong username or password",
        ),
        (
            "/signup",
            "username=a%00bc&password=long-enough-pw&confirm=long-enough-pw",
            Status::UnprocessableEntity,
            "letters, digits",
        ),
    ];
    for (path, body, status, text) in cases {
        let res = post(&browser, path, body).await;
        assert_eq!(res.status(), status, "{path} {body}");
        assert!(session_set_cookie(&res).is_none(), "no session on failure");
        let html = res.into_string().await.unwrap();
        assert!(html.contains(text), "{path} {body}: {html}");
        assert!(
            !html.contains("long-enough-pw"),
            "passwords are never echoed"
        );
    }
    let res = post(&browser, "/login", "username=BOB&password=long-enough-pw").await;
    assert_eq!(
        res.status(),
        Status::SeeOther,
        "usernames are case-insensitive"
    );
}

#[tokio::test]
async fn login_rotates_the_token() {
    let app = app().await;
    let browser = app.browser().await;
    let first = sign_up(&browser, "dave", "long-enough-pw").await;
    // Log in again while signed in (or with a planted cookie): a new token,
    // and the old one is dead.
    let res = post(&browser, "/login", "username=dave&password=long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_cookie_attributes(&session_set_cookie(&res).unwrap(), "Max-Age=2592000");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let second = session_set_cookie(&res).unwrap()[0]
        .trim_start_matches("auth_session=")
        .to_owned();
    assert_ne!(first, second);
    let attacker = app.browser().await;
    let res = attacker
        .get("/")
        .header(Header::new("Cookie", format!("auth_session={first}")))
        .dispatch()
        .await;
    assert_eq!(
        location(&res).as_deref(),
        Some("/login"),
        "the pre-login token no longer works"
    );
    assert_eq!(get(&browser, "/").await.status(), Status::Ok);
}

#[tokio::test]
async fn sessions_page_revoke_and_sign_out_elsewhere() {
    let app = app().await;
    let laptop = app.browser().await;
    let phone = app.browser().await;
    let tablet = app.browser().await;
    sign_up(&laptop, "erin", "long-enough-pw").await;
    for b in [&phone, &tablet] {
        assert_eq!(
            post(b, "/login", "username=erin&password=long-enough-pw")
                .await
                .status(),
            Status::SeeOther
        );
    }
    let html = get(&laptop, "/sessions").await.into_string().await.unwrap();
    assert_eq!(html.matches("<tr><td>").count(), 3, "{html}");
    assert_eq!(html.matches("this browser").count(), 1);

    // Revoke the phone's session from the laptop.
    let phone_html = get(&phone, "/sessions").await.into_string().await.unwrap();
    let phone_id = current_session_id(&phone_html);
    let res = post(&laptop, "/sessions/revoke", &format!("id={phone_id}")).await;
    assert_eq!(location(&res).as_deref(), Some("/sessions?notice=revoked"));
    assert_eq!(location(&get(&phone, "/").await).as_deref(), Some("/login"));
    assert_eq!(get(&tablet, "/").await.status(), Status::Ok);

    // A session id that is not the user's own is ignored.
    let mallory = app.browser().await;
    sign_up(&mallory, "mallory", "long-enough-pw").await;
    let tablet_id =
        current_session_id(&get(&tablet, "/sessions").await.into_string().await.unwrap());
    post(&mallory, "/sessions/revoke", &format!("id={tablet_id}")).await;
    assert_eq!(
        get(&tablet, "/").await.status(),
        Status::Ok,
        "mallory cannot revoke erin's session"
    );

    let res = post(&laptop, "/sessions/revoke-others", "").await;
    assert_eq!(
        location(&res).as_deref(),
        Some("/sessions?notice=others-revoked")
    );
    assert_eq!(
        location(&get(&tablet, "/").await).as_deref(),
        Some("/login")
    );
    assert_eq!(get(&laptop, "/").await.status(), Status::Ok);
    let html = get(&laptop, "/sessions").await.into_string().await.unwrap();
    assert_eq!(html.matches("<tr><td>").count(), 1);
}

fn current_session_id(html: &str) -> String {
    let row = html
        .split("<tr><td>")
        .find(|r| r.contains("this browser"))
        .expect("the current session is marked");
    let start =
        row.find("name=\"id\" value=\"").expect("revoke form") + "name=\"id\" value=\"".len();
    row[start..start + 64].to_owned()
}

#[tokio::test]
async fn password_change_revokes_other_sessions() {
    let app = app().await;
    let laptop = app.browser().await;
    let phone = app.browser().await;
    let old_laptop_token = sign_up(&laptop, "frank", "old-password-1").await;
    post(&phone, "/login", "username=frank&password=old-password-1").await;

    let res = post(
        &laptop,
        "/password",
        "current=wrong-password&new=new-password-2&confirm=new-password-2",
    )
    .await;
    assert_eq!(res.status(), Status::Unauthorized);
    let res = change_password(&laptop, "old-password-1", "new-password-2").await;
    let new_token = session_set_cookie(&res).expect("a new session for this browser")[0]
        .trim_start_matches("auth_session=")
        .to_owned();
    assert_ne!(new_token, old_laptop_token);
    assert_eq!(get(&laptop, "/").await.status(), Status::Ok);
    assert_eq!(
        location(&get(&phone, "/").await).as_deref(),
        Some("/login"),
        "other sessions revoked"
    );

    let stranger = app.browser().await;
    let res = post(
        &stranger,
        "/login",
        "username=frank&password=old-password-1",
    )
    .await;
    assert_eq!(res.status(), Status::Unauthorized);
    let res = post(
        &stranger,
        "/login",
        "username=frank&password=new-password-2",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[tokio::test]
async fn extended_sessions_refresh_the_cookie() {
    let app = app().await;
    let browser = app.browser().await;
    let token = sign_up(&browser, "grace", "long-enough-pw").await;
    let res = get(&browser, "/").await;
    assert!(
        session_set_cookie(&res).is_none(),
        "no cookie while the session is young"
    );
    app.clock.advance(Duration::days(16));
    let res = get(&browser, "/").await;
    assert_eq!(res.status(), Status::Ok);
    let parts = session_set_cookie(&res).expect("refreshed cookie");
    assert_eq!(
        parts[0],
        format!("auth_session={token}"),
        "same token, new Max-Age"
    );
    assert_cookie_attributes(&parts, "Max-Age=2592000");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    app.clock.advance(Duration::days(31));
    let res = get(&browser, "/").await;
    assert_eq!(location(&res).as_deref(), Some("/login"), "expired");
}

/// Method x Origin x Sec-Fetch-Site: state-changing requests from
/// elsewhere are refused before any route runs.
#[tokio::test]
async fn csrf_matrix() {
    let app = app().await;
    let browser = app.browser().await;
    sign_up(&browser, "heidi", "long-enough-pw").await;
    let methods = [
        rocket::http::Method::Get,
        rocket::http::Method::Head,
        rocket::http::Method::Post,
        rocket::http::Method::Put,
        rocket::http::Method::Delete,
    ];
    let origins = [
        None,
        Some(ORIGIN),
        Some("https://evil.example"),
        Some("null"),
        Some("http://localhost:9999"),
    ];
    let sites = [
        None,
        Some("same-origin"),
        Some("same-site"),
        Some("cross-site"),
        Some("none"),
    ];
    for method in methods {
        for origin in origins {
            for site in sites {
                let mut req = browser
                    .req(method, "/sessions/revoke-others")
                    .header(Header::new("Host", HOST));
                if let Some(o) = origin {
                    req = req.header(Header::new("Origin", o));
                }
                if let Some(s) = site {
                    req = req.header(Header::new("Sec-Fetch-Site", s));
                }
                let res = req.dispatch().await;
                let unsafe_method = !matches!(
                    method,
                    rocket::http::Method::Get | rocket::http::Method::Head
                );
                let foreign_site = matches!(site, Some("same-site" | "cross-site"));
                let foreign_origin = origin.is_some_and(|o| o != ORIGIN);
                let want_forbidden = unsafe_method && (foreign_site || foreign_origin);
                assert_eq!(
                    res.status() == Status::Forbidden,
                    want_forbidden,
                    "{method} Origin={origin:?} Sec-Fetch-Site={site:?}: {}",
                    res.status()
                );
                if want_forbidden {
                    assert!(session_set_cookie(&res).is_none());
                }
            }
        }
    }
    // A refused logout leaves the browser signed in; an allowed one does not.
    let res = browser
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", "https://evil.example"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(get(&browser, "/").await.status(), Status::Ok);
    let res = browser
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(
        location(&get(&browser, "/").await).as_deref(),
        Some("/login")
    );
}

#[tokio::test]
async fn malformed_cookies_never_give_a_500() {
    let app = app().await;
    let browser = app.browser().await;
    let token = sign_up(&browser, "ivan", "long-enough-pw").await;
    let huge = "a".repeat(8 * 1024);
    let cases = [
        "auth_session=%00".to_owned(),
        format!("auth_session={token}%00"),
        format!("auth_session={token}; auth_session={token}"),
        "auth_session=".to_owned(),
        "auth_session".to_owned(),
        format!("auth_session=\"{token}\""),
        "auth_session=%zz%".to_owned(),
        format!("auth_session={huge}"),
        "auth_session=' OR 1=1 --".to_owned(),
        "=; ;;; auth_session==".to_owned(),
    ];
    let fresh = app.browser().await;
    for cookie in cases {
        let res = fresh
            .get("/")
            .header(Header::new("Cookie", cookie.clone()))
            .dispatch()
            .await;
        assert!(res.status().code < 500, "{cookie:.60}: {}", res.status());
        let quoted_ok = cookie == format!("auth_session=\"{token}\"");
        let want = if quoted_ok {
            Status::Ok
        } else {
            Status::SeeOther
        };
        assert_eq!(res.status(), want, "{cookie:.60}");
    }
}

#[tokio::test]
async fn store_failure_is_a_503() {
    let pool = PoolOptions::new()
        .with_checkout_timeout(std::time::Duration::from_millis(300))
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    )
    .build()
    .unwrap();
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let client = Client::tracked(app::build(rocket::custom(config), sessions, pool))
        .await
        .unwrap();
    let res = client
        .get("/")
        .header(Header::new(
            "Cookie",
            format!("auth_session={}", "a".repeat(40)),
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(
        res.into_string()
            .await
            .unwrap()
            .contains("Temporarily unavailable")
    );
    // Without a cookie there is nothing to look up: straight to the login page.
    assert_eq!(client.get("/").dispatch().await.status(), Status::SeeOther);
}
