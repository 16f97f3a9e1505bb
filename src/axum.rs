//! axum integration: extractors for the signed-in user and a tower layer
//! for CSRF protection and the session cookie.
//!
//! Put an `Arc<SessionManager<A>>` in the router's state (or in a state
//! type it can be taken from with [`FromRef`]) and add [`SessionLayer`]:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use lucia_diesel::axum::{CurrentSession, SessionLayer};
//! use lucia_diesel::{PgPool, PostgresAdapter, SessionManager};
//!
//! type Adapter = PostgresAdapter<PgPool>;
//!
//! async fn me(current: CurrentSession<Adapter>) -> String {
//!     format!("signed in as {}", current.user.id)
//! }
//!
//! fn app(sessions: SessionManager<Adapter>) -> Router {
//!     Router::new()
//!         .route("/me", get(me))
//!         .layer(SessionLayer::new().with_bearer_tokens(true))
//!         .with_state(Arc::new(sessions))
//! }
//! ```
//!
//! # Extractors
//! - [`CurrentSession`]: the validated session and its user; without a
//!   valid session the request is rejected with `401`.
//! - [`MaybeSession`]: the same, optional; `None` instead of a 401.
//! - [`RecentSession`]: a [`CurrentSession`] whose user signed in within
//!   the last `N` seconds (`RecentSession<A, N>`), for sensitive actions;
//!   a `401` with `"reason": "reauthentication_required"` otherwise.
//!
//! [`CurrentSession::rotate`] and [`CurrentSession::reauthenticate`] give
//! the session a new token; the layer sends its cookie.
//!
//! Both read the session cookie (or, with
//! [`SessionLayer::with_bearer_tokens`], an `Authorization: Bearer`
//! header, which then takes precedence over the cookie: see
//! [`crate::http`]) and validate it once per request, however many
//! extractors ask. A store failure is a `503` (`500` for failures that
//! retrying will not fix), never a valid session. Both need the layer:
//! without it they answer `500` (and log why), as the cookie they decide on
//! could not be sent and no CSRF check would have run.
//!
//! # The layer
//! - **CSRF.** Requests with a state-changing method (anything but `GET`,
//!   `HEAD`, `OPTIONS`, `TRACE`) are rejected with `403` before the handler
//!   runs when a browser says they come from elsewhere: a `Sec-Fetch-Site`
//!   other than `same-origin` or `none`, or an `Origin` (`null` included)
//!   that matches neither the request's `Host` nor an allowed origin.
//!   Requests with neither header, and bearer requests, pass.
//! - **Cookies.** The refreshed cookie (session extended) or a blank one
//!   (invalid session cookie) is added to the response, whatever its
//!   status, unless the handler set that cookie itself. Bearer requests
//!   never get one.
//! - **Caching.** Every response that sets a cookie gets
//!   `Cache-Control: no-store`.
//!
//! Rejections are small JSON bodies, `{"error": "...", "reason": "..."}`
//! (see [`SessionRejection`]), with the status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN};
use axum::http::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{Method, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::Adapter;
use crate::http::{
    CookieSlot, RequestHeaders, RequestPolicy, is_named, json_error_body, validate_request,
};
pub use crate::http::{CurrentSession, MaybeSession, RecentSession, SessionRejection};
use crate::session::SessionManager;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The tower layer: CSRF checks, the session cookie and
/// `Cache-Control: no-store`; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SessionLayer {
    policy: RequestPolicy,
}

impl SessionLayer {
    /// CSRF checks against the request's own host; cookies only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept state-changing requests from this origin's host
    /// (`"app.example.com"`, `"https://app.example.com"`, with a port when
    /// it is not the scheme's default).
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.policy = self.policy.with_allowed_origin(origin);
        self
    }

    /// Let the extractors read a session token from `Authorization: Bearer`
    /// (default: cookies only). A bearer token takes precedence over the
    /// session cookie; bearer requests are exempt from the CSRF check and
    /// never get a cookie set.
    pub fn with_bearer_tokens(mut self, accept: bool) -> Self {
        self.policy = self.policy.with_bearer_tokens(accept);
        self
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            policy: Arc::new(self.policy.clone()),
        }
    }
}

/// The service [`SessionLayer`] wraps around a router or handler.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    policy: Arc<RequestPolicy>,
}

/// What the layer hands the extractors, in the request's extensions.
#[derive(Debug, Clone)]
struct LayerContext {
    policy: Arc<RequestPolicy>,
    cookie: Arc<CookieSlot>,
}

