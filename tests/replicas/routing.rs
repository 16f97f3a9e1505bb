//! Where reads go, and what they return, while the standby keeps up,
//! falls behind (replay paused) and catches up again.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use lucia_diesel::{
    Attributes, ConfigError, Error, PoolOptions, PostgresAdapter, ReplicaStatus, SessionManager,
};

use super::{Pair, manager, options, usable, wait_until};
use crate::support::clock::ManualClock;
use crate::support::scalar;

const LAG: Duration = Duration::from_secs(1);

/// Settings a replicated pool cannot work with are rejected by name before
/// any connection, and no error repeats a URL's password.
#[tokio::test]
async fn replicated_settings_are_rejected_by_name_when_built() {
    let url = "postgres://app:hunter2@127.0.0.1:1/x";
    let build = async |options: PoolOptions, primary: &str, replicas: &[&str]| match options
        .build_replicated(primary, replicas)
        .await
    {
        Err(Error::Config(e)) => {
            assert!(!e.to_string().contains("hunter2"), "{e}");
            e
        }
        other => panic!("{other:?}"),
    };
    let zero = PoolOptions::new().with_max_replica_lag(Duration::ZERO);
    assert_eq!(build(zero, url, &[url]).await, ConfigError::MaxReplicaLag);
    let two_hosts = "postgres://app:hunter2@db1:5432,db2:5432/x";
    let e = build(PoolOptions::new(), two_hosts, &[url]).await;
    assert_eq!(e, ConfigError::PrimaryNotReadWrite);
    let bad = "postgres://app:hunter2@db:notaport/x";
    let e = build(PoolOptions::new(), url, &[bad]).await;
    assert!(matches!(e, ConfigError::DatabaseUrl(_)), "{e:?}");
    let e = build(PoolOptions::new().with_max_size(0), url, &[url]).await;
    assert_eq!(e, ConfigError::PoolSize);
}

