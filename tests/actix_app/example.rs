//! The actix-web example's JSON API over a real socket: the same routes
//! and answers as the axum example's, the login throttle keyed by the
//! client's address (clients bound to other loopback addresses), logout
//! with duplicate cookies, and every route with the database frozen.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::common::{PasswordLimits, database};
use super::frozen::{FROZEN_BOUND, Server as FrozenServer};
use super::server::api;
use crate::support::TestDb;

pub(super) const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/axum_app/migrations");

/// An answer: status, headers (names lower-cased) and body as JSON (`Null`
/// when empty).
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session cookie's `Set-Cookie`, split into its attributes.
    pub(super) fn set_cookie(&self) -> Option<Vec<String>> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, v)| n == "set-cookie" && v.starts_with("auth_session="));
        let (_, value) = found.next()?;
        assert!(found.next().is_none(), "one session Set-Cookie at most");
        Some(value.split("; ").map(str::to_owned).collect())
    }

    /// The session cookie's value, when the answer sets it.
    fn session_cookie(&self) -> Option<String> {
        let set = self.set_cookie()?;
        Some(set[0].trim_start_matches("auth_session=").to_owned())
    }

    pub(super) fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")?.parse().ok()
    }
}

/// The example's state on `url`, as `main.rs` builds it (its pool and
/// deadlines), with `limits`.
pub(super) async fn state(url: &str, limits: PasswordLimits) -> api::AppState {
    let pool = database::pool(url, database::CHECKOUT_TIMEOUT)
        .await
        .unwrap();
    let sessions = lucia_diesel::SessionManager::builder(
        lucia_diesel::PostgresAdapter::new(pool.clone())
            .with_session_attributes::<api::SessionInfo>()
            .with_user_attributes::<api::UserInfo>(),
    )
    .build()
    .unwrap();
    api::AppState::new(sessions, pool, limits)
}

/// The example served on 127.0.0.1, and the database it runs on (kept
/// alive with it).
struct Example<D> {
    db: D,
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl<D> Example<D> {
    async fn start(db: D, url: &str) -> Self {
        let state = state(url, PasswordLimits::default()).await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = api::server(listener, state).unwrap();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self { db, addr, handle }
    }

    /// One request over a fresh connection from `from` (a loopback
    /// address): `body` as JSON when given.
    async fn call_from(
        &self,
        from: IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut stream = socket.connect(self.addr).await.unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            body.split("\r\n").nth(1).unwrap_or("").to_owned()
        } else {
            body.to_owned()
        };
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        self.call_from(LOCAL, method, path, headers, body).await
    }
}

impl<D> Drop for Example<D> {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

pub(super) const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub(super) fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last))
}

fn credentials(username: &str, password: &str) -> Option<Value> {
    Some(json!({ "username": username, "password": password }))
}

/// A schema of its own with lucia-diesel's and the example's tables.
pub(super) async fn database() -> TestDb {
    let db = TestDb::new().await;
    lucia_diesel::migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    lucia_diesel::migrations::run_embedded_migrations(db.connect().await, APP_MIGRATIONS)
        .await
        .unwrap();
    db
}

async fn example() -> Example<TestDb> {
    let db = database().await;
    let url = db.url.clone();
    Example::start(db, &url).await
}

