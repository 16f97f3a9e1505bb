//! `CurrentSession` / `MaybeSession` and the middleware's cookie handling,
//! through actix's test service.

use actix_web::http::StatusCode;
use chrono::Duration;

use super::*;

#[actix_web::test]
async fn valid_cookie_or_valid_bearer_and_401_without() {
    let f = Fixture::new().await;
    let token = f.user_with_session("alice").await;
    let app = test::init_service(probe_app(f.sessions.clone(), true)).await;
    let cookie = format!("auth_session={token}");
    let bearer = format!("Bearer {token}");
    for header in [
        ("cookie", cookie.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let res = test::call_service(&app, request("GET", "/me", &[header]).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", header.0);
        assert!(session_set_cookie(&res).is_none());
        assert!(!no_store(&res));
        let body = body_json(res).await;
        assert_eq!(body["user"], "alice");
        assert_eq!(body["session"], f.sessions.session_id(&token).as_str());
    }
    let res = test::call_service(&app, request("GET", "/me", &[]).to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(&res).is_none());
    assert_eq!(
        res.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(
        body_json(res).await,
        serde_json::json!({"error": "not signed in", "reason": "unauthorized"})
    );

    // Bearer tokens off: the header counts for nothing.
    let app = test::init_service(probe_app(f.sessions.clone(), false)).await;
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("authorization", &bearer)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// The documented rule: a bearer header wins over the cookie, which is
/// neither used nor touched; an invalid bearer token is a 401 even beside a
/// valid cookie.
#[actix_web::test]
async fn a_bearer_token_takes_precedence_over_the_cookie() {
    let f = Fixture::new().await;
    let alice = f.user_with_session("alice").await;
    let bob = f.user_with_session("bob").await;
    let app = test::init_service(probe_app(f.sessions.clone(), true)).await;
    let alice_cookie = format!("auth_session={alice}");
    let bob_bearer = format!("Bearer {bob}");
    let both = [
        ("cookie", alice_cookie.as_str()),
        ("authorization", bob_bearer.as_str()),
    ];
    let res = test::call_service(&app, request("GET", "/probe", &both).to_request()).await;
    assert!(session_set_cookie(&res).is_none());
    assert_eq!(body_text(res).await, "bob");

    let stale = format!("auth_session={}", "a".repeat(40));
    let res = test::call_service(
        &app,
        request(
            "GET",
            "/probe",
            &[("cookie", &stale), ("authorization", &bob_bearer)],
        )
        .to_request(),
    )
    .await;
    assert!(
        session_set_cookie(&res).is_none(),
        "a stale cookie beside a bearer stays"
    );
    assert_eq!(body_text(res).await, "bob");

    let wrong = format!("Bearer {}", "b".repeat(40));
    let res = test::call_service(
        &app,
        request(
            "GET",
            "/me",
            &[("cookie", &alice_cookie), ("authorization", &wrong)],
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(session_set_cookie(&res).is_none());
}

#[actix_web::test]
async fn malformed_and_duplicate_cookies_never_give_a_500() {
    let f = Fixture::new().await;
    let token = f.user_with_session("ivan").await;
    let app = test::init_service(probe_app(f.sessions.clone(), false)).await;
    let huge = "a".repeat(8 * 1024);
    // (Cookie header, signed in, blank cookie sent back)
    let cases = [
        ("auth_session=%00".to_owned(), false, false),
        (
            format!("auth_session={token}; auth_session={token}"),
            false,
            false,
        ),
        ("auth_session=".to_owned(), false, false),
        (format!("auth_session=\"{token}\""), true, false),
        (format!("other=1; auth_session={token}; x=\"y"), true, false),
        ("auth_session=%zz%".to_owned(), false, true),
        (format!("auth_session={huge}"), false, true),
        ("auth_session=' OR 1=1 --".to_owned(), false, true),
        (
            format!("auth_session={}", token.to_uppercase()),
            false,
            true,
        ),
    ];
    for (cookie, signed_in, cleared) in cases {
        let res = test::call_service(
            &app,
            request("GET", "/me", &[("cookie", &cookie)]).to_request(),
        )
        .await;
        let want = if signed_in {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(res.status(), want, "{cookie:.60}");
        assert_eq!(session_set_cookie(&res).is_some(), cleared, "{cookie:.60}");
    }
    // Two Cookie headers are one list: the session cookie twice is none.
    let one = format!("auth_session={token}");
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", &one), ("cookie", &one)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", "a=1"), ("cookie", &one)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn expired_sessions_get_a_blank_cookie_and_extended_ones_a_fresh_cookie() {
    let f = Fixture::new().await;
    let old = f.user_with_session("judy").await;
    let app = test::init_service(probe_app(f.sessions.clone(), true)).await;
    f.clock.advance(Duration::days(30));
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", &format!("auth_session={old}"))]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let blank = session_set_cookie(&res).expect("a blank cookie");
    assert_eq!(blank[0], "auth_session=");
    assert!(blank.iter().any(|p| p == "Max-Age=0"), "{blank:?}");
    assert!(no_store(&res));

    let token = f.user_with_session("leo").await;
    let cookie = format!("auth_session={token}");
    f.clock.advance(Duration::days(16));
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = session_set_cookie(&res).expect("a refreshed cookie");
    assert_eq!(fresh[0], cookie, "the same token, a new Max-Age");
    for want in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=2592000",
    ] {
        assert!(
            fresh.iter().any(|p| p == want),
            "{want} missing from {fresh:?}"
        );
    }
    assert!(no_store(&res));
    let expires_at = f.sessions.now() + Duration::days(30);
    assert_eq!(
        body_json(res).await["expires_at"],
        serde_json::json!(expires_at)
    );
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert!(session_set_cookie(&res).is_none(), "extended once");

    // A bearer session is extended without a cookie.
    let other = f.user_with_session("mia").await;
    f.clock.advance(Duration::days(16));
    let res = test::call_service(
        &app,
        request(
            "GET",
            "/me",
            &[("authorization", &format!("Bearer {other}"))],
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(session_set_cookie(&res).is_none());

    // A handler's own session cookie wins over the middleware's.
    let stale = format!("auth_session={}", "c".repeat(40));
    let res = test::call_service(
        &app,
        request("GET", "/own-cookie", &[("cookie", &stale)]).to_request(),
    )
    .await;
    let own = session_set_cookie(&res).expect("the handler's cookie");
    assert_eq!(own[0], "auth_session=handler");
}

/// Two extractors in one handler, polled together by actix, share one
/// validation: both see the extension (a second would see `fresh = false`).
#[actix_web::test]
async fn one_validation_per_request() {
    let f = Fixture::new().await;
    let token = f.user_with_session("nia").await;
    f.clock.advance(Duration::days(16));
    let app = test::init_service(probe_app(f.sessions.clone(), false)).await;
    let res = test::call_service(
        &app,
        request(
            "GET",
            "/twice",
            &[("cookie", &format!("auth_session={token}"))],
        )
        .to_request(),
    )
    .await;
    assert!(session_set_cookie(&res).is_some());
    assert_eq!(body_text(res).await, "true true");
}

#[actix_web::test]
async fn a_store_failure_is_a_503_and_a_missing_piece_a_500() {
    let pool = PoolOptions::new()
        .with_checkout_timeout(std::time::Duration::from_millis(300))
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let down = manager(pool, ManualClock::new());
    let app = test::init_service(probe_app(down, false)).await;
    let cookie = format!("auth_session={}", "a".repeat(40));
    let res = test::call_service(
        &app,
        request("GET", "/me", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        session_set_cookie(&res).is_none(),
        "no cookie change on a failure"
    );
    assert_eq!(
        body_json(res).await["error"],
        "the session store is unavailable; try again later"
    );
    let res = test::call_service(&app, request("GET", "/me", &[]).to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "nothing to look up");

    // Without the middleware, or without the manager: 500, never a session.
    let f = Fixture::new().await;
    let token = f.user_with_session("otto").await;
    let cookie = format!("auth_session={token}");
    let bare = test::init_service(
        App::new()
            .app_data(f.sessions.clone())
            .route("/me", web::get().to(me)),
    )
    .await;
    let res = test::call_service(
        &bare,
        request("GET", "/me", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_json(res).await["error"], "internal error");
    let unmanaged = test::init_service(
        App::new()
            .wrap(SessionMiddleware::new())
            .route("/me", web::get().to(me)),
    )
    .await;
    let res = test::call_service(
        &unmanaged,
        request("GET", "/me", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// The current session's "sign out my other devices": the others end, the
/// request's own and another user's stay.
#[actix_web::test]
async fn the_current_session_signs_out_the_others() {
    let f = Fixture::new().await;
    let mine = f.user_with_session("pia").await;
    let theirs = f.user_with_session("quinn").await;
    let mut other = Vec::new();
    for _ in 0..2 {
        let created = f
            .sessions
            .create_session("pia".to_owned(), Attributes::new())
            .await
            .unwrap();
        other.push(created.token.into_string());
    }
    let app = test::init_service(probe_app(f.sessions.clone(), true)).await;
    let cookie = format!("auth_session={mine}");
    let res = test::call_service(
        &app,
        request("POST", "/others", &[("cookie", &cookie)]).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res).await, "2");
    for (token, valid) in [
        (&mine, true),
        (&other[0], false),
        (&other[1], false),
        (&theirs, true),
    ] {
        let found = f.sessions.validate_session(token).await.unwrap().is_some();
        assert_eq!(found, valid);
    }
}
