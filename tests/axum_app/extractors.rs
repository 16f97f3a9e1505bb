//! `CurrentSession` / `MaybeSession` and the layer's cookie handling,
//! through `tower::ServiceExt::oneshot`.

use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use chrono::Duration;
use futures_util::future::join_all;
use lucia_diesel::{PoolOptions, SessionManager};

use super::*;

#[tokio::test]
async fn valid_cookie_or_valid_bearer() {
    let app = App::new().await;
    let token = app.user_with_session("alice").await;
    let router = app.router();
    let cookie = format!("auth_session={token}");
    let bearer = format!("Bearer {token}");
    for header in [
        ("cookie", cookie.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let res = send(&router, request("GET", "/api/me", &[header])).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", header.0);
        assert!(session_set_cookie(&res).is_none());
        assert!(!no_store(&res));
        let body = json(res).await;
        assert_eq!(body["user"]["username"], "alice");
        let id = app.sessions().session_id(&token);
        assert_eq!(body["session"]["id"], id.as_str());
    }
    let res = send(&router, request("GET", "/api/me", &[])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(&res).is_none());
    assert_eq!(
        json(res).await,
        serde_json::json!({"error": "not signed in", "reason": "unauthorized"})
    );
}

/// The documented rule: with bearer tokens on, a bearer header wins over
/// the session cookie, and the cookie is neither used nor touched.
#[tokio::test]
async fn a_bearer_token_takes_precedence_over_the_cookie() {
    let app = App::new().await;
    let alice = app.user_with_session("alice").await;
    let bob = app.user_with_session("bob").await;
    let router = app.router();
    let alice_cookie = format!("auth_session={alice}");
    let bob_bearer = format!("Bearer {bob}");
    let both = [
        ("cookie", alice_cookie.as_str()),
        ("authorization", bob_bearer.as_str()),
    ];
    let res = send(&router, request("GET", "/api/me", &both)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(session_set_cookie(&res).is_none());
    assert_eq!(json(res).await["user"]["username"], "bob");

    // An invalid cookie beside a valid bearer token is not cleared.
    let stale = format!("auth_session={}", "a".repeat(40));
    let res = send(
        &router,
        request(
            "GET",
            "/api/me",
            &[("cookie", &stale), ("authorization", &bob_bearer)],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(session_set_cookie(&res).is_none());

    // An invalid bearer token is a 401, even beside a valid cookie.
    let wrong = format!("Bearer {}", "b".repeat(40));
    let res = send(
        &router,
        request(
            "GET",
            "/api/me",
            &[("cookie", &alice_cookie), ("authorization", &wrong)],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(&res).is_none());

    // With bearer tokens off the header is ignored: the cookie decides.
    let cookies_only = probe_router(&app, false);
    let res = send(&cookies_only, request("GET", "/probe", &both)).await;
    assert_eq!(text(res).await, "alice");
    let res = send(&probe_router(&app, true), request("GET", "/probe", &both)).await;
    assert_eq!(text(res).await, "bob");
}

#[tokio::test]
async fn malformed_duplicate_and_oversized_cookies_never_give_a_500() {
    let app = App::new().await;
    let token = app.user_with_session("ivan").await;
    let router = app.router();
    let huge = "a".repeat(8 * 1024);
    // (Cookie header, signed in, blank cookie sent back)
    let cases = [
        ("auth_session=%00".to_owned(), false, false),
        (format!("auth_session={token}%00"), false, false),
        (
            format!("auth_session={token}; auth_session={token}"),
            false,
            false,
        ),
        ("auth_session=".to_owned(), false, false),
        ("auth_session".to_owned(), false, false),
        (format!("auth_session=\"{token}\""), true, false),
        (format!("other=1; auth_session={token}; x=\"y"), true, false),
        ("auth_session=%zz%".to_owned(), false, true),
        (format!("auth_session={huge}"), false, true),
        ("auth_session=' OR 1=1 --".to_owned(), false, true),
        ("=; ;;; auth_session==".to_owned(), false, true),
        (
            format!("auth_session={}", token.to_uppercase()),
            false,
            true,
        ),
    ];
    for (cookie, signed_in, cleared) in cases {
        let res = send(&router, request("GET", "/api/me", &[("cookie", &cookie)])).await;
        let want = if signed_in {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(res.status(), want, "{cookie:.60}");
        assert_eq!(session_set_cookie(&res).is_some(), cleared, "{cookie:.60}");
    }
    // Two Cookie headers are one list: the session cookie twice is none.
    let req = request(
        "GET",
        "/api/me",
        &[
            ("cookie", &format!("auth_session={token}")),
            ("cookie", &format!("auth_session={token}")),
        ],
    );
    assert_eq!(send(&router, req).await.status(), StatusCode::UNAUTHORIZED);
    let req = request(
        "GET",
        "/api/me",
        &[
            ("cookie", "a=1"),
            ("cookie", &format!("auth_session={token}")),
        ],
    );
    assert_eq!(send(&router, req).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_expired_session_gets_a_blank_cookie() {
    let app = App::new().await;
    let token = app.user_with_session("judy").await;
    let other = app.user_with_session("ken").await;
    let router = app.router();
    app.clock.advance(Duration::days(30));
    let cookie = format!("auth_session={token}");
    let res = send(&router, request("GET", "/api/me", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let blank = session_set_cookie(&res).expect("blank cookie");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert!(no_store(&res));
    // By bearer: a 401, and no cookie.
    let bearer = format!("Bearer {other}");
    let res = send(
        &router,
        request("GET", "/api/me", &[("authorization", &bearer)]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(&res).is_none());
    assert!(!no_store(&res));
}

#[tokio::test]
async fn an_extended_session_gets_a_fresh_cookie() {
    let app = App::new().await;
    let token = app.user_with_session("leo").await;
    let router = app.router();
    let cookie = format!("auth_session={token}");
    app.clock.advance(Duration::days(16));
    let res = send(&router, request("GET", "/api/me", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = session_set_cookie(&res).expect("refreshed cookie");
    assert_eq!(cookie_token(&fresh), token, "same token, new Max-Age");
    assert_cookie_attributes(&fresh, "Max-Age=2592000");
    assert!(no_store(&res));
    let body = json(res).await;
    let expires_at = app.sessions().now() + Duration::days(30);
    assert_eq!(body["session"]["expires_at"], serde_json::json!(expires_at));
    // Extended once: the next request sets nothing.
    let res = send(&router, request("GET", "/api/me", &[("cookie", &cookie)])).await;
    assert!(session_set_cookie(&res).is_none());

    // A bearer session is extended without a cookie.
    let other = app.user_with_session("mia").await;
    app.clock.advance(Duration::days(16));
    let bearer = format!("Bearer {other}");
    let res = send(
        &router,
        request("GET", "/api/me", &[("authorization", &bearer)]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(session_set_cookie(&res).is_none());
    let stored = app
        .sessions()
        .get_user_sessions(&"mia".to_owned())
        .await
        .unwrap();
    assert_eq!(
        stored[0].expires_at,
        app.sessions().now() + Duration::days(30)
    );
}

/// Two extractors in one handler share one validation: both see the
/// extension (a second validation would see `fresh = false`).
#[tokio::test]
async fn one_validation_per_request() {
    let app = App::new().await;
    let token = app.user_with_session("nia").await;
    app.clock.advance(Duration::days(16));
    let cookie = format!("auth_session={token}");
    let res = send(
        &probe_router(&app, false),
        request("GET", "/twice", &[("cookie", &cookie)]),
    )
    .await;
    assert!(session_set_cookie(&res).is_some());
    assert_eq!(text(res).await, "true true");
}

#[tokio::test]
async fn a_store_failure_is_a_503() {
    let pool = PoolOptions::new()
        .with_checkout_timeout(std::time::Duration::from_millis(300))
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let state = super::state(pool, ManualClock::new(), limits(Hasher::new(1, 1)));
    let router = api::router(state);
    let cookie = format!("auth_session={}", "a".repeat(40));
    let res = send(&router, request("GET", "/api/me", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()[RETRY_AFTER],
        "5",
        "the example's 503s say when"
    );
    assert!(
        session_set_cookie(&res).is_none(),
        "no cookie change on a failure"
    );
    let body = json(res).await;
    assert_eq!(
        body["error"], "the session store is unavailable; try again later",
        "{body}"
    );
    // Without a credential there is nothing to look up.
    let res = send(&router, request("GET", "/api/me", &[])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_the_layer_the_extractors_refuse() {
    let app = App::new().await;
    let token = app.user_with_session("otto").await;
    async fn me(current: lucia_diesel::axum::CurrentSession<api::Adapter>) -> String {
        current.user.id
    }
    let router = Router::new()
        .route("/me", axum::routing::get(me))
        .with_state(Arc::clone(&app.state.sessions));
    let cookie = format!("auth_session={token}");
    let res = send(&router, request("GET", "/me", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(res).await["error"], "internal error");
}

/// Argon2 runs one at a time here with one more waiting; the rest of a
/// burst is told to retry (429, `Retry-After`), never a 5xx.
#[tokio::test]
async fn password_hashing_is_bounded() {
    let app = App::new().await;
    let pool = app.state.pool.clone();
    let sessions = SessionManager::builder(
        lucia_diesel::PostgresAdapter::new(pool.clone())
            .with_session_attributes::<api::SessionInfo>()
            .with_user_attributes::<api::UserInfo>(),
    )
    .build()
    .unwrap();
    let router = api::router(api::AppState::new(
        sessions,
        pool,
        limits(Hasher::new(1, 1)),
    ));
    let requests = (0..12).map(|i| {
        let body =
            serde_json::json!({"username": format!("user{i}"), "password": "long-enough-pw"});
        send(&router, json_request("/api/signup", &body, &[]))
    });
    let (mut created, mut busy) = (0, 0);
    for res in join_all(requests).await {
        match res.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(res.headers()[RETRY_AFTER], "1");
                assert!(json(res).await["error"].is_string());
                busy += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(created >= 1 && busy >= 1, "{created} created, {busy} busy");
}
