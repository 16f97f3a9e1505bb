//! What a signed-in user does to their account: prove who they are again
//! (re-authentication, throttled like a login), sign out every other
//! session, and delete the account, which needs a recent sign-in.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::SET_COOKIE;
use actix_web::{HttpRequest, HttpResponse, web};
use lucia_diesel::actix::RecentSession;
use lucia_diesel::http::TokenSource;
use serde::Deserialize;
use serde_json::json;

use super::api::{Adapter, ApiError, AppState, Current, client_address};
use super::common::accounts::{self, AccountError};
use super::common::throttle::Attempt;

/// How recent a sign-in (or re-authentication) deleting the account needs,
/// in seconds: 5 minutes. Older, `DELETE /api/account` answers `401` with
/// `"reason": "reauthentication_required"`; `POST /api/reauthenticate`
/// with the password makes the session recent again.
pub const DELETE_ACCOUNT_WITHIN_SECS: u64 = 300;

#[derive(Deserialize)]
pub struct Password {
    password: String,
}

/// `401` with `"reason": "wrong_password"`.
fn wrong_password() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "wrong password").with_reason("wrong_password")
}

/// Checks the signed-in user's password again, then records the sign-in
/// as recent and gives the session a new token: a cookie client gets it as
/// the session cookie (the middleware sends it), a bearer client in the
/// body (`"token"`). Wrong passwords count against the login throttle, as
/// a login's for the same account from the same address would.
pub async fn reauthenticate(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut current: Current,
    form: web::Json<Password>,
) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let limits = &state.limits;
    let username = current.user.attributes.username.as_str();
    // Counted as a failure from here until settled; dropped unsettled (a
    // busy hasher, a database error) it counts for nothing.
    let attempt = limits
        .throttle
        .begin(Some(username), client_address(&req), Instant::now())
        .map_err(ApiError::throttled)?;
    let wrong = |attempt: Attempt<'_>| {
        attempt.failed();
        wrong_password()
    };
    if !accounts::plausible_password(&form.password) {
        return Err(wrong(attempt));
    }
    let user_id = current.user.id.as_str();
    match accounts::check_password_of(&state.pool, &limits.hasher, user_id, form.password).await {
        Ok(true) => attempt.succeeded(Instant::now()),
        Ok(false) | Err(AccountError::Taken) => return Err(wrong(attempt)),
        Err(e) => return Err(e.into()),
    }
    let Some(created) = current.reauthenticate(&state.sessions).await? else {
        // Signed out (or expired) meanwhile: the middleware clears the cookie.
        let gone = ApiError::new(StatusCode::UNAUTHORIZED, "not signed in");
        return Err(gone.with_reason("unauthorized"));
    };
    let mut body = json!({
        "authenticated_at": created.session.authenticated_at,
        "expires_at": created.session.expires_at,
    });
    // The cookie is HttpOnly: a cookie client never sees the token.
    if current.source == TokenSource::Bearer {
        body["token"] = json!(created.token.as_str());
    }
    Ok(HttpResponse::Ok().json(body))
}

/// Signs out every session of the user but this one: `{"revoked": n}`.
pub async fn revoke_others(
    state: web::Data<AppState>,
    current: Current,
) -> Result<HttpResponse, ApiError> {
    let revoked = current.sign_out_others(&state.sessions).await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked })))
}

/// Deletes the account and every session of it, when the sign-in is recent
/// (see [`DELETE_ACCOUNT_WITHIN_SECS`]): `204`, and a blank cookie for a
/// cookie client.
pub async fn delete_account(
    state: web::Data<AppState>,
    current: RecentSession<Adapter, DELETE_ACCOUNT_WITHIN_SECS>,
) -> Result<HttpResponse, ApiError> {
    let user_id = &current.user.id;
    // Through the manager first, so that its cache forgets them at once.
    state.sessions.invalidate_user_sessions(user_id).await?;
    // `false` when a concurrent request deleted it first: gone all the same.
    accounts::delete_account(&state.pool, user_id).await?;
    let mut res = HttpResponse::NoContent();
    if current.source == TokenSource::Cookie {
        let blank = state.sessions.create_blank_session_cookie();
        res.append_header((SET_COOKIE, blank.to_string()));
    }
    Ok(res.finish())
}
