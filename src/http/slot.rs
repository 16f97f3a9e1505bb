//! [`CookieSlot`]: the session cookie a request decided on, until the
//! response is known (every integration uses it).

use std::fmt;
use std::sync::{Mutex, PoisonError};

use cookie::Cookie;

/// The session cookie a request decided on, kept until the response is
/// known, so that it is sent whoever answers (a handler, or an error
/// catcher after a 401): the validation's (a refreshed or blank cookie),
/// or a rotation's, which replaces any other.
#[derive(Default)]
pub(crate) struct CookieSlot(Mutex<Option<Decided>>);

/// A cookie to send, and whether it replaces a `Set-Cookie` of the same
/// name already on the response. (Without an integration nothing reads it.)
#[cfg_attr(
    not(any(feature = "rocket", feature = "axum", feature = "actix")),
    allow(dead_code)
)]
struct Decided {
    cookie: Cookie<'static>,
    replace: bool,
}

impl fmt::Debug for CookieSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSlot(<redacted>)")
    }
}

impl CookieSlot {
    /// The validation's cookie: sent unless the response sets one of the
    /// same name (the handler's own, such as a new session on login, wins).
    #[cfg(any(feature = "rocket", feature = "axum", feature = "actix"))]
    pub(crate) fn set(&self, cookie: Option<Cookie<'static>>) {
        let decided = cookie.map(|cookie| Decided {
            cookie,
            replace: false,
        });
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = decided;
    }

    /// A rotation's cookie (the session's new token, or a blank cookie when
    /// the session is gone): it replaces the validation's, also one already
    /// put on the response.
    pub(crate) fn replace_with(&self, cookie: Cookie<'static>) {
        let decided = Decided {
            cookie,
            replace: true,
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(decided);
    }

    /// The cookie to add to a response whose `Set-Cookie` values are
    /// `set_cookies`, and whether the values of the same name must go
    /// first (see [`is_named`]): none when the response already sets that
    /// cookie and this one does not replace it.
    #[cfg(any(feature = "rocket", feature = "axum", feature = "actix"))]
    pub(crate) fn take<'v>(
        &self,
        set_cookies: impl IntoIterator<Item = &'v str>,
    ) -> Option<(Cookie<'static>, bool)> {
        let Decided { cookie, replace } = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        if replace {
            return Some((cookie, true));
        }
        let already = set_cookies
            .into_iter()
            .any(|value| is_named(value, cookie.name()));
        (!already).then_some((cookie, false))
    }
}

/// Whether a `Set-Cookie` value sets the cookie `name`.
#[cfg(any(feature = "rocket", feature = "axum", feature = "actix"))]
pub(crate) fn is_named(set_cookie: &str, name: &str) -> bool {
    set_cookie
        .split_once('=')
        .is_some_and(|(n, _)| n.trim() == name)
}

#[cfg(all(test, any(feature = "rocket", feature = "axum", feature = "actix")))]
mod tests {
    use super::*;

    #[test]
    fn a_handler_cookie_of_the_same_name_wins_over_the_validations() {
        let slot = CookieSlot::default();
        assert!(slot.take([]).is_none());
        slot.set(Some(Cookie::new("auth_session", "")));
        assert!(
            slot.take(["other=1; Path=/", "auth_session=new; HttpOnly"])
                .is_none()
        );
        assert!(slot.take([]).is_none(), "taken once");
        slot.set(Some(Cookie::new("auth_session", "")));
        let (cookie, replace) = slot.take(["auth_session_x=1", "bad"]).unwrap();
        assert_eq!((cookie.name(), replace), ("auth_session", false));
        assert_eq!(format!("{slot:?}"), "CookieSlot(<redacted>)");
    }

    #[test]
    fn a_rotations_cookie_replaces_any_other() {
        let slot = CookieSlot::default();
        slot.set(Some(Cookie::new("auth_session", "old")));
        slot.replace_with(Cookie::new("auth_session", "new"));
        let (cookie, replace) = slot.take(["auth_session=old; HttpOnly"]).unwrap();
        assert_eq!((cookie.value(), replace), ("new", true));
        assert!(is_named("auth_session=old; HttpOnly", "auth_session"));
        assert!(!is_named("auth_session_x=1", "auth_session"));
    }
}
