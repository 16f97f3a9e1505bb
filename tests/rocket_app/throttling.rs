//! 429s: a full password-hashing queue, and login throttling per account
//! and per client address; the throttle's windows and keys on their own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rocket::http::Status;

use super::app::PasswordLimits;
use super::clients::{LAPTOP, PHONE, TABLET, assert_security_headers, browser_with, post_from};
use super::limits::{Budget, Hasher, LoginThrottle, Throttled};
use super::{app, location, session_set_cookie};

const WINDOW: Duration = Duration::from_secs(15 * 60);

fn throttle(account: u32, address: u32) -> LoginThrottle {
    LoginThrottle::new(
        Budget {
            failures: account,
            window: WINDOW,
        },
        Budget {
            failures: address,
            window: WINDOW,
        },
    )
}

/// Takes the hasher's only worker until the returned sender is dropped.
async fn occupy(hasher: &Hasher) -> std::sync::mpsc::Sender<()> {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let h = hasher.clone();
    tokio::spawn(async move {
        h.run(move || {
            let _ = started.send(());
            let _ = wait.recv();
        })
        .await
        .expect("the hasher was idle");
    });
    running.await.unwrap();
    release
}

#[tokio::test]
async fn a_full_hashing_queue_answers_429_with_retry_after() {
    let app = app().await;
    let hasher = Hasher::new(1, 0);
    let browser = browser_with(
        &app,
        PasswordLimits {
            hasher: hasher.clone(),
            throttle: LoginThrottle::default(),
        },
    )
    .await;
    let signed_up = post_from(
        &browser,
        LAPTOP,
        "/signup",
        "username=kim&password=long-enough-pw&confirm=long-enough-pw",
    )
    .await;
    assert_eq!(signed_up.status(), Status::SeeOther);
    post_from(&browser, LAPTOP, "/logout", "").await;

    let release = occupy(&hasher).await;
    for (path, body) in [
        ("/login", "username=kim&password=long-enough-pw"),
        ("/login", "username=nobody&password=whatever-pw"),
        (
            "/signup",
            "username=lee&password=long-enough-pw&confirm=long-enough-pw",
        ),
    ] {
        let started = Instant::now();
        let res = post_from(&browser, LAPTOP, path, body).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "refused at once"
        );
        assert_eq!(res.status(), Status::TooManyRequests, "{path} {body}");
        assert_eq!(res.headers().get_one("Retry-After"), Some("1"));
        assert!(session_set_cookie(&res).is_none());
        assert_security_headers(&res, path);
        let html = res.into_string().await.unwrap();
        assert!(
            html.contains("The server is busy checking other passwords"),
            "{html}"
        );
        assert!(!html.contains("long-enough-pw"));
    }
    drop(release);

    // Once the worker is free, the same login goes through, and the busy
    // answers counted as no failure.
    let mut res = post_from(
        &browser,
        LAPTOP,
        "/login",
        "username=kim&password=long-enough-pw",
    )
    .await;
    for _ in 0..50 {
        if res.status() != Status::TooManyRequests {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        res = post_from(
            &browser,
            LAPTOP,
            "/login",
            "username=kim&password=long-enough-pw",
        )
        .await;
    }
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/"));
}

