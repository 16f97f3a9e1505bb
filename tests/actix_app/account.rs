//! The actix-web example's account routes, as the axum example's
//! (`tests/axum_app/account.rs`), through actix's test service with the
//! client's address set: re-authentication (throttled like a login, a new
//! token, for a cookie client only as the cookie), deleting the account
//! (which needs a sign-in within 5 minutes), signing out the other
//! sessions, and all three with the database frozen.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::dev::Service;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection as _};
use serde_json::{Value, json};

use super::common::PasswordLimits;
use super::common::database;
use super::common::hashing::Hasher;
use super::common::throttle::{Budgets, LoginThrottle};
use super::example::{APP_MIGRATIONS, Answer, LOCAL, database, loopback};
use super::frozen::{self, FROZEN_BOUND};
use super::server::account::DELETE_ACCOUNT_WITHIN_SECS;
use super::server::api;
use super::*;

/// The password `enter!` signs up with.
const PASSWORD: &str = "long-enough-pw";

fn password(password: &str) -> Option<Value> {
    Some(json!({ "password": password }))
}

fn cookie(token: &str) -> String {
    format!("auth_session={token}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A request from `from`, with the test `Host`, the headers and `body` as
/// JSON.
fn req(
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> test::TestRequest {
    let req = request(method, path, headers).peer_addr(SocketAddr::new(from, 40_000));
    match body {
        Some(body) => req.set_json(body),
        None => req,
    }
}

/// Sends `req` (a `TestRequest::to_request()`) to the app.
async fn send<S, R, B>(app: &S, req: R) -> Answer
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = v.to_str().unwrap_or_default().to_owned();
            (n.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    let bytes = test::read_body(res).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends a request to the app: `call!(app, from, method, path, headers,
/// body)`, an [`Answer`].
macro_rules! call {
    ($app:expr, $from:expr, $method:expr, $path:expr, $headers:expr, $body:expr) => {
        send(
            $app,
            req($from, $method, $path, $headers, $body).to_request(),
        )
    };
}

/// Signs `name` up or in (`path`) from `LOCAL`: the token.
macro_rules! enter {
    ($app:expr, $path:expr, $name:expr) => {
        token(&call!($app, LOCAL, "POST", $path, &[], credentials($name)).await)
    };
}

/// `POST path` from `LOCAL` with the `headers` and no body: an [`Answer`].
macro_rules! post {
    ($app:expr, $path:expr, $headers:expr) => {
        call!($app, LOCAL, "POST", $path, $headers, None).await
    };
}

/// `POST /api/reauthenticate` from `from` with the `headers` and `body`:
/// an [`Answer`].
macro_rules! reauthenticate {
    ($app:expr, $from:expr, $headers:expr, $body:expr) => {
        call!($app, $from, "POST", "/api/reauthenticate", $headers, $body).await
    };
}

/// The status of `GET /api/me` with the bearer token `token`.
macro_rules! me_with_bearer {
    ($app:expr, $token:expr) => {
        call!(
            $app,
            LOCAL,
            "GET",
            "/api/me",
            &[("authorization", bearer($token).as_str())],
            None
        )
        .await
        .status
    };
}

/// The example's state on `url`, as `main.rs` builds it (its pool and
/// deadlines), with two hashing threads.
async fn state(url: &str) -> api::AppState {
    let limits = PasswordLimits {
        hasher: Hasher::new(2, 4),
        throttle: LoginThrottle::default(),
    };
    super::example::state(url, limits).await
}

async fn sql(url: &str, statement: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// How many rows `username` has left: the user, its password and its
/// sessions.
async fn rows_of(url: &str, username: &str) -> [i64; 3] {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let user = format!("(SELECT id FROM auth_user WHERE username = '{username}')");
    let queries = [
        format!("SELECT count(*) AS n FROM auth_user WHERE username = '{username}'"),
        format!("SELECT count(*) AS n FROM user_password WHERE user_id = {user}"),
        format!("SELECT count(*) AS n FROM user_session WHERE user_id = {user}"),
    ];
    let mut counts = [0; 3];
    for (count, query) in counts.iter_mut().zip(&queries) {
        *count = crate::support::scalar(&mut conn, query).await;
    }
    counts
}

/// Makes every session of `username` signed in `minutes` minutes ago.
async fn signed_in_minutes_ago(url: &str, username: &str, minutes: u32) {
    let statement = format!(
        "UPDATE user_session SET authenticated_at = now() - interval '{minutes} minutes' \
         WHERE user_id = (SELECT id FROM auth_user WHERE username = '{username}')"
    );
    sql(url, &statement).await;
}

fn assert_error(answer: &Answer, status: u16, reason: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["reason"], reason, "{:?}", answer.body);
    assert!(answer.body["error"].is_string(), "{:?}", answer.body);
}

/// The token of a sign-up's or login's answer, which must be a success.
fn token(answer: &Answer) -> String {
    assert!(
        (200..300).contains(&answer.status),
        "{} {:?}",
        answer.status,
        answer.body
    );
    answer.body["token"].as_str().unwrap().to_owned()
}

fn credentials(name: &str) -> Option<Value> {
    Some(json!({ "username": name, "password": PASSWORD }))
}

/// A cookie client: too old a sign-in cannot delete the account; wrong
/// passwords are refused, then throttled (for logins too) from that
/// address; the right one makes the sign-in recent with a new cookie (and
/// no token in the body), which then deletes the account and every row of
/// it.
#[actix_web::test]
async fn a_cookie_client_reauthenticates_then_deletes_its_account() {
    let db = database().await;
    let app = test::init_service(api::app(state(&db.url).await)).await;
    let first = enter!(&app, "/api/signup", "ann");
    let old = cookie(&first);
    let with_old = [("cookie", old.as_str())];

    // Just signed up: a recent sign-in. Ten minutes ago: not any more.
    signed_in_minutes_ago(&db.url, "ann", 10).await;
    let refused = call!(&app, LOCAL, "DELETE", "/api/account", &with_old, None).await;
    assert_error(&refused, 401, "reauthentication_required");
    assert_eq!(refused.body["error"], "sign in again to continue");
    assert_eq!(rows_of(&db.url, "ann").await, [1, 1, 1], "nothing deleted");
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_old, None).await;
    assert_eq!(me.status, 200);

    // Wrong passwords from another address: refused, then throttled.
    let budget = Budgets::default().account_address.failures;
    let wrong = || password("not-the-password");
    for n in 0..budget {
        let answer = reauthenticate!(&app, loopback(3), &with_old, wrong());
        assert_error(&answer, 401, "wrong_password");
        assert_eq!(answer.body["error"], "wrong password", "{n}");
        assert!(answer.set_cookie().is_none(), "{n}");
    }
    for body in [wrong(), password(PASSWORD)] {
        let answer = reauthenticate!(&app, loopback(3), &with_old, body);
        assert_eq!(answer.status, 429, "{:?}", answer.body);
        assert!(answer.retry_after().is_some_and(|s| s >= 1));
    }
    // The same budget as logins: that address cannot log in as ann either.
    let login = call!(
        &app,
        loopback(3),
        "POST",
        "/api/login",
        &[],
        credentials("ann")
    )
    .await;
    assert_eq!(login.status, 429, "{:?}", login.body);
    // An empty password is wrong without any work.
    let empty = reauthenticate!(&app, LOCAL, &with_old, password(""));
    assert_error(&empty, 401, "wrong_password");
    assert_eq!(rows_of(&db.url, "ann").await, [1, 1, 1], "still there");

    // The right password from the address ann signed up from.
    let done = reauthenticate!(&app, LOCAL, &with_old, password(PASSWORD));
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert!(done.body["authenticated_at"].is_string(), "{:?}", done.body);
    assert!(done.body["expires_at"].is_string(), "{:?}", done.body);
    assert!(done.body.get("token").is_none(), "{:?}", done.body);
    let set = done.set_cookie().expect("the new session cookie");
    let new = set[0].trim_start_matches("auth_session=").to_owned();
    assert!(!new.is_empty());
    assert_ne!(new, first, "a new token");
    assert!(
        !done.body.to_string().contains(&new),
        "no token in the body"
    );
    for want in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.iter().any(|p| p == want), "{want} missing: {set:?}");
    }
    assert_eq!(done.header("cache-control"), Some("no-store"));
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_old, None).await;
    assert_error(&me, 401, "unauthorized");
    let fresh = cookie(&new);
    let with_fresh = [("cookie", fresh.as_str())];
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_fresh, None).await;
    assert_eq!(me.status, 200);

    let deleted = call!(&app, LOCAL, "DELETE", "/api/account", &with_fresh, None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let blank = deleted.set_cookie().expect("the cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    assert!(blank.iter().any(|p| p == "Max-Age=0"), "{blank:?}");
    assert_eq!(
        rows_of(&db.url, "ann").await,
        [0, 0, 0],
        "every row is gone"
    );
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_fresh, None).await;
    assert_error(&me, 401, "unauthorized");
    // The name is free again.
    let again = call!(&app, LOCAL, "POST", "/api/signup", &[], credentials("ann")).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
}

