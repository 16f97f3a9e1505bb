//! Step-up through Rocket: `RecentSession` at the -1/0/+1 microsecond
//! edges of its window (too old forwards to a route that redirects to the
//! password prompt; no session at all, to one that redirects to the login
//! page), `require_recent_sign_in` on a JSON route, and
//! `CurrentSession::reauthenticate` / `rotate` with the cookie the fairing
//! sends (only the new one, or a blank one when the session went
//! meanwhile), on a Rocket of the test's own whose manager runs on a clock
//! the test moves.

use chrono::Duration;
use lucia_diesel::rocket::{CurrentSession, RecentSession, SessionFairing, SessionRejection};
use lucia_diesel::{Attributes, CreatedSession, Error};
use rocket::State;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::response::Redirect;

use crate::support::signed_in::{
    Adapter, HasSessions, Sessions, SignedIn, US, WINDOW, assert_new_cookie, has_attributes,
};

/// A sensitive page: needs a sign-in within the last 300 seconds.
#[rocket::get("/recent", rank = 1)]
fn recent(current: RecentSession<Adapter, 300>) -> String {
    current.user.id.clone()
}

/// Signed in, but too long ago: to the password prompt.
#[rocket::get("/recent", rank = 2)]
fn recent_needs_password(_current: CurrentSession<Adapter>) -> Redirect {
    Redirect::to("/reauthenticate")
}

/// Not signed in: to the login page.
#[rocket::get("/recent", rank = 3)]
fn recent_signed_out() -> Redirect {
    Redirect::to("/login")
}

/// A JSON API's sensitive action: the rejection is the answer.
#[rocket::get("/api/recent")]
fn api_recent(
    current: CurrentSession<Adapter>,
    sessions: &State<Sessions>,
) -> Result<String, SessionRejection> {
    current.require_recent_sign_in(sessions, WINDOW)?;
    Ok(current.user.id.clone())
}

/// The user and when they last proved who they are (microseconds).
#[rocket::get("/me")]
fn me(current: CurrentSession<Adapter>) -> String {
    format!(
        "{} {}",
        current.user.id,
        current.session.authenticated_at.timestamp_micros()
    )
}

/// The password prompt's target (the password check itself is the app's).
#[rocket::post("/reauthenticate")]
async fn reauthenticate(
    mut current: CurrentSession<Adapter>,
    sessions: &State<Sessions>,
) -> (Status, String) {
    answer(current.reauthenticate(sessions).await)
}

#[rocket::post("/rotate")]
async fn rotate(
    mut current: CurrentSession<Adapter>,
    sessions: &State<Sessions>,
) -> (Status, String) {
    answer(current.rotate(sessions).await)
}

/// The session is signed out (another device) between its validation and
/// the rotation.
#[rocket::post("/rotate-deleted")]
async fn rotate_deleted(
    mut current: CurrentSession<Adapter>,
    sessions: &State<Sessions>,
) -> (Status, String) {
    sessions
        .invalidate_session(&current.session.id)
        .await
        .unwrap();
    answer(current.rotate(sessions).await)
}

/// The new token, `none`, or the error with a 500.
fn answer(rotated: Result<Option<CreatedSession<String, Attributes>>, Error>) -> (Status, String) {
    match rotated {
        Ok(Some(created)) => (Status::Ok, created.token.into_string()),
        Ok(None) => (Status::Ok, "none".to_owned()),
        Err(e) => (Status::InternalServerError, e.to_string()),
    }
}

impl HasSessions for Client {
    fn sessions(&self) -> &Sessions {
        self.rocket().state::<Sessions>().unwrap()
    }
}

/// The manager, managed by the Rocket under test (bearer tokens
/// accepted).
type StepUp = SignedIn<Client>;

/// Sessions live `lifetime`; see `SignedIn::new`.
async fn step_up(lifetime: Duration) -> StepUp {
    SignedIn::new(lifetime, async |sessions| {
        let config = rocket::Config {
            log_level: rocket::config::LogLevel::Off,
            ..rocket::Config::debug_default()
        };
        let rocket = rocket::custom(config)
            .manage(sessions)
            .attach(SessionFairing::new().with_bearer_tokens(true))
            .mount(
                "/",
                rocket::routes![
                    recent,
                    recent_needs_password,
                    recent_signed_out,
                    api_recent,
                    me,
                    reauthenticate,
                    rotate,
                    rotate_deleted,
                ],
            );
        Client::untracked(rocket).await.unwrap()
    })
    .await
}

