//! Helpers for the example's newer tests: a browser with chosen password
//! limits, requests from a chosen device (user agent and address), and the
//! headers every response must carry.

use std::net::SocketAddr;

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
use rocket::http::{ContentType, Header};
use rocket::local::asynchronous::{Client, LocalResponse};

use super::app;
use super::common::PasswordLimits;
use super::{App, HOST, ORIGIN, headers};

/// A browser on one machine: what it says it is, and where it comes from.
#[derive(Clone, Copy)]
pub struct Device {
    pub agent: &'static str,
    pub address: &'static str,
}

pub const LAPTOP: Device = Device {
    agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
            Chrome/141.0.0.0 Safari/537.36",
    address: "203.0.113.5",
};
pub const PHONE: Device = Device {
    agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 \
            (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    address: "198.51.100.7",
};
pub const TABLET: Device = Device {
    agent: "Mozilla/5.0 (Android 15; Mobile; rv:143.0) Gecko/143.0 Firefox/143.0",
    address: "2001:db8:5::17",
};

impl Device {
    fn socket(self) -> SocketAddr {
        SocketAddr::new(self.address.parse().expect("a test address"), 50_000)
    }
}

/// A browser (its own cookie jar) on `app`'s database, with `limits`.
pub async fn browser_with(app: &App, limits: PasswordLimits) -> Client {
    let pool = PoolOptions::new()
        .with_max_size(4)
        .build(&app.url)
        .await
        .unwrap();
    let sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    )
    .with_clock(app.clock.clone())
    .build()
    .unwrap();
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    Client::tracked(app::build_with(
        rocket::custom(config),
        sessions,
        pool,
        limits,
    ))
    .await
    .unwrap()
}

/// A same-origin form post from `device`.
pub async fn post_from<'c>(
    client: &'c Client,
    device: Device,
    path: &'c str,
    body: &str,
) -> LocalResponse<'c> {
    client
        .post(path)
        .remote(device.socket())
        .header(ContentType::Form)
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .header(Header::new("Sec-Fetch-Site", "same-origin"))
        .header(Header::new("User-Agent", device.agent))
        .body(body)
        .dispatch()
        .await
}

/// A page view from `device`.
pub async fn get_from<'c>(client: &'c Client, device: Device, path: &'c str) -> LocalResponse<'c> {
    client
        .get(path)
        .remote(device.socket())
        .header(Header::new("Host", HOST))
        .header(Header::new("User-Agent", device.agent))
        .dispatch()
        .await
}

/// The headers every response carries, pages and errors alike.
pub fn assert_security_headers(res: &LocalResponse<'_>, what: &str) {
    let h = res.headers();
    assert_eq!(
        h.get_one("Content-Security-Policy"),
        Some(headers::CONTENT_SECURITY_POLICY),
        "{what}"
    );
    assert_eq!(h.get_one("Referrer-Policy"), Some("same-origin"), "{what}");
    assert_eq!(
        h.get_one("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
    let csp = h.get_one("Content-Security-Policy").unwrap_or_default();
    for part in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.split("; ").any(|p| p == part),
            "{what}: {part} in {csp}"
        );
    }
}

/// A styled error page: HTML with the site's stylesheet and `title`.
pub async fn assert_error_page(res: LocalResponse<'_>, code: u16, title: &str) {
    assert_eq!(res.status().code, code, "{title}");
    assert_security_headers(&res, title);
    assert_eq!(res.content_type(), Some(ContentType::HTML), "{title}");
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let html = res.into_string().await.unwrap();
    assert!(
        html.contains("<link rel=\"stylesheet\" href=\"/style.css\">"),
        "{html}"
    );
    assert!(html.contains(&format!("<h1>{title}</h1>")), "{html}");
}
