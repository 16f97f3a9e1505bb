//! The database frozen (every server process stopped, see `frozen.rs`):
//! every route of the API, sign-up and login included, answers 503 with
//! `Retry-After` within 3.5 s (the example's 1 s checkout, 1.5 s statement
//! timeout and margin), logout clears the cookie, the account queries
//! themselves end with a transient error within the bound, and all works
//! again once the database answers.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::common::accounts::{self, AccountError};
use super::common::database;
use super::end_to_end::{Answer, Server, bearer, cookie};
use super::frozen::{self, FROZEN_BOUND};
use super::*;

/// A request: method, path, headers and JSON body.
type Case<'a> = (Method, &'a str, &'a [(&'a str, String)], Option<Value>);

/// `call`, which must answer within the bound (a hang fails the test after
/// 15 s instead of blocking it).
pub(super) async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 15 s"));
    let took = started.elapsed();
    eprintln!("frozen database: {what} answered in {took:?}");
    assert!(took < FROZEN_BOUND, "{what}: {took:?}");
    answer
}

/// The example's state on `url` with its pool (its checkout and statement
/// timeouts) and `hasher`.
pub(super) async fn example_state(url: &str, hasher: Hasher) -> api::AppState {
    let pool = database::pool(url, database::CHECKOUT_TIMEOUT)
        .await
        .unwrap();
    let sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<api::SessionInfo>()
            .with_user_attributes::<api::UserInfo>(),
    )
    .build()
    .unwrap();
    api::AppState::new(sessions, pool, limits(hasher))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_503_within_the_bound_on_a_frozen_database() {
    let db = frozen::Server::start(APP_MIGRATIONS).await;
    let hasher = Hasher::new(2, 4);
    let state = example_state(&db.url, hasher.clone()).await;
    let pool = state.pool.clone();
    let server = Server::serve(state, Box::new(())).await;
    let (_, token) = server.enter("/api/signup", "wes", &[]).await;
    let (_, other) = server.enter("/api/login", "wes", &[]).await;
    let creds = |name: &str| json!({"username": name, "password": "long-enough-pw"});

    // Every call below meets a connection to the frozen server.
    frozen::fill(&pool, 10).await;
    let frozen = db.freeze();
    let with_cookie = [("cookie", cookie(&token))];
    let with_bearer = [("authorization", bearer(&other))];
    let cases: [Case<'_>; 8] = [
        (Method::POST, "/api/login", &[], Some(creds("wes"))),
        (Method::POST, "/api/signup", &[], Some(creds("xia"))),
        (Method::POST, "/api/login", &with_cookie, Some(creds("wes"))),
        (Method::GET, "/api/me", &with_cookie, None),
        (Method::GET, "/api/me", &with_bearer, None),
        (Method::GET, "/api/sessions", &with_bearer, None),
        (Method::DELETE, "/api/sessions/abc", &with_bearer, None),
        (Method::POST, "/api/logout", &with_cookie, None),
    ];
    for (method, path, headers, body) in cases {
        let what = format!("{method} {path} {:?}", headers.first().map(|h| h.0));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer: Answer = bounded(&what, server.call(method, path, &headers, body)).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            answer.body
        );
        assert_eq!(answer.retry_after(), Some(5), "{what}");
        assert!(answer.body["error"].is_string(), "{what}");
        if path == "/api/logout" {
            let blank = answer.set_cookie().expect("logout clears the cookie");
            assert_eq!(blank[0], "auth_session=");
        } else {
            assert!(answer.set_cookie().is_none(), "{what}");
        }
    }
    // The account queries themselves: a transient error, not a hang.
    let pw = || "long-enough-pw".to_owned();
    assert_transient(bounded("log_in", accounts::log_in(&pool, &hasher, "wes", pw())).await);
    assert_transient(bounded("sign_up", accounts::sign_up(&pool, &hasher, "yan", pw())).await);

    // Thawed, the same server serves again (the pool replaces the
    // connections it gave up on).
    drop(frozen);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let me = server
            .call(
                Method::GET,
                "/api/me",
                &[("authorization", &bearer(&other))],
                None,
            )
            .await;
        if me.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {}: {}",
            me.status,
            me.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = server
        .call(Method::POST, "/api/login", &[], Some(creds("wes")))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    drop(server);
    drop(db);
}

/// A database error that waiting may fix (a 503).
fn assert_transient<T: std::fmt::Debug>(result: Result<T, AccountError>) {
    match result {
        Err(AccountError::Store(e)) => assert!(e.is_transient(), "{e:?}"),
        other => panic!("{other:?}"),
    }
}