impl StepUp {
    async fn get_with_cookie(&self, path: &str, token: &str) -> LocalResponse<'_> {
        self.send(Method::Get, path, cookie(token)).await
    }

    async fn post_with_cookie(&self, path: &str, token: &str) -> LocalResponse<'_> {
        self.send(Method::Post, path, cookie(token)).await
    }

    async fn get_with_bearer(&self, path: &str, token: &str) -> LocalResponse<'_> {
        self.send(Method::Get, path, bearer(token)).await
    }

    async fn post_with_bearer(&self, path: &str, token: &str) -> LocalResponse<'_> {
        self.send(Method::Post, path, bearer(token)).await
    }

    async fn send(&self, method: Method, path: &str, header: Header<'static>) -> LocalResponse<'_> {
        self.app
            .req(method, path.to_owned())
            .header(header)
            .dispatch()
            .await
    }
}

fn cookie(token: &str) -> Header<'static> {
    Header::new("Cookie", format!("auth_session={token}"))
}

fn bearer(token: &str) -> Header<'static> {
    Header::new("Authorization", format!("Bearer {token}"))
}

/// Every `Set-Cookie` value of the response.
fn set_cookies(res: &LocalResponse<'_>) -> Vec<String> {
    res.headers().get("Set-Cookie").map(str::to_owned).collect()
}

/// The one `Set-Cookie` of the session cookie, split into its attributes;
/// fails unless there is exactly one.
fn the_session_cookie(res: &LocalResponse<'_>) -> Vec<String> {
    crate::support::signed_in::the_session_cookie(&set_cookies(res))
}

fn location(res: &LocalResponse<'_>) -> Option<String> {
    res.headers().get_one("Location").map(str::to_owned)
}

fn cache_control(res: &LocalResponse<'_>) -> Option<String> {
    res.headers().get_one("Cache-Control").map(str::to_owned)
}

/// The rank-2 route's answer: a redirect to the password prompt.
fn assert_to_password_prompt(res: &LocalResponse<'_>) {
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(res).as_deref(), Some("/reauthenticate"));
}

/// The rank-3 route's answer: a redirect to the login page.
fn assert_to_login(res: &LocalResponse<'_>) {
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(res).as_deref(), Some("/login"));
}

async fn body(res: LocalResponse<'_>) -> String {
    res.into_string().await.unwrap_or_default()
}

#[tokio::test]
async fn recent_session_at_the_edges_of_its_window() {
    let s = step_up(Duration::days(30)).await;
    let token = s.sign_in().await;

    s.at(WINDOW - US);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), Status::Ok, "1 µs inside the window");
    assert!(set_cookies(&res).is_empty(), "nothing to refresh");
    assert_eq!(body(res).await, "alice");

    s.at(WINDOW);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), Status::Ok, "exactly at the window");
    assert_eq!(body(res).await, "alice");

    s.at(WINDOW + US);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_to_password_prompt(&res);
    assert!(
        set_cookies(&res).is_empty(),
        "the session stays, so its cookie"
    );
    // Still signed in: only the step-up is refused.
    let res = s.get_with_cookie("/me", &token).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        body(res).await,
        format!("alice {}", s.t0.timestamp_micros())
    );
    // The same over a bearer token.
    assert_to_password_prompt(&s.get_with_bearer("/recent", &token).await);
    s.at(WINDOW);
    let res = s.get_with_bearer("/recent", &token).await;
    assert_eq!(res.status(), Status::Ok);

    // Without a session, or with a dead one: the login page, never the
    // password prompt.
    assert_to_login(&s.app.get("/recent").dispatch().await);
    let res = s.get_with_cookie("/recent", &"a".repeat(40)).await;
    assert_to_login(&res);
    assert_eq!(the_session_cookie(&res)[0], "auth_session=");
}

/// A JSON route using `require_recent_sign_in` answers the rejection as
/// JSON with the reason an API client acts on.
#[tokio::test]
async fn a_json_route_answers_401_with_the_reason() {
    let s = step_up(Duration::days(30)).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = s.get_with_cookie("/api/recent", &token).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(body(res).await, "alice");
    s.at(WINDOW + US);
    for res in [
        s.get_with_cookie("/api/recent", &token).await,
        s.get_with_bearer("/api/recent", &token).await,
    ] {
        assert_eq!(res.status(), Status::Unauthorized);
        assert_eq!(res.content_type(), Some(ContentType::JSON));
        let json: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "error": "sign in again to continue",
                "reason": "reauthentication_required",
            })
        );
    }
}

/// Sliding expiry is no sign-in: a session extended exactly at the edge of
/// the window still needs the step-up 1 µs later.
#[tokio::test]
async fn an_extension_is_not_a_sign_in() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), Status::Ok);
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"), "extended");
    assert_eq!(s.only_session().await.expires_at, s.t0 + WINDOW * 3);
    s.at(WINDOW + US);
    assert_to_password_prompt(&s.get_with_cookie("/recent", &token).await);
}

/// The forward to the password prompt still carries the refreshed cookie
/// when its validation extended the session.
#[tokio::test]
async fn the_step_up_answer_keeps_the_refreshed_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = s.get_with_cookie("/recent", &token).await;
    assert_to_password_prompt(&res);
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"));
    has_attributes(&refreshed, "Max-Age=600");
    assert_eq!(cache_control(&res).as_deref(), Some("no-store"));
    assert_eq!(
        s.only_session().await.expires_at,
        s.t0 + Duration::seconds(1000)
    );
}

