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
//! - [`RecentSession`]: a [`CurrentSession`] whose user signed in within
//!   the last `N` seconds (`RecentSession<A, N>`), for sensitive actions.
//!   A session signed in longer ago is forwarded with `401` too: a route of
//!   lower rank taking [`CurrentSession`] sends it to a password prompt
//!   (which calls [`CurrentSession::reauthenticate`]). A JSON route can
//!   instead return `Result<_, SessionRejection>` and use
//!   [`CurrentSession::require_recent_sign_in`]: [`SessionRejection`] is a
//!   responder (`401`, `{"error": "...", "reason": "reauthentication_required"}`).
//!
//! [`CurrentSession::rotate`] and [`CurrentSession::reauthenticate`] give
//! the session a new token; the fairing sends its cookie in place of any
//! other session cookie on the response.
//!
//! Both read the session cookie (or, with
//! [`SessionFairing::with_bearer_tokens`], an `Authorization: Bearer`
//! header, which then takes precedence) and validate it once per request,
//! with the logic shared with the other integrations ([`crate::http`]).
//! When the session was extended they set the cookie again; when the cookie
//! holds an invalid token they clear it, also when the request ends in a
//! catcher's answer (a 401). A storage failure is a `503 Service
//! Unavailable` (never a valid session).
//!
//! Both guards are Rocket [`Sentinel`]s: a route that uses one while no
//! [`SessionManager`] of its adapter is managed, or without
//! [`SessionFairing`] attached (whose cross-origin check would not run),
//! stops the launch with an error naming what to add. A guard reached
//! where Rocket cannot see it (through another guard's `request.guard()`)
//! answers `500` in those cases instead, never a request unchecked.
//!
//! # The fairing
//! - **CSRF.** Requests with a state-changing method (anything but `GET`,
//!   `HEAD`, `OPTIONS`, `TRACE`) are rejected with `403 Forbidden` before
//!   any route runs when a browser says they come from elsewhere: a
//!   `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin`
//!   (including `null`) that does not match the request's `Host` or one of
//!   the allowed origins. Requests carrying neither header do not come from
//!   a modern browser (so cannot ride on a victim's cookies) and pass, as
//!   do requests authenticated by a bearer token (when enabled).
//! - **Cookies.** The cookie a guard decided on reaches the response even
//!   when a catcher answers, unless the response sets that cookie itself.
//! - **Caching.** Every response that sets a cookie gets
//!   `Cache-Control: no-store`, so no shared cache keeps a session cookie.

use std::io::Cursor;
use std::sync::Arc;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::{Build, Data, Ignite, Response, Rocket, Sentinel};

use crate::adapter::Adapter;
use crate::error::Error;
use crate::http::{
    CookieSlot, RequestHeaders, RequestPolicy, error_status, is_named, validate_request,
};
pub use crate::http::{CurrentSession, MaybeSession, RecentSession, SessionRejection};
use crate::session::SessionManager;

/// Where requests rejected as cross-origin are sent (answered with 403).
const REJECTED_PATH: &str = "/__lucia_diesel/cross-origin-request-rejected";

/// The per-request validation result, computed once.
struct Validated<A: Adapter>(Result<Option<CurrentSession<A>>, Error>);

/// The policy the guards read, managed by [`SessionFairing`].
#[derive(Debug, Clone)]
struct GuardSettings(RequestPolicy);

fn status_of(err: &Error) -> Status {
    Status::new(error_status(err))
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

/// The request's headers for the shared logic; `host` is the `Host`
/// header, else the parsed authority.
fn request_headers<'r>(req: &'r Request<'_>, host: Option<&'r str>) -> RequestHeaders<'r> {
    let headers = req.headers();
    RequestHeaders {
        method: req.method().as_str(),
        host: headers.get_one("Host").or(host),
        origin: headers.get_one("Origin"),
        sec_fetch_site: headers.get_one("Sec-Fetch-Site"),
        authorization: headers.get_one("Authorization"),
    }
}

