//! [`verify_request_origin`]: Lucia's origin check, without its quirks.

/// Whether an `Origin` header names one of the allowed hosts, as Lucia's
/// `verifyRequestOrigin`; use it to reject cross-site state-changing
/// requests (CSRF) when `Sec-Fetch-Site` is absent.
///
/// The origin must be exactly `http://host` or `https://host`, optionally
/// with `:port` (1 to 65535), and nothing else: `null`, other schemes, a
/// path, user info or anything unparsable gives `false`. Host names are
/// ASCII letters, digits, `-`, `_` and `.`, or a bracketed IPv6 address.
///
/// Each allowed entry is `host`, `host:port`, or either of them behind
/// `http://` or `https://` (typically the request's own `Host` header).
/// Hosts are compared case-insensitively. Ports are compared after filling
/// in the default port of the scheme (80 for `http`, 443 for `https`), so
/// `example.com` allows `https://example.com` and `http://example.com`, but
/// not `https://example.com:8443`, which needs `example.com:8443`. When an
/// entry has a scheme the origin's scheme must match it. Entries that do not
/// parse allow nothing.
#[must_use]
pub fn verify_request_origin(origin: &str, allowed_hosts: &[&str]) -> bool {
    let Some((scheme, rest)) = split_scheme(origin) else {
        return false;
    };
    let Some((host, port)) = parse_authority(rest) else {
        return false;
    };
    let port = port.unwrap_or_else(|| scheme.default_port());
    allowed_hosts.iter().any(|entry| {
        let (entry_scheme, rest) = match split_scheme(entry) {
            Some((s, rest)) => (Some(s), rest),
            None => (None, *entry),
        };
        let Some((entry_host, entry_port)) = parse_authority(rest) else {
            return false;
        };
        let entry_port =
            entry_port.unwrap_or_else(|| entry_scheme.unwrap_or(scheme).default_port());
        entry_scheme.is_none_or(|s| s == scheme)
            && entry_port == port
            && entry_host.eq_ignore_ascii_case(host)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Splits `http://` or `https://` (any case) off the front.
fn split_scheme(s: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.eq_ignore_ascii_case("http") {
        Some((Scheme::Http, rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Some((Scheme::Https, rest))
    } else {
        None
    }
}

/// Parses `host[:port]`; the port is `None` when not given.
fn parse_authority(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        // IPv6 literal: `[` hex digits, `:` and `.` `]`.
        let end = s.find(']')?;
        let inner = &s[1..end];
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return None;
        }
        (&s[..=end], &s[end + 1..])
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = &s[..end];
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return None;
        }
        (host, &s[end..])
    };
    if port.is_empty() {
        return Some((host, None));
    }
    let digits = port.strip_prefix(':')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = digits.parse().ok()?;
    (port != 0).then_some((host, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_origins() {
        let allowed = [
            "example.com",
            "localhost:3000",
            "https://secure.example.com",
            "[::1]:8080",
        ];
        let cases: &[(&str, bool)] = &[
            ("https://example.com", true),
            ("http://example.com", true),
            ("https://EXAMPLE.com", true),
            ("HTTPS://example.com", true),
            ("https://example.com:443", true),
            ("http://example.com:80", true),
            ("https://example.com:8443", false),
            ("http://example.com:443", false),
            ("http://localhost:3000", true),
            ("http://localhost", false),
            ("http://localhost:3001", false),
            ("https://secure.example.com", true),
            ("http://secure.example.com", false), // scheme given in the entry
            ("http://[::1]:8080", true),
            ("http://[::1]", false),
            ("https://evil.com", false),
            ("https://example.com.evil.com", false),
            ("https://evilexample.com", false),
            ("https://sub.example.com", false),
            ("null", false),
            ("", false),
            ("example.com", false),
            ("ftp://example.com", false),
            ("https://example.com/", false),
            ("https://example.com/path", false),
            ("https://user@example.com", false),
            ("https://example.com:", false),
            ("https://example.com:0", false),
            ("https://example.com:65536", false),
            ("https://example.com:+443", false),
            ("https://example.com:443:443", false),
            ("https://", false),
            ("https://exa mple.com", false),
            ("https://ex\u{e4}mple.com", false),
            ("https://[::1", false),
            ("https://[]:8080", false),
            ("https://[::1]x", false),
            ("https://example.com\0", false),
        ];
        for (origin, expected) in cases {
            assert_eq!(
                verify_request_origin(origin, &allowed),
                *expected,
                "{origin:?}"
            );
        }
        assert!(!verify_request_origin("https://example.com", &[]));
        assert!(!verify_request_origin(
            "https://example.com",
            &["", "example.com/", "bad host"]
        ));
        assert!(verify_request_origin(
            "https://example.com:8443",
            &["example.com:8443"]
        ));
        assert!(verify_request_origin(
            "https://example.com",
            &["example.com:443"]
        ));
        assert!(verify_request_origin(
            "http://example.com",
            &["HTTP://Example.COM"]
        ));
    }
}
