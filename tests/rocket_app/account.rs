//! The account's sensitive actions: a password change keeps this browser's
//! session under a new token and ends every other; deleting the account
//! needs a sign-in within five minutes, else the password again first.

use chrono::Duration;
use rocket::http::Status;
use rocket::local::asynchronous::Client;

use super::{App, app, change_password, get, location, post, session_set_cookie, sign_up};
use crate::support::scalar;

/// The token of the session cookie a response sets, if it sets one.
fn new_token(res: &rocket::local::asynchronous::LocalResponse<'_>) -> Option<String> {
    let all: Vec<&str> = res
        .headers()
        .get("Set-Cookie")
        .filter(|c| c.starts_with("auth_session="))
        .collect();
    assert!(all.len() <= 1, "one session cookie at most: {all:?}");
    let token = all
        .first()?
        .split(';')
        .next()?
        .trim_start_matches("auth_session=");
    Some(token.to_owned())
}

async fn count(app: &App, sql: &str) -> i64 {
    let mut conn = app._db.connect().await;
    scalar(&mut conn, sql).await
}

#[tokio::test]
async fn a_password_change_rotates_this_session_and_ends_the_others() {
    let app = app().await;
    let laptop = app.browser().await;
    let phone = app.browser().await;
    let old = sign_up(&laptop, "gina", "old-password-1").await;
    post(&phone, "/login", "username=gina&password=old-password-1").await;
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM user_session").await,
        2
    );
    let created = count(
        &app,
        "SELECT extract(epoch FROM min(created_at))::bigint AS n FROM user_session",
    )
    .await;

    let res = change_password(&laptop, "old-password-1", "new-password-2").await;
    let token = new_token(&res).expect("the rotated session's cookie");
    assert_ne!(token, old);
    assert!(!token.is_empty());

    // One session left: the laptop's own row (its sign-in time kept),
    // under the new token; the phone's is gone.
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM user_session").await,
        1
    );
    let kept = count(
        &app,
        "SELECT extract(epoch FROM created_at)::bigint AS n FROM user_session",
    )
    .await;
    assert_eq!(kept, created, "the laptop's session, not a new one");
    assert_eq!(get(&laptop, "/").await.status(), Status::Ok);
    assert_eq!(location(&get(&phone, "/").await).as_deref(), Some("/login"));

    // The old token no longer works in any browser.
    let thief = app.browser().await;
    thief
        .cookies()
        .add(rocket::http::Cookie::new("auth_session", old));
    assert_eq!(location(&get(&thief, "/").await).as_deref(), Some("/login"));
}

/// Signs up `name` and returns its browser.
async fn signed_up(app: &App, name: &str) -> Client {
    let browser = app.browser().await;
    sign_up(&browser, name, "the-password-1").await;
    browser
}

#[tokio::test]
async fn deleting_the_account_needs_a_recent_sign_in() {
    let app = app().await;
    let browser = signed_up(&app, "hugo").await;
    // Just signed up: recent enough.
    let res = get(&browser, "/account/delete").await;
    assert_eq!(res.status(), Status::Ok);
    assert!(
        res.into_string()
            .await
            .unwrap()
            .contains("Delete my account")
    );

    // Five minutes and a second later: the password first, for the page
    // and for the action.
    app.clock.advance(Duration::seconds(301));
    for res in [
        get(&browser, "/account/delete").await,
        post(&browser, "/account/delete", "").await,
    ] {
        assert_eq!(res.status(), Status::SeeOther);
        assert_eq!(
            location(&res).as_deref(),
            Some("/reauthenticate?next=delete-account")
        );
    }
    let users = "SELECT count(*) AS n FROM auth_user WHERE username = 'hugo'";
    assert_eq!(count(&app, users).await, 1, "not deleted");

    let page = get(&browser, "/reauthenticate?next=delete-account").await;
    assert_eq!(page.status(), Status::Ok);
    assert!(
        page.into_string()
            .await
            .unwrap()
            .contains("name=\"next\" value=\"delete-account\"")
    );
    let res = post(
        &browser,
        "/reauthenticate",
        "password=wrong-password-9&next=delete-account",
    )
    .await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(
        new_token(&res).is_none(),
        "no new cookie on a wrong password"
    );
    assert!(res.into_string().await.unwrap().contains("Wrong password."));

    let before = browser
        .cookies()
        .get("auth_session")
        .unwrap()
        .value()
        .to_owned();
    let res = post(
        &browser,
        "/reauthenticate",
        "password=the-password-1&next=delete-account",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/account/delete"));
    let rotated = new_token(&res).expect("re-authentication rotates the token");
    assert_ne!(rotated, before);

    let res = get(&browser, "/account/delete").await;
    assert_eq!(res.status(), Status::Ok);
    let res = post(&browser, "/account/delete", "").await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/login"));
    assert_eq!(
        session_set_cookie(&res).expect("the cookie is cleared")[0],
        "auth_session="
    );
    assert_eq!(count(&app, users).await, 0, "the account is gone");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM user_session").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM user_password").await,
        0
    );
    let res = post(&browser, "/login", "username=hugo&password=the-password-1").await;
    assert_eq!(res.status(), Status::Unauthorized);
}

#[tokio::test]
async fn the_prompt_leads_only_to_known_pages_and_needs_a_session() {
    let app = app().await;
    let stranger = app.browser().await;
    let res = get(&stranger, "/account/delete").await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let res = get(&stranger, "/reauthenticate?next=delete-account").await;
    assert_eq!(location(&res).as_deref(), Some("/login"));

    let browser = signed_up(&app, "iris").await;
    let res = post(
        &browser,
        "/reauthenticate",
        "password=the-password-1&next=https%3A%2F%2Fevil.example%2F",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/"));
}