/// A bearer client gets the new token in the body and no cookie; the old
/// token stops working, the new one deletes the account (with every
/// session of it, also the others).
#[actix_web::test]
async fn a_bearer_client_gets_the_new_token_in_the_body() {
    let db = database().await;
    let app = test::init_service(api::app(state(&db.url).await)).await;
    let first = enter!(&app, "/api/signup", "bob");
    let other = enter!(&app, "/api/login", "bob");
    let neighbour = enter!(&app, "/api/signup", "cyd");
    signed_in_minutes_ago(&db.url, "bob", 10).await;
    let old = bearer(&first);
    let with_old = [("authorization", old.as_str())];
    let refused = call!(&app, LOCAL, "DELETE", "/api/account", &with_old, None).await;
    assert_error(&refused, 401, "reauthentication_required");
    assert!(refused.set_cookie().is_none());

    let wrong = reauthenticate!(&app, LOCAL, &with_old, password("not-the-password"));
    assert_error(&wrong, 401, "wrong_password");
    let done = reauthenticate!(&app, LOCAL, &with_old, password(PASSWORD));
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert!(done.set_cookie().is_none(), "bearer clients get no cookie");
    assert!(done.body["authenticated_at"].is_string(), "{:?}", done.body);
    let new = done.body["token"]
        .as_str()
        .expect("the new token")
        .to_owned();
    assert_ne!(new, first);
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_old, None).await;
    assert_eq!(me.status, 401);
    let fresh = bearer(&new);
    let with_fresh = [("authorization", fresh.as_str())];
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_fresh, None).await;
    assert_eq!(me.status, 200);

    let deleted = call!(&app, LOCAL, "DELETE", "/api/account", &with_fresh, None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert!(deleted.set_cookie().is_none());
    assert_eq!(rows_of(&db.url, "bob").await, [0, 0, 0]);
    for token in [&new, &other] {
        assert_eq!(me_with_bearer!(&app, token), 401);
    }
    // Another account is untouched.
    assert_eq!(me_with_bearer!(&app, &neighbour), 200);

    // Without a session: 401, as every signed-in route.
    let anonymous = reauthenticate!(&app, LOCAL, &[], password(PASSWORD));
    assert_error(&anonymous, 401, "unauthorized");
}