/// The future of a [`SessionService`] call.
type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = request_headers(req.method(), req.uri(), req.headers());
        if !self.policy.allows(&headers) {
            let rejected = json_error(StatusCode::FORBIDDEN, "cross-origin request rejected");
            return Box::pin(std::future::ready(Ok(rejected)));
        }
        let cookie = Arc::new(CookieSlot::default());
        req.extensions_mut().insert(LayerContext {
            policy: Arc::clone(&self.policy),
            cookie: Arc::clone(&cookie),
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut res = response.await?;
            finish(&mut res, &cookie);
            Ok(res)
        })
    }
}

/// Adds the decided cookie (unless the handler set its own) and
/// `Cache-Control: no-store` when the response sets a cookie.
fn finish(res: &mut Response<Body>, slot: &CookieSlot) {
    set_decided_cookie(res.headers_mut(), slot);
    if res.headers().contains_key(SET_COOKIE) {
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Adds the slot's cookie to `headers`; a rotation's first removes every
/// `Set-Cookie` of the same name.
fn set_decided_cookie(headers: &mut HeaderMap, slot: &CookieSlot) {
    let set_cookies = headers.get_all(SET_COOKIE);
    let Some((cookie, replace)) = slot.take(set_cookies.iter().filter_map(|v| v.to_str().ok()))
    else {
        return;
    };
    if replace {
        let named = |v: &HeaderValue| v.to_str().is_ok_and(|v| is_named(v, cookie.name()));
        let kept: Vec<HeaderValue> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter(|v| !named(v))
            .cloned()
            .collect();
        headers.remove(SET_COOKIE);
        for value in kept {
            headers.append(SET_COOKIE, value);
        }
    }
    // The value is already percent-encoded where it needs to be.
    if let Ok(value) = HeaderValue::try_from(cookie.to_string()) {
        headers.append(SET_COOKIE, value);
    }
}

fn request_headers<'a>(
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> RequestHeaders<'a> {
    let get = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    RequestHeaders {
        method: method.as_str(),
        host: get(&HOST).or_else(|| uri.authority().map(|a| a.as_str())),
        origin: get(&ORIGIN),
        sec_fetch_site: get(&SEC_FETCH_SITE),
        authorization: get(&AUTHORIZATION),
    }
}

/// A `{"error": message}` response.
fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, json_error_body(message))
}

/// A JSON response.
fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

impl SessionRejection {
    /// The response status.
    #[must_use]
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response<Body> {
        json_response(self.status(), self.json_body())
    }
}

/// The request's validation, cached in its extensions.
struct Validated<A: Adapter>(Arc<Result<Option<CurrentSession<A>>, SessionRejection>>);

impl<A: Adapter> Clone for Validated<A> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// Validates the request's session once; later calls read the result.
async fn validated<A, S>(
    parts: &mut Parts,
    state: &S,
) -> Result<Option<CurrentSession<A>>, SessionRejection>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
    Arc<SessionManager<A>>: FromRef<S>,
{
    if let Some(done) = parts.extensions.get::<Validated<A>>() {
        return done.0.as_ref().clone();
    }
    let Some(context) = parts.extensions.get::<LayerContext>().cloned() else {
        tracing::error!(
            target: "lucia_diesel::axum",
            "lucia_diesel::axum::SessionLayer is missing: add it to the router (`.layer(SessionLayer::new())`)"
        );
        return Err(SessionRejection::MissingLayer);
    };
    let manager = Arc::<SessionManager<A>>::from_ref(state);
    let cookie = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let headers = request_headers(&parts.method, &parts.uri, &parts.headers);
    let from_cookie = manager.read_session_cookie(&cookie);
    let credential = context.policy.credential(&headers, from_cookie);
    let result = match validate_request(&manager, credential.as_ref()).await {
        Ok(validated) => {
            context.cookie.set(validated.set_cookie);
            Ok(validated
                .current
                .map(|current| current.with_cookie_slot(&context.cookie)))
        }
        Err(error) => Err(SessionRejection::from_error(&error)),
    };
    parts
        .extensions
        .insert(Validated::<A>(Arc::new(result.clone())));
    result
}

impl<A, S> FromRequestParts<S> for CurrentSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
    Arc<SessionManager<A>>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        validated::<A, S>(parts, state)
            .await?
            .ok_or(SessionRejection::Unauthorized)
    }
}

/// Rejects with `401` and `"reason": "reauthentication_required"` when the
/// sign-in is older than `SECONDS`; otherwise as [`CurrentSession`].
impl<A, S, const SECONDS: u64> FromRequestParts<S> for RecentSession<A, SECONDS>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
    Arc<SessionManager<A>>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::<A>::from_request_parts(parts, state).await?;
        Self::check(current, &Arc::<SessionManager<A>>::from_ref(state))
    }
}

impl<A, S> FromRequestParts<S> for MaybeSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
    Arc<SessionManager<A>>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        validated::<A, S>(parts, state).await.map(MaybeSession)
    }
}
