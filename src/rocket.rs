//! Rocket integration: request guards for the signed-in user and a fairing
//! for CSRF protection and cache headers.
//!
//! Put a [`SessionManager`] in Rocket's managed state and attach
//! [`SessionFairing`]:
//!
//! ```no_run
//! use lucia_diesel::rocket::{CurrentSession, SessionFairing};
//! use lucia_diesel::{PgPool, PostgresAdapter, SessionManager};
//!
//! type Adapter = PostgresAdapter<PgPool>;
//!
//! #[rocket::get("/me")]
//! fn me(current: CurrentSession<Adapter>) -> String {
//!     format!("signed in as {}", current.user.id)
//! }
//!
//! fn app(sessions: SessionManager<Adapter>) -> rocket::Rocket<rocket::Build> {
//!     rocket::build()
//!         .manage(sessions)
//!         .attach(SessionFairing::new())
//!         .mount("/", rocket::routes![me])
//! }
//! ```
//!
//! # Guards
//! - [`CurrentSession`]: the validated session and its user. Without a valid
//!   session the request is forwarded with `401 Unauthorized` (add a route
//!   of lower rank, or a 401 catcher, to redirect to a login page).
//! - [`MaybeSession`]: the same, optional; never forwards.
//!
//! Both read the session cookie (or, with
//! [`SessionFairing::with_bearer_tokens`], an `Authorization: Bearer`
//! header) and validate it once per request. When the session was extended
//! they set the cookie again; when the cookie holds an invalid token they
//! clear it. A storage failure is a `503 Service Unavailable` (never a
//! valid session), a missing [`SessionManager`] a `500` naming it.
//!
//! # The fairing
//! - **CSRF.** Requests with a state-changing method (anything but `GET`,
//!   `HEAD`, `OPTIONS`, `TRACE`) are rejected with `403 Forbidden` before
//!   any route runs when a browser says they come from elsewhere: a
//!   `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin`
//!   (including `null`) that does not match the request's `Host` or one of
//!   the allowed origins. Requests carrying neither header do not come from
//!   a modern browser (so cannot ride on a victim's cookies) and pass.
//! - **Caching.** Every response that sets a cookie gets
//!   `Cache-Control: no-store`, so no shared cache keeps a session cookie.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::{Build, Data, Response, Rocket};

use crate::adapter::Adapter;
use crate::error::Error;
use crate::http::{is_same_origin_fetch, read_bearer_token, verify_request_origin};
use crate::session::{SessionManager, SessionOf, UserOf};

/// Where requests rejected as cross-origin are sent (answered with 403).
const REJECTED_PATH: &str = "/__lucia_diesel/cross-origin-request-rejected";

/// The signed-in user's session and user: a request guard.
pub struct CurrentSession<A: Adapter> {
    /// The validated session (`fresh` when it was just extended; the
    /// refreshed cookie is already set).
    pub session: SessionOf<A>,
    /// Its user.
    pub user: UserOf<A>,
}

impl<A: Adapter> Clone for CurrentSession<A>
where
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    fn clone(&self) -> Self {
        Self {
            session: self.session.clone(),
            user: self.user.clone(),
        }
    }
}

impl<A: Adapter> std::fmt::Debug for CurrentSession<A>
where
    A::SessionAttributes: std::fmt::Debug,
    A::UserAttributes: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentSession")
            .field("session", &self.session)
            .field("user", &self.user)
            .finish()
    }
}

/// An optional [`CurrentSession`]: `None` when the request has no valid
/// session. Fails (503) only when the session store fails.
pub struct MaybeSession<A: Adapter>(pub Option<CurrentSession<A>>);

impl<A: Adapter> std::fmt::Debug for MaybeSession<A>
where
    A::SessionAttributes: std::fmt::Debug,
    A::UserAttributes: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MaybeSession").field(&self.0).finish()
    }
}

/// The per-request validation result, computed once.
struct Validated<A: Adapter>(Result<Option<CurrentSession<A>>, Error>);

/// Settings the guards read, managed by [`SessionFairing`].
#[derive(Debug, Clone, Copy, Default)]
struct GuardSettings {
    bearer: bool,
}

fn status_of(err: &Error) -> Status {
    if err.is_transient() || matches!(err, Error::ReadOnly { .. }) {
        Status::ServiceUnavailable
    } else {
        Status::InternalServerError
    }
}

/// The raw `Cookie` header(s), joined as one.
fn cookie_header(req: &Request<'_>) -> Option<String> {
    let mut values = req.headers().get("Cookie");
    let first = values.next()?;
    let mut joined = first.to_owned();
    for more in values {
        joined.push_str("; ");
        joined.push_str(more);
    }
    Some(joined)
}