/// Deleting the account takes a sign-in within 5 minutes: one 4 minutes
/// old will do.
#[actix_web::test]
async fn a_sign_in_four_minutes_ago_is_recent_enough() {
    assert_eq!(DELETE_ACCOUNT_WITHIN_SECS, 5 * 60);
    let db = database().await;
    let app = test::init_service(api::app(state(&db.url).await)).await;
    let gus = enter!(&app, "/api/signup", "gus");
    signed_in_minutes_ago(&db.url, "gus", 4).await;
    let header = bearer(&gus);
    let deleted = call!(
        &app,
        LOCAL,
        "DELETE",
        "/api/account",
        &[("authorization", &header)],
        None
    )
    .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(rows_of(&db.url, "gus").await, [0, 0, 0]);
}

/// With three sessions, signing out the others leaves exactly the one
/// that asked; another user's sessions stay.
#[actix_web::test]
async fn revoking_the_other_sessions_keeps_only_the_current_one() {
    let db = database().await;
    let app = test::init_service(api::app(state(&db.url).await)).await;
    let laptop = enter!(&app, "/api/signup", "dee");
    let phone = enter!(&app, "/api/login", "dee");
    let tablet = enter!(&app, "/api/login", "dee");
    let neighbour = enter!(&app, "/api/signup", "eli");
    assert_eq!(rows_of(&db.url, "dee").await, [1, 1, 3]);

    let phone_cookie = cookie(&phone);
    let with_phone = [("cookie", phone_cookie.as_str())];
    let revoked = post!(&app, "/api/sessions/revoke-others", &with_phone);
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(revoked.body, json!({ "revoked": 2 }));
    assert!(revoked.set_cookie().is_none(), "the cookie stays as it is");
    assert_eq!(rows_of(&db.url, "dee").await, [1, 1, 1]);
    let me = call!(&app, LOCAL, "GET", "/api/me", &with_phone, None).await;
    assert_eq!(me.status, 200);
    for token in [&laptop, &tablet] {
        assert_eq!(me_with_bearer!(&app, token), 401);
    }
    let list = call!(&app, LOCAL, "GET", "/api/sessions", &with_phone, None).await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{:?}", list.body);
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(me_with_bearer!(&app, &neighbour), 200);

    // Nothing else left: none revoked.
    let header = bearer(&phone);
    let again = post!(
        &app,
        "/api/sessions/revoke-others",
        &[("authorization", &header)]
    );
    assert_eq!(again.body, json!({ "revoked": 0 }));
    let anonymous = post!(&app, "/api/sessions/revoke-others", &[]);
    assert_error(&anonymous, 401, "unauthorized");
}

