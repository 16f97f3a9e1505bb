//! Which session a sign-out ends: the one the request would be validated
//! with, read by the crate's rules, never by a framework's own cookie jar
//! (which may take the last of two session cookies where validation takes
//! none).

use lucia_diesel::http::{Credential, RequestHeaders, RequestPolicy};
use lucia_diesel::{Adapter, SessionManager};

/// What a sign-out request presents.
#[derive(Debug)]
pub struct Presented {
    /// The session token, as validation reads it: a bearer token first
    /// (where accepted), else the session cookie; `None` for a session
    /// cookie sent twice (cookie tossing), as validation takes it.
    pub credential: Option<Credential>,
    /// Whether the request carries a session cookie with a value at all,
    /// once or more, valid or not: then the sign-out clears it. (A blank
    /// one is what clearing leaves in a jar that keeps it.)
    pub has_cookie: bool,
}

/// Reads `cookie_header` (every `Cookie` header of the request, joined with
/// `"; "`) and, when `bearer_tokens`, `authorization`.
pub fn presented<A: Adapter>(
    sessions: &SessionManager<A>,
    cookie_header: &str,
    authorization: Option<&str>,
    bearer_tokens: bool,
) -> Presented {
    let headers = RequestHeaders {
        method: "POST",
        authorization,
        ..RequestHeaders::default()
    };
    let credential = RequestPolicy::new()
        .with_bearer_tokens(bearer_tokens)
        .credential(&headers, sessions.read_session_cookie(cookie_header));
    let name = sessions.cookie_config().name();
    let has_cookie = cookie::Cookie::split_parse(cookie_header)
        .flatten()
        .any(|c| c.name() == name && !c.value().is_empty());
    Presented {
        credential,
        has_cookie,
    }
}
