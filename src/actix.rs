//! actix-web integration: extractors for the signed-in user and a
//! middleware for CSRF protection and the session cookie.
//!
//! Put the [`SessionManager`] in the app data as `web::Data` and wrap the
//! app (or a scope) in [`SessionMiddleware`]:
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use lucia_diesel::actix::{CurrentSession, SessionMiddleware};
//! use lucia_diesel::{PgPool, PostgresAdapter, SessionManager};
//!
//! type Adapter = PostgresAdapter<PgPool>;
//!
//! async fn me(current: CurrentSession<Adapter>) -> String {
//!     format!("signed in as {}", current.user.id)
//! }
//!
//! async fn serve(sessions: SessionManager<Adapter>) -> std::io::Result<()> {
//!     let sessions = web::Data::new(sessions);
//!     HttpServer::new(move || {
//!         App::new()
//!             .app_data(sessions.clone())
//!             .wrap(SessionMiddleware::new().with_bearer_tokens(true))
//!             .route("/me", web::get().to(me))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
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
//! the session a new token; the middleware sends its cookie.
//!
//! Both read the session cookie (or, with
//! [`SessionMiddleware::with_bearer_tokens`], an `Authorization: Bearer`
//! header, which then takes precedence over the cookie: see
//! [`crate::http`]) and validate it once per request, however many
//! extractors ask, also when a handler takes both. A store failure is a
//! `503` (`500` for failures that retrying will not fix), never a valid
//! session. Both need the middleware: without it they answer `500` (and
//! log why), as the cookie they decide on could not be sent and no CSRF
//! check would have run; without a `web::Data<SessionManager<A>>` of their
//! adapter, `500` too (logged).
//!
//! # The middleware
//! - **CSRF.** Requests with a state-changing method (anything but `GET`,
//!   `HEAD`, `OPTIONS`, `TRACE`) are rejected with `403` before the handler
//!   runs when a browser says they come from elsewhere: a `Sec-Fetch-Site`
//!   other than `same-origin` or `none`, or an `Origin` (`null` included)
//!   that matches neither the request's `Host` nor an allowed origin.
//!   Requests with neither header, and bearer requests, pass.
//! - **Cookies.** The refreshed cookie (session extended) or a blank one
//!   (invalid session cookie) is added to the response, whatever its
//!   status (a rejection's too), unless the handler set that cookie itself.
//!   Bearer requests never get one.
//! - **Caching.** Every response that sets a cookie gets
//!   `Cache-Control: no-store`.
//!
//! Rejections are small JSON bodies, `{"error": "...", "reason": "..."}`,
//! with the status
//! ([`SessionRejection`]).

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue,
    ORIGIN, SET_COOKIE,
};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use tokio::sync::OnceCell;

use crate::adapter::Adapter;
use crate::http::{
    CookieSlot, RequestHeaders, RequestPolicy, is_named, json_error_body, validate_request,
};
pub use crate::http::{CurrentSession, MaybeSession, RecentSession, SessionRejection};
use crate::session::SessionManager;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The middleware: CSRF checks, the session cookie and
/// `Cache-Control: no-store`; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SessionMiddleware {
    policy: RequestPolicy,
}

impl SessionMiddleware {
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

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<SessionService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            policy: Arc::new(self.policy.clone()),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around an app or scope.
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    policy: Arc<RequestPolicy>,
}

/// What the middleware hands the extractors, in the request's extensions.
#[derive(Debug, Clone)]
struct Context {
    policy: Arc<RequestPolicy>,
    cookie: Arc<CookieSlot>,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let allowed = self
            .policy
            .allows(&request_headers(req.request(), req.headers()));
        if !allowed {
            let rejected = json_error(StatusCode::FORBIDDEN, "cross-origin request rejected");
            return Box::pin(ready(Ok(req.into_response(rejected).map_into_right_body())));
        }
        let cookie = Arc::new(CookieSlot::default());
        req.extensions_mut().insert(Context {
            policy: Arc::clone(&self.policy),
            cookie: Arc::clone(&cookie),
        });
        let response = self.service.call(req);
        Box::pin(async move {
            let mut res = response.await?;
            finish(res.headers_mut(), &cookie);
            Ok(res.map_into_left_body())
        })
    }
}

