//! Every response carries the CSP and referrer policy: pages, redirects,
//! the stylesheet, the favicon and every error page; the error pages are
//! styled; no page needs an inline style or a script.

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::Client;
use rocket::routes;

use super::clients::{assert_error_page, assert_security_headers};
use super::{HOST, ORIGIN, app, get, post, sign_up};

#[rocket::get("/boom")]
fn boom() -> Status {
    Status::InternalServerError
}

/// The app with a route that fails, for the 500 page.
async fn failing_app(url: &str) -> Client {
    let pool = PoolOptions::new()
        .with_max_size(2)
        .build(url)
        .await
        .unwrap();
    let sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<app::SessionInfo>()
            .with_user_attributes::<app::UserInfo>(),
    );
    let config = rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let rocket = app::build(rocket::custom(config), sessions, pool).mount("/test", routes![boom]);
    Client::tracked(rocket).await.unwrap()
}

#[tokio::test]
async fn every_route_carries_the_headers() {
    let app = app().await;
    let browser = app.browser().await;
    for (path, status) in [
        ("/login", Status::Ok),
        ("/signup", Status::Ok),
        ("/", Status::SeeOther),
        ("/sessions", Status::SeeOther),
        ("/password", Status::SeeOther),
    ] {
        let res = get(&browser, path).await;
        assert_eq!(res.status(), status, "{path}");
        assert_security_headers(&res, path);
        let html = res.into_string().await.unwrap_or_default();
        for inline in ["<style", " style=", "<script"] {
            assert!(!html.contains(inline), "{path}: {inline}");
        }
    }
    sign_up(&browser, "sam", "long-enough-pw").await;
    for path in ["/", "/sessions", "/password", "/login"] {
        let res = get(&browser, path).await;
        assert_security_headers(&res, path);
        let html = res.into_string().await.unwrap_or_default();
        for inline in ["<style", " style=", "<script"] {
            assert!(!html.contains(inline), "{path}: {inline}");
        }
    }
    for path in ["/sessions/revoke-others", "/logout"] {
        let res = post(&browser, path, "").await;
        assert_eq!(res.status(), Status::SeeOther, "{path}");
        assert_security_headers(&res, path);
    }
}

#[tokio::test]
async fn the_stylesheet_and_favicon() {
    let app = app().await;
    let browser = app.browser().await;
    let res = get(&browser, "/favicon.ico").await;
    assert_eq!(res.status(), Status::Ok);
    assert_security_headers(&res, "favicon");
    assert_eq!(res.content_type(), Some(ContentType::SVG));
    assert_eq!(
        res.headers().get_one("Cache-Control"),
        Some("public, max-age=86400")
    );
    assert!(res.into_string().await.unwrap().starts_with("<svg "));
    let res = get(&browser, "/style.css").await;
    assert_eq!(res.status(), Status::Ok);
    assert_security_headers(&res, "stylesheet");
    assert_eq!(res.content_type(), Some(ContentType::CSS));
    let login = get(&browser, "/login").await.into_string().await.unwrap();
    assert!(login.contains("<link rel=\"icon\" href=\"/favicon.ico\" type=\"image/svg+xml\">"));
}

#[tokio::test]
async fn error_pages_are_styled() {
    let app = app().await;
    let browser = app.browser().await;

    assert_error_page(get(&browser, "/no/such/page").await, 404, "Page not found").await;

    // The crate refuses a cross-site post with a plain-text 403 from a
    // route; the example answers with its page.
    let res = browser
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", "https://evil.example"))
        .dispatch()
        .await;
    assert_error_page(res, 403, "Request refused").await;

    let res = post(&browser, "/login", "username=only-a-name").await;
    assert_error_page(res, 422, "Form not understood").await;

    let huge = format!("username=a&password={}", "p".repeat(64 * 1024));
    let res = post(&browser, "/login", &huge).await;
    assert_error_page(res, 413, "Too much data").await;

    let res = browser
        .req(Method::Put, "/login")
        .header(Header::new("Host", HOST))
        .header(Header::new("Origin", ORIGIN))
        .dispatch()
        .await;
    assert_error_page(res, 404, "Page not found").await;

    let failing = failing_app(&app.url).await;
    let res = failing.get("/test/boom").dispatch().await;
    assert_error_page(res, 500, "Something went wrong").await;
}
