//! The actix side of the shared CSRF table (`tests/support/csrf.rs`),
//! through the test service and over a real socket: a state-changing
//! request refused by the middleware never reaches the handler.

use std::net::TcpListener;

use super::*;
use crate::support::csrf::{self, Probe};

/// The headers of one probe, with the session as a cookie or a bearer
/// token.
fn probe_headers<'a>(
    probe: &Probe,
    cookie: &'a str,
    authorization: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![];
    if let Some(origin) = probe.origin {
        headers.push(("origin", origin));
    }
    if let Some(site) = probe.sec_fetch_site {
        headers.push(("sec-fetch-site", site));
    }
    if probe.bearer {
        headers.push(("authorization", authorization));
    } else {
        headers.push(("cookie", cookie));
    }
    headers
}

/// What a probe's answer must be: a 403 with the JSON error, or the
/// handler's answer with the session the probe presented.
fn check_answer(probe: &Probe, bearer: bool, status: u16, body: &str) {
    if status == 403 {
        assert_eq!(
            body, r#"{"error":"cross-origin request rejected"}"#,
            "{probe:?}"
        );
    } else if probe.method != "HEAD" {
        let want = if probe.bearer && !bearer {
            "none"
        } else {
            "olga"
        };
        assert_eq!(body, want, "{probe:?}");
    }
}

async fn through_the_test_service(bearer: bool) {
    let f = Fixture::new().await;
    let token = f.user_with_session("olga").await;
    let app = test::init_service(probe_app(f.sessions.clone(), bearer)).await;
    let cookie = format!("auth_session={token}");
    let authorization = format!("Bearer {token}");
    let send = async |probe: Probe| {
        let headers = probe_headers(&probe, &cookie, &authorization);
        let req = request(probe.method, "/probe", &headers).to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status().as_u16();
        if status == 403 {
            assert!(session_set_cookie(&res).is_none());
        }
        check_answer(&probe, bearer, status, &body_text(res).await);
        status
    };
    csrf::check(send, bearer).await;
}

#[actix_web::test]
async fn csrf_table_with_bearer_tokens() {
    through_the_test_service(true).await;
}

#[actix_web::test]
async fn csrf_table_cookies_only() {
    through_the_test_service(false).await;
}

/// One HTTP/1.1 request over a fresh connection: the status and body.
async fn http(addr: std::net::SocketAddr, method: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} /probe HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    // Bodies come with a length or chunked; the probe's are one chunk.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n").nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The same table against `HttpServer` on 127.0.0.1, bearer tokens on.
#[actix_web::test]
async fn csrf_table_over_a_socket() {
    let f = Fixture::new().await;
    let token = f.user_with_session("olga").await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions = f.sessions.clone();
    let server = actix_web::HttpServer::new(move || probe_app(sessions.clone(), true))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let cookie = format!("auth_session={token}");
    let authorization = format!("Bearer {token}");
    let send = async |probe: Probe| {
        let headers = probe_headers(&probe, &cookie, &authorization);
        let (status, body) = http(addr, probe.method, &headers).await;
        check_answer(&probe, true, status, &body);
        status
    };
    csrf::check(send, true).await;
    handle.stop(true).await;
}
