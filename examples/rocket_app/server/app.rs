//! The example app put together: its types, the Rocket instance, the
//! request guards its routes share, the home page and the way back to the
//! sign-in page. The routes are in `sign_in.rs` (accounts), `account.rs`
//! (re-authentication, deleting the account) and `sessions.rs` (the
//! sessions page).

use std::net::IpAddr;

use lucia_diesel::http::Credential;
use lucia_diesel::rocket::{CurrentSession, MaybeSession, SessionFairing};
use lucia_diesel::{PgPool, PostgresAdapter, SessionManager};
use rocket::http::CookieJar;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{Flash, Redirect, Responder};
use rocket::{Build, Rocket, State, catch, catchers, get, routes};
use serde::{Deserialize, Serialize};

use super::common::PasswordLimits;
use super::common::sign_out::{self, Presented};
use super::pages::{self, Page};
use super::{account, assets, errors, headers, sessions, sign_in};

/// Session attributes: the extra columns of `user_session` added by the
/// example's migrations (when a session was created and last used are the
/// crate's own columns).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    pub user_agent: Option<String>,
    /// The client address the session signed in from.
    pub ip_address: Option<String>,
}

/// User attributes: extra columns of `auth_user`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub username: String,
}

pub type Adapter = PostgresAdapter<PgPool, String, SessionInfo, UserInfo>;
pub type Sessions = SessionManager<Adapter>;
pub type Current = CurrentSession<Adapter>;
pub type Maybe = MaybeSession<Adapter>;

/// The app, ready to launch, with the default password limits.
pub fn build(rocket: Rocket<Build>, sessions: Sessions, pool: PgPool) -> Rocket<Build> {
    build_with(rocket, sessions, pool, PasswordLimits::default())
}

/// The app with the given password limits: the session manager, pool and
/// limits in managed state, the fairings, routes and catchers.
pub fn build_with(
    rocket: Rocket<Build>,
    sessions: Sessions,
    pool: PgPool,
    limits: PasswordLimits,
) -> Rocket<Build> {
    rocket
        .manage(sessions)
        .manage(pool)
        .manage(limits.hasher)
        .manage(limits.throttle)
        .attach(SessionFairing::new())
        .attach(headers::SecurityHeaders)
        .mount(
            "/",
            routes![
                home,
                home_signed_out,
                sign_in::login_page,
                sign_in::login,
                sign_in::signup_page,
                sign_in::signup,
                sign_in::logout,
                sign_in::password_page,
                sign_in::change_password,
                account::reauthenticate_page,
                account::reauthenticate,
                account::delete_page,
                account::delete_page_needs_password,
                account::delete,
                account::delete_needs_password,
                sessions::page,
                sessions::revoke,
                sessions::revoke_others,
                assets::stylesheet,
                assets::favicon,
            ],
        )
        .register("/", catchers![unauthorized])
        .register("/", errors::catchers())
}

/// Who is asking: the `User-Agent` (cut to 200 characters) and the client
/// address (the TCP peer, or the `ip_header` Rocket is configured to trust).
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub address: Option<IpAddr>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientInfo {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let user_agent = req
            .headers()
            .get_one("User-Agent")
            .map(|a| a.chars().take(200).collect());
        Outcome::Success(ClientInfo {
            user_agent,
            address: req.client_ip(),
        })
    }
}

/// The session token the request presents, read by the rule the crate's
/// guards validate with (every `Cookie` header joined; a session cookie
/// sent twice counts as none, see `common/sign_out.rs`), and whether it
/// carries a session cookie at all. Like the guards, a request without a
/// `Cookie` header (built in-process by Rocket's local client) is read
/// from the jar. The app accepts cookies only.
pub fn presented(req: &Request<'_>) -> Option<Presented> {
    let sessions = req.rocket().state::<Sessions>()?;
    let headers: Vec<&str> = req.headers().get("Cookie").collect();
    if !headers.is_empty() {
        return Some(sign_out::presented(
            sessions,
            &headers.join("; "),
            None,
            false,
        ));
    }
    let token = req
        .cookies()
        .get(sessions.cookie_config().name())
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty());
    Some(Presented {
        has_cookie: token.is_some(),
        credential: token.map(Credential::cookie),
    })
}

