//! The request side of sessions, independent of any web framework: the
//! logic the Rocket and axum integrations share, for use in other
//! frameworks too.
//!
//! - [`read_bearer_token`], [`verify_request_origin`] and
//!   [`is_same_origin_fetch`]: the header rules on their own.
//! - [`RequestPolicy`]: which credential a request presents (a bearer token
//!   when enabled and present, else the session cookie) and whether a
//!   state-changing request may proceed (CSRF), from [`RequestHeaders`].
//! - [`validate_request`]: validates that credential once and decides the
//!   cookie to send back ([`RequestSession`]); [`error_status`] maps a
//!   store failure to its HTTP status (503 when it is worth retrying).
//!
//! # One request, step by step
//! 1. Before any handler runs, [`RequestPolicy::allows`] decides CSRF:
//!    requests with a state-changing method that a browser marks as coming
//!    from elsewhere (a `Sec-Fetch-Site` other than `same-origin` or `none`,
//!    or an `Origin`, `null` included, that is neither the request's host
//!    nor an allowed origin) are refused with 403. Requests carrying
//!    neither header do not come from a modern browser, so cannot ride on
//!    a victim's cookies, and pass; so do bearer requests (below).
//! 2. When a handler asks for the session, [`RequestPolicy::credential`]
//!    picks the token, and [`validate_request`] checks it once.
//! 3. The response gets the cookie [`RequestSession::set_cookie`] names, if
//!    any: the refreshed cookie when the session was extended, a blank one
//!    when the presented cookie holds an invalid token. When the response
//!    sets a cookie it also gets `Cache-Control: no-store`.
//!
//! # Cookie or bearer token
//! With bearer tokens enabled ([`RequestPolicy::with_bearer_tokens`]), a
//! request whose `Authorization` header holds a bearer token
//! ([`read_bearer_token`]) is authenticated by that token alone, **even
//! when it also carries a session cookie**: the header is what the client
//! deliberately sent, the cookie is what the browser attaches on its own.
//! Such a request carries no ambient credential, so no CSRF rule applies
//! to it (a page on another site cannot add an `Authorization` header
//! without the server's CORS consent), and it never gets a cookie set, not
//! even a blank one for a stale session cookie it may also carry. An
//! `Authorization` header that is not a well-formed bearer header counts as
//! absent. With bearer tokens disabled (the default) the header is ignored.

mod origin;
mod recent;
mod rejection;
mod request;
mod session;
mod slot;

pub use self::origin::verify_request_origin;
pub use self::recent::RecentSession;
pub use self::rejection::SessionRejection;
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) use self::rejection::json_error_body;
pub use self::request::{Credential, RequestHeaders, RequestPolicy, TokenSource};
pub use self::session::{
    CurrentSession, MaybeSession, RequestSession, error_status, validate_request,
};
#[cfg(any(feature = "rocket", feature = "axum", feature = "actix"))]
pub(crate) use self::slot::{CookieSlot, is_named};

/// The token of an `Authorization: Bearer <token>` header value, or `None`.
///
/// Rule: the scheme `Bearer`, matched case-insensitively (RFC 9110
/// section 11.1), then exactly one space, then the token, which must be
/// non-empty visible ASCII (`!` to `~`, no spaces). Everything else is `None`:
/// a missing or empty token (`Bearer`, `Bearer `), extra spaces
/// (`Bearer  x`, `Bearer x `), more than one token (`Bearer x y`), another
/// scheme (`Basic x`) or no separator (`Bearerx`). Unlike Lucia, `Bearer  x`
/// never yields an empty token.
///
/// The token still has to pass
/// [`is_well_formed`](crate::token::is_well_formed) before it is looked up.
#[must_use]
pub fn read_bearer_token(authorization: &str) -> Option<&str> {
    const SCHEME: &str = "Bearer ";
    let head = authorization.get(..SCHEME.len())?;
    if !head.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = &authorization[SCHEME.len()..];
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())).then_some(token)
}

/// What a `Sec-Fetch-Site` request header says about where the request
/// comes from, for CSRF checks.
///
/// - `same-origin`: `Some(true)`;
/// - `none` (the user typed the URL, used a bookmark, etc.): `Some(true)`;
/// - `same-site`, `cross-site`: `Some(false)` (a sibling subdomain is a
///   different origin);
/// - absent or any other value (older browsers, non-browser clients):
///   `None`; fall back to [`verify_request_origin`].
///
/// Values are compared exactly, as the header carries lowercase tokens.
#[must_use]
pub fn is_same_origin_fetch(sec_fetch_site: Option<&str>) -> Option<bool> {
    match sec_fetch_site? {
        "same-origin" | "none" => Some(true),
        "same-site" | "cross-site" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer x", Some("x")),
            ("bearer x", Some("x")),
            ("BEARER x", Some("x")),
            ("bEaReR abc.DEF-123_~+/=", Some("abc.DEF-123_~+/=")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer  x", None),
            ("Bearer x ", None),
            ("Bearer x y", None),
            ("Bearer\tx", None),
            ("Bearer x\ty", None),
            ("Bearer x\0", None),
            ("Bearer \u{e9}", None),
            ("Basic x", None),
            ("Bearerx", None),
            (" Bearer x", None),
            ("", None),
            ("Bear", None),
            ("B\u{e9}arer x", None), // multi-byte char across the scheme boundary
            ("Bearer\u{e9}", None),
        ];
        for (header, expected) in cases {
            assert_eq!(read_bearer_token(header), *expected, "{header:?}");
        }
        let long = format!("Bearer {}", "a".repeat(1 << 20));
        assert_eq!(read_bearer_token(&long).map(str::len), Some(1 << 20));
    }

    #[test]
    fn sec_fetch_site() {
        let cases: &[(Option<&str>, Option<bool>)] = &[
            (Some("same-origin"), Some(true)),
            (Some("none"), Some(true)),
            (Some("same-site"), Some(false)),
            (Some("cross-site"), Some(false)),
            (None, None),
            (Some(""), None),
            (Some("Same-Origin"), None),
            (Some("same-origin "), None),
            (Some("bogus"), None),
        ];
        for (header, expected) in cases {
            assert_eq!(is_same_origin_fetch(*header), *expected, "{header:?}");
        }
    }
}