#[tokio::test]
async fn the_queue_admits_workers_plus_queue_and_no_more() {
    let hasher = Hasher::new(1, 2);
    let release = occupy(&hasher).await;
    let waiting: Vec<_> = (0..2)
        .map(|_| hasher.ticket().expect("a queue place"))
        .collect();
    assert!(hasher.ticket().is_err(), "the queue is full");
    drop(waiting);
    assert!(hasher.ticket().is_ok(), "places come back when given up");
    drop(release);
    assert_eq!(hasher.run(|| 7).await, Ok(7));
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account() {
    let app = app().await;
    let browser = browser_with(
        &app,
        PasswordLimits {
            hasher: Hasher::new(2, 4),
            throttle: throttle(3, 100),
        },
    )
    .await;
    let body = "username=mia&password=long-enough-pw&confirm=long-enough-pw";
    assert_eq!(
        post_from(&browser, LAPTOP, "/signup", body).await.status(),
        Status::SeeOther
    );
    post_from(&browser, LAPTOP, "/logout", "").await;

    // Three wrong passwords, from three addresses: the account's budget.
    for device in [LAPTOP, PHONE, TABLET] {
        let res = post_from(
            &browser,
            device,
            "/login",
            "username=mia&password=wrong-guess",
        )
        .await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    // Now even the right password waits, from anywhere, with a clear word.
    for device in [LAPTOP, TABLET] {
        let res = post_from(
            &browser,
            device,
            "/login",
            "username=MIA&password=long-enough-pw",
        )
        .await;
        assert_eq!(res.status(), Status::TooManyRequests);
        assert!(session_set_cookie(&res).is_none());
        let retry: u64 = res
            .headers()
            .get_one("Retry-After")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        let html = res.into_string().await.unwrap();
        assert!(
            html.contains("Too many failed sign-ins for this account. Try again in 15 minutes."),
            "{html}"
        );
    }
    // Other accounts are not affected.
    let res = post_from(
        &browser,
        LAPTOP,
        "/login",
        "username=nobody&password=whatever-pw",
    )
    .await;
    assert_eq!(res.status(), Status::Unauthorized);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let app = app().await;
    let browser = browser_with(
        &app,
        PasswordLimits {
            hasher: Hasher::new(2, 4),
            throttle: throttle(100, 4),
        },
    )
    .await;
    let body = "username=noa&password=long-enough-pw&confirm=long-enough-pw";
    assert_eq!(
        post_from(&browser, PHONE, "/signup", body).await.status(),
        Status::SeeOther
    );
    post_from(&browser, PHONE, "/logout", "").await;

    // Four failures from one address, each for another name (names no
    // account can have count too).
    for name in ["ann", "bea", "cy", "dee"] {
        let res = post_from(
            &browser,
            LAPTOP,
            "/login",
            &format!("username={name}&password=wrong-guess"),
        )
        .await;
        assert_eq!(res.status(), Status::Unauthorized, "{name}");
    }
    let res = post_from(
        &browser,
        LAPTOP,
        "/login",
        "username=noa&password=long-enough-pw",
    )
    .await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert!(res.headers().get_one("Retry-After").is_some());
    let html = res.into_string().await.unwrap();
    assert!(
        html.contains("Too many failed sign-ins from your network."),
        "{html}"
    );
    // Another address signs in to the same account.
    let res = post_from(
        &browser,
        PHONE,
        "/login",
        "username=noa&password=long-enough-pw",
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[tokio::test]
async fn wrong_current_passwords_spend_the_account_budget() {
    let app = app().await;
    let browser = browser_with(
        &app,
        PasswordLimits {
            hasher: Hasher::new(2, 4),
            throttle: throttle(2, 100),
        },
    )
    .await;
    let body = "username=oli&password=long-enough-pw&confirm=long-enough-pw";
    post_from(&browser, LAPTOP, "/signup", body).await;
    let change = "current=wrong-guess-1&new=new-password-2&confirm=new-password-2";
    for _ in 0..2 {
        let res = post_from(&browser, LAPTOP, "/password", change).await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let right = "current=long-enough-pw&new=new-password-2&confirm=new-password-2";
    let res = post_from(&browser, LAPTOP, "/password", right).await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert!(res.headers().get_one("Retry-After").is_some());
    assert!(
        res.into_string()
            .await
            .unwrap()
            .contains("Too many wrong passwords.")
    );
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn windows_end_and_success_forgets_the_account() {
    let t = throttle(2, 3);
    let start = Instant::now();
    let later = |secs| start + Duration::from_secs(secs);
    t.failed(Some("pat"), ip("192.0.2.1"), start);
    assert_eq!(t.check(Some("pat"), ip("192.0.2.1"), later(1)), Ok(()));
    t.failed(Some("pat"), ip("192.0.2.1"), later(1));
    assert_eq!(
        t.check(Some("pat"), ip("192.0.2.2"), later(60)),
        Err(Throttled::Account {
            retry_after: WINDOW - Duration::from_secs(60)
        })
    );
    // The window runs from the first failure.
    assert_eq!(t.check(Some("pat"), None, later(900)), Ok(()));
    // A success forgets the account's failures, not the address's.
    t.failed(Some("pat"), ip("192.0.2.1"), later(901));
    t.succeeded("pat");
    t.failed(Some("pat"), None, later(902));
    assert_eq!(t.check(Some("pat"), None, later(903)), Ok(()));
    assert_eq!(
        t.check(None, ip("192.0.2.1"), later(903)),
        Ok(()),
        "the address's window restarted at 901 with one failure"
    );
    t.failed(None, ip("192.0.2.1"), later(904));
    t.failed(None, ip("192.0.2.1"), later(905));
    assert!(matches!(
        t.check(None, ip("192.0.2.1"), later(906)),
        Err(Throttled::Address { .. })
    ));
    assert_eq!(t.check(None, ip("192.0.2.9"), later(906)), Ok(()));
}

#[test]
fn ipv6_counts_per_network_and_mapped_ipv4_as_ipv4() {
    let t = throttle(100, 2);
    let now = Instant::now();
    t.failed(None, ip("2001:db8:1:2::1"), now);
    t.failed(None, ip("2001:db8:1:2:ffff::9"), now);
    assert!(
        t.check(None, ip("2001:db8:1:2::abcd"), now).is_err(),
        "same /64"
    );
    assert_eq!(t.check(None, ip("2001:db8:1:3::1"), now), Ok(()));
    t.failed(None, ip("::ffff:192.0.2.7"), now);
    t.failed(None, ip("192.0.2.7"), now);
    assert!(t.check(None, ip("192.0.2.7"), now).is_err());
}