/// With the database frozen, the account routes answer 503 with
/// `Retry-After` within the bound the other routes keep (`example.rs`),
/// and change nothing: once thawed, the session is still there.
#[actix_web::test]
async fn the_account_routes_answer_503_in_time_on_a_frozen_database() {
    let db = frozen::Server::start(APP_MIGRATIONS).await;
    let state = state(&db.url).await;
    let pool = state.pool.clone();
    let app = test::init_service(api::app(state)).await;
    let fay = enter!(&app, "/api/signup", "fay");

    frozen::fill(&pool, 10).await;
    let frozen = db.freeze();
    let with_cookie = cookie(&fay);
    let with_bearer = bearer(&fay);
    let cases = [
        (
            "POST",
            "/api/reauthenticate",
            ("cookie", &with_cookie),
            password(PASSWORD),
        ),
        (
            "POST",
            "/api/reauthenticate",
            ("authorization", &with_bearer),
            password(PASSWORD),
        ),
        (
            "POST",
            "/api/sessions/revoke-others",
            ("cookie", &with_cookie),
            None,
        ),
        ("DELETE", "/api/account", ("cookie", &with_cookie), None),
        (
            "DELETE",
            "/api/account",
            ("authorization", &with_bearer),
            None,
        ),
    ];
    for (method, path, (name, value), body) in cases {
        let what = format!("{method} {path} ({name})");
        let started = Instant::now();
        let headers = [(name, value.as_str())];
        let answer = call!(&app, LOCAL, method, path, &headers, body).await;
        let took = started.elapsed();
        assert!(took < FROZEN_BOUND, "{what}: {took:?}");
        assert_eq!(answer.status, 503, "{what}: {:?}", answer.body);
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let header = [("authorization", with_bearer.as_str())];
    loop {
        let me = call!(&app, LOCAL, "GET", "/api/me", &header, None).await;
        if me.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {me:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(app);
    drop(db);
}
