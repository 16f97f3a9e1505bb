//! Step-up through axum: `RecentSession` at the -1/0/+1 microsecond edges
//! of its window, and `CurrentSession::reauthenticate` / `rotate` with the
//! cookie the layer sends (only the new one, or a blank one when the
//! session went meanwhile), on a router of the test's own whose manager
//! runs on a clock the test moves.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Duration;
use lucia_diesel::axum::{CurrentSession, RecentSession, SessionLayer, SessionRejection};
use lucia_diesel::{Attributes, CreatedSession, Error};
use serde_json::json;

use super::{json, request, send, text};
use crate::support::signed_in::{
    Adapter, HasSessions, Sessions, SignedIn, US, WINDOW, assert_new_cookie, has_attributes,
};

/// The manager and the router under test.
struct App {
    sessions: Arc<Sessions>,
    router: Router,
}

impl HasSessions for App {
    fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

type StepUp = SignedIn<App>;

/// Sessions live `lifetime`; see `SignedIn::new`.
async fn step_up(lifetime: Duration) -> StepUp {
    SignedIn::new(lifetime, async |sessions| {
        let sessions = Arc::new(sessions);
        App {
            router: router(Arc::clone(&sessions)),
            sessions,
        }
    })
    .await
}

impl StepUp {
    async fn get_with_cookie(&self, path: &str, token: &str) -> Response<Body> {
        self.with_cookie("GET", path, token).await
    }

    async fn post_with_cookie(&self, path: &str, token: &str) -> Response<Body> {
        self.with_cookie("POST", path, token).await
    }

    async fn with_cookie(&self, method: &str, path: &str, token: &str) -> Response<Body> {
        let cookie = format!("auth_session={token}");
        send(
            &self.app.router,
            request(method, path, &[("cookie", &cookie)]),
        )
        .await
    }

    async fn with_bearer(&self, method: &str, path: &str, token: &str) -> Response<Body> {
        let bearer = format!("Bearer {token}");
        send(
            &self.app.router,
            request(method, path, &[("authorization", &bearer)]),
        )
        .await
    }
}

fn router(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route("/recent", get(recent))
        .route("/page", get(page))
        .route("/me", get(me))
        .route("/reauthenticate", post(reauthenticate))
        .route("/rotate", post(rotate))
        .route("/rotate-deleted", post(rotate_deleted))
        .route("/rotate-twice", post(rotate_twice))
        .layer(SessionLayer::new().with_bearer_tokens(true))
        .with_state(sessions)
}

/// A sensitive action: needs a sign-in within the last 300 seconds.
async fn recent(current: RecentSession<Adapter, 300>) -> String {
    current.user.id.clone()
}

/// The same for a page: a redirect to the password prompt when the sign-in
/// is too old, to the login page without a session.
async fn page(current: Result<RecentSession<Adapter, 300>, SessionRejection>) -> Response<Body> {
    match current {
        Ok(current) => current.user.id.clone().into_response(),
        Err(SessionRejection::ReauthenticationRequired) => {
            Redirect::to("/reauthenticate").into_response()
        }
        Err(SessionRejection::Unauthorized) => Redirect::to("/login").into_response(),
        Err(other) => other.into_response(),
    }
}

async fn me(current: CurrentSession<Adapter>) -> Json<serde_json::Value> {
    Json(json!({
        "user": current.user.id,
        "authenticated_at": current.session.authenticated_at,
    }))
}

/// The password prompt's target (the password check itself is the app's).
async fn reauthenticate(
    State(sessions): State<Arc<Sessions>>,
    mut current: CurrentSession<Adapter>,
) -> (StatusCode, String) {
    answer(current.reauthenticate(&sessions).await)
}

async fn rotate(
    State(sessions): State<Arc<Sessions>>,
    mut current: CurrentSession<Adapter>,
) -> (StatusCode, String) {
    answer(current.rotate(&sessions).await)
}

/// The session is signed out (another device) between its validation and
/// the rotation.
async fn rotate_deleted(
    State(sessions): State<Arc<Sessions>>,
    mut current: CurrentSession<Adapter>,
) -> (StatusCode, String) {
    sessions
        .invalidate_session(&current.session.id)
        .await
        .unwrap();
    answer(current.rotate(&sessions).await)
}

/// A privilege change and a re-authentication in one request, then the
/// other sessions signed out: each acts on the session as the one before
/// left it.
async fn rotate_twice(
    State(sessions): State<Arc<Sessions>>,
    mut current: CurrentSession<Adapter>,
) -> (StatusCode, String) {
    let first = current.rotate(&sessions).await;
    assert!(matches!(first, Ok(Some(_))), "first rotation");
    let second = current.reauthenticate(&sessions).await;
    let others = current.sign_out_others(&sessions).await.unwrap();
    assert_eq!(others, 1, "the other session, not this one");
    answer(second)
}

/// The new token, `none`, or the error with a 500.
fn answer(
    rotated: Result<Option<CreatedSession<String, Attributes>>, Error>,
) -> (StatusCode, String) {
    match rotated {
        Ok(Some(created)) => (StatusCode::OK, created.token.into_string()),
        Ok(None) => (StatusCode::OK, "none".to_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Every `Set-Cookie` value of the response.
fn set_cookies<B>(res: &Response<B>) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The one `Set-Cookie` of the session cookie, split into its attributes;
/// fails unless there is exactly one.
fn the_session_cookie<B>(res: &Response<B>) -> Vec<String> {
    crate::support::signed_in::the_session_cookie(&set_cookies(res))
}

fn cache_control<B>(res: &Response<B>) -> Option<String> {
    res.headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn location<B>(res: &Response<B>) -> Option<String> {
    res.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn assert_reauthentication_required(res: Response<Body>) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(
        json(res).await,
        json!({"error": "sign in again to continue", "reason": "reauthentication_required"})
    );
}

async fn assert_unauthorized(res: Response<Body>) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(res).await,
        json!({"error": "not signed in", "reason": "unauthorized"})
    );
}

#[tokio::test]
async fn recent_session_at_the_edges_of_its_window() {
    let s = step_up(Duration::days(30)).await;
    let token = s.sign_in().await;

    s.at(WINDOW - US);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), StatusCode::OK, "1 µs inside the window");
    assert!(set_cookies(&res).is_empty(), "nothing to refresh");
    assert_eq!(text(res).await, "alice");

    s.at(WINDOW);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), StatusCode::OK, "exactly at the window");
    assert_eq!(text(res).await, "alice");

    s.at(WINDOW + US);
    let res = s.get_with_cookie("/recent", &token).await;
    assert!(
        set_cookies(&res).is_empty(),
        "the session stays, so its cookie"
    );
    assert_reauthentication_required(res).await;
    // Still signed in: only the step-up is refused.
    let res = s.get_with_cookie("/me", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["authenticated_at"], json!(s.t0));
    // The same over a bearer token.
    assert_reauthentication_required(s.with_bearer("GET", "/recent", &token).await).await;
    s.at(WINDOW);
    let res = s.with_bearer("GET", "/recent", &token).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Without a session: the plain 401, with its own reason.
    assert_unauthorized(send(&s.app.router, request("GET", "/recent", &[])).await).await;
}

