//! Step-up through actix-web: `RecentSession` at the -1/0/+1 microsecond
//! edges of its window, and `CurrentSession::reauthenticate` / `rotate`
//! with the cookie the middleware sends (only the new one, or a blank one
//! when the session went meanwhile), on an app of the test's own whose
//! manager runs on a clock the test moves.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpResponse, ResponseError as _, test, web};
use chrono::Duration;
use lucia_diesel::actix::{CurrentSession, RecentSession, SessionMiddleware, SessionRejection};
use lucia_diesel::{Attributes, CreatedSession, Error};
use serde_json::json;

use super::{body_json, body_text, request};
use crate::support::signed_in::{
    Adapter, HasSessions, Sessions, SignedIn, US, WINDOW, assert_new_cookie, has_attributes,
};

/// Sends a `TestRequest` to the app under test.
macro_rules! call {
    ($app:expr, $req:expr) => {
        test::call_service(&$app, $req.to_request()).await
    };
}

impl HasSessions for web::Data<Sessions> {
    fn sessions(&self) -> &Sessions {
        self
    }
}

type StepUp = SignedIn<web::Data<Sessions>>;

/// Sessions live `lifetime`; see `SignedIn::new`.
async fn step_up(lifetime: Duration) -> StepUp {
    SignedIn::new(lifetime, async |sessions| web::Data::new(sessions)).await
}

/// The routes under test behind the middleware (bearer tokens accepted).
fn step_up_app(
    sessions: web::Data<Sessions>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(sessions)
        .wrap(SessionMiddleware::new().with_bearer_tokens(true))
        .route("/recent", web::get().to(recent))
        .route("/page", web::get().to(page))
        .route("/me", web::get().to(me))
        .route("/reauthenticate", web::post().to(reauthenticate))
        .route("/rotate", web::post().to(rotate))
        .route("/rotate-deleted", web::post().to(rotate_deleted))
}

/// A sensitive action: needs a sign-in within the last 300 seconds.
async fn recent(current: RecentSession<Adapter, 300>) -> String {
    current.user.id.clone()
}

/// The same for a page: a redirect to the password prompt when the sign-in
/// is too old, to the login page without a session.
async fn page(current: Result<RecentSession<Adapter, 300>, SessionRejection>) -> HttpResponse {
    let to = match current {
        Ok(current) => return HttpResponse::Ok().body(current.user.id.clone()),
        Err(SessionRejection::ReauthenticationRequired) => "/reauthenticate",
        Err(SessionRejection::Unauthorized) => "/login",
        Err(other) => return other.error_response(),
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

async fn me(current: CurrentSession<Adapter>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "user": current.user.id,
        "authenticated_at": current.session.authenticated_at,
    }))
}

/// The password prompt's target (the password check itself is the app's).
async fn reauthenticate(
    mut current: CurrentSession<Adapter>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    answer(current.reauthenticate(&sessions).await)
}

async fn rotate(
    mut current: CurrentSession<Adapter>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    answer(current.rotate(&sessions).await)
}

/// The session is signed out (another device) between its validation and
/// the rotation.
async fn rotate_deleted(
    mut current: CurrentSession<Adapter>,
    sessions: web::Data<Sessions>,
) -> HttpResponse {
    sessions
        .invalidate_session(&current.session.id)
        .await
        .unwrap();
    answer(current.rotate(&sessions).await)
}

/// The new token, `none`, or the error with a 500.
fn answer(rotated: Result<Option<CreatedSession<String, Attributes>>, Error>) -> HttpResponse {
    match rotated {
        Ok(Some(created)) => HttpResponse::Ok().body(created.token.into_string()),
        Ok(None) => HttpResponse::Ok().body("none"),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

fn with_cookie(method: &str, path: &str, token: &str) -> test::TestRequest {
    request(
        method,
        path,
        &[("cookie", &format!("auth_session={token}"))],
    )
}

fn with_bearer(method: &str, path: &str, token: &str) -> test::TestRequest {
    request(
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Every `Set-Cookie` value of the response.
fn set_cookies<B>(res: &ServiceResponse<B>) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The one `Set-Cookie` of the session cookie, split into its attributes;
/// fails unless there is exactly one.
fn the_session_cookie<B>(res: &ServiceResponse<B>) -> Vec<String> {
    crate::support::signed_in::the_session_cookie(&set_cookies(res))
}

fn header_of<B>(res: &ServiceResponse<B>, name: header::HeaderName) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn assert_reauthentication_required<B: MessageBody>(res: ServiceResponse<B>) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_of(&res, header::CONTENT_TYPE).as_deref(),
        Some("application/json")
    );
    assert_eq!(
        body_json(res).await,
        json!({"error": "sign in again to continue", "reason": "reauthentication_required"})
    );
}

async fn assert_unauthorized<B: MessageBody>(res: ServiceResponse<B>) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_json(res).await,
        json!({"error": "not signed in", "reason": "unauthorized"})
    );
}

