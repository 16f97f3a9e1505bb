//! 429s: a full password-hashing queue, and login throttling per client
//! address, per (account, address) and per account, which leaves the
//! owner free to sign in from an address it used before; the throttle's
//! windows, keys and bounds on their own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::local::asynchronous::{Client, LocalResponse};

use super::clients::{
    Device, LAPTOP, PHONE, TABLET, assert_security_headers, browser_with, post_from,
};
use super::common::PasswordLimits;
use super::common::hashing::Hasher;
use super::common::throttle::{self, Budget, Budgets, LoginThrottle, Throttled};
use super::{App, app, location, session_set_cookie};

const WINDOW: Duration = Duration::from_secs(15 * 60);

fn budgets(account: u32, account_address: u32, address: u32) -> Budgets {
    let budget = |failures| Budget {
        failures,
        window: WINDOW,
    };
    Budgets {
        account: budget(account),
        account_address: budget(account_address),
        address: budget(address),
    }
}

fn throttle(account: u32, account_address: u32, address: u32) -> LoginThrottle {
    LoginThrottle::new(budgets(account, account_address, address))
}

/// A browser whose sign-ins are throttled with `budgets`.
async fn browser(app: &App, budgets: Budgets) -> Client {
    let limits = PasswordLimits {
        hasher: Hasher::new(2, 4),
        throttle: LoginThrottle::new(budgets),
    };
    browser_with(app, limits).await
}

/// Another address, for an attacker.
fn device(address: &'static str) -> Device {
    Device {
        agent: "curl/8.5.0",
        address,
    }
}

async fn sign_up_from(browser: &Client, from: Device, name: &str) {
    let body = format!("username={name}&password=long-enough-pw&confirm=long-enough-pw");
    let res = post_from(browser, from, "/signup", &body).await;
    assert_eq!(res.status(), Status::SeeOther);
    post_from(browser, from, "/logout", "").await;
}

async fn log_in_from<'c>(
    browser: &'c Client,
    from: Device,
    name: &str,
    password: &str,
) -> LocalResponse<'c> {
    let body = format!("username={name}&password={password}");
    post_from(browser, from, "/login", &body).await
}