/// Adds the decided cookie (unless the handler set its own) and
/// `Cache-Control: no-store` when the response sets a cookie.
fn finish(headers: &mut HeaderMap, slot: &CookieSlot) {
    let set_cookies = headers.get_all(SET_COOKIE);
    if let Some((cookie, replace)) = slot.take(set_cookies.filter_map(|v| v.to_str().ok())) {
        if replace {
            // A rotation's cookie: every other of the same name goes.
            let named = |v: &HeaderValue| v.to_str().is_ok_and(|v| is_named(v, cookie.name()));
            let kept: Vec<HeaderValue> = headers
                .get_all(SET_COOKIE)
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
    if headers.contains_key(SET_COOKIE) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn request_headers<'a>(req: &'a HttpRequest, headers: &'a HeaderMap) -> RequestHeaders<'a> {
    let get = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    RequestHeaders {
        method: req.method().as_str(),
        host: get(&HOST).or_else(|| req.uri().authority().map(|a| a.as_str())),
        origin: get(&ORIGIN),
        sec_fetch_site: get(&SEC_FETCH_SITE),
        authorization: get(&AUTHORIZATION),
    }
}

/// A `{"error": message}` response.
fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(json_error_body(message))
}

impl ResponseError for SessionRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(self.json_body())
    }
}

type Outcome<A> = Result<Option<CurrentSession<A>>, SessionRejection>;

/// The request's one validation, shared by every extractor of the request
/// (also those polled at the same time, as actix polls a handler's
/// extractors together).
struct Validated<A: Adapter>(Rc<OnceCell<Outcome<A>>>);

impl<A: Adapter> Clone for Validated<A> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

/// Validates the request's session once; later calls read the result.
async fn validated<A>(req: HttpRequest) -> Outcome<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    let once = {
        let mut extensions = req.extensions_mut();
        if let Some(once) = extensions.get::<Validated<A>>() {
            once.clone()
        } else {
            let once = Validated::<A>(Rc::new(OnceCell::new()));
            extensions.insert(once.clone());
            once
        }
    };
    once.0.get_or_init(|| validate::<A>(&req)).await.clone()
}

async fn validate<A>(req: &HttpRequest) -> Outcome<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    let Some(context) = req.extensions().get::<Context>().cloned() else {
        tracing::error!(
            target: "lucia_diesel::actix",
            "lucia_diesel::actix::SessionMiddleware is missing: wrap the app in it (`.wrap(SessionMiddleware::new())`)"
        );
        return Err(SessionRejection::MissingLayer);
    };
    let Some(manager) = req.app_data::<web::Data<SessionManager<A>>>().cloned() else {
        tracing::error!(
            target: "lucia_diesel::actix",
            "no web::Data<SessionManager<{}>> in the app data: add it (`.app_data(web::Data::new(sessions))`)",
            std::any::type_name::<A>()
        );
        return Err(SessionRejection::MissingManager);
    };
    let cookie = req
        .headers()
        .get_all(COOKIE)
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let headers = request_headers(req, req.headers());
    let from_cookie = manager.read_session_cookie(&cookie);
    let credential = context.policy.credential(&headers, from_cookie);
    match validate_request(&manager, credential.as_ref()).await {
        Ok(validated) => {
            context.cookie.set(validated.set_cookie);
            Ok(validated
                .current
                .map(|current| current.with_cookie_slot(&context.cookie)))
        }
        Err(error) => Err(SessionRejection::from_error(&error)),
    }
}

impl<A> FromRequest for CurrentSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = SessionRejection;
    type Future = LocalBoxFuture<'static, Result<Self, SessionRejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            validated::<A>(req)
                .await?
                .ok_or(SessionRejection::Unauthorized)
        })
    }
}

/// Rejects with `401` and `"reason": "reauthentication_required"` when the
/// sign-in is older than `SECONDS`; otherwise as [`CurrentSession`].
impl<A, const SECONDS: u64> FromRequest for RecentSession<A, SECONDS>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = SessionRejection;
    type Future = LocalBoxFuture<'static, Result<Self, SessionRejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let current = validated::<A>(req.clone()).await?;
            let current = current.ok_or(SessionRejection::Unauthorized)?;
            // Validation found the manager (or answered MissingManager).
            let manager = req.app_data::<web::Data<SessionManager<A>>>();
            Self::check(current, manager.ok_or(SessionRejection::MissingManager)?)
        })
    }
}

impl<A> FromRequest for MaybeSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = SessionRejection;
    type Future = LocalBoxFuture<'static, Result<Self, SessionRejection>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { validated::<A>(req).await.map(MaybeSession) })
    }
}
