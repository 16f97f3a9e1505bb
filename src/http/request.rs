//! [`RequestPolicy`]: the credential a request presents and its CSRF
//! decision, read from [`RequestHeaders`].

use std::fmt;

use super::{is_same_origin_fetch, read_bearer_token, verify_request_origin};

/// The request headers the session logic reads, borrowed from whatever
/// request type a framework has.
///
/// Header values that are not valid UTF-8 count as absent. Its `Debug`
/// output never shows the `Authorization` header.
#[derive(Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    /// The method, as sent (`"GET"`, `"POST"`, ...; methods are
    /// case-sensitive).
    pub method: &'a str,
    /// The request's own host: the `Host` header, or the URI's authority
    /// (HTTP/2's `:authority`) when there is none.
    pub host: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header.
    pub sec_fetch_site: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
}

impl fmt::Debug for RequestHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHeaders")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("origin", &self.origin)
            .field("sec_fetch_site", &self.sec_fetch_site)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .finish()
    }
}

/// Where a request's session token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// The session cookie: an ambient credential, which the browser sends
    /// on its own (so CSRF rules apply, and the response may set the cookie).
    Cookie,
    /// An `Authorization: Bearer` header, which the client sets on purpose.
    Bearer,
}

/// The session token a request presents, and where it came from.
///
/// Its `Debug` output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    source: TokenSource,
    token: String,
}

impl Credential {
    /// A token read from the session cookie.
    #[must_use]
    pub fn cookie(token: impl Into<String>) -> Self {
        Self {
            source: TokenSource::Cookie,
            token: token.into(),
        }
    }

    /// A token read from an `Authorization: Bearer` header.
    #[must_use]
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            source: TokenSource::Bearer,
            token: token.into(),
        }
    }

    /// Where the token came from.
    #[must_use]
    pub fn source(&self) -> TokenSource {
        self.source
    }

    /// The token, to validate; never log it.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// How an integration treats requests: whether bearer tokens are accepted,
/// and which origins besides the request's own host may send
/// state-changing requests. See the [module docs](super) for the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RequestPolicy {
    allowed_origins: Vec<String>,
    bearer: bool,
}

impl RequestPolicy {
    /// Cookies only; CSRF checks against the request's own host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept state-changing requests from this origin's host
    /// (`"app.example.com"`, `"https://app.example.com"`, with a port when
    /// it is not the scheme's default; see [`verify_request_origin`]).
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Accept a session token in an `Authorization: Bearer` header, which
    /// then takes precedence over the session cookie (default: cookies only).
    pub fn with_bearer_tokens(mut self, accept: bool) -> Self {
        self.bearer = accept;
        self
    }

    /// Whether bearer tokens are accepted.
    #[must_use]
    pub fn bearer_tokens(&self) -> bool {
        self.bearer
    }

