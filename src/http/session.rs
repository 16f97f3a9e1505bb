//! [`validate_request`]: the request's session, validated once, and the
//! cookie to send back.

use std::fmt;
use std::sync::Arc;

use chrono::Duration;
use cookie::Cookie;

use super::rejection::SessionRejection;
use super::request::{Credential, TokenSource};
use super::slot::CookieSlot;
use crate::adapter::Adapter;
use crate::error::Error;
use crate::session::{CreatedSession, SessionManager, SessionOf, UserOf};

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
    /// Where a rotation's cookie goes: the integration's, for the response.
    cookie: Option<Arc<CookieSlot>>,
}

/// A rotation's outcome: the new session and token, or `None` when the
/// session was gone or expired.
type Rotation<A> =
    Option<CreatedSession<<A as Adapter>::UserId, <A as Adapter>::SessionAttributes>>;

impl<A: Adapter> CurrentSession<A> {
    /// The session as the integrations hand it out: a rotation's cookie
    /// goes into `slot`, which the integration adds to the response.
    #[cfg(any(feature = "rocket", feature = "axum", feature = "actix"))]
    pub(crate) fn with_cookie_slot(mut self, slot: &Arc<CookieSlot>) -> Self {
        self.cookie = Some(Arc::clone(slot));
        self
    }

    /// Gives this session a new token ([`SessionManager::rotate_session`]:
    /// on a change of privilege) and returns it; [`session`](Self::session)
    /// becomes the rotated one, so later calls in the same request (another
    /// rotation, [`sign_out_others`](Self::sign_out_others)) act on it. For
    /// a cookie request the integration (Rocket, axum, actix-web) sends the
    /// new session cookie with the response, replacing any other; a bearer
    /// client needs the returned token (answer it in the body). `None` when
    /// the session is gone or expired: a cookie client then gets a blank
    /// cookie.
    ///
    /// # Errors
    /// Storage errors ([`error_status`] gives their HTTP status); the old
    /// token then still works.
    pub async fn rotate(&mut self, manager: &SessionManager<A>) -> Result<Rotation<A>, Error> {
        let rotated = manager.rotate_session(&self.session).await?;
        Ok(self.rotated(manager, rotated))
    }

    /// Records that the user just proved who they are again (the handler
    /// checked their password) and rotates the token, as
    /// [`SessionManager::reauthenticate`]; the session and the cookie
    /// change as with [`rotate`](Self::rotate).
    ///
    /// # Errors
    /// As [`rotate`](Self::rotate).
    pub async fn reauthenticate(
        &mut self,
        manager: &SessionManager<A>,
    ) -> Result<Rotation<A>, Error> {
        let rotated = manager.reauthenticate(&self.session).await?;
        Ok(self.rotated(manager, rotated))
    }

    /// `Ok` when the user signed in or re-authenticated within `within`
    /// ([`SessionManager::is_recent_sign_in`]), else
    /// [`SessionRejection::ReauthenticationRequired`], which every
    /// integration answers as a JSON `401` with
    /// `"reason": "reauthentication_required"`. The guards and extractors
    /// [`RecentSession`](super::RecentSession) do this check.
    ///
    /// # Errors
    /// [`SessionRejection::ReauthenticationRequired`].
    pub fn require_recent_sign_in(
        &self,
        manager: &SessionManager<A>,
        within: Duration,
    ) -> Result<(), SessionRejection> {
        if manager.is_recent_sign_in(&self.session, within) {
            Ok(())
        } else {
            Err(SessionRejection::ReauthenticationRequired)
        }
    }

    /// After a rotation: the session becomes the rotated one, and its
    /// cookie (the new token, or a blank one when the session is gone) goes
    /// in the integration's slot, for cookie requests.
    fn rotated(&mut self, manager: &SessionManager<A>, rotated: Rotation<A>) -> Rotation<A> {
        if let Some(created) = &rotated {
            self.session = created.session.clone();
        }
        if let Some(slot) = self
            .cookie
            .as_ref()
            .filter(|_| self.source == TokenSource::Cookie)
        {
            slot.replace_with(match &rotated {
                Some(created) => manager.create_session_cookie(created.token.as_str()),
                None => manager.create_blank_session_cookie(),
            });
        }
        rotated
    }

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
            cookie: self.cookie.clone(),
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
            .finish_non_exhaustive()
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
                cookie: None,
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