#[actix_web::test]
async fn recent_session_at_the_edges_of_its_window() {
    let s = step_up(Duration::days(30)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let token = s.sign_in().await;

    s.at(WINDOW - US);
    let res = call!(app, with_cookie("GET", "/recent", &token));
    assert_eq!(res.status(), StatusCode::OK, "1 µs inside the window");
    assert!(set_cookies(&res).is_empty(), "nothing to refresh");
    assert_eq!(body_text(res).await, "alice");

    s.at(WINDOW);
    let res = call!(app, with_cookie("GET", "/recent", &token));
    assert_eq!(res.status(), StatusCode::OK, "exactly at the window");
    assert_eq!(body_text(res).await, "alice");

    s.at(WINDOW + US);
    let res = call!(app, with_cookie("GET", "/recent", &token));
    assert!(
        set_cookies(&res).is_empty(),
        "the session stays, so its cookie"
    );
    assert_reauthentication_required(res).await;
    // Still signed in: only the step-up is refused.
    let res = call!(app, with_cookie("GET", "/me", &token));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_json(res).await["authenticated_at"], json!(s.t0));
    // The same over a bearer token.
    assert_reauthentication_required(call!(app, with_bearer("GET", "/recent", &token))).await;
    s.at(WINDOW);
    let res = call!(app, with_bearer("GET", "/recent", &token));
    assert_eq!(res.status(), StatusCode::OK);

    // Without a session: the plain 401, with its own reason.
    assert_unauthorized(call!(app, request("GET", "/recent", &[]))).await;
}

/// A page answers the step-up as a redirect to the password prompt, and a
/// missing session as a redirect to the login page.
#[actix_web::test]
async fn a_page_redirects_to_the_password_prompt() {
    let s = step_up(Duration::days(30)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = call!(app, with_cookie("GET", "/page", &token));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res).await, "alice");
    s.at(WINDOW + US);
    let res = call!(app, with_cookie("GET", "/page", &token));
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header_of(&res, header::LOCATION).as_deref(),
        Some("/reauthenticate")
    );
    let res = call!(app, request("GET", "/page", &[]));
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&res, header::LOCATION).as_deref(), Some("/login"));
}

/// Sliding expiry is no sign-in: a session extended exactly at the edge of
/// the window still needs the step-up 1 µs later.
#[actix_web::test]
async fn an_extension_is_not_a_sign_in() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let token = s.sign_in().await;
    s.at(WINDOW);
    let res = call!(app, with_cookie("GET", "/recent", &token));
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"), "extended");
    assert_eq!(s.only_session().await.expires_at, s.t0 + WINDOW * 3);
    s.at(WINDOW + US);
    assert_reauthentication_required(call!(app, with_cookie("GET", "/recent", &token))).await;
}

/// The step-up's 401 still carries the refreshed cookie when its
/// validation extended the session.
#[actix_web::test]
async fn the_step_up_answer_keeps_the_refreshed_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = call!(app, with_cookie("GET", "/recent", &token));
    let refreshed = the_session_cookie(&res);
    assert_eq!(refreshed[0], format!("auth_session={token}"));
    has_attributes(&refreshed, "Max-Age=600");
    assert_eq!(
        header_of(&res, header::CACHE_CONTROL).as_deref(),
        Some("no-store")
    );
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
#[actix_web::test]
async fn reauthentication_sends_only_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(299));
    let res = call!(app, with_cookie("GET", "/recent", &old));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        s.only_session().await.expires_at,
        s.t0 + Duration::seconds(600),
        "not extended yet"
    );

    let t1 = Duration::seconds(400);
    s.at(t1);
    let res = call!(app, with_cookie("POST", "/reauthenticate", &old));
    assert_eq!(res.status(), StatusCode::OK);
    let parts = the_session_cookie(&res);
    let no_store = header_of(&res, header::CACHE_CONTROL);
    let new = body_text(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    // The validation of that request extended the session (so it had a
    // refreshed cookie of the old token to send), and the rotation kept the
    // extension.
    s.assert_reauthenticated(&new, t1).await;

    let res = call!(app, with_cookie("GET", "/recent", &old));
    let blank = the_session_cookie(&res);
    assert_eq!(blank[0], "auth_session=", "the old cookie is cleared");
    assert_unauthorized(res).await;
    assert_unauthorized(call!(app, with_bearer("GET", "/me", &old))).await;

    let res = call!(app, with_cookie("GET", "/recent", &new));
    assert_eq!(res.status(), StatusCode::OK);
    s.at(t1 + WINDOW);
    let res = call!(app, with_cookie("GET", "/recent", &new));
    assert_eq!(res.status(), StatusCode::OK, "exactly at the new window");
    s.at(t1 + WINDOW + US);
    assert_reauthentication_required(call!(app, with_cookie("GET", "/recent", &new))).await;
}

