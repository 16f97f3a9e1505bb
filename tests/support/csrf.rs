//! The CSRF table both integrations are checked against (Rocket in
//! `tests/rocket_app/shared.rs`, axum in `tests/axum_app/cross_origin.rs`): every
//! method x `Origin` (absent, same, foreign, `null`) x `Sec-Fetch-Site`
//! (absent and its four values), each sent with the session cookie and
//! again with a bearer token.
//!
//! The expected verdicts are written out row by row, not computed with the
//! rule under test. A framework runs the table by giving [`check`] a
//! function that sends one [`Probe`] and returns the status.

/// The `Host` every probe is sent with.
pub const HOST: &str = "localhost:8000";

/// An `Origin` that is the request's own (`Host` above).
const SAME: &str = "http://localhost:8000";

/// The methods, and whether each changes state (so is subject to the rule).
pub const METHODS: [(&str, bool); 7] = [
    ("GET", false),
    ("HEAD", false),
    ("OPTIONS", false),
    ("POST", true),
    ("PUT", true),
    ("PATCH", true),
    ("DELETE", true),
];

const FOREIGN: &str = "https://evil.example";

/// `(Origin, Sec-Fetch-Site, rejected)`: whether a state-changing request
/// that relies on the session cookie is refused with 403.
#[rustfmt::skip]
pub const TABLE: [(Option<&str>, Option<&str>, bool); 20] = [
    // Origin absent: Sec-Fetch-Site decides; absent too means no browser.
    (None,          None,                false),
    (None,          Some("same-origin"), false),
    (None,          Some("none"),        false),
    (None,          Some("same-site"),   true),
    (None,          Some("cross-site"),  true),
    // The request's own origin: only a foreign Sec-Fetch-Site refuses it.
    (Some(SAME),    None,                false),
    (Some(SAME),    Some("same-origin"), false),
    (Some(SAME),    Some("none"),        false),
    (Some(SAME),    Some("same-site"),   true),
    (Some(SAME),    Some("cross-site"),  true),
    // Another origin: refused, whatever Sec-Fetch-Site says.
    (Some(FOREIGN), None,                true),
    (Some(FOREIGN), Some("same-origin"), true),
    (Some(FOREIGN), Some("none"),        true),
    (Some(FOREIGN), Some("same-site"),   true),
    (Some(FOREIGN), Some("cross-site"),  true),
    // `null` (sandboxed frames, some redirects): matches nothing.
    (Some("null"),  None,                true),
    (Some("null"),  Some("same-origin"), true),
    (Some("null"),  Some("none"),        true),
    (Some("null"),  Some("same-site"),   true),
    (Some("null"),  Some("cross-site"),  true),
];

/// One request of the table.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub method: &'static str,
    pub origin: Option<&'static str>,
    pub sec_fetch_site: Option<&'static str>,
    /// Send the session token as `Authorization: Bearer` instead of the
    /// session cookie.
    pub bearer: bool,
}

/// Sends every probe and checks which are refused (403). With
/// `bearer_exempt`, bearer probes are never refused (the integration
/// accepts bearer tokens); without it they are judged like cookie probes.
pub async fn check(mut send: impl AsyncFnMut(Probe) -> u16, bearer_exempt: bool) {
    let mut refused = 0;
    for (method, state_changing) in METHODS {
        for (origin, sec_fetch_site, rejected) in TABLE {
            for bearer in [false, true] {
                let probe = Probe {
                    method,
                    origin,
                    sec_fetch_site,
                    bearer,
                };
                let want = state_changing && rejected && !(bearer && bearer_exempt);
                let status = send(probe).await;
                assert!(status < 500, "{probe:?}: {status}");
                assert_eq!(status == 403, want, "{probe:?}: {status}");
                refused += usize::from(want);
            }
        }
    }
    // 4 state-changing methods x 14 refused rows, for cookie probes (and
    // for bearer probes unless exempt).
    assert_eq!(refused, if bearer_exempt { 56 } else { 112 });
}
