//! The example's JSON API over a real socket: `axum::serve` on
//! 127.0.0.1, driven by hyper's client like any HTTP client would.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::*;

/// The example served as `main.rs` serves it (`api::serve`, which tells
/// handlers the client's address), and an HTTP client.
pub(super) struct Server {
    _keep: Box<dyn std::any::Any + Send>,
    pub(super) addr: SocketAddr,
    pub(super) base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An answer: status, headers, body as JSON (`Null` when empty).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn set_cookie(&self) -> Option<Vec<String>> {
        let mut res = Response::new(());
        *res.headers_mut() = self.headers.clone();
        session_set_cookie(&res)
    }

    /// `Retry-After`, in seconds.
    pub(super) fn retry_after(&self) -> Option<u64> {
        let value = self.headers.get("retry-after")?;
        value.to_str().ok()?.parse().ok()
    }
}

/// The loopback address `127.0.0.n`: on Linux every one of them reaches a
/// server listening on 127.0.0.1, so a test can play many clients.
pub(super) fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

impl Server {
    pub(super) async fn start() -> Self {
        Self::with_app(App::new().await).await
    }

    pub(super) async fn with_app(app: App) -> Self {
        let state = app.state.clone();
        Self::serve(state, Box::new(app)).await
    }

    /// Serves `state` on a free port, keeping `keep` (its database) alive.
    pub(super) async fn serve(state: api::AppState, keep: Box<dyn std::any::Any + Send>) -> Self {
        let listener = api::listen(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(api::serve(listener, state));
        Self {
            _keep: keep,
            addr,
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        self.call_with(&self.client, method, path, headers, body)
            .await
    }

    /// A call from the loopback address `from` (see [`loopback`]).
    pub(super) async fn call_from(
        &self,
        from: IpAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let client = client_from(from);
        self.call_with(&client, method, path, headers, body).await
    }

    async fn call_with(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let bytes = match body {
            Some(body) => {
                req = req.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let res = client
            .request(req.body(Full::new(bytes)).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Signs up or logs in; the answer and the token it gave.
    pub(super) async fn enter(
        &self,
        path: &str,
        name: &str,
        headers: &[(&str, &str)],
    ) -> (Answer, String) {
        self.enter_as(None, path, name, headers).await
    }

    /// [`enter`](Self::enter) from the loopback address `from`.
    pub(super) async fn enter_from(&self, from: IpAddr, path: &str, name: &str) -> String {
        self.enter_as(Some(from), path, name, &[]).await.1
    }

    async fn enter_as(
        &self,
        from: Option<IpAddr>,
        path: &str,
        name: &str,
        headers: &[(&str, &str)],
    ) -> (Answer, String) {
        let creds = json!({"username": name, "password": "long-enough-pw"});
        let answer = match from {
            Some(from) => {
                self.call_from(from, Method::POST, path, headers, Some(creds))
                    .await
            }
            None => self.call(Method::POST, path, headers, Some(creds)).await,
        };
        assert!(answer.status.is_success(), "{path} {name}: {}", answer.body);
        let token = answer.body["token"].as_str().unwrap().to_owned();
        let cookie = answer.set_cookie().expect("the session cookie is set");
        assert_eq!(cookie_token(&cookie), token);
        assert_cookie_attributes(&cookie, "Max-Age=2592000");
        assert_eq!(answer.headers["cache-control"], "no-store");
        (answer, token)
    }
}

/// An HTTP client whose connections come from `from`.
pub(super) fn client_from(from: IpAddr) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(from));
    Client::builder(TokioExecutor::new()).build(connector)
}

pub(super) fn cookie(token: &str) -> String {
    format!("auth_session={token}")
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_whole_flow() {
    let server = Server::start().await;
    let (signup, first) = server.enter("/api/signup", "Alice", &[]).await;
    assert_eq!(signup.status, StatusCode::CREATED);
    assert_eq!(signup.body["user"]["username"], "alice");
    assert!(signup.body["session"]["expires_at"].is_string());
    let taken = json!({"username": "alice", "password": "long-enough-pw"});
    let again = server
        .call(Method::POST, "/api/signup", &[], Some(taken))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Login with the pre-login cookie: a new token, and the old one is dead.
    let (login, laptop) = server
        .enter("/api/login", "alice", &[("cookie", &cookie(&first))])
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_ne!(laptop, first);
    let old = server
        .call(Method::GET, "/api/me", &[("cookie", &cookie(&first))], None)
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.set_cookie().expect("cleared")[0], "auth_session=");

    // Me, by cookie and by bearer token.
    for header in [
        ("cookie", cookie(&laptop)),
        ("authorization", bearer(&laptop)),
    ] {
        let me = server
            .call(Method::GET, "/api/me", &[(header.0, &header.1)], None)
            .await;
        assert_eq!(me.status, StatusCode::OK, "{}", header.0);
        assert_eq!(me.body["user"]["username"], "alice");
        assert_eq!(me.body["session"]["id"], login.body["session"]["id"]);
        assert!(me.set_cookie().is_none());
    }

    // A second device; the list shows both, the current one marked.
    let (_, phone) = server.enter("/api/login", "alice", &[]).await;
    let list = server
        .call(
            Method::GET,
            "/api/sessions",
            &[("authorization", &bearer(&laptop))],
            None,
        )
        .await;
    let sessions = list.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{}", list.body);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], login.body["session"]["id"]);
    assert!(
        sessions
            .iter()
            .all(|s| s["id"].as_str().unwrap().len() == 64)
    );
    assert!(
        !list.body.to_string().contains(&laptop),
        "no token in the list"
    );
    let phone_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revoke the phone's session from the laptop.
    let path = format!("/api/sessions/{phone_id}");
    let revoked = server
        .call(Method::DELETE, &path, &[("cookie", &cookie(&laptop))], None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let me = server
        .call(
            Method::GET,
            "/api/me",
            &[("authorization", &bearer(&phone))],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);

    // Someone else's session, or no session at all: 404, nothing revoked.
    let (_, bob) = server.enter("/api/signup", "bob", &[]).await;
    let alice_id = login.body["session"]["id"].as_str().unwrap();
    for id in [alice_id, phone_id.as_str(), "not-a-session"] {
        let path = format!("/api/sessions/{id}");
        let res = server
            .call(
                Method::DELETE,
                &path,
                &[("authorization", &bearer(&bob))],
                None,
            )
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(res.body["error"], "no such session");
    }
    let me = server
        .call(
            Method::GET,
            "/api/me",
            &[("cookie", &cookie(&laptop))],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "alice's session survives bob");

    // A cross-site logout is refused before the handler runs.
    let cross = [
        ("cookie", cookie(&laptop)),
        ("origin", "https://evil.example".to_owned()),
    ];
    let cross: Vec<(&str, &str)> = cross.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let res = server.call(Method::POST, "/api/logout", &cross, None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Logout (as a browser would send it), then replay.
    let origin = server.base.clone();
    let logout = server
        .call(
            Method::POST,
            "/api/logout",
            &[
                ("cookie", &cookie(&laptop)),
                ("origin", &origin),
                ("sec-fetch-site", "same-origin"),
            ],
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let blank = logout.set_cookie().expect("blank cookie");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert_eq!(logout.headers["cache-control"], "no-store");
    for header in [
        ("cookie", cookie(&laptop)),
        ("authorization", bearer(&laptop)),
    ] {
        let replay = server
            .call(Method::GET, "/api/me", &[(header.0, &header.1)], None)
            .await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", header.0);
        assert_eq!(replay.body["error"], "not signed in");
    }

    // Logout by bearer token: no cookie for an API client.
    let res = server
        .call(
            Method::POST,
            "/api/logout",
            &[("authorization", &bearer(&bob))],
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.set_cookie().is_none());
}

#[tokio::test]
async fn bad_input_is_a_clear_json_error() {
    let server = Server::start().await;
    server.enter("/api/signup", "carol", &[]).await;
    let cases = [
        (
            "/api/signup",
            json!({"username": "c", "password": "long-enough-pw"}),
            422,
        ),
        (
            "/api/signup",
            json!({"username": "a\u{0}bc", "password": "long-enough-pw"}),
            422,
        ),
        (
            "/api/signup",
            json!({"username": "dave", "password": "short"}),
            422,
        ),
        ("/api/signup", json!({"username": "dave"}), 422),
        (
            "/api/login",
            json!({"username": "carol", "password": "wrong-password"}),
            401,
        ),
        (
            "/api/login",
            json!({"username": "nobody", "password": "whatever-pw"}),
            401,
        ),
        ("/api/login", json!({"username": "", "password": ""}), 401),
        ("/api/login", json!([1, 2]), 422),
    ];
    for (path, body, status) in cases {
        let res = server
            .call(Method::POST, path, &[], Some(body.clone()))
            .await;
        assert_eq!(res.status.as_u16(), status, "{path} {body}");
        assert!(res.body["error"].is_string(), "{path} {body}: {}", res.body);
        assert!(res.set_cookie().is_none());
        assert!(!res.body.to_string().contains("long-enough-pw"));
    }
    let res = server
        .call(
            Method::POST,
            "/api/login",
            &[("content-type", "text/plain")],
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(res.body["error"].is_string());
}

#[tokio::test]
async fn a_taken_port_names_the_port_and_app_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let message = api::listen(port).await.unwrap_err();
    assert!(message.contains(&port.to_string()), "{message}");
    assert!(message.contains("APP_PORT"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}
