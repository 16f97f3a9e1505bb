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

/// A route with a guard but no fairing (so no cross-origin check), or no
/// manager: the launch stops (Rocket's sentinels), naming the guard. Where
/// Rocket cannot see the guard (reached through another guard), it
/// refuses with a 500 instead of answering unchecked.
#[tokio::test]
async fn guards_without_the_fairing_stop_the_launch() {
    use lucia_diesel::rocket::{CurrentSession, MaybeSession, SessionFairing};
    use lucia_diesel::{PgPool, PoolOptions, PostgresAdapter, SessionManager};
    use rocket::local::asynchronous::Client;
    use rocket::request::{FromRequest, Outcome, Request};

    type Adapter = PostgresAdapter<PgPool>;
    #[rocket::post("/me")]
    fn me(_session: CurrentSession<Adapter>) -> &'static str {
        "signed in"
    }
    #[rocket::get("/maybe")]
    fn maybe(_session: MaybeSession<Adapter>) -> &'static str {
        "answered"
    }
    /// A guard of the application's that asks for the session itself.
    struct Hidden;
    #[rocket::async_trait]
    impl<'r> FromRequest<'r> for Hidden {
        type Error = lucia_diesel::Error;
        async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
            req.guard::<MaybeSession<Adapter>>().await.map(|_| Hidden)
        }
    }
    #[rocket::get("/hidden")]
    fn hidden(_guard: Hidden) -> &'static str {
        "answered"
    }

    let app = app().await;
    let manager = async || {
        let pool = PoolOptions::new().build_lazy(&app.url).unwrap();
        SessionManager::new(PostgresAdapter::new(pool))
    };
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let sentinel_aborts = |err: rocket::Error| {
        matches!(err.kind(), rocket::error::ErrorKind::SentinelAborts(sentries)
            if sentries.iter().any(|s| s.type_name.contains("lucia_diesel::http::session::")))
    };
    for routes in [rocket::routes![me], rocket::routes![maybe]] {
        // No fairing.
        let rocket = rocket::custom(config.clone())
            .manage(manager().await)
            .mount("/", routes.clone());
        let Err(err) = Client::untracked(rocket).await else {
            panic!("the launch goes on")
        };
        assert!(sentinel_aborts(err));
        // No manager.
        let rocket = rocket::custom(config.clone())
            .attach(SessionFairing::new())
            .mount("/", routes.clone());
        let Err(err) = Client::untracked(rocket).await else {
            panic!("the launch goes on")
        };
        assert!(sentinel_aborts(err));
        // Both: it launches.
        let rocket = rocket::custom(config.clone())
            .manage(manager().await)
            .attach(SessionFairing::new())
            .mount("/", routes);
        assert!(Client::untracked(rocket).await.is_ok());
    }

    let rocket = rocket::custom(config)
        .manage(manager().await)
        .mount("/", rocket::routes![hidden]);
    let client = Client::untracked(rocket).await.unwrap();
    let res = client.get("/hidden").dispatch().await;
    assert_eq!(res.status(), Status::InternalServerError);
}
