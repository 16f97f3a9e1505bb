//! Servers going away under load: the standby stopped and started again,
//! the primary stopped and the standby promoted. Validations run from
//! several tasks throughout; a token that is not a valid session must
//! never validate, and every error must be typed and transient.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use lucia_diesel::{Attributes, ConnectionSource, Error, ReplicaStatus};
use tokio::task::JoinHandle;

use super::{Manager, Pair, manager, options, usable, wait_until};
use crate::support::scalar;

const LAG: Duration = Duration::from_secs(1);
/// The pools' checkout timeout (see `options`).
const CHECKOUT: Duration = Duration::from_secs(1);

/// One validation under load.
struct Call {
    at: Instant,
    took: Duration,
    /// Whether the token is a valid session.
    valid_token: bool,
    /// `Ok(true)`: validated.
    result: Result<bool, Error>,
}

/// Validates `tokens` (valid sessions first, `valid` of them) in turn from
/// four tasks until `stop`, recording every call: two tasks the valid
/// sessions only (a miss waits for the primary, which may be down), two
/// all of them.
fn validate_in_a_loop<S: ConnectionSource>(
    sessions: &Arc<Manager<S>>,
    tokens: Vec<String>,
    valid: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Vec<Call>>> {
    (0..4)
        .map(|task| {
            let n = if task % 2 == 0 { valid } else { tokens.len() };
            let tokens = tokens[..n].to_vec();
            let (sessions, stop) = (sessions.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % tokens.len();
                    let at = Instant::now();
                    let result = sessions.validate_session(&tokens[k]).await;
                    calls.push(Call {
                        at,
                        took: at.elapsed(),
                        valid_token: k < valid,
                        result: result.map(|s| s.is_some()),
                    });
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                calls
            })
        })
        .collect()
}

async fn collect(stop: &AtomicBool, tasks: Vec<JoinHandle<Vec<Call>>>) -> Vec<Call> {
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for task in tasks {
        calls.extend(task.await.unwrap());
    }
    calls
}

/// No call ever validated a token that is not a valid session, and every
/// error was transient.
fn assert_never_wrong(calls: &[Call]) {
    for call in calls {
        match &call.result {
            Ok(validated) if !call.valid_token => assert!(!validated, "an invalid token validated"),
            Err(e) => assert!(e.is_transient(), "{e:?}"),
            Ok(_) => {}
        }
    }
}

async fn new_sessions<S: ConnectionSource>(sessions: &Manager<S>, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let user = format!("user-{}", i % 10 + 1);
        let created = sessions.create_session(user, Attributes::new()).await;
        tokens.push(created.unwrap().token.as_str().to_owned());
    }
    tokens
}

