//! [`SessionRejection`]: why a framework extractor refused a request, with
//! the status and message every integration answers it with.

use crate::error::Error;
use crate::http::error_status;

/// Why an extractor refused a request; the integrations answer it as
/// `{"error": "..."}` with [`http_status`](Self::http_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No valid session (`401 Unauthorized`; only `CurrentSession`).
    Unauthorized,
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
            Self::Unauthorized => 401,
            Self::Unavailable => 503,
            Self::StoreFailed | Self::MissingLayer | Self::MissingManager => 500,
        }
    }

    /// The `error` text of the response body.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Unauthorized => "not signed in",
            Self::Unavailable => "the session store is unavailable; try again later",
            Self::StoreFailed | Self::MissingLayer | Self::MissingManager => "internal error",
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

    /// The response body, `{"error": "..."}`.
    #[must_use]
    pub fn json_body(self) -> String {
        json_error_body(self.message())
    }
}

/// `{"error": message}`.
pub(crate) fn json_error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
