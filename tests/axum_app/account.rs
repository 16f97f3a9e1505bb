//! The example's account routes over a real socket: re-authentication
//! (`POST /api/reauthenticate`: throttled like a login, a new token, for a
//! cookie client only as the cookie), deleting the account (`DELETE
//! /api/account`, which needs a sign-in within 5 minutes), signing out the
//! other sessions (`POST /api/sessions/revoke-others`), and all three with
//! the database frozen.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection as _};
use serde_json::{Value, json};

use super::common::database;
use super::common::throttle::Budgets;
use super::end_to_end::{Answer, Server, bearer, cookie, loopback};
use super::frozen;
use super::outage::{bounded, example_state};
use super::server::account::DELETE_ACCOUNT_WITHIN_SECS;
use super::*;

/// The password `Server::enter` signs up with.
const PASSWORD: &str = "long-enough-pw";

fn password(password: &str) -> Option<Value> {
    Some(json!({ "password": password }))
}

/// The example served on a schema of its own, and that schema's URL (for
/// the checks in SQL).
async fn server() -> (Server, String) {
    let app = App::new().await;
    let url = app.db.url.clone();
    (Server::with_app(app).await, url)
}

async fn sql(url: &str, statement: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// `SELECT count(*) AS n ...`.
async fn count(url: &str, query: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    crate::support::scalar(&mut conn, query).await
}

/// Makes every session of `username` signed in 10 minutes ago: too old to
/// delete the account.
async fn sign_in_long_ago(url: &str, username: &str) {
    sql(
        url,
        &format!(
            "UPDATE user_session SET authenticated_at = now() - interval '10 minutes' \
             WHERE user_id = (SELECT id FROM auth_user WHERE username = '{username}')"
        ),
    )
    .await;
}

/// How many rows `username` has left: the user, its password and its
/// sessions.
async fn rows_of(url: &str, username: &str) -> [i64; 3] {
    let user = format!("(SELECT id FROM auth_user WHERE username = '{username}')");
    [
        count(
            url,
            &format!("SELECT count(*) AS n FROM auth_user WHERE username = '{username}'"),
        )
        .await,
        count(
            url,
            &format!("SELECT count(*) AS n FROM user_password WHERE user_id = {user}"),
        )
        .await,
        count(
            url,
            &format!("SELECT count(*) AS n FROM user_session WHERE user_id = {user}"),
        )
        .await,
    ]
}

fn assert_error(answer: &Answer, status: StatusCode, reason: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["reason"], reason, "{}", answer.body);
    assert!(answer.body["error"].is_string(), "{}", answer.body);
}

async fn me(server: &Server, header: (&str, &str)) -> StatusCode {
    server
        .call(Method::GET, "/api/me", &[header], None)
        .await
        .status
}

/// `me` with the bearer token `token` answers `status`.
async fn assert_me_with_bearer(server: &Server, token: &str, status: StatusCode) {
    assert_eq!(me(server, ("authorization", &bearer(token))).await, status);
}

/// `POST /api/reauthenticate` with the `headers` and `body`.
async fn reauthenticate(server: &Server, headers: &[(&str, &str)], body: Option<Value>) -> Answer {
    server
        .call(Method::POST, "/api/reauthenticate", headers, body)
        .await
}

/// `reauthenticate` from `from`.
async fn reauthenticate_from(
    server: &Server,
    from: IpAddr,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    server
        .call_from(from, Method::POST, "/api/reauthenticate", headers, body)
        .await
}

/// `method path` with the one `header` and no body.
async fn call_with(server: &Server, method: Method, path: &str, header: (&str, &str)) -> Answer {
    server.call(method, path, &[header], None).await
}

