//! The Rocket side of what both integrations share: the CSRF table of
//! `tests/support/csrf.rs`, and the blank cookie on a catcher's 401.

use rocket::http::{Header, Method, Status};

use super::{app, get, location, session_set_cookie, sign_up};
use crate::support::csrf::{self, HOST, Probe};

/// The example app accepts cookies only: a bearer header is no credential
/// there, so bearer probes are judged like cookie probes.
#[tokio::test]
async fn csrf_table() {
    let app = app().await;
    let browser = app.browser().await;
    let token = sign_up(&browser, "judy", "long-enough-pw").await;
    let send = async |probe: Probe| {
        let method: Method = probe.method.parse().unwrap();
        let mut req = browser
            .req(method, "/sessions/revoke-others")
            .header(Header::new("Host", HOST));
        if let Some(origin) = probe.origin {
            req = req.header(Header::new("Origin", origin));
        }
        if let Some(site) = probe.sec_fetch_site {
            req = req.header(Header::new("Sec-Fetch-Site", site));
        }
        if probe.bearer {
            req = req.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        let res = req.dispatch().await;
        if res.status() == Status::Forbidden {
            assert!(session_set_cookie(&res).is_none());
        }
        res.status().code
    };
    csrf::check(send, false).await;
    assert_eq!(get(&browser, "/").await.status(), Status::Ok);
}

/// A route whose guard fails with 401 ends in the 401 catcher, which
/// used to drop the blank cookie for the invalid session cookie.
#[tokio::test]
async fn blank_cookie_when_a_catcher_answers_401() {
    let app = app().await;
    let browser = app.browser().await;
    let token = sign_up(&browser, "kim", "long-enough-pw").await;
    super::post(&browser, "/logout", "").await;
    let stranger = app.browser().await;
    // `/sessions` has no route for signed-out users: the 401 catcher answers.
    let res = stranger
        .get("/sessions")
        .header(Header::new("Cookie", format!("auth_session={token}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let blank = session_set_cookie(&res).expect("the invalid cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    super::assert_cookie_attributes(&blank, "Max-Age=0");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    // Without a cookie there is nothing to clear.
    let res = stranger.get("/sessions").dispatch().await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert!(session_set_cookie(&res).is_none());
}

/// The guards without the fairing (so without its cross-origin check)
/// refuse with a 500 instead of answering unchecked.
#[tokio::test]
async fn guards_without_the_fairing_refuse() {
    use lucia_diesel::rocket::{CurrentSession, MaybeSession};
    use lucia_diesel::{PgPool, PoolOptions, PostgresAdapter, SessionManager};
    use rocket::local::asynchronous::Client;

    type Adapter = PostgresAdapter<PgPool>;
    #[rocket::post("/me")]
    fn me(_session: CurrentSession<Adapter>) -> &'static str {
        "signed in"
    }
    #[rocket::get("/maybe")]
    fn maybe(_session: MaybeSession<Adapter>) -> &'static str {
        "answered"
    }

    let app = app().await;
    let pool = PoolOptions::new().build(&app.url).await.unwrap();
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let rocket = rocket::custom(config)
        .manage(SessionManager::new(PostgresAdapter::new(pool)))
        .mount("/", rocket::routes![me, maybe]);
    let client = Client::untracked(rocket).await.unwrap();
    let res = client
        .post("/me")
        .header(Header::new("Origin", "https://evil.example"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::InternalServerError);
    let res = client.get("/maybe").dispatch().await;
    assert_eq!(res.status(), Status::InternalServerError);
}