#[actix_web::test]
async fn the_json_api_end_to_end() {
    let app = example().await;
    let index = app.call("GET", "/api", &[], None).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body["routes"].as_array().unwrap().len(), 10);
    let missing = app.call("GET", "/nope", &[], None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"], "no such route; see GET /api");

    let password = "correct horse battery";
    let signup = app
        .call("POST", "/api/signup", &[], credentials("Ann", password))
        .await;
    assert_eq!(signup.status, 201, "{:?}", signup.body);
    assert_eq!(signup.body["user"]["username"], "ann");
    let token = signup.body["token"].as_str().unwrap().to_owned();
    assert_eq!(signup.session_cookie().as_deref(), Some(token.as_str()));
    assert_eq!(signup.header("cache-control"), Some("no-store"));
    let taken = app
        .call("POST", "/api/signup", &[], credentials("ann", password))
        .await;
    assert_eq!(taken.status, 409);
    let bad = app
        .call("POST", "/api/signup", &[], Some(json!({"username": 1})))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["error"].is_string(), "{:?}", bad.body);

    let cookie = format!("auth_session={token}");
    let me = app
        .call("GET", "/api/me", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["username"], "ann");
    let login = app
        .call("POST", "/api/login", &[], credentials("ann", password))
        .await;
    assert_eq!(login.status, 200);
    let other = login.body["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {other}");
    let me = app
        .call("GET", "/api/me", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(me.status, 200);
    assert!(
        me.session_cookie().is_none(),
        "bearer clients get no cookie"
    );
    let other_id = me.body["session"]["id"].as_str().unwrap().to_owned();

    let list = app
        .call("GET", "/api/sessions", &[("cookie", &cookie)], None)
        .await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let revoke = app
        .call(
            "DELETE",
            &format!("/api/sessions/{other_id}"),
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(revoke.status, 204);
    let gone = app
        .call("GET", "/api/me", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(gone.status, 401);
    let unknown = app
        .call(
            "DELETE",
            &format!("/api/sessions/{}", "0".repeat(64)),
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);

    // A cross-origin state change is refused before the handler.
    let foreign = app
        .call(
            "POST",
            "/api/logout",
            &[("cookie", &cookie), ("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(foreign.status, 403);
    assert_eq!(
        app.call("GET", "/api/me", &[("cookie", &cookie)], None)
            .await
            .status,
        200
    );

    let logout = app
        .call("POST", "/api/logout", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(
        logout.session_cookie().as_deref(),
        Some(""),
        "the cookie is cleared"
    );
    assert_eq!(
        app.call("GET", "/api/me", &[("cookie", &cookie)], None)
            .await
            .status,
        401
    );
    assert_eq!(app.call("POST", "/api/logout", &[], None).await.status, 401);
}

/// Logout reads the cookie by the rule the validation uses: the session
/// cookie sent twice names no session, so both stay valid; the cookie is
/// cleared.
#[actix_web::test]
async fn logout_with_two_session_cookies_ends_neither() {
    let app = example().await;
    let password = "correct horse battery";
    let first = app
        .call("POST", "/api/signup", &[], credentials("bea", password))
        .await;
    let second = app
        .call("POST", "/api/login", &[], credentials("bea", password))
        .await;
    let tokens = [
        first.body["token"].as_str().unwrap(),
        second.body["token"].as_str().unwrap(),
    ];
    let both = format!("auth_session={}; auth_session={}", tokens[0], tokens[1]);
    let logout = app
        .call("POST", "/api/logout", &[("cookie", &both)], None)
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(logout.session_cookie().as_deref(), Some(""));
    for token in tokens {
        let me = app
            .call(
                "GET",
                "/api/me",
                &[("authorization", &format!("Bearer {token}"))],
                None,
            )
            .await;
        assert_eq!(me.status, 200, "no session was ended");
    }
    // One cookie: exactly that session ends.
    let one = format!("auth_session={}", tokens[0]);
    assert_eq!(
        app.call("POST", "/api/logout", &[("cookie", &one)], None)
            .await
            .status,
        204
    );
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        app.call(
            "GET",
            "/api/me",
            &[("authorization", &bearer(tokens[0]))],
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(
        app.call(
            "GET",
            "/api/me",
            &[("authorization", &bearer(tokens[1]))],
            None
        )
        .await
        .status,
        200
    );
}

/// Wrong passwords for one account from five other addresses exhaust the
/// account's budget for new addresses (429 with `Retry-After`), yet its
/// owner signs in from the address it signed up from.
#[actix_web::test]
async fn a_flood_of_wrong_passwords_does_not_lock_the_owner_out() {
    let app = example().await;
    let password = "correct horse battery";
    let signup = app
        .call("POST", "/api/signup", &[], credentials("cleo", password))
        .await;
    assert_eq!(signup.status, 201);
    let mut throttled = 0;
    for last in 2..=7 {
        for _ in 0..5 {
            let a = app
                .call_from(
                    loopback(last),
                    "POST",
                    "/api/login",
                    &[],
                    credentials("cleo", "wrong password!"),
                )
                .await;
            match a.status {
                401 => {}
                429 => {
                    throttled += 1;
                    let secs: u64 = a.header("retry-after").unwrap().parse().unwrap();
                    assert!(secs >= 1, "{secs}");
                }
                other => panic!("{other}: {:?}", a.body),
            }
        }
    }
    assert!(throttled > 0, "the flood was never throttled");
    // A new address: held back; the right password does not help.
    let new = app
        .call_from(
            loopback(9),
            "POST",
            "/api/login",
            &[],
            credentials("cleo", password),
        )
        .await;
    assert_eq!(new.status, 429, "{:?}", new.body);
    // The owner's address: signs in.
    let owner = app
        .call("POST", "/api/login", &[], credentials("cleo", password))
        .await;
    assert_eq!(owner.status, 200, "{:?}", owner.body);
}

/// With the database frozen (every server process stopped), every route
/// that needs it answers 503 with `Retry-After` within the bound, sign-in
/// and sign-up included (their account queries run under the pool's
/// deadlines); logout clears the cookie.
#[actix_web::test]
async fn with_the_database_frozen_every_route_answers_503_in_time() {
    let server = FrozenServer::start(APP_MIGRATIONS).await;
    let url = server.url.clone();
    let app = Example::start(server, &url).await;
    let password = "correct horse battery";
    let signup = app
        .call("POST", "/api/signup", &[], credentials("dora", password))
        .await;
    let token = signup.body["token"].as_str().unwrap().to_owned();
    let cookie = format!("auth_session={token}");
    let frozen = app.db.freeze();
    let calls: [(&str, &str, Option<Value>); 5] = [
        ("POST", "/api/login", credentials("dora", password)),
        ("POST", "/api/signup", credentials("eve", password)),
        ("GET", "/api/me", None),
        ("GET", "/api/sessions", None),
        ("POST", "/api/logout", None),
    ];
    for (method, path, body) in calls {
        let start = Instant::now();
        let answer = app.call(method, path, &[("cookie", &cookie)], body).await;
        let took = start.elapsed();
        assert_eq!(answer.status, 503, "{method} {path}: {:?}", answer.body);
        assert!(answer.header("retry-after").is_some(), "{method} {path}");
        assert!(took < FROZEN_BOUND, "{method} {path} took {took:?}");
        if path == "/api/logout" {
            assert_eq!(
                answer.session_cookie().as_deref(),
                Some(""),
                "cleared while down"
            );
        }
    }
    drop(frozen);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let me = app
            .call("GET", "/api/me", &[("cookie", &cookie)], None)
            .await;
        if me.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {me:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