/// `true` when the request presented a session cookie that did not
/// validate: the session was revoked, signed out elsewhere, ended by a
/// password change, or expired (or the cookie was sent twice). The crate's
/// guard clears such a cookie.
pub struct EndedSession(pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for EndedSession {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let ended = match req.guard::<Maybe>().await {
            Outcome::Success(MaybeSession(None)) => presented(req).is_some_and(|p| p.has_cookie),
            _ => false,
        };
        Outcome::Success(EndedSession(ended))
    }
}

/// Why the browser is sent to the sign-in page; shown there once (a
/// Rocket flash cookie carries the code, never the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginNotice {
    SignedOut,
    SignedOutOffline,
    SessionEnded,
    AccountDeleted,
}

impl LoginNotice {
    const ALL: [Self; 4] = [
        Self::SignedOut,
        Self::SignedOutOffline,
        Self::SessionEnded,
        Self::AccountDeleted,
    ];

    fn code(self) -> &'static str {
        match self {
            Self::SignedOut => "signed-out",
            Self::SignedOutOffline => "signed-out-offline",
            Self::SessionEnded => "session-ended",
            Self::AccountDeleted => "account-deleted",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.code() == code)
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::SignedOut => "You are signed out.",
            Self::SignedOutOffline => {
                "You are signed out in this browser. The session store could not be reached, \
                 so the server forgets this session when it expires."
            }
            Self::SessionEnded => {
                "Your session has ended: it was signed out from another device, ended by a \
                 password change, or it expired. Please sign in again."
            }
            Self::AccountDeleted => "Your account and every session of it are deleted.",
        }
    }
}

/// A redirect to the sign-in page, with a notice for it when there is one.
pub struct ToLogin(pub Option<LoginNotice>);

impl ToLogin {
    /// To the sign-in page, saying so when the request's session had ended.
    pub fn after(ended: &EndedSession) -> Self {
        Self(ended.0.then_some(LoginNotice::SessionEnded))
    }
}

impl<'r> Responder<'r, 'static> for ToLogin {
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'static> {
        let to = Redirect::to("/login");
        match self.0 {
            Some(notice) => Flash::new(to, "notice", notice.code()).respond_to(req),
            None => to.respond_to(req),
        }
    }
}

pub fn store_failure(e: &lucia_diesel::Error) -> Page {
    eprintln!("session store error: {e}");
    pages::unavailable()
}

/// Starts a new session for `user_id` and sets its cookie. Any session the
/// browser had before is invalidated first: a login never keeps a token
/// that existed before it (session fixation).
pub async fn start_session(
    sessions: &Sessions,
    cookies: &CookieJar<'_>,
    previous: &Maybe,
    user_id: String,
    client: ClientInfo,
) -> Result<(), lucia_diesel::Error> {
    if let Some(old) = &previous.0 {
        sessions.invalidate_session(&old.session.id).await?;
    }
    let info = SessionInfo {
        user_agent: client.user_agent,
        ip_address: client.address.map(|a| a.to_string()),
    };
    let created = sessions.create_session(user_id, info).await?;
    cookies.add(sessions.create_session_cookie(created.token.as_str()));
    Ok(())
}

#[get("/?<notice>")]
fn home(current: Current, sessions: &State<Sessions>, notice: Option<&str>) -> Page {
    let notice = match notice {
        Some("password-changed") => {
            Some("Your password was changed and every other session signed out.")
        }
        _ => None,
    };
    let rules = pages::SessionRules {
        expires_at: current.session.expires_at,
        idle_timeout: sessions.idle_timeout(),
        ends_at: sessions
            .absolute_lifetime()
            .map(|d| current.session.created_at + d),
    };
    pages::home(&current.user.attributes.username, &rules, notice)
}

#[get("/", rank = 2)]
fn home_signed_out(ended: EndedSession) -> ToLogin {
    ToLogin::after(&ended)
}

/// A page that needs a session, without one: to the sign-in page. Rocket
/// drops cookie changes made before a catcher runs, so the invalid cookie
/// is cleared again here.
#[catch(401)]
async fn unauthorized(req: &Request<'_>) -> ToLogin {
    let ended = req
        .guard::<EndedSession>()
        .await
        .succeeded()
        .unwrap_or(EndedSession(false));
    if ended.0
        && let Some(sessions) = req.rocket().state::<Sessions>()
    {
        req.cookies().add(sessions.create_blank_session_cookie());
    }
    ToLogin::after(&ended)
}

/// A page, or a redirect elsewhere. (One per request: its size does not matter.)
#[derive(rocket::Responder)]
#[allow(clippy::large_enum_variant)]
pub enum PageOrRedirect {
    Page(Page),
    Redirect(Redirect),
}