/// A page answers the step-up as a redirect to the password prompt, and a
/// missing session as a redirect to the login page.
#[tokio::test]
async fn a_page_redirects_to_the_password_prompt() {
    let s = step_up(Duration::days(30)).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = s.get_with_cookie("/page", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "alice");
    s.at(WINDOW + US);
    let res = s.get_with_cookie("/page", &token).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res).as_deref(), Some("/reauthenticate"));
    let res = send(&s.app.router, request("GET", "/page", &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res).as_deref(), Some("/login"));
}

/// Sliding expiry is no sign-in: a session extended exactly at the edge of
/// the window still needs the step-up 1 µs later.
#[tokio::test]
async fn an_extension_is_not_a_sign_in() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = s.get_with_cookie("/recent", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"), "extended");
    assert_eq!(s.only_session().await.expires_at, s.t0 + WINDOW * 3);
    s.at(WINDOW + US);
    assert_reauthentication_required(s.get_with_cookie("/recent", &token).await).await;
}

/// The step-up's 401 still carries the refreshed cookie when its
/// validation extended the session.
#[tokio::test]
async fn the_step_up_answer_keeps_the_refreshed_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = s.get_with_cookie("/recent", &token).await;
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"));
    has_attributes(&refreshed, "Max-Age=600");
    assert_eq!(cache_control(&res).as_deref(), Some("no-store"));
    assert_reauthentication_required(res).await;
    assert_eq!(
        s.only_session().await.expires_at,
        s.t0 + Duration::seconds(1000)
    );
}

