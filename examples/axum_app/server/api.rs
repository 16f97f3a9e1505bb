//! The example's JSON API: sign-up, login, the current user, sessions,
//! revoke, logout.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lucia_diesel::axum::{CurrentSession, MaybeSession, SessionLayer};
use lucia_diesel::http::{TokenSource, error_status};
use lucia_diesel::{PgPool, PostgresAdapter, SessionId, SessionManager};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts::{self, AccountError, Hasher};

/// Session attributes: none beyond the crate's own columns (the session's
/// `created_at` is one of them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionInfo {}

/// User attributes: extra columns of `auth_user`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub username: String,
}

pub type Adapter = PostgresAdapter<PgPool, String, SessionInfo, UserInfo>;
pub type Sessions = SessionManager<Adapter>;
type Current = CurrentSession<Adapter>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub sessions: Arc<Sessions>,
    pub pool: PgPool,
    pub hasher: Arc<Hasher>,
}

impl FromRef<AppState> for Arc<Sessions> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.sessions)
    }
}

/// The API, with the session layer (bearer tokens accepted, for API
/// clients; cookies for browsers).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/signup", post(signup))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", delete(revoke))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(SessionLayer::new().with_bearer_tokens(true))
        .with_state(state)
}

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: bool,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.retry_after {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl From<lucia_diesel::Error> for ApiError {
    fn from(e: lucia_diesel::Error) -> Self {
        // Errors never hold a token.
        eprintln!("session store error: {e}");
        let status =
            StatusCode::from_u16(error_status(&e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, "the service is unavailable; try again later")
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Taken => Self::new(StatusCode::CONFLICT, "that username is taken"),
            AccountError::Busy => Self {
                retry_after: true,
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many sign-ins at once; try again in a second",
                )
            },
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct UserJson {
    id: String,
    username: String,
}

#[derive(Serialize)]
struct SessionJson {
    id: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

fn user_json(current: &Current) -> UserJson {
    UserJson {
        id: current.user.id.clone(),
        username: current.user.attributes.username.clone(),
    }
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
    let cookie = sessions.create_session_cookie(created.token.as_str());
    let mut res = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
        res.headers_mut().append(SET_COOKIE, value);
    }
    Ok(res)
}

async fn signup(
    State(state): State<AppState>,
    previous: MaybeSession<Adapter>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(form) = body?;
    let username = accounts::normalize_username(&form.username)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    accounts::check_password(&form.password)
        .map_err(|msg| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    let user_id = accounts::sign_up(&state.pool, &state.hasher, &username, form.password).await?;
    start_session(&state, previous, StatusCode::CREATED, user_id, username).await
}

async fn login(
    State(state): State<AppState>,
    previous: MaybeSession<Adapter>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(form) = body?;
    let wrong = || ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password");
    // A name no account can have, or an impossible password, is wrong
    // without asking the database.
    let Ok(username) = accounts::normalize_username(&form.username) else {
        return Err(wrong());
    };
    if form.password.is_empty() || form.password.len() > 1024 {
        return Err(wrong());
    }
    match accounts::log_in(&state.pool, &state.hasher, &username, form.password).await? {
        Some(user_id) => start_session(&state, previous, StatusCode::OK, user_id, username).await,
        None => Err(wrong()),
    }
}

async fn me(current: Current) -> Json<serde_json::Value> {
    Json(json!({
        "user": user_json(&current),
        "session": SessionJson {
            id: current.session.id.as_str().to_owned(),
            created_at: current.session.created_at,
            expires_at: current.session.expires_at,
        },
    }))
}

async fn list_sessions(
    State(state): State<AppState>,
    current: Current,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sessions = state.sessions.get_user_sessions(&current.user.id).await?;
    let list: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id.as_str(),
                "created_at": s.created_at,
                "expires_at": s.expires_at,
                "current": s.id == current.session.id,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

/// Ends the current session: 204, and a blank cookie for cookie clients.
async fn end_current(state: &AppState, current: &Current) -> Result<Response, ApiError> {
    state
        .sessions
        .invalidate_session(&current.session.id)
        .await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if current.source == TokenSource::Cookie {
        let blank = state.sessions.create_blank_session_cookie();
        if let Ok(value) = HeaderValue::try_from(blank.to_string()) {
            res.headers_mut().append(SET_COOKIE, value);
        }
    }
    Ok(res)
}

async fn logout(State(state): State<AppState>, current: Current) -> Result<Response, ApiError> {
    end_current(&state, &current).await
}

/// Revokes one of the user's own sessions; 404 for any other id.
async fn revoke(
    State(state): State<AppState>,
    current: Current,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = SessionId::new(id);
    if id == current.session.id {
        return end_current(&state, &current).await;
    }
    let own = state.sessions.get_user_sessions(&current.user.id).await?;
    if !own.iter().any(|s| s.id == id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"));
    }
    state.sessions.invalidate_session(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Listens on 127.0.0.1:`port`; the error is one line naming the port and
/// `APP_PORT` when it is taken.
pub async fn listen(port: u16) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "port {port} on 127.0.0.1 is already in use; set APP_PORT to another port (APP_PORT=3001 cargo run --example axum_app --features axum)"
            ),
            _ => format!("cannot listen on 127.0.0.1:{port} (APP_PORT): {e}"),
        })
}
