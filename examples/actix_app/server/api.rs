//! The example's JSON API on actix-web: the app and its state, the error
//! answers, the index, the current user, sessions and revoke. Sign-up,
//! login and logout are in `sign_in.rs`; re-authentication, signing out
//! the other sessions and deleting the account in `account.rs`.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use chrono::{DateTime, Utc};
use lucia_diesel::actix::{CurrentSession, SessionMiddleware};
use lucia_diesel::http::{TokenSource, error_status};
use lucia_diesel::{PgPool, PostgresAdapter, SessionId, SessionManager};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::PasswordLimits;
use super::common::accounts::AccountError;
use super::common::database::UNAVAILABLE_RETRY_AFTER_SECS;
use super::common::hashing::BUSY_RETRY_AFTER_SECS;
use super::common::throttle::Throttled;
use super::{account, sign_in};

/// Session attributes: none beyond the crate's own columns.
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
/// then takes precedence over the cookie, in the middleware and in logout
/// alike.
pub const BEARER_TOKENS: bool = true;

/// Everything the handlers share. The manager is also app data of its own
/// (`web::Data<Sessions>`), where the extractors look for it.
#[derive(Clone)]
pub struct AppState {
    pub sessions: web::Data<Sessions>,
    /// The session manager's pool; the account queries run on it too.
    pub pool: PgPool,
    pub limits: Arc<PasswordLimits>,
}

impl AppState {
    pub fn new(sessions: Sessions, pool: PgPool, limits: PasswordLimits) -> Self {
        Self {
            sessions: web::Data::new(sessions),
            pool,
            limits: Arc::new(limits),
        }
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

/// The API, with the session middleware (bearer tokens accepted, for API
/// clients; cookies for browsers). Every `503` carries `Retry-After`.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state.sessions.clone())
        .app_data(web::Data::new(state))
        .app_data(web::JsonConfig::default().error_handler(|err, _| {
            let status = err.status_code();
            ApiError::new(status, err.to_string()).into()
        }))
        .wrap(SessionMiddleware::new().with_bearer_tokens(BEARER_TOKENS))
        .wrap(from_fn(retry_after_on_503))
        .route("/api", web::get().to(index))
        .route("/api/signup", web::post().to(sign_in::signup))
        .route("/api/login", web::post().to(sign_in::login))
        .route("/api/logout", web::post().to(sign_in::logout))
        .route("/api/me", web::get().to(me))
        .route("/api/sessions", web::get().to(list_sessions))
        .route(
            "/api/sessions/revoke-others",
            web::post().to(account::revoke_others),
        )
        .route("/api/sessions/{id}", web::delete().to(revoke))
        .route(
            "/api/reauthenticate",
            web::post().to(account::reauthenticate),
        )
        .route("/api/account", web::delete().to(account::delete_account))
        .default_service(web::to(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see GET /api")
        }))
}

/// The server on `listener`, two workers per core as actix's default; it
/// stops gracefully on Ctrl-C and SIGTERM.
pub fn server(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || app(state.clone()))
        .listen(listener)?
        .run())
}

/// The line printed once the API listens: a URL that answers (the index).
pub fn banner(address: SocketAddr) -> String {
    format!(
        "lucia-diesel actix-web example: http://{address}/api lists the routes (Ctrl-C to stop)"
    )
}

/// A `503` says when to try again, whoever made it (the extractors or a
/// handler).
async fn retry_after_on_503(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    if res.status() == StatusCode::SERVICE_UNAVAILABLE && !res.headers().contains_key(RETRY_AFTER) {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
    }
    Ok(res)
}

/// The client's address: the TCP peer's (`None` without one). Behind a
/// proxy, read the header the proxy sets instead.
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|addr| addr.ip())
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

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((RETRY_AFTER, secs));
        }
        match self.reason {
            Some(reason) => res.json(json!({ "error": self.message, "reason": reason })),
            None => res.json(json!({ "error": self.message })),
        }
    }
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.error_response()
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
async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "name": "lucia-diesel actix-web example", "routes": ROUTES }))
}

async fn me(current: Current) -> HttpResponse {
    HttpResponse::Ok().json(json!({
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
    state: web::Data<AppState>,
    current: Current,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Ok().json(json!({ "sessions": list })))
}

/// Revokes one of the user's own sessions; 404 for any other id.
async fn revoke(
    state: web::Data<AppState>,
    current: Current,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = SessionId::new(id.into_inner());
    if id != current.session.id {
        let own = state.sessions.get_user_sessions(&current.user.id).await?;
        if !own.iter().any(|s| s.id == id) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"));
        }
    }
    state.sessions.invalidate_session(&id).await?;
    let mut res = HttpResponse::NoContent();
    if id == current.session.id && current.source == TokenSource::Cookie {
        res.append_header((
            SET_COOKIE,
            state.sessions.create_blank_session_cookie().to_string(),
        ));
    }
    Ok(res.finish())
}

/// Listens on 127.0.0.1:`port`; the error is one line naming the port and
/// `APP_PORT` when it is taken.
pub fn listen(port: u16) -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", port)).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {port} on 127.0.0.1 is already in use; set APP_PORT to another port (APP_PORT=8081 cargo run --example actix_app --features actix)"
        ),
        _ => format!("cannot listen on 127.0.0.1:{port} (APP_PORT): {e}"),
    })
}
