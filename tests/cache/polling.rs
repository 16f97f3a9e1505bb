//! The poller: polls that fail (permission taken away, connections
//! terminated), polls that hang (the outbox locked), the server restarted,
//! its runtime gone, and a cache that cannot start (no outbox, bad
//! settings, no server).

use lucia_diesel::ConnectionSource as _;

use super::*;

/// A login role of its own for an instance's pool, so that a test can take
/// the outbox away from its polls (`REVOKE SELECT`) while its writes (and
/// the triggers' inserts) still work; dropped with the value.
struct AppRole {
    name: String,
    server: String,
    db_url: String,
}

impl AppRole {
    async fn new(db: &CacheDb) -> Self {
        let name = unique_name("lda");
        db.exec(&format!(
            "CREATE ROLE {name} LOGIN; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}"
        ))
        .await;
        Self {
            name,
            server: db.server.clone(),
            db_url: db.url.clone(),
        }
    }

    /// `db`'s URL as this role (a later `user` parameter wins).
    fn url(&self, db: &CacheDb) -> String {
        let sep = if db.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}user={}", db.url, self.name)
    }

    async fn may_poll(&self, db: &CacheDb, allowed: bool) {
        let sql = if allowed {
            format!(
                "GRANT SELECT ON user_session_invalidations TO {}",
                self.name
            )
        } else {
            format!(
                "REVOKE SELECT ON user_session_invalidations FROM {}",
                self.name
            )
        };
        db.exec(&sql).await;
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        // Its grants first, in the test's database, then the role.
        crate::support::cleanup(&self.db_url, &[format!("DROP OWNED BY {}", self.name)]);
        crate::support::cleanup(
            &self.server,
            &[format!("DROP ROLE IF EXISTS {}", self.name)],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_polls_bypass_the_cache_until_one_succeeds() {
    let db = CacheDb::new(true).await;
    let role = AppRole::new(&db).await;
    let alice = db.user("alice", "Alice").await;
    let pool = PoolOptions::new()
        .with_max_size(4)
        .build(&role.url(&db))
        .await
        .unwrap();
    let b: Manager = SessionManager::new(PostgresAdapter::new(pool))
        .with_cache(options())
        .await
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..40 {
        let c = b
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, c.token.as_str()).await;
        created.push(c);
    }
    let (revoked, kept) = created.split_at(20);
    let revoke = async |c: &lucia_diesel::CreatedSession<String, Attributes>| {
        db.exec(&format!(
            "DELETE FROM user_session WHERE id = '{}'",
            c.session.id.as_str()
        ))
        .await;
    };

    // Revocations race the polls' failure.
    let flushes = stats(&b).flushes;
    revoke(&revoked[0]).await;
    role.may_poll(&db, false).await;
    for c in &revoked[1..10] {
        revoke(c).await;
    }
    until("a poll failed", || !stats(&b).serving).await;
    for c in &revoked[10..] {
        revoke(c).await;
    }
    // While polls fail, nothing is served from memory.
    let down = stats(&b);
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked, served while polls failed"
        );
    }
    for c in kept {
        assert!(valid(&b, c.token.as_str()).await);
    }
    let still_down = stats(&b);
    assert!(!still_down.serving);
    assert!(still_down.poll_failures > 0, "{still_down:?}");
    assert_eq!(still_down.hits, down.hits, "{still_down:?}");
    assert_eq!(still_down.bypasses, down.bypasses + 40);

    // Back: emptied first, then it serves and polls again.
    role.may_poll(&db, true).await;
    until("polls succeed again", || stats(&b).serving).await;
    assert_eq!(
        stats(&b).flushes,
        flushes + 1,
        "emptied when polls came back"
    );
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked while polls failed, served after"
        );
    }
    for c in kept {
        assert!(valid(&b, c.token.as_str()).await);
    }
    cached(&b, kept[0].token.as_str()).await;
    let before = stats(&b);
    revoke(&kept[0]).await;
    handled(&b, &before, 1).await;
    assert!(!valid(&b, kept[0].token.as_str()).await);

    // The pool's connections terminated under the poller: whatever the
    // polls meet, revocations made meanwhile are never served, and hits
    // come back.
    let (victim, survivor) = (&kept[1], &kept[2]);
    cached(&b, victim.token.as_str()).await;
    cached(&b, survivor.token.as_str()).await;
    let killed = crate::support::scalar(
        &mut db.connect().await,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE usename = '{}' AND datname = current_database()",
            role.name
        ),
    )
    .await;
    assert!(killed >= 1);
    revoke(victim).await;
    let committed = stats(&b).polls;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        not_served_stale(&b, victim.token.as_str(), committed).await;
        let hits = stats(&b).hits;
        if matches!(
            b.validate_session(survivor.token.as_str()).await,
            Ok(Some(_))
        ) && stats(&b).hits > hits
        {
            break;
        }
        assert!(Instant::now() < deadline, "hits never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A poll that does not answer (here: blocked on a lock on the outbox, as
/// on a frozen server) stops the cache serving within its maximum poll age;
/// it serves again once polls come through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_hangs_stops_the_cache_serving() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let b: Manager = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(CacheOptions::new().with_max_poll_age(Duration::from_millis(500)))
        .await
        .unwrap();
    let s = b.create_session(alice, Attributes::new()).await.unwrap();
    until("serving", || stats(&b).serving).await;
    let mut locker = db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE user_session_invalidations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    until("the cache stops serving", || !stats(&b).serving).await;
    let before = stats(&b);
    for _ in 0..5 {
        assert!(valid(&b, s.token.as_str()).await);
    }
    let after = stats(&b);
    assert_eq!(after.hits, before.hits, "{after:?}");
    assert_eq!(after.bypasses, before.bypasses + 5, "{after:?}");
    locker.batch_execute("COMMIT").await.unwrap();
    until("the cache serves again", || stats(&b).serving).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hits = stats(&b).hits;
        assert!(valid(&b, s.token.as_str()).await);
        if stats(&b).hits > hits {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served again: {:?}",
            stats(&b)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_no_revocation_and_hits_resume() {
    let cluster = testkit::Cluster::start().unwrap();
    let db = CacheDb::on(&cluster.url("postgres"), true).await;
    let alice = db.user("alice", "Alice").await;
    let b = db.instance::<Attributes>().await;
    let one = b
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let two = b.create_session(alice, Attributes::new()).await.unwrap();
    cached(&b, one.token.as_str()).await;
    cached(&b, two.token.as_str()).await;
    let flushes = stats(&b).flushes;

    cluster.restart().unwrap();
    // The first statements after a restart may fail on dead connections.
    let mut revoked = false;
    for _ in 0..100 {
        let mut conn = match AsyncPgConnection::establish(&db.url).await {
            Ok(conn) => conn,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sql = format!(
            "DELETE FROM user_session WHERE id = '{}'",
            one.session.id.as_str()
        );
        if conn.batch_execute(&sql).await.is_ok() {
            revoked = true;
            break;
        }
    }
    assert!(revoked);
    let committed = stats(&b).polls;
    // Whatever the poller's state now, the revoked session is never served
    // once a poll that began after the revocation has been handled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        not_served_stale(&b, one.token.as_str(), committed).await;
        let now = stats(&b);
        if now.serving && now.polls >= committed + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "polls never came back: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Polls may all have gone through (the pool replaced its dead
    // connections in time): the snapshot difference lost nothing then. A
    // poll that failed was followed by a flush.
    let now = stats(&b);
    assert!(now.poll_failures == 0 || now.flushes > flushes, "{now:?}");
    assert!(!valid(&b, one.token.as_str()).await);
    cached(&b, two.token.as_str()).await;
}

#[tokio::test]
async fn enabling_the_cache_needs_the_outbox_and_a_reachable_server() {
    let db = CacheDb::new(false).await;
    let manager = async || SessionManager::new(PostgresAdapter::new(db.pool().await));
    let err = manager().await.with_cache(options()).await.unwrap_err();
    let Error::Config(ConfigError::CacheTriggers(missing)) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        missing,
        r#"the table "user_session_invalidations", the table "user_session_invalidations_horizon", the triggers on "user_session", the triggers on "auth_user""#
    );
    assert!(err.to_string().contains("CACHE_MIGRATIONS"), "{err}");

    run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
        .await
        .unwrap();
    db.exec("ALTER TABLE auth_user DISABLE TRIGGER lucia_diesel_invalidate_delete")
        .await;
    let err = manager().await.with_cache(options()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config(ConfigError::CacheTriggers(t)) if t == r#"the triggers on "auth_user""#),
        "{err:?}"
    );
    db.exec("ALTER TABLE auth_user ENABLE TRIGGER lucia_diesel_invalidate_delete")
        .await;
    assert!(manager().await.with_cache(options()).await.is_ok());

    // Settings refused before connecting, by name.
    let ms = Duration::from_millis;
    let refused = [
        (
            CacheOptions::new().with_poll_interval(Duration::ZERO),
            "poll",
        ),
        (
            CacheOptions::new().with_poll_interval(Duration::from_secs(61)),
            "poll",
        ),
        (CacheOptions::new().with_retention(ms(199)), "retention"),
        (
            CacheOptions::new().with_retention(Duration::from_secs(86_401)),
            "retention",
        ),
        (CacheOptions::new().with_max_poll_age(ms(19)), "poll age"),
        (
            CacheOptions::new().with_max_poll_age(Duration::from_secs(61)),
            "poll age",
        ),
        (
            CacheOptions::new().with_max_age(Duration::from_secs(86_401)),
            "age",
        ),
        (CacheOptions::new().with_max_age(Duration::MAX), "age"),
    ];
    for (options, what) in refused {
        let err = manager().await.with_cache(options).await.unwrap_err();
        let expected = match what {
            "poll" => matches!(err, Error::Config(ConfigError::CachePollInterval)),
            "retention" => matches!(err, Error::Config(ConfigError::CacheRetention)),
            "poll age" => matches!(err, Error::Config(ConfigError::CacheMaxPollAge)),
            _ => matches!(err, Error::Config(ConfigError::CacheMaxAge)),
        };
        assert!(expected, "{what}: {err:?}");
    }

    // No server: a typed, transient error that holds no secret.
    let unreachable = "postgres://app:hunter2secret@127.0.0.1:1/db";
    let pool = PoolOptions::new()
        .with_checkout_timeout(Duration::from_secs(1))
        .build_lazy(unreachable)
        .unwrap();
    let err = SessionManager::new(PostgresAdapter::new(pool))
        .with_cache(options())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("hunter2secret"),
        "{err:?}"
    );
}

/// A poller whose runtime shut down (its task aborted) leaves the cache
/// bypassed: nothing would invalidate it any more.
#[test]
fn a_poller_gone_with_its_runtime_leaves_the_cache_bypassed() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // The app's runtime drives the pool's connections in the background;
    // the poller's runs only while `with_cache` is blocked on.
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let poller = runtime();
    let db = app.block_on(CacheDb::new(true));
    let (manager, alice) = app.block_on(async {
        let manager = SessionManager::new(PostgresAdapter::new(db.pool().await));
        (manager, db.user("alice", "Alice").await)
    });
    let b: Manager = poller.block_on(manager.with_cache(options())).unwrap();
    let token = app.block_on(async {
        let c = b.create_session(alice, Attributes::new()).await.unwrap();
        cached(&b, c.token.as_str()).await;
        c.token
    });

    drop(poller);
    let before = stats(&b);
    assert!(!before.serving, "{before:?}");
    app.block_on(async {
        assert!(valid(&b, token.as_str()).await);
    });
    let after = stats(&b);
    assert_eq!(after.hits, before.hits, "{after:?}");
    assert_eq!(after.bypasses, before.bypasses + 1, "{after:?}");
    drop(b);
    drop(db);
}

