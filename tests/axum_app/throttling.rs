//! Failed logins over a real socket, from several client addresses
//! (127.0.0.n): a flood for one account from one address is refused with
//! 429 and `Retry-After`, never a 5xx, and cannot keep the owner out of an
//! address it signed in from before; failures spread over many addresses
//! hold back new addresses only.

use axum::http::{Method, StatusCode};
use futures_util::future::join_all;
use serde_json::json;

use super::common::throttle::{Budget, Budgets};
use super::end_to_end::{Answer, Server, loopback};
use super::*;

fn wrong(name: &str) -> serde_json::Value {
    json!({"username": name, "password": "wrong-guess"})
}

fn right(name: &str) -> serde_json::Value {
    json!({"username": name, "password": "long-enough-pw"})
}

async fn log_in(server: &Server, from: u8, body: serde_json::Value) -> Answer {
    server
        .call_from(loopback(from), Method::POST, "/api/login", &[], Some(body))
        .await
}

/// A 429 whose error says `text` and whose `Retry-After` is a wait within
/// the window.
fn assert_throttled(answer: &Answer, text: &str) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    let retry = answer.retry_after().expect("Retry-After");
    assert!((1..=900).contains(&retry), "{retry}");
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains(text), "{text}: {error}");
    assert!(answer.set_cookie().is_none());
}

/// 200 concurrent wrong logins for one account from one address, as in
/// the flood: every answer a 401 or a 429 (with `Retry-After`),
/// no more than the budget checked; then that address waits even with the
/// right password, while the owner signs in from the address it signed up
/// from, and a new address may try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_does_not_lock_the_owner_out() {
    let server = Server::start().await;
    server.enter_from(loopback(2), "/api/signup", "mia").await;
    let flood = (0..200).map(|_| log_in(&server, 3, wrong("mia")));
    let (mut refused, mut checked) = (0, 0);
    for answer in join_all(flood).await {
        match answer.status {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(answer.retry_after().is_some_and(|s| s >= 1));
                refused += 1;
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    // Attempts count from the moment they are let through, so however
    // many arrive together, no more than the budget are checked.
    let budget = Budgets::default().account_address.failures;
    assert!(
        (1..=budget as usize).contains(&checked),
        "{checked} checked"
    );
    assert_eq!(checked + refused, 200);
    // Once the flood is over, its budget is spent for sure (a 429 from a
    // busy hasher counted for nothing).
    for _ in 0..budget {
        log_in(&server, 3, wrong("mia")).await;
    }
    let answer = log_in(&server, 3, right("mia")).await;
    assert_throttled(
        &answer,
        "too many failed sign-ins for this account from your network",
    );

    let answer = log_in(&server, 2, right("mia")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = log_in(&server, 4, wrong("mia")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    let answer = log_in(&server, 4, right("mia")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// Failures from many addresses spend the account's budget: new addresses
/// then wait (the right password too), known ones do not.
#[tokio::test]
async fn failures_from_many_addresses_hold_back_new_addresses_only() {
    let window = std::time::Duration::from_secs(900);
    let budget = |failures| Budget { failures, window };
    let limits = PasswordLimits {
        hasher: Hasher::new(2, 4),
        throttle: LoginThrottle::new(Budgets {
            account: budget(4),
            account_address: budget(100),
            address: budget(100),
        }),
    };
    let server = Server::with_app(App::with_limits(limits).await).await;
    server.enter_from(loopback(2), "/api/signup", "noa").await;
    for from in 10..14 {
        let answer = log_in(&server, from, wrong("noa")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "127.0.0.{from}");
    }
    for from in [10, 20] {
        let answer = log_in(&server, from, right("noa")).await;
        assert_throttled(&answer, "too many failed sign-ins for this account");
    }
    let answer = log_in(&server, 2, right("noa")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // Other accounts are not held back.
    let answer = log_in(&server, 20, wrong("nobody")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

/// One address trying many accounts runs out of its own budget.
#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let server = Server::start().await;
    server.enter_from(loopback(2), "/api/signup", "oli").await;
    let budget = Budgets::default().address.failures;
    for n in 0..budget {
        let answer = log_in(&server, 5, wrong(&format!("user{n}"))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{n}");
    }
    let answer = log_in(&server, 5, right("oli")).await;
    assert_throttled(&answer, "too many failed sign-ins from your network");
    let answer = log_in(&server, 6, right("oli")).await;
    assert_eq!(answer.status, StatusCode::OK);
}