    /// The allowed origins besides the request's own host.
    #[must_use]
    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// The bearer token of the request, when bearer tokens are accepted and
    /// its `Authorization` header holds one. Such a request is
    /// authenticated by that token only.
    #[must_use]
    pub fn bearer_token<'h>(&self, headers: &RequestHeaders<'h>) -> Option<&'h str> {
        if !self.bearer {
            return None;
        }
        headers.authorization.and_then(read_bearer_token)
    }

    /// The credential the request presents: its bearer token (see
    /// [`bearer_token`](Self::bearer_token)), else `session_cookie`, the
    /// token read from the session cookie (typically
    /// [`SessionManager::read_session_cookie`](crate::SessionManager::read_session_cookie)
    /// of the joined `Cookie` headers). `None` when there is neither.
    #[must_use]
    pub fn credential(
        &self,
        headers: &RequestHeaders<'_>,
        session_cookie: Option<String>,
    ) -> Option<Credential> {
        match self.bearer_token(headers) {
            Some(token) => Some(Credential::bearer(token)),
            None => session_cookie.map(Credential::cookie),
        }
    }

    /// The CSRF decision: whether the request may reach a handler (`false`:
    /// answer 403 without running it).
    ///
    /// `true` for the safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) and for
    /// bearer requests. Otherwise `false` when `Sec-Fetch-Site` is present
    /// and not `same-origin` or `none`, or when `Origin` is present and
    /// matches neither the request's host nor an allowed origin (`null`
    /// matches nothing); `true` when both headers are absent.
    #[must_use]
    pub fn allows(&self, headers: &RequestHeaders<'_>) -> bool {
        if matches!(headers.method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
            || self.bearer_token(headers).is_some()
        {
            return true;
        }
        if let Some(site) = headers.sec_fetch_site
            && is_same_origin_fetch(Some(site)) != Some(true)
        {
            return false;
        }
        let Some(origin) = headers.origin else {
            return true;
        };
        let mut allowed: Vec<&str> = self.allowed_origins.iter().map(String::as_str).collect();
        allowed.extend(headers.host);
        verify_request_origin(origin, &allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post<'a>(origin: Option<&'a str>, site: Option<&'a str>) -> RequestHeaders<'a> {
        RequestHeaders {
            method: "POST",
            host: Some("app.example:8000"),
            origin,
            sec_fetch_site: site,
            authorization: None,
        }
    }

    #[test]
    fn csrf_decision() {
        let policy = RequestPolicy::new().with_allowed_origin("https://admin.example");
        let same = Some("http://app.example:8000");
        assert!(policy.allows(&post(None, None)));
        assert!(policy.allows(&post(same, Some("same-origin"))));
        assert!(policy.allows(&post(Some("https://admin.example"), None)));
        assert!(!policy.allows(&post(Some("https://evil.example"), None)));
        assert!(!policy.allows(&post(Some("null"), None)));
        assert!(!policy.allows(&post(same, Some("cross-site"))));
        assert!(!policy.allows(&post(None, Some("same-site"))));
        assert!(!policy.allows(&post(None, Some("bogus"))));
        let get = RequestHeaders {
            method: "GET",
            ..post(Some("null"), Some("cross-site"))
        };
        assert!(policy.allows(&get));
        let lower = RequestHeaders {
            method: "get",
            ..post(Some("null"), None)
        };
        assert!(!policy.allows(&lower), "methods are case-sensitive");
        let no_host = RequestHeaders {
            host: None,
            ..post(same, None)
        };
        assert!(!policy.allows(&no_host));
    }

    #[test]
    fn bearer_requests_skip_csrf_only_when_enabled() {
        let foreign = RequestHeaders {
            authorization: Some("Bearer abc"),
            ..post(Some("https://evil.example"), Some("cross-site"))
        };
        assert!(!RequestPolicy::new().allows(&foreign));
        let policy = RequestPolicy::new().with_bearer_tokens(true);
        assert!(policy.allows(&foreign));
        let malformed = RequestHeaders {
            authorization: Some("Bearer  abc"),
            ..foreign
        };
        assert!(!policy.allows(&malformed));
    }

    #[test]
    fn bearer_takes_precedence_over_the_cookie() {
        let headers = RequestHeaders {
            authorization: Some("Bearer from-header"),
            ..post(None, None)
        };
        let cookie = || Some("from-cookie".to_owned());
        let off = RequestPolicy::new();
        assert_eq!(
            off.credential(&headers, cookie()),
            Some(Credential::cookie("from-cookie"))
        );
        let on = RequestPolicy::new().with_bearer_tokens(true);
        assert_eq!(
            on.credential(&headers, cookie()),
            Some(Credential::bearer("from-header"))
        );
        assert_eq!(
            on.credential(&post(None, None), cookie()),
            Some(Credential::cookie("from-cookie"))
        );
        assert_eq!(on.credential(&post(None, None), None), None);
        let debug = format!("{:?} {headers:?}", on.credential(&headers, None));
        assert!(!debug.contains("from-header"), "{debug}");
    }
}
