//! The axum side of the shared CSRF table (`tests/support/csrf.rs`): a
//! state-changing request refused by the layer never reaches the handler.

use super::*;
use crate::support::csrf::{self, Probe};

/// Runs the table against a probe route behind a layer that accepts
/// bearer tokens (`bearer`) or not.
async fn run(bearer: bool) {
    let app = App::new().await;
    let token = app.user_with_session("olga").await;
    let router = probe_router(&app, bearer);
    let cookie = format!("auth_session={token}");
    let authorization = format!("Bearer {token}");
    let send = async |probe: Probe| {
        let mut headers = vec![];
        if let Some(origin) = probe.origin {
            headers.push(("origin", origin));
        }
        if let Some(site) = probe.sec_fetch_site {
            headers.push(("sec-fetch-site", site));
        }
        if probe.bearer {
            headers.push(("authorization", authorization.as_str()));
        } else {
            headers.push(("cookie", cookie.as_str()));
        }
        let res = send(&router, request(probe.method, "/probe", &headers)).await;
        let status = res.status().as_u16();
        if status == 403 {
            assert!(session_set_cookie(&res).is_none());
            let body = json(res).await;
            assert_eq!(body["error"], "cross-origin request rejected");
        } else if probe.method != "HEAD" {
            // The handler ran, with the session the probe presented (a
            // bearer token counts only where bearer tokens are accepted).
            let want = if probe.bearer && !bearer {
                "none"
            } else {
                "olga"
            };
            assert_eq!(text(res).await, want, "{probe:?}");
        }
        status
    };
    csrf::check(send, bearer).await;
}

#[tokio::test]
async fn csrf_table_with_bearer_tokens() {
    run(true).await;
}

#[tokio::test]
async fn csrf_table_cookies_only() {
    run(false).await;
}
