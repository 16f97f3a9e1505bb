//! Sign-up, login (throttled) and logout (which clears the cookie even
//! while the database is down).

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lucia_diesel::axum::MaybeSession;
use lucia_diesel::http::TokenSource;
use serde::Deserialize;
use serde_json::json;

use super::api::{
    Adapter, ApiError, AppState, BEARER_TOKENS, ClientAddress, SessionInfo, SessionJson, UserJson,
    append_cookie,
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
) -> Result<Response, ApiError> {
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
    let mut res = (status, Json(body)).into_response();
    append_cookie(
        &mut res,
        &sessions.create_session_cookie(created.token.as_str()),
    );
    Ok(res)
}

pub async fn signup(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    previous: MaybeSession<Adapter>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(form) = body?;
    let username = accounts::normalize_username(&form.username)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    accounts::check_password(&form.password)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    let limits = &state.limits;
    let user_id = accounts::sign_up(&state.pool, &limits.hasher, &username, form.password).await?;
    // Signed in from here: this address is the account's first.
    limits
        .throttle
        .signed_in(&username, address, Instant::now());
    start_session(&state, previous, StatusCode::CREATED, user_id, username).await
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    previous: MaybeSession<Adapter>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(form) = body?;
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

/// Ends the session the request presents, read by the rule the layer
/// validates with (a bearer token first, else the session cookie; a cookie
/// sent twice names no session), without validating first, so that it
/// works while the database cannot be reached:
/// - a cookie client's cookie is cleared in any case;
/// - `204` once the session is gone (or when the cookie named none);
/// - `503` when the database did not answer: the session then stays valid
///   until it expires (a bearer client may try again);
/// - `401` without any credential.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let sessions = &state.sessions;
    let cookie_header = headers
        .get_all(COOKIE)
        .iter()
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
            let not_signed_in = ApiError::new(StatusCode::UNAUTHORIZED, "not signed in");
            return not_signed_in.into_response();
        }
        None => (StatusCode::NO_CONTENT.into_response(), true),
        Some(credential) => {
            let cookie = credential.source() == TokenSource::Cookie;
            let id = sessions.session_id(credential.token());
            match sessions.invalidate_session(&id).await {
                Ok(()) => (StatusCode::NO_CONTENT.into_response(), cookie),
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
                    (ApiError::new(status, message).into_response(), cookie)
                }
            }
        }
    };
    if clear {
        append_cookie(&mut res, &sessions.create_blank_session_cookie());
    }
    res
}