/// The standby stopped: reads go to the primary within one checkout
/// timeout, without errors; started again, reads return to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_costs_no_error_and_serves_again_once_started() {
    let pair = Pair::start().await;
    let pool = pair.pool(LAG).await;
    let sessions = Arc::new(manager(pool.clone()));
    let mut tokens = new_sessions(&sessions, 8).await;
    tokens.push("abcdefghijklmnopqrstuvwxyz234567abcdefgh".to_owned());
    pair.caught_up().await;
    wait_until("caught up", Duration::from_secs(5), || usable(&pool)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = validate_in_a_loop(&sessions, tokens.clone(), 8, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let primary_before = pair.primary.joins().await;
    pair.standby.control(|s| s.stop("fast")).await;
    let stopped = Instant::now();
    wait_until("the standby is skipped", 2 * LAG, || !usable(&pool)).await;
    assert_eq!(pool.replica_status()[0], ReplicaStatus::Down);
    tokio::time::sleep(CHECKOUT + LAG).await;
    let calls = collect(&stop, tasks).await;
    assert!(
        pair.primary.joins().await > primary_before + 10,
        "reads went to the primary"
    );

    assert_never_wrong(&calls);
    let errors = calls.iter().filter(|c| c.result.is_err()).count();
    assert!(errors <= 1, "{errors} errors");
    let after = calls.iter().filter(|c| c.at >= stopped);
    assert!(after.clone().count() > 20);
    for call in after {
        assert!(
            call.took < CHECKOUT + Duration::from_secs(1),
            "{:?}",
            call.took
        );
        if call.valid_token {
            assert!(
                matches!(call.result, Ok(true) | Err(_)),
                "valid sessions validate"
            );
        }
    }

    pair.standby.control(|s| s.start_again()).await;
    wait_until("the standby serves again", Duration::from_secs(15), || {
        usable(&pool)
    })
    .await;
    let before = pair.joins().await;
    assert!(
        sessions
            .validate_session(&tokens[0])
            .await
            .unwrap()
            .is_some()
    );
    let after = pair.joins().await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
}

/// The primary stopped and the standby promoted: reads keep working from
/// the standby meanwhile, writes fail with transient errors until the
/// promotion and then succeed on the new primary (a multi-host primary URL
/// with `target_session_attrs=read-write`), and no call ever validates a
/// revoked or unknown token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_on_a_promoted_standby_and_nothing_invalid_validates() {
    let pair = Pair::start().await;
    let port = |url: &str| {
        url.rsplit_once(':')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let (p, s) = (port(&pair.primary.url), port(&pair.standby.url));
    let primary_url = format!(
        "postgres://postgres@127.0.0.1:{p},127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    );
    let pool = options()
        .with_max_replica_lag(LAG)
        .build_replicated(&primary_url, &[&pair.standby.url])
        .await
        .unwrap();
    let sessions = Arc::new(manager(pool.clone()));
    let mut tokens = new_sessions(&sessions, 6).await;
    for token in new_sessions(&sessions, 3).await {
        let id = sessions.session_id(&token);
        sessions.invalidate_session(&id).await.unwrap();
        tokens.push(token);
    }
    tokens.push("abcdefghijklmnopqrstuvwxyz234567abcdefgh".to_owned());
    pair.caught_up().await;
    wait_until("caught up", Duration::from_secs(5), || usable(&pool)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = validate_in_a_loop(&sessions, tokens.clone(), 6, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pair.primary.control(|p| p.stop("immediate")).await;
    let stopped = Instant::now();
    let write = sessions.create_session("user-1".to_owned(), Attributes::new());
    let write = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .unwrap();
    assert!(
        write.unwrap_err().is_transient(),
        "no primary: a transient error"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair.standby.control(|s| s.promote()).await;
    let promoted = Instant::now();

    // Writes find the new primary.
    let mut created = None;
    while created.is_none() {
        assert!(
            promoted.elapsed() < Duration::from_secs(15),
            "no write succeeded"
        );
        let write = sessions.create_session("user-2".to_owned(), Attributes::new());
        match tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .unwrap()
        {
            Ok(session) => created = Some(session),
            Err(e) => assert!(e.is_transient(), "{e:?}"),
        }
    }
    let calls = collect(&stop, tasks).await;
    assert_never_wrong(&calls);
    let served_meanwhile = calls.iter().filter(|c| {
        c.at > stopped && c.at < promoted && c.valid_token && matches!(c.result, Ok(true))
    });
    assert!(
        served_meanwhile.count() > 20,
        "reads kept working while the primary was down"
    );

    let created = created.unwrap();
    let mut new_primary = AsyncPgConnection::establish(&pair.standby.url)
        .await
        .unwrap();
    let id = created.session.id.as_str();
    let sql = format!("SELECT count(*) AS n FROM user_session WHERE id = '{id}'");
    assert_eq!(
        scalar(&mut new_primary, &sql).await,
        1,
        "written on the new primary"
    );
    let validated = sessions.validate_session(created.token.as_str()).await;
    assert!(validated.unwrap().is_some());
    // The sampler's next probe finds it promoted (until then the reads it
    // serves are the new primary's own).
    let promoted = || pool.replica_status()[0] == ReplicaStatus::NotInRecovery;
    wait_until("the standby found promoted", 2 * LAG, promoted).await;
    for token in &tokens[..6] {
        assert!(sessions.validate_session(token).await.unwrap().is_some());
    }
    for token in &tokens[6..] {
        assert!(sessions.validate_session(token).await.unwrap().is_none());
    }
}
