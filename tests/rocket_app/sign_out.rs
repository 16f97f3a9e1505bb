//! Signing out ends exactly the session the request would be validated
//! with: a session cookie sent twice names no session (validation treats
//! it as none), so such a sign-out ends none, and still clears the cookie.

use rocket::http::{Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};

use super::{App, HOST, ORIGIN, app, location, post, session_set_cookie, sign_up};

/// A request from a browser with nothing in its jar, with this `Cookie`.
async fn with_cookie<'c>(client: &'c Client, path: &'c str, cookie: &str) -> LocalResponse<'c> {
    let req = if path == "/logout" {
        client
            .post(path)
            .header(Header::new("Origin", ORIGIN))
            .header(Header::new("Sec-Fetch-Site", "same-origin"))
    } else {
        client.get(path)
    };
    req.header(Header::new("Host", HOST))
        .header(Header::new("Cookie", cookie.to_owned()))
        .dispatch()
        .await
}

/// Whether `token` opens the home page.
async fn signed_in(app: &App, token: &str) -> bool {
    let browser = app.browser().await;
    let res = with_cookie(&browser, "/", &format!("auth_session={token}")).await;
    match res.status() {
        Status::Ok => true,
        Status::SeeOther => false,
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_sign_out_ends_exactly_its_own_session() {
    let app = app().await;
    let laptop = app.browser().await;
    let first = sign_up(&laptop, "ann", "long-enough-pw").await;
    let phone = app.browser().await;
    let res = post(&phone, "/login", "username=ann&password=long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
    let second = session_set_cookie(&res).unwrap()[0]
        .trim_start_matches("auth_session=")
        .to_owned();

    // Both cookies (cookie tossing): no session is validated, so none ends.
    let stranger = app.browser().await;
    let both = format!("auth_session={first}; auth_session={second}");
    let res = with_cookie(&stranger, "/", &both).await;
    assert_eq!(
        location(&res).as_deref(),
        Some("/login"),
        "duplicates are none"
    );
    let res = with_cookie(&stranger, "/logout", &both).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let blank = session_set_cookie(&res).expect("the cookie is cleared");
    assert_eq!(blank[0], "auth_session=");
    assert!(signed_in(&app, &first).await, "no session ended");
    assert!(signed_in(&app, &second).await, "no session ended");

    // One cookie: exactly that session ends.
    let res = with_cookie(&stranger, "/logout", &format!("auth_session={second}")).await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert_eq!(
        session_set_cookie(&res).expect("cleared")[0],
        "auth_session="
    );
    assert!(!signed_in(&app, &second).await);
    assert!(signed_in(&app, &first).await);
    // The laptop's own sign-out, from its jar.
    post(&laptop, "/logout", "").await;
    assert!(!signed_in(&app, &first).await);
}