/// Re-authentication at t0 + 400 s, in a request whose validation also
/// extends the session: the response sets the new token's cookie only
/// (the jar's refreshed cookie of the old token is gone), the old token is
/// dead, and the new one passes the step-up for another 300 s exactly.
#[tokio::test]
async fn reauthentication_sends_only_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(299));
    assert_eq!(
        s.get_with_cookie("/recent", &old).await.status(),
        Status::Ok
    );
    assert_eq!(
        s.only_session().await.expires_at,
        s.t0 + Duration::seconds(600),
        "not extended yet"
    );

    let t1 = Duration::seconds(400);
    s.at(t1);
    let res = s.post_with_cookie("/reauthenticate", &old).await;
    assert_eq!(res.status(), Status::Ok);
    let parts = the_session_cookie(&res);
    let no_store = cache_control(&res);
    let new = body(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    // The validation of that request extended the session (so the jar had
    // a refreshed cookie of the old token), and the rotation kept the
    // extension.
    s.assert_reauthenticated(&new, t1).await;

    let res = s.get_with_cookie("/recent", &old).await;
    assert_to_login(&res);
    assert_eq!(
        the_session_cookie(&res)[0],
        "auth_session=",
        "the old cookie is cleared"
    );
    assert_eq!(
        s.get_with_bearer("/me", &old).await.status(),
        Status::Unauthorized
    );

    let res = s.get_with_cookie("/recent", &new).await;
    assert_eq!(res.status(), Status::Ok);
    s.at(t1 + WINDOW);
    let res = s.get_with_cookie("/recent", &new).await;
    assert_eq!(res.status(), Status::Ok, "exactly at the new window");
    s.at(t1 + WINDOW + US);
    assert_to_password_prompt(&s.get_with_cookie("/recent", &new).await);
}

/// A rotation alone (a change of privilege) sends the new cookie but is no
/// sign-in: the step-up stays where the sign-in put it.
#[tokio::test]
async fn rotation_over_a_cookie_sets_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(100));
    let res = s.post_with_cookie("/rotate", &old).await;
    assert_eq!(res.status(), Status::Ok);
    let parts = the_session_cookie(&res);
    assert_eq!(set_cookies(&res).len(), 1);
    let no_store = cache_control(&res);
    let new = body(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    assert_eq!(s.only_session().await.authenticated_at, s.t0);

    assert_to_login(&s.get_with_cookie("/recent", &old).await);
    s.at(WINDOW);
    assert_eq!(
        s.get_with_cookie("/recent", &new).await.status(),
        Status::Ok
    );
    s.at(WINDOW + US);
    assert_to_password_prompt(&s.get_with_cookie("/recent", &new).await);
}

/// Over a bearer token the handler answers the new token in its body; no
/// cookie is set, also when the session was due for extension.
#[tokio::test]
async fn rotation_over_a_bearer_token_sets_no_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = s.post_with_bearer("/rotate", &old).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    assert_eq!(cache_control(&res), None);
    let new = body(res).await;
    assert_ne!(new, old);
    let res = s.get_with_bearer("/me", &new).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(
        body(res).await,
        format!("alice {}", s.t0.timestamp_micros())
    );
    assert_eq!(
        s.get_with_bearer("/me", &old).await.status(),
        Status::Unauthorized
    );
    // Rotated, not re-authenticated: the sign-in is still 400 s old.
    assert_to_password_prompt(&s.get_with_bearer("/recent", &new).await);

    // Re-authenticating over the bearer token: the new token in the body,
    // no cookie, and the step-up passes with it.
    let res = s.post_with_bearer("/reauthenticate", &new).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    let newer = body(res).await;
    assert_ne!(newer, new);
    let res = s.get_with_bearer("/recent", &newer).await;
    assert_eq!(res.status(), Status::Ok);
    assert_to_login(&s.get_with_bearer("/recent", &new).await);
}

/// The session is deleted between the validation and the rotation: the
/// handler sees `None` and a cookie client gets a blank cookie.
#[tokio::test]
async fn rotating_a_session_gone_meanwhile_clears_the_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(10));
    let res = s.post_with_cookie("/rotate-deleted", &token).await;
    assert_eq!(res.status(), Status::Ok);
    let blank = the_session_cookie(&res);
    assert_eq!(blank[0], "auth_session=");
    has_attributes(&blank, "Max-Age=0");
    assert_eq!(cache_control(&res).as_deref(), Some("no-store"));
    assert_eq!(body(res).await, "none");
    assert_eq!(
        s.get_with_cookie("/me", &token).await.status(),
        Status::Unauthorized
    );

    // Over a bearer token: `None` too, and no cookie.
    let other = s.sign_in().await;
    let res = s.post_with_bearer("/rotate-deleted", &other).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body(res).await, "none");
}
