//! The sessions page tells sessions apart (device, address, created, last
//! seen, expiry, the current one marked), and revoking says what happened.

use chrono::{DateTime, Duration, Utc};
use rocket::http::Status;
use rocket::local::asynchronous::Client;

use super::clients::{Device, LAPTOP, PHONE, TABLET, browser_with, get_from, post_from};
use super::common::PasswordLimits;
use super::{agent, app, current_session_id, location, pages};

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The table row (from `<tr><td>` to `</tr>`) that mentions `text`.
fn row_with<'h>(html: &'h str, text: &str) -> &'h str {
    html.split("<tr><td>")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or_default())
        .find(|r| r.contains(text))
        .unwrap_or_else(|| panic!("no row with {text:?} in {html}"))
}

async fn page(client: &Client, device: Device, path: &'static str) -> String {
    let res = get_from(client, device, path).await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.unwrap()
}

async fn log_in(client: &Client, device: Device, name: &str) {
    let res = post_from(
        client,
        device,
        "/login",
        &format!("username={name}&password=long-enough-pw"),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[tokio::test]
async fn three_devices_told_apart() {
    let app = app().await;
    let [laptop, phone, tablet] = [
        browser_with(&app, PasswordLimits::default()).await,
        browser_with(&app, PasswordLimits::default()).await,
        browser_with(&app, PasswordLimits::default()).await,
    ];
    let t0 = app.clock.get();
    let res = post_from(
        &laptop,
        LAPTOP,
        "/signup",
        "username=quinn&password=long-enough-pw&confirm=long-enough-pw",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    app.clock.advance(Duration::hours(2));
    log_in(&phone, PHONE, "quinn").await;
    app.clock.advance(Duration::minutes(30));
    log_in(&tablet, TABLET, "quinn").await;
    app.clock.advance(Duration::minutes(3));

    let html = page(&laptop, LAPTOP, "/sessions").await;
    assert_eq!(html.matches("<tr><td>").count(), 3, "{html}");
    assert_eq!(html.matches("this browser").count(), 1);

    let this = row_with(&html, "Chrome on Windows");
    assert!(this.contains("this browser"), "{this}");
    assert!(this.contains("from 203.0.113.5"), "{this}");
    assert!(this.contains(&fmt(t0)), "created: {this}");
    assert!(this.contains(">Now<"), "last seen: {this}");
    assert!(
        this.contains(&fmt(t0 + Duration::days(30))),
        "expires: {this}"
    );

    let iphone = row_with(&html, "Safari on iOS");
    assert!(iphone.contains("from 198.51.100.7"), "{iphone}");
    assert!(iphone.contains(&fmt(t0 + Duration::hours(2))), "{iphone}");
    assert!(iphone.contains(">33 minutes ago<"), "{iphone}");
    assert!(!iphone.contains("this browser"));

    let android = row_with(&html, "Firefox on Android");
    assert!(android.contains("from 2001:db8:5::17"), "{android}");
    assert!(android.contains(">3 minutes ago<"), "{android}");
    assert!(
        android.contains(&fmt(t0 + Duration::minutes(150) + Duration::days(30))),
        "expires 30 days after sign-in: {android}"
    );

    // Most recently seen first, after the current one.
    let order: Vec<usize> = ["Chrome on Windows", "Firefox on Android", "Safari on iOS"]
        .iter()
        .map(|d| html.find(d).unwrap())
        .collect();
    assert!(order.is_sorted(), "{order:?}");
    assert!(!html.contains(" disabled"), "others to sign out: enabled");
}

#[tokio::test]
async fn revoke_says_what_happened() {
    let app = app().await;
    let laptop = browser_with(&app, PasswordLimits::default()).await;
    let phone = browser_with(&app, PasswordLimits::default()).await;
    let mallory = browser_with(&app, PasswordLimits::default()).await;
    post_from(
        &laptop,
        LAPTOP,
        "/signup",
        "username=ruth&password=long-enough-pw&confirm=long-enough-pw",
    )
    .await;
    log_in(&phone, PHONE, "ruth").await;
    post_from(
        &mallory,
        TABLET,
        "/signup",
        "username=mallory2&password=long-enough-pw&confirm=long-enough-pw",
    )
    .await;
    let phone_id = current_session_id(&page(&phone, PHONE, "/sessions").await);
    let laptop_id = current_session_id(&page(&laptop, LAPTOP, "/sessions").await);

    // Someone else's session, an unknown id, a malformed one: not found,
    // and nothing changes.
    for id in [phone_id.clone(), "f".repeat(64), "x".to_owned()] {
        let res = post_from(&mallory, TABLET, "/sessions/revoke", &format!("id={id}")).await;
        assert_eq!(
            location(&res).as_deref(),
            Some("/sessions?notice=not-found"),
            "{id}"
        );
    }
    let html = page(&mallory, TABLET, "/sessions?notice=not-found").await;
    assert!(html.contains("No session of yours has that id"), "{html}");
    assert!(!html.contains("The session was signed out."), "{html}");
    assert!(page(&phone, PHONE, "/").await.contains("Hello, ruth"));

    // The user's own other session: signed out, and said so.
    let res = post_from(
        &laptop,
        LAPTOP,
        "/sessions/revoke",
        &format!("id={phone_id}"),
    )
    .await;
    assert_eq!(location(&res).as_deref(), Some("/sessions?notice=revoked"));
    let html = page(&laptop, LAPTOP, "/sessions?notice=revoked").await;
    assert!(html.contains("The session was signed out."), "{html}");
    assert_eq!(html.matches("<tr><td>").count(), 1);
    // The same id again: it is gone, so not found.
    let res = post_from(
        &laptop,
        LAPTOP,
        "/sessions/revoke",
        &format!("id={phone_id}"),
    )
    .await;
    assert_eq!(
        location(&res).as_deref(),
        Some("/sessions?notice=not-found")
    );

    // Nothing else to sign out: said so, and the button looks disabled.
    let res = post_from(&laptop, LAPTOP, "/sessions/revoke-others", "").await;
    assert_eq!(
        location(&res).as_deref(),
        Some("/sessions?notice=no-others")
    );
    let html = page(&laptop, LAPTOP, "/sessions?notice=no-others").await;
    assert!(html.contains("There were no other sessions"), "{html}");
    assert!(
        html.contains("<button class=\"danger\" type=\"submit\" disabled>Sign out everywhere else"),
        "{html}"
    );
    assert!(html.contains("No other sessions are signed in."));
    let css = laptop
        .get("/style.css")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        css.contains("button:disabled"),
        "disabled buttons have their own look"
    );

    // Revoking this browser's own session signs it out.
    let res = post_from(
        &laptop,
        LAPTOP,
        "/sessions/revoke",
        &format!("id={laptop_id}"),
    )
    .await;
    assert_eq!(location(&res).as_deref(), Some("/login"));
    let html = page(&laptop, LAPTOP, "/login").await;
    assert!(html.contains("You are signed out."), "{html}");
}

#[test]
fn user_agents_in_a_few_words() {
    let cases = [
        (LAPTOP.agent, "Chrome on Windows"),
        (PHONE.agent, "Safari on iOS"),
        (TABLET.agent, "Firefox on Android"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
            "Safari on macOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36 Edg/141.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/141.0.0.0 Safari/537.36",
            "Chrome on Linux",
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36",
            "Samsung Internet on Android",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/141.0 Mobile/15E148 Safari/604.1",
            "Chrome on iPadOS",
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36",
            "Chrome on ChromeOS",
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:143.0) Gecko/20100101 Firefox/143.0",
            "Firefox on Linux",
        ),
        ("curl/8.14.1", "curl"),
        ("python-requests/2.32", "python-requests"),
        (
            "Mozilla/5.0 (Windows NT 10.0)",
            "Unknown browser on Windows",
        ),
        ("<script>", "Unknown browser"),
        ("", "Unknown browser"),
    ];
    for (ua, want) in cases {
        assert_eq!(agent::describe(Some(ua)), want, "{ua}");
    }
    assert_eq!(agent::describe(None), "Unknown browser");
}

#[test]
fn last_seen_in_words() {
    let now = Utc::now();
    for (ago, want) in [
        (Duration::seconds(-5), "just now"),
        (Duration::seconds(59), "just now"),
        (Duration::seconds(60), "1 minute ago"),
        (Duration::minutes(3), "3 minutes ago"),
        (Duration::minutes(59), "59 minutes ago"),
        (Duration::minutes(60), "1 hour ago"),
        (Duration::hours(23), "23 hours ago"),
        (Duration::hours(24), "1 day ago"),
        (Duration::days(12), "12 days ago"),
    ] {
        assert_eq!(pages::ago(now, now - ago), want, "{ago}");
    }
}