/// Re-authentication at t0 + 400 s, in a request whose validation also
/// extends the session: the response sets the new token's cookie only
/// (the refreshed cookie of the old token is gone), the old token is dead,
/// and the new one passes the step-up for another 300 s exactly.
#[tokio::test]
async fn reauthentication_sends_only_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(299));
    assert_eq!(
        s.get_with_cookie("/recent", &old).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.only_session().await.expires_at,
        s.t0 + Duration::seconds(600),
        "not extended yet"
    );

    let t1 = Duration::seconds(400);
    s.at(t1);
    let res = s.post_with_cookie("/reauthenticate", &old).await;
    assert_eq!(res.status(), StatusCode::OK);
    let parts = the_session_cookie(&res);
    let no_store = cache_control(&res);
    let new = text(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    // The validation of that request extended the session (so it had a
    // refreshed cookie of the old token to send), and the rotation kept the
    // extension.
    s.assert_reauthenticated(&new, t1).await;

    let res = s.get_with_cookie("/recent", &old).await;
    let blank = the_session_cookie(&res);
    assert_eq!(blank[0], "auth_session=", "the old cookie is cleared");
    assert_unauthorized(res).await;
    assert_unauthorized(s.with_bearer("GET", "/me", &old).await).await;

    let res = s.get_with_cookie("/recent", &new).await;
    assert_eq!(res.status(), StatusCode::OK);
    s.at(t1 + WINDOW);
    let res = s.get_with_cookie("/recent", &new).await;
    assert_eq!(res.status(), StatusCode::OK, "exactly at the new window");
    s.at(t1 + WINDOW + US);
    assert_reauthentication_required(s.get_with_cookie("/recent", &new).await).await;
}

/// A rotation alone (a change of privilege) sends the new cookie but is no
/// sign-in: the step-up stays where the sign-in put it.
#[tokio::test]
async fn rotation_over_a_cookie_sets_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(100));
    let res = s.post_with_cookie("/rotate", &old).await;
    assert_eq!(res.status(), StatusCode::OK);
    let parts = the_session_cookie(&res);
    assert_eq!(set_cookies(&res).len(), 1);
    let no_store = cache_control(&res);
    let new = text(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    assert_eq!(s.only_session().await.authenticated_at, s.t0);

    assert_eq!(
        s.get_with_cookie("/recent", &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    s.at(WINDOW);
    assert_eq!(
        s.get_with_cookie("/recent", &new).await.status(),
        StatusCode::OK
    );
    s.at(WINDOW + US);
    assert_reauthentication_required(s.get_with_cookie("/recent", &new).await).await;
}

/// Over a bearer token the handler answers the new token in its body; no
/// cookie is set, also when the session was due for extension.
#[tokio::test]
async fn rotation_over_a_bearer_token_sets_no_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = s.with_bearer("POST", "/rotate", &old).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    assert_eq!(cache_control(&res), None);
    let new = text(res).await;
    assert_ne!(new, old);
    let res = s.with_bearer("GET", "/me", &new).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(json(res).await["authenticated_at"], json!(s.t0));
    assert_unauthorized(s.with_bearer("GET", "/me", &old).await).await;
    // Rotated, not re-authenticated: the sign-in is still 400 s old.
    assert_reauthentication_required(s.with_bearer("GET", "/recent", &new).await).await;

    // Re-authenticating over the bearer token: the new token in the body,
    // no cookie, and the step-up passes with it.
    let res = s.with_bearer("POST", "/reauthenticate", &new).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    let newer = text(res).await;
    assert_ne!(newer, new);
    assert_eq!(
        s.with_bearer("GET", "/recent", &newer).await.status(),
        StatusCode::OK
    );
    assert_unauthorized(s.with_bearer("GET", "/recent", &new).await).await;
}

/// The session is deleted between the validation and the rotation: the
/// handler sees `None` and a cookie client gets a blank cookie.
#[tokio::test]
async fn rotating_a_session_gone_meanwhile_clears_the_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(10));
    let res = s.post_with_cookie("/rotate-deleted", &token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let blank = the_session_cookie(&res);
    assert_eq!(blank[0], "auth_session=");
    has_attributes(&blank, "Max-Age=0");
    assert_eq!(cache_control(&res).as_deref(), Some("no-store"));
    assert_eq!(text(res).await, "none");
    assert_unauthorized(s.get_with_cookie("/me", &token).await).await;

    // Over a bearer token: `None` too, and no cookie.
    let other = s.sign_in().await;
    let res = s.with_bearer("POST", "/rotate-deleted", &other).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(text(res).await, "none");
}

/// Two rotations in one request: the second rotates the first's result,
/// the response carries the last token only, and that session lives.
#[tokio::test]
async fn a_second_rotation_in_a_request_rotates_the_first() {
    let s = step_up(Duration::days(30)).await;
    let old = s.sign_in().await;
    let other = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = s.post_with_cookie("/rotate-twice", &old).await;
    assert_eq!(res.status(), StatusCode::OK);
    let parts = the_session_cookie(&res);
    let last = text(res).await;
    assert_eq!(parts[0], format!("auth_session={last}"));
    let session = s.only_session().await;
    assert_eq!(session.authenticated_at, s.t0 + Duration::seconds(400));
    assert_eq!(session.id, s.sessions().session_id(&last));
    for dead in [&old, &other] {
        assert_eq!(
            s.get_with_cookie("/me", dead).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.get_with_cookie("/recent", &last).await.status(),
        StatusCode::OK
    );
}
