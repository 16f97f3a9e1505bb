//! Logout ends exactly the session the request would be validated with
//! (a bearer token first, else the one session cookie; a cookie sent
//! twice names none) and clears a cookie client's cookie, even while the
//! database cannot be reached.

use axum::http::header::RETRY_AFTER;
use axum::http::{Method, StatusCode};
use lucia_diesel::PoolOptions;

use super::end_to_end::{Server, bearer, cookie};
use super::*;

/// Whether `token` still opens `/api/me`.
async fn signed_in(server: &Server, token: &str) -> bool {
    let me = server
        .call(
            Method::GET,
            "/api/me",
            &[("authorization", &bearer(token))],
            None,
        )
        .await;
    match me.status {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => false,
        other => panic!("{other}: {}", me.body),
    }
}

#[tokio::test]
async fn logout_ends_exactly_its_own_session() {
    let server = Server::start().await;
    let (_, first) = server.enter("/api/signup", "ann", &[]).await;
    let (_, second) = server.enter("/api/login", "ann", &[]).await;
    let logout = async |headers: &[(&str, &str)]| {
        server
            .call(Method::POST, "/api/logout", headers, None)
            .await
    };

    // Both cookies, in one header or in two: validation sees no session,
    // so logout ends none, and clears the cookie.
    let both = format!("{}; {}", cookie(&first), cookie(&second));
    let (one, two) = (cookie(&first), cookie(&second));
    for headers in [
        vec![("cookie", both.as_str())],
        vec![("cookie", one.as_str()), ("cookie", two.as_str())],
    ] {
        let me = server.call(Method::GET, "/api/me", &headers, None).await;
        assert_eq!(
            me.status,
            StatusCode::UNAUTHORIZED,
            "duplicates are no session"
        );
        let res = logout(&headers).await;
        assert_eq!(res.status, StatusCode::NO_CONTENT);
        let blank = res.set_cookie().expect("the cookie is cleared");
        assert_eq!(blank[0], "auth_session=");
        assert_cookie_attributes(&blank, "Max-Age=0");
        assert!(signed_in(&server, &first).await, "no session ended");
        assert!(signed_in(&server, &second).await, "no session ended");
    }

    // One cookie: that session ends, the other stays.
    let res = logout(&[("cookie", &cookie(&first))]).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(res.set_cookie().expect("cleared")[0], "auth_session=");
    assert!(!signed_in(&server, &first).await);
    assert!(signed_in(&server, &second).await);

    // A bearer token wins over the cookie, as in validation; an API client
    // gets no cookie.
    let (_, third) = server.enter("/api/login", "ann", &[]).await;
    let res = logout(&[
        ("authorization", &bearer(&third)),
        ("cookie", &cookie(&second)),
    ])
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.set_cookie().is_none());
    assert!(!signed_in(&server, &third).await);
    assert!(signed_in(&server, &second).await);

    // Nothing presented: 401, no cookie.
    let res = logout(&[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.set_cookie().is_none());
}

/// The database unreachable (nothing listens on port 1): a cookie client's
/// logout still clears the cookie, and says the session could not be
/// ended; a bearer client is told to try again.
#[tokio::test]
async fn logout_clears_the_cookie_while_the_database_is_down() {
    let pool = PoolOptions::new()
        .with_checkout_timeout(std::time::Duration::from_millis(300))
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let router = api::router(state(pool, ManualClock::new(), limits(Hasher::new(1, 1))));
    let token = "c".repeat(40);
    let res = send(
        &router,
        request(
            "POST",
            "/api/logout",
            &[("cookie", &format!("auth_session={token}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[RETRY_AFTER], "5");
    let blank = session_set_cookie(&res).expect("the cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    assert_cookie_attributes(&blank, "Max-Age=0");
    assert!(no_store(&res));
    let error = json(res).await["error"].as_str().unwrap().to_owned();
    assert!(error.contains("the cookie is cleared"), "{error}");

    let res = send(
        &router,
        request(
            "POST",
            "/api/logout",
            &[("authorization", &format!("Bearer {token}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(session_set_cookie(&res).is_none());

    // A cookie sent twice names no session: cleared, nothing to end.
    let twice = format!("auth_session={token}; auth_session={}", "d".repeat(40));
    let res = send(
        &router,
        request("POST", "/api/logout", &[("cookie", &twice)]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        session_set_cookie(&res).expect("cleared")[0],
        "auth_session="
    );
}
