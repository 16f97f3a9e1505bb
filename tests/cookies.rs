//! Session cookies through the public API: the attributes of every cookie,
//! configuration checks, and reading the token back from `Cookie` headers
//! of every shape (no server needed).

use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use lucia_diesel::{ConfigError, CookieConfig};

/// RFC 6265 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, b'!'..=b'~') && !matches!(b, b'"' | b',' | b';' | b'\\')
}

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
        format!("auth_session={token}; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=2592000")
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
