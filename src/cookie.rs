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

/// RFC 6265 `cookie-octet`.
#[cfg(test)]
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, b'!'..=b'~') && !matches!(b, b'"' | b',' | b';' | b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60;

    fn assert_attributes(c: &Cookie<'_>, config: &CookieConfig, value: &str, max_age: i64) {
        assert_eq!(c.name(), config.name());
        assert_eq!(c.value(), value);
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.secure(), Some(config.secure()));
        assert_eq!(c.same_site(), Some(config.same_site()));
        assert_eq!(c.path(), Some(config.path()));
        assert_eq!(c.domain(), config.domain());
        assert_eq!(c.max_age(), Some(Duration::seconds(max_age)));
        assert_eq!(c.expires(), None);
    }

    #[test]
    fn default_config_cookies() {
        let config = CookieConfig::default();
        assert_eq!(config, CookieConfig::new());
        assert!(config.validate().is_ok());
        let token = "abcdefghijklmnopqrstuvwxyz234567abcdefgh";
        let c = config.session_cookie(token, 30 * DAY);
        assert_attributes(&c, &config, token, 30 * DAY);
        assert_eq!(
            c.to_string(),
            format!(
                "auth_session={token}; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=2592000"
            )
        );
        let blank = config.blank_cookie();
        assert_attributes(&blank, &config, "", 0);
        assert_eq!(
            blank.to_string(),
            "auth_session=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn max_age_without_cookie_expiry_and_clamping() {
        let config = CookieConfig::new().with_expires(false);
        assert!(!config.expires());
        let c = config.session_cookie("tok", 30 * DAY);
        assert_attributes(&c, &config, "tok", 400 * DAY);
        assert!(c.to_string().ends_with("; Max-Age=34560000"));
        assert_attributes(&config.blank_cookie(), &config, "", 0);
        let expiring = CookieConfig::new();
        assert_eq!(
            expiring.session_cookie("t", -5).max_age(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            expiring.session_cookie("t", i64::MAX).max_age(),
            Some(Duration::seconds(400 * DAY))
        );
    }

    #[test]
    fn host_prefix_and_custom_domain_cookies() {
        let host = CookieConfig::new()
            .with_name("__Host-session")
            .with_same_site(SameSite::Strict);
        assert!(host.validate().is_ok());
        let c = host.session_cookie("tok", 3600);
        assert_attributes(&c, &host, "tok", 3600);
        assert_eq!(
            c.to_string(),
            "__Host-session=tok; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=3600"
        );

        let shared = CookieConfig::new()
            .with_domain("example.com")
            .with_path("/app")
            .with_secure(false);
        assert!(shared.validate().is_ok());
        let c = shared.session_cookie("tok", 60);
        assert_attributes(&c, &shared, "tok", 60);
        assert_eq!(
            c.to_string(),
            "auth_session=tok; HttpOnly; SameSite=Lax; Path=/app; Domain=example.com; Max-Age=60"
        );
        let blank = shared.blank_cookie();
        assert_attributes(&blank, &shared, "", 0);
        assert_eq!(
            blank.to_string(),
            "auth_session=; HttpOnly; SameSite=Lax; Path=/app; Domain=example.com; Max-Age=0"
        );
    }

    #[test]
    fn validate_cases() {
        let ok = |c: CookieConfig| c.validate().is_ok();
        let base = CookieConfig::new;
        assert!(ok(base().with_name("__Secure-s")));
        assert!(ok(base().with_same_site(SameSite::None)));
        assert!(ok(base().with_secure(false)));
        assert!(ok(base().with_domain(".example.com")));
        for bad in [
            "",
            "a b",
            "a;b",
            "a=b",
            "a,b",
            "a\"b",
            "a\0b",
            "a\tb",
            "sess\u{e9}",
            "a/b",
            "(a)",
        ] {
            assert!(!ok(base().with_name(bad)), "name {bad:?}");
        }
        assert!(!ok(base().with_name("__Host-s").with_secure(false)));
        assert!(!ok(base().with_name("__Host-s").with_path("/app")));
        assert!(!ok(base().with_name("__Host-s").with_domain("example.com")));
        assert!(!ok(base().with_name("__host-s").with_domain("example.com")));
        assert!(!ok(base().with_name("__Secure-s").with_secure(false)));
        assert!(!ok(base().with_name("__SECURE-s").with_secure(false)));
        assert!(!ok(base()
            .with_same_site(SameSite::None)
            .with_secure(false)));
        for bad in ["", "app", "/a;b", "/a\nb"] {
            assert!(!ok(base().with_path(bad)), "path {bad:?}");
        }
        for bad in ["", "a b", "ex;ample.com", "exämple.com", &"a".repeat(254)] {
            assert!(!ok(base().with_domain(bad)), "domain {bad:?}");
        }
        let err = base().with_name("a b").validate().unwrap_err();
        assert_eq!(err, ConfigError::CookieName("a b".to_owned()));
        assert!(err.to_string().contains("cookie name"));
    }

    #[test]
    fn read_session_cookie_edge_cases() {
        let config = CookieConfig::new();
        let read = |h: &str| config.read_session_cookie(h);
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(read("auth_session=abc"), some("abc"));
        assert_eq!(read("a=1; auth_session=abc; b=2"), some("abc"));
        assert_eq!(read("a=1;auth_session=abc;b=2"), some("abc"));
        assert_eq!(read("  auth_session = abc  ;"), some("abc"));
        assert_eq!(read("auth_session=a=b"), some("a=b"));
        assert_eq!(read(""), None);
        assert_eq!(read("a=1; b=2"), None);
        assert_eq!(read("auth_session"), None); // no `=`
        assert_eq!(read("auth_session; b=2"), None);
        assert_eq!(read("auth_session; auth_session=abc"), some("abc")); // pair without `=` skipped
        assert_eq!(read("Auth_Session=abc"), None); // case-sensitive
        assert_eq!(read("xauth_session=abc"), None);
        assert_eq!(read("auth_session=abc; auth_session=def"), None); // duplicate
        assert_eq!(read("auth_session=abc; auth_session=abc"), None);
        assert_eq!(read("auth_session=; auth_session=abc"), None);
        assert_eq!(read("auth_session="), None); // empty
        assert_eq!(read("auth_session=\"\""), None);
        assert_eq!(read("auth_session=\"abc\""), some("abc")); // quoted
        assert_eq!(read("auth_session=\"\"abc\"\""), some("\"abc\"")); // one pair only
        assert_eq!(read("auth_session=\"abc"), some("\"abc"));
        assert_eq!(read("auth_session=a%00b"), None); // NUL
        assert_eq!(read("auth_session=%0a"), None); // control character
        // Malformed escapes are kept; such values never pass the token check.
        assert_eq!(read("auth_session=a%zzb"), some("a%zzb"));
        assert_eq!(read("auth_session=a%4"), some("a%4"));
        assert_eq!(read("auth_session=a%"), some("a%"));
        assert_eq!(read("auth_session=%e9"), None); // not UTF-8
        assert_eq!(read("auth_session=%C3%A9"), some("\u{e9}"));
        assert_eq!(read("auth_session=a%25b%3Bc"), some("a%b;c"));
        let huge = format!("{}; auth_session=abc", "x=y; ".repeat(1 << 18)); // > 1 MiB
        assert_eq!(read(&huge), some("abc"));
        assert_eq!(read(&";".repeat(1 << 20)), None);
        let huge_value = format!("auth_session={}", "a".repeat(1 << 20));
        assert_eq!(read(&huge_value).map(|v| v.len()), Some(1 << 20));
    }

    #[test]
    fn cookie_values_round_trip() {
        let config = CookieConfig::new().with_name("__Host-s");
        for token in [
            "abcdefghijklmnopqrstuvwxyz234567abcdefgh",
            "100%",
            "a;b c\"d\\e,f",
            "\u{e9}t\u{e9}",
        ] {
            let c = config.session_cookie(token, 60);
            assert!(c.value().bytes().all(is_cookie_octet), "{}", c.value());
            assert_eq!(
                config
                    .read_session_cookie(&format!("x=1; {}", c.stripped()))
                    .as_deref(),
                Some(token)
            );
        }
    }

    #[test]
    fn never_panics_on_random_headers() {
        // xorshift64*: deterministic, no extra dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let pieces = [
            "auth_session",
            "=",
            ";",
            " ",
            "%",
            "\"",
            "a",
            "%zz",
            "%e9",
            "%00",
            "\u{430}",
            "\t",
            "\0",
            "%4",
            "==",
        ];
        let config = CookieConfig::new();
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut header = String::new();
            for _ in 0..len {
                header.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            if let Some(v) = config.read_session_cookie(&header) {
                assert!(
                    !v.is_empty() && !v.chars().any(char::is_control),
                    "{header:?}"
                );
            }
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = config.read_session_cookie(&String::from_utf8_lossy(&bytes));
        }
    }
}
