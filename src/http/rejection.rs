//! [`SessionRejection`]: why a framework extractor refused a request, with
//! the status and message every integration answers it with.

use crate::error::Error;
use crate::http::error_status;

/// Why an extractor refused a request; the integrations answer it as
/// `{"error": "...", "reason": "..."}` with [`http_status`](Self::http_status):
/// `error` for people, `reason` ([`reason`](Self::reason)) for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No valid session (`401 Unauthorized`; only `CurrentSession`).
    Unauthorized,
    /// A valid session whose sign-in is older than the route allows
    /// (`401`; `RecentSession`): ask for the password again, then
    /// re-authenticate the session.
    ReauthenticationRequired,
    /// The session store is unavailable, timed out or read-only
    /// (`503 Service Unavailable`): try again later.
    Unavailable,
    /// The session store failed otherwise (`500`).
    StoreFailed,
    /// The integration's layer or middleware is not installed on the route
    /// (`500`).
    MissingLayer,
    /// No session manager where the integration looks for one (actix-web:
    /// no `web::Data<SessionManager<A>>` in the app data) (`500`).
    MissingManager,
}

impl SessionRejection {
    /// The response status code.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized | Self::ReauthenticationRequired => 401,
            Self::Unavailable => 503,
            Self::StoreFailed | Self::MissingLayer | Self::MissingManager => 500,
        }
    }

    /// The `error` text of the response body.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Unauthorized => "not signed in",
            Self::ReauthenticationRequired => "sign in again to continue",
            Self::Unavailable => "the session store is unavailable; try again later",
            Self::StoreFailed | Self::MissingLayer | Self::MissingManager => "internal error",
        }
    }

    /// A stable code for programs: `unauthorized`,
    /// `reauthentication_required`, `unavailable` (retry later) or
    /// `internal_error`.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::Unavailable => "unavailable",
            Self::StoreFailed | Self::MissingLayer | Self::MissingManager => "internal_error",
        }
    }

    /// The rejection for a store failure: 503 when retrying may help.
    #[must_use]
    pub fn from_error(error: &Error) -> Self {
        if error_status(error) == 503 {
            Self::Unavailable
        } else {
            Self::StoreFailed
        }
    }

    /// The response body, `{"error": "...", "reason": "..."}`.
    #[must_use]
    pub fn json_body(self) -> String {
        serde_json::json!({ "error": self.message(), "reason": self.reason() }).to_string()
    }
}

/// `{"error": message}`.
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) fn json_error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
