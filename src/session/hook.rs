//! The manager's hook for a validation cache. It exists with or without the
//! `cache` feature: without a cache installed (always, without the feature)
//! every call does nothing and each validation reads the database. The
//! `cache` module implements [`ValidationCache`] and installs itself with
//! `SessionManager::with_cache`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::adapter::{DatabaseSession, DatabaseUser};
use crate::token::SessionId;

/// What a validation cache does for the manager.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) trait ValidationCache<U, SA, UA>: Send + Sync {
    /// The cached session with this id and its user, if `servable`
    /// accepts it (live, nothing to write).
    fn lookup(
        &self,
        id: &SessionId,
        servable: &dyn Fn(&DatabaseSession<U, SA>) -> bool,
    ) -> Option<(DatabaseSession<U, SA>, DatabaseUser<U, UA>)>;

    /// Taken before a validation reads the database; `None` when nothing
    /// read now may be kept.
    fn ticket(&self) -> Option<Ticket>;

    /// Keeps a session read from the database after `ticket` was taken,
    /// unless an invalidation came in meanwhile.
    fn fill(&self, ticket: Ticket, session: &DatabaseSession<U, SA>, user: &DatabaseUser<U, UA>);

    /// The manager's own revocation of a session, once committed.
    fn forget_session(&self, id: &SessionId);

    /// The manager's own revocation of a user's sessions, once committed.
    fn forget_user(&self, user: &U);

    /// The cache itself, for its own module's typed access.
    fn as_any(&self) -> &dyn Any;
}

/// When a validation read the database, as a cache counts it: the
/// invalidation epoch then, and the time in microseconds since the
/// cache's start (0 when the cache does not need it).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) struct Ticket {
    pub(crate) epoch: u64,
    pub(crate) at_us: u64,
}

/// The manager's cache, if any. Held type-erased so that
/// `SessionManager<A>` needs no bounds on `A`; [`CacheHook::typed`] gives
/// it back for the adapter's types.
#[derive(Clone, Default)]
pub(crate) struct CacheHook(Option<Arc<dyn Any + Send + Sync>>);

/// How a cache is held inside the hook.
type Erased<U, SA, UA> = Arc<dyn ValidationCache<U, SA, UA>>;

impl fmt::Debug for CacheHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(cache)"
        } else {
            "None"
        })
    }
}

impl CacheHook {
    /// A hook holding `cache`.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn new<U: 'static, SA: 'static, UA: 'static>(cache: Erased<U, SA, UA>) -> Self {
        Self(Some(Arc::new(cache)))
    }

    /// The cache for these types; does nothing without one.
    pub(crate) fn typed<U: 'static, SA: 'static, UA: 'static>(&self) -> Cached<'_, U, SA, UA> {
        let cache = self
            .0
            .as_deref()
            .and_then(|c| c.downcast_ref::<Erased<U, SA, UA>>());
        Cached(cache.map(|c| &**c))
    }
}

/// A manager's cache, typed, or nothing: each call does nothing then.
pub(crate) struct Cached<'a, U, SA, UA>(Option<&'a dyn ValidationCache<U, SA, UA>>);

impl<'a, U, SA, UA> Cached<'a, U, SA, UA> {
    /// The cache itself, if any.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn get(&self) -> Option<&'a dyn ValidationCache<U, SA, UA>> {
        self.0
    }

    pub(crate) fn lookup(
        &self,
        id: &SessionId,
        servable: &dyn Fn(&DatabaseSession<U, SA>) -> bool,
    ) -> Option<(DatabaseSession<U, SA>, DatabaseUser<U, UA>)> {
        self.0?.lookup(id, servable)
    }

    pub(crate) fn ticket(&self) -> Option<Ticket> {
        self.0?.ticket()
    }

    pub(crate) fn fill(
        &self,
        ticket: Option<Ticket>,
        session: &DatabaseSession<U, SA>,
        user: &DatabaseUser<U, UA>,
    ) {
        if let (Some(cache), Some(ticket)) = (self.0, ticket) {
            cache.fill(ticket, session, user);
        }
    }

    pub(crate) fn forget_session(&self, id: &SessionId) {
        if let Some(cache) = self.0 {
            cache.forget_session(id);
        }
    }

    pub(crate) fn forget_user(&self, user: &U) {
        if let Some(cache) = self.0 {
            cache.forget_user(user);
        }
    }
}