async fn validate<A>(req: &Request<'_>) -> Result<Option<CurrentSession<A>>, Error>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    let Some(manager) = req.rocket().state::<SessionManager<A>>() else {
        return Err(
            crate::error::ConfigError::MissingSessionManager(std::any::type_name::<A>()).into(),
        );
    };
    let bearer = req
        .rocket()
        .state::<GuardSettings>()
        .copied()
        .unwrap_or_default()
        .bearer;
    // The raw header is parsed strictly (a duplicated session cookie counts
    // as none); requests built in-process (Rocket's local client) carry
    // their cookies in the jar only.
    let from_cookie = match cookie_header(req) {
        Some(header) => manager.read_session_cookie(&header),
        None => req
            .cookies()
            .get(manager.cookie_config().name())
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty()),
    };
    let (token, is_cookie) = match from_cookie {
        Some(t) => (t, true),
        None if bearer => match req
            .headers()
            .get_one("Authorization")
            .and_then(read_bearer_token)
        {
            Some(t) => (t.to_owned(), false),
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    match manager.validate_session(&token).await? {
        Some((session, user)) => {
            if session.fresh && is_cookie {
                req.cookies().add(manager.create_session_cookie(&token));
            }
            Ok(Some(CurrentSession { session, user }))
        }
        None => {
            if is_cookie {
                req.cookies().add(manager.create_blank_session_cookie());
            }
            Ok(None)
        }
    }
}

async fn validated<'r, A>(req: &'r Request<'_>) -> &'r Result<Option<CurrentSession<A>>, Error>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    &req.local_cache_async(async { Validated::<A>(validate::<A>(req).await) })
        .await
        .0
}

#[rocket::async_trait]
impl<'r, A> FromRequest<'r> for CurrentSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match validated::<A>(req).await {
            Ok(Some(current)) => Outcome::Success(current.clone()),
            Ok(None) => Outcome::Forward(Status::Unauthorized),
            Err(e) => Outcome::Error((status_of(e), e.clone())),
        }
    }
}

#[rocket::async_trait]
impl<'r, A> FromRequest<'r> for MaybeSession<A>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match validated::<A>(req).await {
            Ok(current) => Outcome::Success(MaybeSession(current.clone())),
            Err(e) => Outcome::Error((status_of(e), e.clone())),
        }
    }
}

/// CSRF protection and `Cache-Control: no-store` for cookie-setting
/// responses; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SessionFairing {
    allowed_origins: Vec<String>,
    bearer: bool,
}

impl SessionFairing {
    /// CSRF checks against the request's own `Host`; cookies only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept state-changing requests from this origin's host
    /// (`"app.example.com"`, `"https://app.example.com"`, with a port when
    /// it is not the scheme's default).
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Let the guards read a session token from `Authorization: Bearer`
    /// when there is no session cookie (default: cookies only).
    pub fn with_bearer_tokens(mut self, accept: bool) -> Self {
        self.bearer = accept;
        self
    }

    /// Whether a request may proceed: see the module docs for the rule.
    fn allows(&self, req: &Request<'_>) -> bool {
        if matches!(
            req.method(),
            Method::Get | Method::Head | Method::Options | Method::Trace
        ) {
            return true;
        }
        let headers = req.headers();
        if let Some(site) = headers.get_one("Sec-Fetch-Site")
            && is_same_origin_fetch(Some(site)) != Some(true)
        {
            return false;
        }
        match headers.get_one("Origin") {
            None => true,
            Some(origin) => {
                // The `Host` header (HTTP/1.1), else the parsed authority.
                let host = headers
                    .get_one("Host")
                    .map(str::to_owned)
                    .or_else(|| req.host().map(|h| h.to_string()));
                let mut allowed: Vec<&str> =
                    self.allowed_origins.iter().map(String::as_str).collect();
                if let Some(host) = host.as_deref() {
                    allowed.push(host);
                }
                verify_request_origin(origin, &allowed)
            }
        }
    }
}

#[rocket::get("/__lucia_diesel/cross-origin-request-rejected")]
fn rejected() -> (Status, &'static str) {
    (
        Status::Forbidden,
        "Forbidden: cross-origin request rejected.\n",
    )
}

#[rocket::async_trait]
impl Fairing for SessionFairing {
    fn info(&self) -> Info {
        Info {
            name: "lucia-diesel sessions (CSRF, no-store)",
            kind: Kind::Ignite | Kind::Request | Kind::Response,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> rocket::fairing::Result {
        Ok(rocket
            .manage(GuardSettings {
                bearer: self.bearer,
            })
            .mount("/", rocket::routes![rejected]))
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        if !self.allows(req) {
            req.set_method(Method::Get);
            req.set_uri(
                rocket::http::uri::Origin::parse(REJECTED_PATH).expect("a valid static path"),
            );
        }
    }

    async fn on_response<'r>(&self, _req: &'r Request<'_>, res: &mut Response<'r>) {
        if res.headers().contains("Set-Cookie") {
            res.set_header(Header::new("Cache-Control", "no-store"));
        }
    }
}
