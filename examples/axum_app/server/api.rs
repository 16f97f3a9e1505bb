//! The example's JSON API: the router and its state, the error answers,
//! the index, the current user, sessions and revoke. Sign-up, login and
//! logout are in `sign_in.rs`; re-authentication, signing out the other
//! sessions and deleting the account in `account.rs`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lucia_diesel::axum::{CurrentSession, SessionLayer};
use lucia_diesel::http::{TokenSource, error_status};
use lucia_diesel::{PgPool, PostgresAdapter, SessionId, SessionManager};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::PasswordLimits;
use super::common::accounts::AccountError;
use super::common::database::UNAVAILABLE_RETRY_AFTER_SECS;
use super::common::hashing::BUSY_RETRY_AFTER_SECS;
use super::common::throttle::Throttled;
use super::metrics::{self, Metrics};
use super::{account, sign_in};

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
pub type Current = CurrentSession<Adapter>;

/// Whether an `Authorization: Bearer` token is accepted (API clients); it
/// then takes precedence over the cookie, in the layer and in logout alike.
pub const BEARER_TOKENS: bool = true;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub sessions: Arc<Sessions>,
    /// The session manager's pool; the account queries run on it too.
    pub pool: PgPool,
    pub limits: Arc<PasswordLimits>,
    /// What `GET /metrics` serves (with the crate's feature `metrics`).
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(sessions: Sessions, pool: PgPool, limits: PasswordLimits) -> Self {
        Self {
            sessions: Arc::new(sessions),
            pool,
            limits: Arc::new(limits),
            metrics: Metrics::none(),
        }
    }
}

impl FromRef<AppState> for Arc<Sessions> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.sessions)
    }
}

/// Every route, as the index lists it.
pub const ROUTES: [&str; 10] = [
    "GET /api",
    "POST /api/signup",
    "POST /api/login",
    "POST /api/logout",
    "GET /api/me",
    "GET /api/sessions",
    "DELETE /api/sessions/{id}",
    "POST /api/sessions/revoke-others",
    "POST /api/reauthenticate",
    "DELETE /api/account",
];

/// The API, with the session layer (bearer tokens accepted, for API
/// clients; cookies for browsers), and `/metrics` with the crate's feature
/// `metrics`. Every `503` carries `Retry-After`.
pub fn router(state: AppState) -> Router {
    metrics::routes()
        .route("/api", get(index))
        .route("/api/signup", post(sign_in::signup))
        .route("/api/login", post(sign_in::login))
        .route("/api/logout", post(sign_in::logout))
        .route("/api/me", get(me))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", delete(revoke))
        .route("/api/sessions/revoke-others", post(account::revoke_others))
        .route("/api/reauthenticate", post(account::reauthenticate))
        .route("/api/account", delete(account::delete_account))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; see GET /api") })
        .layer(SessionLayer::new().with_bearer_tokens(BEARER_TOKENS))
        .layer(axum::middleware::map_response(retry_after_on_503))
        .with_state(state)
}

/// Serves the API on `listener`, telling handlers each client's address
/// (for the login throttle).
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

/// The line printed once the API listens: a URL that answers (the index).
pub fn banner(address: SocketAddr) -> String {
    format!("lucia-diesel axum example: http://{address}/api lists the routes (Ctrl-C to stop)")
}

/// A `503` says when to try again, whoever made it (the layer's
/// extractors or a handler).
async fn retry_after_on_503(mut res: Response) -> Response {
    if res.status() == StatusCode::SERVICE_UNAVAILABLE && !res.headers().contains_key(RETRY_AFTER) {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
    }
    res
}

/// The client's address: the TCP peer's (`None` without one, as in tests
/// that call the router directly). Behind a proxy, read the header the
/// proxy sets instead.
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// An error answer: `{"error": "..."}` with a status, a `"reason"` for
/// programs where one tells them what to do, and `Retry-After` when
/// waiting helps.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    reason: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason: None,
            retry_after: None,
        }
    }

    /// The answer with `"reason": reason`, a stable code for programs.
    pub fn with_reason(self, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }

    /// A sign-in refused by the throttle: 429 with the wait.
    pub fn throttled(why: Throttled) -> Self {
        Self {
            retry_after: Some(why.retry_after_secs()),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, why.api_message())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.reason {
            Some(reason) => json!({ "error": self.message, "reason": reason }),
            None => json!({ "error": self.message }),
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
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
                retry_after: Some(BUSY_RETRY_AFTER_SECS),
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

#[derive(Serialize)]
pub struct UserJson {
    pub id: String,
    pub username: String,
}

#[derive(Serialize)]
pub struct SessionJson {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The routes, so that the printed URL answers.
async fn index() -> Json<serde_json::Value> {
    Json(json!({ "name": "lucia-diesel axum example", "routes": ROUTES }))
}

async fn me(current: Current) -> Json<serde_json::Value> {
    Json(json!({
        "user": UserJson {
            id: current.user.id.clone(),
            username: current.user.attributes.username.clone(),
        },
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

/// Revokes one of the user's own sessions; 404 for any other id.
async fn revoke(
    State(state): State<AppState>,
    current: Current,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = SessionId::new(id);
    if id != current.session.id {
        let own = state.sessions.get_user_sessions(&current.user.id).await?;
        if !own.iter().any(|s| s.id == id) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"));
        }
    }
    state.sessions.invalidate_session(&id).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if id == current.session.id && current.source == TokenSource::Cookie {
        append_cookie(&mut res, &state.sessions.create_blank_session_cookie());
    }
    Ok(res)
}

/// Adds a `Set-Cookie` (the value is already encoded where it must be).
pub fn append_cookie(res: &mut Response, cookie: &cookie::Cookie<'_>) {
    if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
        res.headers_mut().append(SET_COOKIE, value);
    }
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
