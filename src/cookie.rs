//! The session cookie: configuration with secure defaults, the `Set-Cookie`
//! values to send, and reading the token back from a `Cookie` header.
//!
//! Every attribute is set explicitly on every cookie (`HttpOnly`, `Secure`,
//! `SameSite`, `Path`, `Domain` when configured, `Max-Age`), so the result
//! does not depend on a web framework's own defaults. Headers are parsed
//! and percent-decoded by the `cookie` crate; this module adds the rules
//! of its own on top (a duplicated session cookie counts as none, the
//! `__Host-` and `__Secure-` prefixes are checked).

use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::error::ConfigError;

/// The default cookie name, as in Lucia.
pub const DEFAULT_COOKIE_NAME: &str = "auth_session";

/// `Max-Age` of the session cookie when cookie expiry is disabled, and the
/// largest `Max-Age` ever sent: 400 days, the cap browsers apply
/// (RFC 6265bis), as in Lucia.
pub const MAX_COOKIE_AGE_SECS: i64 = 400 * 24 * 60 * 60;

/// How the session cookie is named and which attributes it carries.
///
/// Defaults: name `auth_session`, `HttpOnly` (always, not configurable),
/// `Secure`, `SameSite=Lax`, `Path=/`, no `Domain` (host-only), and
/// `Max-Age` equal to the session lifetime. Change them with the consuming
/// `with_*` setters, then call [`validate`](Self::validate) once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    name: String,
    secure: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    expires: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CookieConfig {
    /// The secure defaults listed on [`CookieConfig`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            expires: true,
        }
    }

    /// Sets the cookie name. A `__Host-` name (recommended where the
    /// application owns its host) requires `Secure`, `Path=/` and no domain;
    /// a `__Secure-` name requires `Secure`.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the `Secure` attribute (default `true`). Turn it off only for
    /// local development over plain HTTP.
    #[must_use]
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets the `SameSite` attribute (default `Lax`). `None` requires `Secure`.
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets the `Path` attribute (default `/`).
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the `Domain` attribute, which also sends the cookie to every
    /// subdomain. By default there is none (the cookie is host-only).
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie expires with the session (default `true`:
    /// `Max-Age` is the session lifetime). With `false` the cookie gets
    /// `Max-Age` of 400 days, as in Lucia, and only the server-side expiry
    /// ends the session.
    #[must_use]
    pub fn with_expires(mut self, expires: bool) -> Self {
        self.expires = expires;
        self
    }

    /// The cookie name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cookie is `Secure`.
    #[must_use]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The `SameSite` attribute.
    #[must_use]
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    /// The `Path` attribute.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Domain` attribute, if any.
    #[must_use]
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Whether the cookie expires with the session.
    #[must_use]
    pub fn expires(&self) -> bool {
        self.expires
    }

    /// Checks the configuration; call it once when the application starts.
    ///
    /// # Errors
    /// - [`ConfigError::CookieName`]: the name is empty or not an RFC 6265
    ///   token (ASCII `!` to `~` without `( ) < > @ , ; : \ " / [ ] ? = { }`);
    /// - [`ConfigError::HostPrefix`]: the name starts with `__Host-` (in any
    ///   case, as browsers match it) and the cookie is not `Secure`, its path
    ///   is not `/` or it has a domain;
    /// - [`ConfigError::SecurePrefix`]: the name starts with `__Secure-` and
    ///   the cookie is not `Secure`;
    /// - [`ConfigError::SameSiteNoneWithoutSecure`];
    /// - [`ConfigError::CookiePath`]: the path does not start with `/` or
    ///   holds `;` or a control character;
    /// - [`ConfigError::CookieDomain`]: the domain is empty, longer than 253
    ///   bytes, or holds anything but ASCII letters, digits, `-` and `.`
    ///   (write internationalised names in punycode).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = self.name.as_str();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ConfigError::CookieName(name.to_owned()));
        }
        if starts_with_ignore_case(name, "__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(ConfigError::HostPrefix(name.to_owned()));
        }
        if starts_with_ignore_case(name, "__Secure-") && !self.secure {
            return Err(ConfigError::SecurePrefix(name.to_owned()));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        let path = self.path.as_str();
        if !path.starts_with('/') || path.chars().any(|c| c == ';' || c.is_control()) {
            return Err(ConfigError::CookiePath(path.to_owned()));
        }
        if let Some(domain) = &self.domain {
            let ok = !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(ConfigError::CookieDomain(domain.clone()));
            }
        }
        Ok(())
    }

    /// The `Set-Cookie` value that stores `token` in the browser.
    ///
    /// `Max-Age` is `max_age_secs` (the session lifetime) when the cookie
    /// expires with the session, else 400 days; it is clamped to 0 ..= 400
    /// days, the range browsers honour. Bytes of the token that a cookie
    /// value cannot carry, and `%`, are percent-encoded (a token that passes
    /// [`is_well_formed`](crate::token::is_well_formed) contains none but
    /// `%`), so [`read_session_cookie`](Self::read_session_cookie) returns it
    /// unchanged.
    ///
    /// `Cookie`'s own `Debug` shows the value: do not log the result.
    #[must_use]
    pub fn session_cookie(&self, token: &str, max_age_secs: i64) -> Cookie<'static> {
        let max_age = if self.expires {
            max_age_secs.clamp(0, MAX_COOKIE_AGE_SECS)
        } else {
            MAX_COOKIE_AGE_SECS
        };
        self.build(
            utf8_percent_encode(token, NOT_COOKIE_OCTETS).to_string(),
            max_age,
        )
    }

    /// The `Set-Cookie` value that removes the session cookie (on logout or
    /// when the session is invalid): empty value, `Max-Age=0`, and the same
    /// name, path and domain, so it replaces the cookie it deletes.
    #[must_use]
    pub fn blank_cookie(&self) -> Cookie<'static> {
        self.build(String::new(), 0)
    }

    fn build(&self, value: String, max_age_secs: i64) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name.clone(), value);
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_max_age(Duration::seconds(max_age_secs));
        cookie
    }

    /// The session token in a raw `Cookie` request header (`a=1; b=2`), or
    /// `None`. Never panics, whatever the input.
    ///
    /// The `cookie` crate splits the header on `;`, trims each pair and
    /// percent-decodes it; pairs it cannot parse (no `=`, an empty name, an
    /// escape that decodes to invalid UTF-8) are skipped. The name must equal
    /// the configured name exactly (case-sensitive). If the name appears more
    /// than once the result is `None`: the request is ambiguous, and a second
    /// cookie may have been planted by a sibling subdomain (cookie tossing).
    /// One pair of surrounding double quotes is removed. `None` when the
    /// value is empty or holds a control character (such as NUL from `%00`).
    /// Escapes that are not `%` and two hex digits are kept as they are; the
    /// token check rejects such values before any query.
    #[must_use]
    pub fn read_session_cookie(&self, cookie_header: &str) -> Option<String> {
        let mut found = None;
        for cookie in Cookie::split_parse_encoded(cookie_header).flatten() {
            if cookie.name() != self.name {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(cookie.value_trimmed().to_owned());
        }
        found.filter(|value| !value.is_empty() && !value.chars().any(char::is_control))
    }
}

/// Percent-encoded in a cookie value: `%` and every byte that is not an
/// RFC 6265 `cookie-octet` (non-ASCII is always encoded).
const NOT_COOKIE_OCTETS: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// RFC 6265 / RFC 9110 `token` characters.
fn is_token_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~') && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}
