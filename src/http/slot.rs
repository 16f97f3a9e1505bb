//! [`CookieSlot`]: the cookie a request's validation decided on, until the
//! response is known (both integrations use it).

use std::fmt;
use std::sync::{Mutex, PoisonError};

use cookie::Cookie;

/// The cookie a request's validation decided on, kept until the response
/// is known, so that it is sent whoever answers (a handler, or an error
/// catcher after a 401).
#[derive(Default)]
pub(crate) struct CookieSlot(Mutex<Option<Cookie<'static>>>);

impl fmt::Debug for CookieSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSlot(<redacted>)")
    }
}

impl CookieSlot {
    pub(crate) fn set(&self, cookie: Option<Cookie<'static>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = cookie;
    }

    /// The cookie to add to a response whose `Set-Cookie` values are
    /// `set_cookies`: none when the response already sets a cookie of the
    /// same name (the handler's own, such as a new session on login, wins).
    pub(crate) fn take_unless_set<'v>(
        &self,
        set_cookies: impl IntoIterator<Item = &'v str>,
    ) -> Option<Cookie<'static>> {
        let cookie = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let name = cookie.name();
        let already = set_cookies
            .into_iter()
            .any(|value| value.split_once('=').is_some_and(|(n, _)| n.trim() == name));
        (!already).then_some(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_cookie_of_the_same_name_wins() {
        let slot = CookieSlot::default();
        assert!(slot.take_unless_set([]).is_none());
        slot.set(Some(Cookie::new("auth_session", "")));
        assert!(
            slot.take_unless_set(["other=1; Path=/", "auth_session=new; HttpOnly"])
                .is_none()
        );
        assert!(slot.take_unless_set([]).is_none(), "taken once");
        slot.set(Some(Cookie::new("auth_session", "")));
        let cookie = slot.take_unless_set(["auth_session_x=1", "bad"]).unwrap();
        assert_eq!(cookie.name(), "auth_session");
        assert_eq!(format!("{slot:?}"), "CookieSlot(<redacted>)");
    }
}