/// Deleting the account takes a sign-in within 5 minutes: one 4 minutes
/// old will do.
#[tokio::test]
async fn a_sign_in_four_minutes_ago_is_recent_enough() {
    assert_eq!(DELETE_ACCOUNT_WITHIN_SECS, 5 * 60);
    let (server, url) = server().await;
    let (_, token) = server.enter("/api/signup", "gus", &[]).await;
    sql(
        &url,
        "UPDATE user_session SET authenticated_at = now() - interval '4 minutes'",
    )
    .await;
    let deleted = call_with(
        &server,
        Method::DELETE,
        "/api/account",
        ("authorization", &bearer(&token)),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(rows_of(&url, "gus").await, [0, 0, 0]);
}

/// A cookie client: too old a sign-in cannot delete the account; wrong
/// passwords are refused, then throttled (for logins too) from that
/// address; the right one makes the sign-in recent with a new cookie (and
/// no token in the body), which then deletes the account and every row of
/// it.
#[tokio::test]
async fn a_cookie_client_reauthenticates_then_deletes_its_account() {
    let (server, url) = server().await;
    let (_, token) = server.enter("/api/signup", "ann", &[]).await;
    let old = cookie(&token);
    let with_old = [("cookie", old.as_str())];

    // Just signed up: a recent sign-in. Ten minutes ago: not any more.
    sign_in_long_ago(&url, "ann").await;
    let refused = server
        .call(Method::DELETE, "/api/account", &with_old, None)
        .await;
    assert_error(
        &refused,
        StatusCode::UNAUTHORIZED,
        "reauthentication_required",
    );
    assert_eq!(refused.body["error"], "sign in again to continue");
    assert_eq!(rows_of(&url, "ann").await, [1, 1, 1], "nothing deleted");
    assert_eq!(me(&server, ("cookie", &old)).await, StatusCode::OK);

    // Wrong passwords from another address: refused, then throttled.
    let budget = Budgets::default().account_address.failures;
    for n in 0..budget {
        let wrong = reauthenticate_from(
            &server,
            loopback(3),
            &with_old,
            password("not-the-password"),
        )
        .await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "wrong_password");
        assert_eq!(wrong.body["error"], "wrong password", "{n}");
        assert!(wrong.set_cookie().is_none(), "{n}");
    }
    for body in [password("not-the-password"), password(PASSWORD)] {
        let throttled = reauthenticate_from(&server, loopback(3), &with_old, body).await;
        assert_eq!(
            throttled.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            throttled.body
        );
        assert!(throttled.retry_after().is_some_and(|s| s >= 1));
    }
    // The same budget as logins: that address cannot log in as ann either.
    let creds = json!({"username": "ann", "password": PASSWORD});
    let login = server
        .call_from(loopback(3), Method::POST, "/api/login", &[], Some(creds))
        .await;
    assert_eq!(
        login.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        login.body
    );
    // An empty password is wrong without any work.
    let empty = reauthenticate(&server, &with_old, password("")).await;
    assert_error(&empty, StatusCode::UNAUTHORIZED, "wrong_password");
    assert_eq!(rows_of(&url, "ann").await, [1, 1, 1], "still not deleted");

    // The right password from the address ann signed up from.
    let done = reauthenticate(&server, &with_old, password(PASSWORD)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body["authenticated_at"].is_string(), "{}", done.body);
    assert!(done.body["expires_at"].is_string(), "{}", done.body);
    assert!(done.body.get("token").is_none(), "{}", done.body);
    let set = done.set_cookie().expect("the new session cookie");
    let new = cookie_token(&set);
    assert!(!new.is_empty());
    assert_ne!(new, token, "a new token");
    assert!(
        !done.body.to_string().contains(&new),
        "no token in the body"
    );
    assert_cookie_attributes(&set, "Max-Age=2592000");
    assert_eq!(done.headers["cache-control"], "no-store");
    assert_eq!(
        me(&server, ("cookie", &old)).await,
        StatusCode::UNAUTHORIZED
    );
    let fresh = cookie(&new);
    assert_eq!(me(&server, ("cookie", &fresh)).await, StatusCode::OK);
    assert_eq!(rows_of(&url, "ann").await, [1, 1, 1], "one session still");

    let deleted = call_with(&server, Method::DELETE, "/api/account", ("cookie", &fresh)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let blank = deleted.set_cookie().expect("the cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert_eq!(rows_of(&url, "ann").await, [0, 0, 0], "every row is gone");
    let gone = call_with(&server, Method::GET, "/api/me", ("cookie", &fresh)).await;
    assert_error(&gone, StatusCode::UNAUTHORIZED, "unauthorized");
    // The name is free again.
    server.enter("/api/signup", "ann", &[]).await;
}

/// A bearer client gets the new token in the body and no cookie; the old
/// token stops working, the new one deletes the account (with every
/// session of it, also the others).
#[tokio::test]
async fn a_bearer_client_gets_the_new_token_in_the_body() {
    let (server, url) = server().await;
    let (_, first) = server.enter("/api/signup", "bob", &[]).await;
    let (_, other) = server.enter("/api/login", "bob", &[]).await;
    let (_, neighbour) = server.enter("/api/signup", "cyd", &[]).await;
    sign_in_long_ago(&url, "bob").await;
    let old = bearer(&first);
    let refused = call_with(
        &server,
        Method::DELETE,
        "/api/account",
        ("authorization", &old),
    )
    .await;
    assert_error(
        &refused,
        StatusCode::UNAUTHORIZED,
        "reauthentication_required",
    );
    assert!(refused.set_cookie().is_none());

    let wrong = reauthenticate(
        &server,
        &[("authorization", &old)],
        password("not-the-password"),
    )
    .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "wrong_password");
    let done = reauthenticate(&server, &[("authorization", &old)], password(PASSWORD)).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.set_cookie().is_none(), "bearer clients get no cookie");
    assert!(done.body["authenticated_at"].is_string(), "{}", done.body);
    let new = done.body["token"]
        .as_str()
        .expect("the new token")
        .to_owned();
    assert_ne!(new, first);
    assert_eq!(
        me(&server, ("authorization", &old)).await,
        StatusCode::UNAUTHORIZED
    );
    let fresh = bearer(&new);
    assert_eq!(me(&server, ("authorization", &fresh)).await, StatusCode::OK);

    let deleted = call_with(
        &server,
        Method::DELETE,
        "/api/account",
        ("authorization", &fresh),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(deleted.set_cookie().is_none());
    assert_eq!(rows_of(&url, "bob").await, [0, 0, 0]);
    for token in [&new, &other] {
        assert_me_with_bearer(&server, token, StatusCode::UNAUTHORIZED).await;
    }
    // Another account is untouched.
    assert_me_with_bearer(&server, &neighbour, StatusCode::OK).await;

    // Without a session: 401, as every signed-in route.
    let anonymous = reauthenticate(&server, &[], password(PASSWORD)).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// With three sessions, signing out the others leaves exactly the one
/// that asked; another user's sessions stay.
#[tokio::test]
async fn revoking_the_other_sessions_keeps_only_the_current_one() {
    let (server, url) = server().await;
    let (_, laptop) = server.enter("/api/signup", "dee", &[]).await;
    let (_, phone) = server.enter("/api/login", "dee", &[]).await;
    let (_, tablet) = server.enter("/api/login", "dee", &[]).await;
    let (_, neighbour) = server.enter("/api/signup", "eli", &[]).await;
    assert_eq!(rows_of(&url, "dee").await, [1, 1, 3]);

    let revoked = call_with(
        &server,
        Method::POST,
        "/api/sessions/revoke-others",
        ("cookie", &cookie(&phone)),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body, json!({ "revoked": 2 }));
    assert!(revoked.set_cookie().is_none(), "the cookie stays as it is");
    assert_eq!(rows_of(&url, "dee").await, [1, 1, 1]);
    assert_eq!(
        me(&server, ("cookie", &cookie(&phone))).await,
        StatusCode::OK
    );
    for token in [&laptop, &tablet] {
        assert_me_with_bearer(&server, token, StatusCode::UNAUTHORIZED).await;
    }
    let list = call_with(
        &server,
        Method::GET,
        "/api/sessions",
        ("authorization", &bearer(&phone)),
    )
    .await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{}", list.body);
    assert_eq!(sessions[0]["current"], true);
    assert_me_with_bearer(&server, &neighbour, StatusCode::OK).await;

    // Nothing else left: none revoked.
    let again = call_with(
        &server,
        Method::POST,
        "/api/sessions/revoke-others",
        ("authorization", &bearer(&phone)),
    )
    .await;
    assert_eq!(again.body, json!({ "revoked": 0 }));
    let anonymous = server
        .call(Method::POST, "/api/sessions/revoke-others", &[], None)
        .await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// With the database frozen, the account routes answer 503 with
/// `Retry-After` within the bound the other routes keep (`outage.rs`),
/// and change nothing: once thawed, the session is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_routes_answer_503_in_time_on_a_frozen_database() {
    let db = frozen::Server::start(APP_MIGRATIONS).await;
    let state = example_state(&db.url, Hasher::new(2, 4)).await;
    let pool = state.pool.clone();
    let server = Server::serve(state, Box::new(())).await;
    let (_, token) = server.enter("/api/signup", "fay", &[]).await;

    frozen::fill(&pool, 10).await;
    let frozen = db.freeze();
    let with_cookie = cookie(&token);
    let with_bearer = bearer(&token);
    let cases = [
        (
            Method::POST,
            "/api/reauthenticate",
            ("cookie", &with_cookie),
            password(PASSWORD),
        ),
        (
            Method::POST,
            "/api/reauthenticate",
            ("authorization", &with_bearer),
            password(PASSWORD),
        ),
        (
            Method::POST,
            "/api/sessions/revoke-others",
            ("cookie", &with_cookie),
            None,
        ),
        (
            Method::DELETE,
            "/api/account",
            ("cookie", &with_cookie),
            None,
        ),
        (
            Method::DELETE,
            "/api/account",
            ("authorization", &with_bearer),
            None,
        ),
    ];
    for (method, path, (name, value), body) in cases {
        let what = format!("{method} {path} ({name})");
        let headers = [(name, value.as_str())];
        let answer = bounded(&what, server.call(method, path, &headers, body)).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            answer.body
        );
        assert_eq!(
            answer.retry_after(),
            Some(database::UNAVAILABLE_RETRY_AFTER_SECS),
            "{what}"
        );
        assert!(answer.body["error"].is_string(), "{what}");
        assert!(answer.set_cookie().is_none(), "{what}");
    }

    // Thawed: the session (and the account) are still there.
    drop(frozen);
    let deadline = Instant::now() + Duration::from_secs(15);
    while me(&server, ("authorization", &with_bearer)).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    drop(db);
}
