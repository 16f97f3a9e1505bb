//! Sign-up, login (throttled) and logout (which clears the cookie even
//! while the database is down).

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use lucia_diesel::actix::MaybeSession;
use lucia_diesel::http::TokenSource;
use serde::Deserialize;
use serde_json::json;

use super::api::{
    Adapter, ApiError, AppState, BEARER_TOKENS, SessionInfo, SessionJson, UserJson, client_address,
};
use super::common::accounts::{self, AccountError};
use super::common::sign_out::{self, Presented};
use super::common::throttle::Attempt;

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// Starts a session for `user_id` after invalidating the one the client
/// had (a login never keeps a session from before it), and answers with
/// the user, the session and its token, and the session cookie.
async fn start_session(
    state: &AppState,
    previous: MaybeSession<Adapter>,
    status: StatusCode,
    user_id: String,
    username: String,
) -> Result<HttpResponse, ApiError> {
    let sessions = &state.sessions;
    if let Some(old) = previous.0 {
        sessions.invalidate_session(&old.session.id).await?;
    }
    let created = sessions
        .create_session(user_id.clone(), SessionInfo::default())
        .await?;
    let body = json!({
        "user": UserJson { id: user_id, username },
        "session": SessionJson {
            id: created.session.id.as_str().to_owned(),
            created_at: created.session.created_at,
            expires_at: created.session.expires_at,
        },
        "token": created.token.as_str(),
    });
    let cookie = sessions.create_session_cookie(created.token.as_str());
    Ok(HttpResponse::build(status)
        .append_header((SET_COOKIE, cookie.to_string()))
        .json(body))
}

pub async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    previous: MaybeSession<Adapter>,
    form: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let username = accounts::normalize_username(&form.username)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    accounts::check_password(&form.password)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    let limits = &state.limits;
    let user_id = accounts::sign_up(&state.pool, &limits.hasher, &username, form.password).await?;
    // Signed in from here: this address is the account's first.
    limits
        .throttle
        .signed_in(&username, client_address(&req), Instant::now());
    start_session(&state, previous, StatusCode::CREATED, user_id, username).await
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    previous: MaybeSession<Adapter>,
    form: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let form = form.into_inner();
    let address = client_address(&req);
    let throttle = &state.limits.throttle;
    // A name no account can have is wrong without asking the database, and
    // counts for the address only.
    let account = accounts::normalize_username(&form.username).ok();
    // Counted as a failure from here until settled; dropped unsettled (a
    // busy hasher, a database error) it counts for nothing.
    let attempt = throttle
        .begin(account.as_deref(), address, Instant::now())
        .map_err(ApiError::throttled)?;
    let wrong = |attempt: Attempt<'_>| {
        attempt.failed();
        ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password")
    };
    let Some(name) = account.as_deref() else {
        return Err(wrong(attempt));
    };
    if !accounts::plausible_password(&form.password) {
        return Err(wrong(attempt));
    }
    let hasher = &state.limits.hasher;
    match accounts::log_in(&state.pool, hasher, name, form.password).await {
        Ok(Some(user_id)) => {
            attempt.succeeded(Instant::now());
            start_session(&state, previous, StatusCode::OK, user_id, name.to_owned()).await
        }
        Ok(None) | Err(AccountError::Taken) => Err(wrong(attempt)),
        Err(e) => Err(e.into()),
    }
}

/// Ends the session the request presents, read by the rule the middleware
/// validates with (a bearer token first, else the session cookie; a cookie
/// sent twice names no session), without validating first, so that it
/// works while the database cannot be reached:
/// - a cookie client's cookie is cleared in any case;
/// - `204` once the session is gone (or when the cookie named none);
/// - `503` when the database did not answer: the session then stays valid
///   until it expires (a bearer client may try again);
/// - `401` without any credential.
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let sessions = &state.sessions;
    let headers = req.headers();
    let cookie_header = headers
        .get_all(COOKIE)
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Presented {
        credential,
        has_cookie,
    } = sign_out::presented(sessions, &cookie_header, authorization, BEARER_TOKENS);
    let (mut res, clear) = match &credential {
        None if !has_cookie => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "not signed in").error_response();
        }
        None => (HttpResponse::NoContent().finish(), true),
        Some(credential) => {
            let cookie = credential.source() == TokenSource::Cookie;
            let id = sessions.session_id(credential.token());
            match sessions.invalidate_session(&id).await {
                Ok(()) => (HttpResponse::NoContent().finish(), cookie),
                Err(e) => {
                    eprintln!("sign-out: the session store failed: {e}");
                    let status = StatusCode::from_u16(lucia_diesel::http::error_status(&e))
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let message = if cookie {
                        "the session store is unavailable: the cookie is cleared, but the \
                         session stays valid until it expires"
                    } else {
                        "the session store is unavailable; try again later"
                    };
                    (ApiError::new(status, message).error_response(), cookie)
                }
            }
        }
    };
    if clear {
        let blank = sessions.create_blank_session_cookie().to_string();
        if let Ok(value) = actix_web::http::header::HeaderValue::try_from(blank) {
            res.headers_mut().append(SET_COOKIE, value);
        }
    }
    res
}
