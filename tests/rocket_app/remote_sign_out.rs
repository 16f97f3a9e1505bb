//! A browser whose session ended elsewhere (revoked from another device,
//! a password change, expiry) lands on the sign-in page with a word why,
//! once; a visitor who never signed in, or who signed out, sees no such
//! word.

use chrono::Duration;
use rocket::http::Status;
use rocket::local::asynchronous::Client;

use super::{App, app, current_session_id, get, location, post, session_set_cookie, sign_up};

const ENDED: &str = "Your session has ended";

/// Follows `path` to the sign-in page and returns that page.
async fn land_on_login(browser: &Client, path: &'static str) -> String {
    let res = get(browser, path).await;
    assert_eq!(res.status(), Status::SeeOther, "{path}");
    assert_eq!(location(&res).as_deref(), Some("/login"), "{path}");
    assert_eq!(
        session_set_cookie(&res).expect("the dead cookie is cleared")[0],
        "auth_session=",
        "{path}"
    );
    let res = get(browser, "/login").await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.unwrap()
}

async fn two_browsers(app: &App, name: &str) -> (Client, Client) {
    let laptop = app.browser().await;
    let phone = app.browser().await;
    sign_up(&laptop, name, "long-enough-pw").await;
    let status = post(
        &phone,
        "/login",
        &format!("username={name}&password=long-enough-pw"),
    )
    .await
    .status();
    assert_eq!(status, Status::SeeOther);
    (laptop, phone)
}

#[tokio::test]
async fn revoked_elsewhere_is_said_once() {
    let app = app().await;
    let (laptop, phone) = two_browsers(&app, "tess").await;
    let phone_id = current_session_id(&get(&phone, "/sessions").await.into_string().await.unwrap());
    post(&laptop, "/sessions/revoke", &format!("id={phone_id}")).await;

    // A page that needs a session (the 401 catcher) ...
    let html = land_on_login(&phone, "/sessions").await;
    assert!(html.contains(ENDED), "{html}");
    // ... said once: the next visit has no notice, and no cookie to clear.
    let res = get(&phone, "/login").await;
    assert!(session_set_cookie(&res).is_none());
    assert!(!res.into_string().await.unwrap().contains(ENDED));

    // Signed out everywhere else, the home page (a route of lower rank).
    let res = post(&phone, "/login", "username=tess&password=long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
    post(&laptop, "/sessions/revoke-others", "").await;
    let html = land_on_login(&phone, "/").await;
    assert!(html.contains(ENDED), "{html}");
}

#[tokio::test]
async fn ended_by_a_password_change_or_expiry() {
    let app = app().await;
    let (laptop, phone) = two_browsers(&app, "uma").await;
    let res = post(
        &laptop,
        "/password",
        "current=long-enough-pw&new=new-password-2&confirm=new-password-2",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    let html = land_on_login(&phone, "/password").await;
    assert!(html.contains(ENDED), "{html}");

    app.clock.advance(Duration::days(31));
    let html = land_on_login(&laptop, "/").await;
    assert!(html.contains(ENDED), "expired: {html}");
}

#[tokio::test]
async fn no_such_word_without_a_dead_session() {
    let app = app().await;
    let stranger = app.browser().await;
    let res = get(&stranger, "/sessions").await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert!(session_set_cookie(&res).is_none());
    let html = get(&stranger, "/login").await.into_string().await.unwrap();
    assert!(!html.contains(ENDED));
    assert!(!html.contains("class=\"notice\""), "{html}");

    // Signing out says so instead.
    let browser = app.browser().await;
    sign_up(&browser, "vic", "long-enough-pw").await;
    let res = post(&browser, "/logout", "").await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let html = get(&browser, "/login").await.into_string().await.unwrap();
    assert!(html.contains("You are signed out."), "{html}");
    assert!(!html.contains(ENDED));
    // And a sign-out without a session goes to the sign-in page quietly.
    let res = post(&stranger, "/logout", "").await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert!(session_set_cookie(&res).is_none());
}
