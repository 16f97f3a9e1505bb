//! [`validate_request`]: the request's session, validated once, and the
//! cookie to send back.

use std::fmt;

use cookie::Cookie;

use super::request::{Credential, TokenSource};
use crate::adapter::Adapter;
use crate::error::Error;
use crate::session::{SessionManager, SessionOf, UserOf};

/// The signed-in user's session and user: what the integrations' guards
/// and extractors give a handler.
pub struct CurrentSession<A: Adapter> {
    /// The validated session (`fresh` when it was just extended; the
    /// integration sends the refreshed cookie).
    pub session: SessionOf<A>,
    /// Its user.
    pub user: UserOf<A>,
    /// How the request presented the token: a handler that answers with a
    /// cookie (logout's blank cookie) sends it only to cookie clients.
    pub source: TokenSource,
}

impl<A: Adapter> CurrentSession<A> {
    /// Signs the user out everywhere but this session ("sign out my other
    /// devices"): [`SessionManager::invalidate_other_sessions`] with this
    /// session kept. Returns how many sessions went.
    ///
    /// # Errors
    /// Storage errors ([`error_status`] gives their HTTP status).
    pub async fn sign_out_others(&self, manager: &SessionManager<A>) -> Result<u64, Error> {
        manager
            .invalidate_other_sessions(&self.user.id, &self.session.id)
            .await
    }
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
            source: self.source,
        }
    }
}

impl<A: Adapter> fmt::Debug for CurrentSession<A>
where
    A::SessionAttributes: fmt::Debug,
    A::UserAttributes: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("session", &self.session)
            .field("user", &self.user)
            .field("source", &self.source)
            .finish()
    }
}

/// An optional [`CurrentSession`]: `None` when the request has no valid
/// session. Fails (503) only when the session store fails.
pub struct MaybeSession<A: Adapter>(pub Option<CurrentSession<A>>);

impl<A: Adapter> Clone for MaybeSession<A>
where
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: Adapter> fmt::Debug for MaybeSession<A>
where
    A::SessionAttributes: fmt::Debug,
    A::UserAttributes: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MaybeSession").field(&self.0).finish()
    }
}

/// What [`validate_request`] decided: the session, if valid, and the
/// cookie to send back.
pub struct RequestSession<A: Adapter> {
    /// The valid session and its user, or `None`.
    pub current: Option<CurrentSession<A>>,
    /// The `Set-Cookie` to send: the refreshed session cookie when a
    /// cookie session was extended, a blank cookie when the session cookie
    /// held an invalid token, else `None` (always `None` for bearer
    /// requests). It holds the token: never log it.
    pub set_cookie: Option<Cookie<'static>>,
}

impl<A: Adapter> fmt::Debug for RequestSession<A>
where
    A::SessionAttributes: fmt::Debug,
    A::UserAttributes: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cookie = self.set_cookie.as_ref().map(|c| {
            if c.value().is_empty() {
                "<blank cookie>"
            } else {
                "<session cookie>"
            }
        });
        f.debug_struct("RequestSession")
            .field("current", &self.current)
            .field("set_cookie", &cookie)
            .finish()
    }
}

/// Validates the request's credential (from
/// [`RequestPolicy::credential`](super::RequestPolicy::credential)) once
/// and decides the cookie to send back; see [`RequestSession`].
///
/// # Errors
/// The store's errors: never a valid session. Answer with
/// [`error_status`]; no cookie is changed.
pub async fn validate_request<A: Adapter>(
    manager: &SessionManager<A>,
    credential: Option<&Credential>,
) -> Result<RequestSession<A>, Error> {
    let Some(credential) = credential else {
        return Ok(RequestSession {
            current: None,
            set_cookie: None,
        });
    };
    let source = credential.source();
    let cookie = source == TokenSource::Cookie;
    Ok(match manager.validate_session(credential.token()).await? {
        Some((session, user)) => RequestSession {
            set_cookie: (cookie && session.fresh)
                .then(|| manager.create_session_cookie(credential.token())),
            current: Some(CurrentSession {
                session,
                user,
                source,
            }),
        },
        None => RequestSession {
            current: None,
            set_cookie: cookie.then(|| manager.create_blank_session_cookie()),
        },
    })
}

/// The HTTP status for a store failure while validating: `503 Service
/// Unavailable` when retrying later may help (the database is unavailable,
/// timed out or read-only), else `500`.
#[must_use]
pub fn error_status(error: &Error) -> u16 {
    if error.is_transient() || matches!(error, Error::ReadOnly { .. }) {
        503
    } else {
        500
    }
}