/// A 429 page that says `text` and how long to wait, and sets no cookie.
async fn assert_throttled(res: LocalResponse<'_>, text: &str) {
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
    assert!(html.contains(text), "{text}: {html}");
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

/// A flood of wrong passwords for one account from one address: past the
/// (account, address) budget that address waits (429 with `Retry-After`,
/// the password unchecked, never a 5xx), while the owner signs in from
/// the address it signed up from, and other addresses still may try.
#[tokio::test]
async fn a_flood_from_one_address_does_not_lock_the_owner_out() {
    let app = app().await;
    let browser = browser(&app, Budgets::default()).await;
    sign_up_from(&browser, LAPTOP, "mia").await;
    let attacker = device("192.0.2.66");
    let budget = Budgets::default().account_address.failures;
    for n in 0..budget + 20 {
        let res = log_in_from(&browser, attacker, "mia", "wrong-guess").await;
        if n < budget {
            assert_eq!(res.status(), Status::Unauthorized, "failure {n}");
        } else {
            assert_throttled(
                res,
                "Too many failed sign-ins for this account from your network. Try again in 15 minutes.",
            )
            .await;
        }
    }
    // Even the right password waits there ...
    let res = log_in_from(&browser, attacker, "MIA", "long-enough-pw").await;
    assert_throttled(res, "from your network").await;
    // ... while the owner signs in from where it signed up ...
    let res = log_in_from(&browser, LAPTOP, "mia", "long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(location(&res).as_deref(), Some("/"));
    // ... and a new address is not held back by that one's failures.
    let res = log_in_from(&browser, PHONE, "mia", "wrong-guess").await;
    assert_eq!(res.status(), Status::Unauthorized);
    let res = log_in_from(&browser, PHONE, "mia", "long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
}

/// Failures spread over many addresses spend the account's budget: then
/// every address the account never signed in from waits, the right
/// password too, while addresses it signed in from before do not.
#[tokio::test]
async fn failures_from_many_addresses_hold_back_new_addresses_only() {
    let app = app().await;
    let browser = browser(&app, budgets(3, 100, 100)).await;
    sign_up_from(&browser, LAPTOP, "noa").await;
    // The phone signs in once, so it is known too.
    let res = log_in_from(&browser, PHONE, "noa", "long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
    for address in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let res = log_in_from(&browser, device(address), "noa", "wrong-guess").await;
        assert_eq!(res.status(), Status::Unauthorized, "{address}");
    }
    for from in [device("192.0.2.1"), TABLET] {
        let res = log_in_from(&browser, from, "NOA", "long-enough-pw").await;
        assert_throttled(
            res,
            "Too many failed sign-ins for this account. Try again in 15 minutes, or sign in \
             from a device or network you used before.",
        )
        .await;
    }
    for from in [LAPTOP, PHONE] {
        let res = log_in_from(&browser, from, "noa", "long-enough-pw").await;
        assert_eq!(res.status(), Status::SeeOther, "{}", from.address);
    }
    // A known address's own mistakes count for that address only.
    let res = log_in_from(&browser, LAPTOP, "noa", "wrong-guess").await;
    assert_eq!(res.status(), Status::Unauthorized);
    // Other accounts are not affected.
    let res = log_in_from(&browser, TABLET, "nobody", "whatever-pw").await;
    assert_eq!(res.status(), Status::Unauthorized);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let app = app().await;
    let browser = browser(&app, budgets(100, 100, 4)).await;
    sign_up_from(&browser, PHONE, "oli").await;

    // Four failures from one address, each for another name (names no
    // account can have count too).
    for name in ["ann", "bea", "cy", "dee"] {
        let res = log_in_from(&browser, LAPTOP, name, "wrong-guess").await;
        assert_eq!(res.status(), Status::Unauthorized, "{name}");
    }
    let res = log_in_from(&browser, LAPTOP, "oli", "long-enough-pw").await;
    assert_throttled(res, "Too many failed sign-ins from your network.").await;
    // Another address signs in to the same account.
    let res = log_in_from(&browser, PHONE, "oli", "long-enough-pw").await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[tokio::test]
async fn wrong_current_passwords_count_like_failed_sign_ins() {
    let app = app().await;
    let browser = browser(&app, budgets(100, 2, 100)).await;
    let body = "username=pia&password=long-enough-pw&confirm=long-enough-pw";
    post_from(&browser, LAPTOP, "/signup", body).await;
    let change = "current=wrong-guess-1&new=new-password-2&confirm=new-password-2";
    for _ in 0..2 {
        let res = post_from(&browser, LAPTOP, "/password", change).await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let right = "current=long-enough-pw&new=new-password-2&confirm=new-password-2";
    let res = post_from(&browser, LAPTOP, "/password", right).await;
    assert_throttled(res, "Too many wrong passwords.").await;
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// A wrong password from `address` for `account`.
fn fail(t: &LoginThrottle, account: Option<&str>, address: Option<IpAddr>, at: Instant) {
    t.begin(account, address, at)
        .expect("not throttled yet")
        .failed();
}

/// Whether a sign-in may try a password (the attempt is dropped unsettled,
/// so it counts for nothing).
fn check(
    t: &LoginThrottle,
    account: Option<&str>,
    address: Option<IpAddr>,
    at: Instant,
) -> Result<(), Throttled> {
    t.begin(account, address, at).map(drop)
}

#[test]
fn windows_end_and_success_forgets_the_address_failures() {
    let t = throttle(100, 2, 3);
    let start = Instant::now();
    let later = |secs| start + Duration::from_secs(secs);
    fail(&t, Some("pat"), ip("192.0.2.1"), start);
    assert_eq!(check(&t, Some("pat"), ip("192.0.2.1"), later(1)), Ok(()));
    fail(&t, Some("pat"), ip("192.0.2.1"), later(1));
    assert_eq!(
        check(&t, Some("pat"), ip("192.0.2.1"), later(60)),
        Err(Throttled::AccountAddress {
            retry_after: WINDOW - Duration::from_secs(60)
        })
    );
    assert_eq!(
        check(&t, Some("pat"), ip("192.0.2.2"), later(60)),
        Ok(()),
        "another address has its own budget"
    );
    // The window runs from the first failure.
    assert_eq!(check(&t, Some("pat"), ip("192.0.2.1"), later(900)), Ok(()));
    // A success forgets the (account, address) failures, not the address's.
    fail(&t, Some("pat"), ip("192.0.2.1"), later(901));
    t.begin(Some("pat"), ip("192.0.2.1"), later(902))
        .unwrap()
        .succeeded(later(902));
    fail(&t, Some("pat"), ip("192.0.2.1"), later(903));
    assert_eq!(check(&t, Some("pat"), ip("192.0.2.1"), later(904)), Ok(()));
    fail(&t, None, ip("192.0.2.1"), later(904));
    assert!(matches!(
        check(&t, None, ip("192.0.2.1"), later(905)),
        Err(Throttled::Address { .. })
    ));
    assert_eq!(check(&t, None, ip("192.0.2.9"), later(905)), Ok(()));
}

/// Attempts count from the moment they are let through: attempts under
/// way together cannot overrun a budget, and one that ends unsettled (a
/// busy hasher, a database error) counts for nothing.
#[test]
fn attempts_count_until_settled() {
    let t = throttle(100, 100, 3);
    let now = Instant::now();
    let a = ip("192.0.2.1");
    let under_way: Vec<_> = (0..3)
        .map(|_| t.begin(Some("uma"), a, now).expect("within the budget"))
        .collect();
    assert!(matches!(
        check(&t, None, a, now),
        Err(Throttled::Address { .. })
    ));
    drop(under_way);
    assert_eq!(check(&t, None, a, now), Ok(()), "taken back");
    let wrong = t.begin(None, a, now).unwrap();
    let busy = t.begin(None, a, now).unwrap();
    wrong.failed();
    drop(busy);
    fail(&t, None, a, now);
    assert_eq!(check(&t, None, a, now), Ok(()), "two failures of three");
    fail(&t, None, a, now);
    assert!(check(&t, None, a, now).is_err());
}

#[test]
fn known_addresses_have_a_budget_of_their_own() {
    let t = throttle(2, 100, 100);
    let now = Instant::now();
    t.signed_in("quin", ip("203.0.113.5"), now);
    assert!(t.is_known("quin", ip("203.0.113.5"), now));
    assert!(!t.is_known("quin", ip("203.0.113.6"), now));
    assert!(!t.is_known("rae", ip("203.0.113.5"), now));
    fail(&t, Some("quin"), ip("198.51.100.1"), now);
    fail(&t, Some("quin"), ip("198.51.100.2"), now);
    assert!(matches!(
        check(&t, Some("quin"), ip("198.51.100.3"), now),
        Err(Throttled::Account { .. })
    ));
    assert!(matches!(
        check(&t, Some("quin"), None, now),
        Err(Throttled::Account { .. })
    ));
    assert_eq!(check(&t, Some("quin"), ip("203.0.113.5"), now), Ok(()));
    // A known address's failures do not spend the account's budget.
    let t = throttle(2, 100, 100);
    t.signed_in("quin", ip("203.0.113.5"), now);
    for _ in 0..5 {
        fail(&t, Some("quin"), ip("203.0.113.5"), now);
    }
    assert_eq!(check(&t, Some("quin"), ip("198.51.100.1"), now), Ok(()));
    // Known for 30 days after the last sign-in from there.
    let month = now + throttle::KNOWN_FOR;
    assert!(t.is_known("quin", ip("203.0.113.5"), month - Duration::from_secs(1)));
    assert!(!t.is_known("quin", ip("203.0.113.5"), month));
}

#[test]
fn ipv6_counts_per_network_and_mapped_ipv4_as_ipv4() {
    let t = throttle(100, 100, 2);
    let now = Instant::now();
    fail(&t, None, ip("2001:db8:1:2::1"), now);
    fail(&t, None, ip("2001:db8:1:2:ffff::9"), now);
    assert!(
        check(&t, None, ip("2001:db8:1:2::abcd"), now).is_err(),
        "same /64"
    );
    assert_eq!(check(&t, None, ip("2001:db8:1:3::1"), now), Ok(()));
    fail(&t, None, ip("::ffff:192.0.2.7"), now);
    fail(&t, None, ip("192.0.2.7"), now);
    assert!(check(&t, None, ip("192.0.2.7"), now).is_err());
    // Known addresses too: a phone's address changes within its /64.
    t.signed_in("sam", ip("2001:db8:9:9::1"), now);
    assert!(t.is_known("sam", ip("2001:db8:9:9::2"), now));
}

/// A spray of names from many addresses, and sign-ins to many accounts,
/// keep the maps bounded; the latest counts still hold.
#[test]
fn the_maps_stay_bounded() {
    let t = throttle(1, 1, 1);
    let start = Instant::now();
    let n = 2 * throttle::MAX_KEYS + 500;
    let address = |i: usize| Some(IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]));
    for i in 0..n {
        let at = start + Duration::from_micros(i as u64);
        fail(&t, Some(&format!("user{i}")), address(i), at);
        t.signed_in(&format!("owner{i}"), address(i), at);
    }
    let bound = 3 * throttle::MAX_KEYS + throttle::MAX_ACCOUNTS;
    assert!(t.entries() <= bound, "{} > {bound}", t.entries());
    assert!(t.entries() > 0);
    let at = start + Duration::from_secs(1);
    assert!(matches!(
        check(&t, None, address(n - 1), at),
        Err(Throttled::Address { .. })
    ));
    assert!(t.is_known(&format!("owner{}", n - 1), address(n - 1), at));
    // Each account remembers its latest eight addresses.
    let t = throttle(100, 100, 100);
    for i in 0..9u8 {
        let at = start + Duration::from_secs(i.into());
        t.signed_in("tia", Some(IpAddr::from([192, 0, 2, i])), at);
    }
    let at = start + Duration::from_secs(10);
    assert!(!t.is_known("tia", Some(IpAddr::from([192, 0, 2, 0])), at));
    for i in 1..9u8 {
        assert!(
            t.is_known("tia", Some(IpAddr::from([192, 0, 2, i])), at),
            "{i}"
        );
    }
}

#[tokio::test]
async fn wrong_passwords_at_the_reauthentication_prompt_count_like_failed_sign_ins() {
    let app = app().await;
    let browser = browser(&app, budgets(100, 2, 100)).await;
    let body = "username=quin&password=long-enough-pw&confirm=long-enough-pw";
    post_from(&browser, LAPTOP, "/signup", body).await;
    for _ in 0..2 {
        let res = post_from(
            &browser,
            LAPTOP,
            "/reauthenticate",
            "password=wrong-guess-1",
        )
        .await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let right = "password=long-enough-pw";
    let res = post_from(&browser, LAPTOP, "/reauthenticate", right).await;
    assert_throttled(res, "Too many wrong passwords.").await;
}