/// Polls on a source of their own keep going while the application's pool
/// is exhausted: the cache keeps serving, and handles a revocation made
/// meanwhile, which the next validation after the pool is free confirms.
/// A poll source on another database, or on a standby (tests/replicas),
/// is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_on_a_source_of_their_own_outlast_an_exhausted_pool() {
    let db = CacheDb::new(true).await;
    let pool = PoolOptions::new()
        .with_max_size(2)
        .with_checkout_timeout(Duration::from_millis(300))
        .build(&db.url)
        .await
        .unwrap();
    let polls = lucia_diesel::SingleConnection::establish(&db.url)
        .await
        .unwrap();
    let a = SessionManager::new(PostgresAdapter::new(pool.clone()))
        .with_cache_polling(options(), polls)
        .await
        .unwrap();
    let b = db.instance::<Attributes>().await;
    let user = db.user("u-own-polls", "Ann").await;
    let kept = a
        .create_session(user.clone(), Attributes::new())
        .await
        .unwrap();
    let revoked = a.create_session(user, Attributes::new()).await.unwrap();
    cached(&a, kept.token.as_str()).await;
    cached(&a, revoked.token.as_str()).await;

    // Every connection of the application's pool held.
    let held = (
        pool.connection().await.unwrap(),
        pool.connection().await.unwrap(),
    );
    let err = a
        .get_user_sessions(&"u-own-polls".to_owned())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PoolTimeout { .. }), "{err:?}");
    let before = stats(&a);
    b.invalidate_session(&revoked.session.id).await.unwrap();
    handled(&a, &before, 1).await;
    let polls = stats(&a).polls;
    until("two more polls", || stats(&a).polls >= polls + 2).await;
    assert_eq!(stats(&a).poll_failures, before.poll_failures);
    let hits = stats(&a).hits;
    assert!(
        valid(&a, kept.token.as_str()).await,
        "served while the pool is exhausted"
    );
    assert_eq!(stats(&a).hits, hits + 1);
    // The revoked one is not served: it goes to the (exhausted) pool.
    let err = a
        .validate_session(revoked.token.as_str())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PoolTimeout { .. }), "{err:?}");
    drop(held);
    assert!(!valid(&a, revoked.token.as_str()).await);
    assert!(valid(&a, kept.token.as_str()).await);

    // Polls that would read another database's outbox are refused.
    let other = CacheDb::new(true).await;
    let err = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache_polling(options(), other.pool().await)
        .await
        .unwrap_err();
    let Error::Config(ConfigError::CachePollSource(what)) = &err else {
        panic!("{err:?}");
    };
    assert!(
        what.contains(&other.name) && what.contains(&db.name),
        "{what}"
    );
}