/// A rotation alone (a change of privilege) sends the new cookie but is no
/// sign-in: the step-up stays where the sign-in put it.
#[actix_web::test]
async fn rotation_over_a_cookie_sets_the_new_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(100));
    let res = call!(app, with_cookie("POST", "/rotate", &old));
    assert_eq!(res.status(), StatusCode::OK);
    let parts = the_session_cookie(&res);
    assert_eq!(set_cookies(&res).len(), 1);
    let no_store = header_of(&res, header::CACHE_CONTROL);
    let new = body_text(res).await;
    assert_new_cookie(&parts, no_store.as_deref(), &new, &old, "Max-Age=600");
    assert_eq!(s.only_session().await.authenticated_at, s.t0);

    let res = call!(app, with_cookie("GET", "/recent", &old));
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    s.at(WINDOW);
    let res = call!(app, with_cookie("GET", "/recent", &new));
    assert_eq!(res.status(), StatusCode::OK);
    s.at(WINDOW + US);
    assert_reauthentication_required(call!(app, with_cookie("GET", "/recent", &new))).await;
}

/// Over a bearer token the handler answers the new token in its body; no
/// cookie is set, also when the session was due for extension.
#[actix_web::test]
async fn rotation_over_a_bearer_token_sets_no_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let old = s.sign_in().await;
    s.at(Duration::seconds(400));
    let res = call!(app, with_bearer("POST", "/rotate", &old));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    assert_eq!(header_of(&res, header::CACHE_CONTROL), None);
    let new = body_text(res).await;
    assert_ne!(new, old);
    let res = call!(app, with_bearer("GET", "/me", &new));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body_json(res).await["authenticated_at"], json!(s.t0));
    assert_unauthorized(call!(app, with_bearer("GET", "/me", &old))).await;
    // Rotated, not re-authenticated: the sign-in is still 400 s old.
    assert_reauthentication_required(call!(app, with_bearer("GET", "/recent", &new))).await;

    // Re-authenticating over the bearer token: the new token in the body,
    // no cookie, and the step-up passes with it.
    let res = call!(app, with_bearer("POST", "/reauthenticate", &new));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    let newer = body_text(res).await;
    assert_ne!(newer, new);
    let res = call!(app, with_bearer("GET", "/recent", &newer));
    assert_eq!(res.status(), StatusCode::OK);
    assert_unauthorized(call!(app, with_bearer("GET", "/recent", &new))).await;
}

/// The session is deleted between the validation and the rotation: the
/// handler sees `None` and a cookie client gets a blank cookie.
#[actix_web::test]
async fn rotating_a_session_gone_meanwhile_clears_the_cookie() {
    let s = step_up(Duration::seconds(600)).await;
    let app = test::init_service(step_up_app(s.app.clone())).await;
    let token = s.sign_in().await;
    s.at(Duration::seconds(10));
    let res = call!(app, with_cookie("POST", "/rotate-deleted", &token));
    assert_eq!(res.status(), StatusCode::OK);
    let blank = the_session_cookie(&res);
    assert_eq!(blank[0], "auth_session=");
    has_attributes(&blank, "Max-Age=0");
    assert_eq!(
        header_of(&res, header::CACHE_CONTROL).as_deref(),
        Some("no-store")
    );
    assert_eq!(body_text(res).await, "none");
    assert_unauthorized(call!(app, with_cookie("GET", "/me", &token))).await;

    // Over a bearer token: `None` too, and no cookie.
    let other = s.sign_in().await;
    let res = call!(app, with_bearer("POST", "/rotate-deleted", &other));
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body_text(res).await, "none");
}