async fn validate<A>(req: &Request<'_>) -> Result<Option<CurrentSession<A>>, Error>
where
    A: Adapter + 'static,
{
    let Some(manager) = req.rocket().state::<SessionManager<A>>() else {
        return Err(
            crate::error::ConfigError::MissingSessionManager(std::any::type_name::<A>()).into(),
        );
    };
    // Without the fairing no cross-origin check ran: refuse rather than
    // answer a state-changing request unchecked.
    let Some(GuardSettings(policy)) = req.rocket().state::<GuardSettings>() else {
        return Err(crate::error::ConfigError::MissingSessionFairing.into());
    };
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
    let credential = policy.credential(&request_headers(req, None), from_cookie);
    let validated = validate_request(manager, credential.as_ref()).await?;
    let slot = cookie_slot(req);
    if let Some(cookie) = validated.set_cookie {
        // The jar puts it on the route's response; the slot on a catcher's.
        req.cookies().add(cookie.clone());
        slot.set(Some(cookie));
    }
    Ok(validated.current.map(|c| c.with_cookie_slot(slot)))
}

/// The request's cookie slot (see [`CookieSlot`]).
fn cookie_slot<'r>(req: &'r Request<'_>) -> &'r Arc<CookieSlot> {
    req.local_cache(|| Arc::new(CookieSlot::default()))
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

/// Forwards with `401` when the sign-in is older than `SECONDS`, as
/// without a session: a route of lower rank taking [`CurrentSession`] can
/// redirect to a password prompt.
#[rocket::async_trait]
impl<'r, A, const SECONDS: u64> FromRequest<'r> for RecentSession<A, SECONDS>
where
    A: Adapter + 'static,
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let current = match validated::<A>(req).await {
            Ok(Some(current)) => current.clone(),
            Ok(None) => return Outcome::Forward(Status::Unauthorized),
            Err(e) => return Outcome::Error((status_of(e), e.clone())),
        };
        // Validation found the manager (or failed saying so).
        let Some(manager) = req.rocket().state::<SessionManager<A>>() else {
            return Outcome::Forward(Status::InternalServerError);
        };
        match Self::check(current, manager) {
            Ok(recent) => Outcome::Success(recent),
            Err(_) => Outcome::Forward(Status::Unauthorized),
        }
    }
}

/// Answers `{"error": "...", "reason": "..."}` with the rejection's status.
impl<'r> rocket::response::Responder<'r, 'static> for SessionRejection {
    fn respond_to(self, _: &'r Request<'_>) -> rocket::response::Result<'static> {
        let body = self.json_body();
        Response::build()
            .status(Status::new(self.http_status()))
            .header(rocket::http::ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .ok()
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

/// Whether a guard over adapter `A` would fail on every request of
/// `rocket`: logs what is missing and how to add it.
fn guard_lacks_setup<A: Adapter + 'static>(rocket: &Rocket<Ignite>, guard: &str) -> bool {
    let adapter = std::any::type_name::<A>();
    if rocket.state::<SessionManager<A>>().is_none() {
        rocket::error!(
            "`{guard}<{adapter}>` is used, but no `SessionManager<{adapter}>` is managed: add `.manage(SessionManager::new(adapter))` to the Rocket builder."
        );
        return true;
    }
    if rocket.state::<GuardSettings>().is_none() {
        rocket::error!(
            "`{guard}<{adapter}>` is used, but `SessionFairing` is not attached (its cross-origin check would not run): add `.attach(lucia_diesel::rocket::SessionFairing::new())` to the Rocket builder."
        );
        return true;
    }
    false
}

/// Stops the launch when the guard could never succeed (no manager, no fairing).
impl<A: Adapter + 'static> Sentinel for CurrentSession<A> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        guard_lacks_setup::<A>(rocket, "CurrentSession")
    }
}

/// Stops the launch when the guard could never succeed (no manager, no fairing).
impl<A: Adapter + 'static, const SECONDS: u64> Sentinel for RecentSession<A, SECONDS> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        guard_lacks_setup::<A>(rocket, "RecentSession")
    }
}

/// Stops the launch when the guard could never succeed (no manager, no fairing).
impl<A: Adapter + 'static> Sentinel for MaybeSession<A> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        guard_lacks_setup::<A>(rocket, "MaybeSession")
    }
}

/// CSRF protection, the session cookie on every response (catchers'
/// included) and `Cache-Control: no-store` for cookie-setting responses;
/// see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SessionFairing {
    policy: RequestPolicy,
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
        self.policy = self.policy.with_allowed_origin(origin);
        self
    }

    /// Let the guards read a session token from `Authorization: Bearer`
    /// (default: cookies only). A bearer token takes precedence over the
    /// session cookie, and bearer requests are exempt from the CSRF check
    /// and never get a cookie set (see [`crate::http`]).
    pub fn with_bearer_tokens(mut self, accept: bool) -> Self {
        self.policy = self.policy.with_bearer_tokens(accept);
        self
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
            .manage(GuardSettings(self.policy.clone()))
            .mount("/", rocket::routes![rejected]))
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let host = req.host().map(|h| h.to_string());
        if !self.policy.allows(&request_headers(req, host.as_deref())) {
            req.set_method(Method::Get);
            req.set_uri(
                rocket::http::uri::Origin::parse(REJECTED_PATH).expect("a valid static path"),
            );
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        // A catcher's response lost the jar's cookies: send the guard's.
        // A rotation's cookie replaces the jar's refreshed one.
        if let Some((cookie, replace)) = cookie_slot(req).take(res.headers().get("Set-Cookie")) {
            if replace {
                let kept: Vec<String> = res
                    .headers()
                    .get("Set-Cookie")
                    .filter(|v| !is_named(v, cookie.name()))
                    .map(str::to_owned)
                    .collect();
                res.remove_header("Set-Cookie");
                for value in kept {
                    res.adjoin_header(Header::new("Set-Cookie", value));
                }
            }
            res.adjoin_header(cookie);
        }
        if res.headers().contains("Set-Cookie") {
            res.set_header(Header::new("Cache-Control", "no-store"));
        }
    }
}