/// Validations go to the standby and return exactly what the primary
/// returns; a miss there is asked again on the primary. The pool's `Debug`
/// names its servers without their passwords, and its sampler and
/// connections go away with it.
#[tokio::test]
async fn validations_are_served_by_the_standby_with_the_primarys_answers() {
    let pair = Pair::start().await;
    // Trust authentication: any password will do, and none may show.
    let with_password = |url: &str| url.replacen("postgres@", "postgres:hunter2@", 1);
    let pool = options()
        .with_max_replica_lag(LAG)
        .build_replicated(
            &with_password(&pair.primary.url),
            &[&with_password(&pair.standby.url)],
        )
        .await
        .unwrap();
    let shown = format!("{pool:?}");
    assert!(
        shown.contains("127.0.0.1") && !shown.contains("hunter2"),
        "{shown}"
    );
    let (replicated, strict) = (manager(pool.clone()), manager(pool.primary().clone()));
    let mut tokens = Vec::new();
    for i in 0..10 {
        let user = format!("user-{}", i % 3 + 1);
        let created = replicated
            .create_session(user, Attributes::new())
            .await
            .unwrap();
        tokens.push(created.token);
    }
    pair.caught_up().await;
    wait_until("the standby serves reads", Duration::from_secs(5), || {
        usable(&pool)
    })
    .await;

    let before = pair.joins().await;
    for token in &tokens {
        let from_replica = replicated.validate_session(token.as_str()).await.unwrap();
        let from_primary = strict.validate_session(token.as_str()).await.unwrap();
        assert!(from_replica.is_some());
        assert!(from_replica == from_primary, "the same session and user");
    }
    let after = pair.joins().await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (10, 10),
        "(standby, primary): the replicated manager's 10 on the standby, the strict one's on the primary"
    );

    for user in ["user-1", "user-2", "user-3"] {
        let user = user.to_owned();
        let mut listed = replicated.get_user_sessions(&user).await.unwrap();
        let mut on_primary = strict.get_user_sessions(&user).await.unwrap();
        listed.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        on_primary.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        assert!(!listed.is_empty() && listed == on_primary, "{user}");
    }

    // An unknown token: asked of the standby, then of the primary.
    let before = pair.joins().await;
    let unknown = "abcdefghijklmnopqrstuvwxyz234567abcdefgh";
    assert!(
        replicated
            .validate_session(unknown)
            .await
            .unwrap()
            .is_none()
    );
    let after = pair.joins().await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));

    // Dropped: the pools' connections and the sampler's close.
    drop((pool, replicated, strict));
    for server in [&pair.standby, &pair.primary] {
        let sql = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
        let mut conn = AsyncPgConnection::establish(&server.url).await.unwrap();
        let start = Instant::now();
        while scalar(&mut conn, sql).await > 0 {
            assert!(
                start.elapsed() < 2 * LAG,
                "connections left on {}",
                server.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A session created on the primary validates at once through the
/// replicated pool, however far behind the standby is.
#[tokio::test]
async fn a_new_session_validates_at_once_with_replay_paused() {
    let pair = Pair::start().await;
    let pool = pair.pool(LAG).await;
    let sessions = manager(pool.clone());
    pair.standby.control(|s| s.pause_replay()).await;

    for _ in 0..3 {
        let created = sessions
            .create_session("user-1".to_owned(), Attributes::new())
            .await
            .unwrap();
        let before = pair.joins().await;
        let (session, user) = sessions
            .validate_session(created.token.as_str())
            .await
            .unwrap()
            .expect("a session just created is valid");
        assert_eq!(
            (session.id, user.id.as_str()),
            (created.session.id, "user-1")
        );
        let after = pair.joins().await;
        assert_eq!(after.1 - before.1, 1, "the primary answered");
        assert!(after.0 - before.0 <= 1, "at most one miss on the standby");
    }
    let listed = sessions.get_user_sessions(&"user-1".to_owned()).await;
    assert_eq!(listed.unwrap().len(), 3, "the list comes from the primary");
}

/// With replay paused, reads leave the standby once it is `max_replica_lag`
/// behind the primary's writes, and come back when it has caught up.
#[tokio::test]
async fn a_paused_standby_is_skipped_past_the_bound_and_used_again_when_resumed() {
    let pair = Pair::start().await;
    let pool = pair.pool(LAG).await;
    let sessions = manager(pool.clone());
    let created = sessions
        .create_session("user-1".to_owned(), Attributes::new())
        .await
        .unwrap();
    let token = created.token.as_str();
    pair.caught_up().await;
    wait_until("caught up", Duration::from_secs(5), || usable(&pool)).await;
    let served = async |expected: (i64, i64)| {
        let before = pair.joins().await;
        assert!(sessions.validate_session(token).await.unwrap().is_some());
        let after = pair.joins().await;
        assert_eq!((after.0 - before.0, after.1 - before.1), expected);
    };
    served((1, 0)).await;

    pair.standby.control(|s| s.pause_replay()).await;
    // A write the standby does not apply: from now on it falls behind.
    let written = Instant::now();
    sessions
        .create_session("user-2".to_owned(), Attributes::new())
        .await
        .unwrap();
    // Skipped once the lag passes the bound: the sample before the write
    // saw it caught up, and samples come every quarter of the bound.
    let bound = LAG + LAG / 4 + Duration::from_millis(500);
    wait_until("the standby is skipped", bound, || !usable(&pool)).await;
    assert!(written.elapsed() >= LAG / 2, "not skipped before it lagged");
    assert!(matches!(
        pool.replica_status()[0],
        ReplicaStatus::Lagging { .. }
    ));
    for _ in 0..3 {
        served((0, 1)).await;
    }

    pair.standby.control(|s| s.resume_replay()).await;
    wait_until("the standby serves again", Duration::from_secs(5), || {
        usable(&pool)
    })
    .await;
    served((1, 0)).await;
}

/// A session revoked on the primary while the standby's replay is paused:
/// exactly the documented behaviour. Through the replicated pool it
/// validates on the standby until the standby is `max_replica_lag` behind,
/// and never after; a validation that would extend it is `None` at once
/// (the extension runs on the primary); a manager over the primary alone
/// (the strict option) sees the revocation at once.
#[tokio::test]
async fn a_revoked_session_validates_on_a_paused_standby_only_within_the_bound() {
    let pair = Pair::start().await;
    let pool = pair.pool(LAG).await;
    let (replicated, strict) = (manager(pool.clone()), manager(pool.primary().clone()));
    // The same pool, 16 of the 30 days later: every session is due for
    // extension.
    let clock = ManualClock::at(chrono::Utc::now() + chrono::Duration::days(16));
    let later = SessionManager::builder(PostgresAdapter::new(pool.clone()))
        .with_clock(clock)
        .build()
        .unwrap();
    let revoked = replicated
        .create_session("user-1".to_owned(), Attributes::new())
        .await
        .unwrap();
    let due = replicated
        .create_session("user-2".to_owned(), Attributes::new())
        .await
        .unwrap();
    pair.caught_up().await;
    wait_until("caught up", Duration::from_secs(5), || usable(&pool)).await;

    pair.standby.control(|s| s.pause_replay()).await;
    replicated
        .invalidate_session(&revoked.session.id)
        .await
        .unwrap();
    replicated
        .invalidate_session(&due.session.id)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let token = revoked.token.as_str();

    // The strict option: revoked at once.
    assert!(strict.validate_session(token).await.unwrap().is_none());
    // Due for extension: the primary's extension finds it gone.
    assert!(
        later
            .validate_session(due.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    // Within the bound the standby still has it, and says valid.
    let before = pair.joins().await;
    let asked = revoked_at.elapsed();
    let stale = replicated.validate_session(token).await.unwrap();
    let after = pair.joins().await;
    assert!(asked < LAG / 2, "asked well within the bound: {asked:?}");
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
    assert!(stale.is_some(), "valid on the standby within the bound");

    // Past the bound: invalid, every time.
    let mut answers = Vec::new();
    while revoked_at.elapsed() < LAG + Duration::from_millis(500) {
        // When the call was made: its replica was chosen then.
        let asked = revoked_at.elapsed();
        let valid = replicated.validate_session(token).await.unwrap().is_some();
        answers.push((asked, valid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_valid = answers.iter().rfind(|(_, valid)| *valid).map(|(at, _)| *at);
    assert!(
        last_valid.is_none_or(|at| at <= LAG),
        "valid {last_valid:?} after the revocation, past the bound {LAG:?}"
    );
    assert!(!answers.last().unwrap().1, "invalid past the bound");
    assert!(!usable(&pool), "the standby is skipped");
}
