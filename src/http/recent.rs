//! [`RecentSession`]: the step-up check as a guard or extractor, for
//! routes that need a recent sign-in (changing the e-mail address or the
//! password, deleting the account).

use std::fmt;
use std::ops::{Deref, DerefMut};

use chrono::Duration;

use super::rejection::SessionRejection;
use super::session::CurrentSession;
use crate::adapter::Adapter;
use crate::session::SessionManager;

/// A [`CurrentSession`] whose user signed in, or re-authenticated
/// ([`CurrentSession::reauthenticate`]), at most `SECONDS` seconds ago on
/// the manager's clock (a sign-in exactly `SECONDS` ago still counts).
///
/// Each integration offers it as a guard or extractor. Without a valid
/// session it answers as [`CurrentSession`] does; with a session too old
/// for it:
/// - axum and actix-web reject with `401` and
///   `{"error": "...", "reason": "reauthentication_required"}` (take
///   `Result<RecentSession<A, N>, SessionRejection>` to redirect a page to
///   a password prompt instead);
/// - Rocket forwards with `401`, like [`CurrentSession`]: add a route of
///   lower rank that takes [`CurrentSession`] and redirects to the prompt
///   (a JSON API can call [`CurrentSession::require_recent_sign_in`], whose
///   rejection Rocket answers as above).
///
/// ```
/// # #[cfg(feature = "axum")]
/// # mod app {
/// use lucia_diesel::axum::RecentSession;
/// use lucia_diesel::{PgPool, PostgresAdapter};
///
/// type Adapter = PostgresAdapter<PgPool>;
///
/// /// Deleting the account needs a sign-in within the last 5 minutes.
/// async fn delete_account(current: RecentSession<Adapter, 300>) -> String {
///     format!("deleting {}", current.user.id)
/// }
/// # }
/// ```
pub struct RecentSession<A: Adapter, const SECONDS: u64>(pub CurrentSession<A>);

impl<A: Adapter, const SECONDS: u64> RecentSession<A, SECONDS> {
    /// The window, `SECONDS` seconds (saturating at chrono's largest
    /// duration).
    #[must_use]
    pub fn within() -> Duration {
        i64::try_from(SECONDS)
            .ok()
            .and_then(Duration::try_seconds)
            .unwrap_or(Duration::MAX)
    }

    /// The session, when its sign-in is recent enough.
    ///
    /// # Errors
    /// [`SessionRejection::ReauthenticationRequired`].
    pub fn check(
        current: CurrentSession<A>,
        manager: &SessionManager<A>,
    ) -> Result<Self, SessionRejection> {
        current.require_recent_sign_in(manager, Self::within())?;
        Ok(Self(current))
    }

    /// The session.
    #[must_use]
    pub fn into_inner(self) -> CurrentSession<A> {
        self.0
    }
}

impl<A: Adapter, const SECONDS: u64> Deref for RecentSession<A, SECONDS> {
    type Target = CurrentSession<A>;

    fn deref(&self) -> &CurrentSession<A> {
        &self.0
    }
}

impl<A: Adapter, const SECONDS: u64> DerefMut for RecentSession<A, SECONDS> {
    fn deref_mut(&mut self) -> &mut CurrentSession<A> {
        &mut self.0
    }
}

impl<A: Adapter, const SECONDS: u64> Clone for RecentSession<A, SECONDS>
where
    A::SessionAttributes: Clone,
    A::UserAttributes: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: Adapter, const SECONDS: u64> fmt::Debug for RecentSession<A, SECONDS>
where
    A::SessionAttributes: fmt::Debug,
    A::UserAttributes: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RecentSession").field(&self.0).finish()
    }
}
