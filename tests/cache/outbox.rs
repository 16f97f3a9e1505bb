//! The outbox itself: what the triggers insert (and what they do not), a
//! transaction held open that delays nobody else's invalidations, trimming
//! past a stalled reader, polling through PgBouncer in transaction mode,
//! and the upgrade from the notify migration.

use super::*;

/// The outbox's rows as (kind, key), oldest transaction first.
async fn rows(db: &CacheDb) -> Vec<(i16, String)> {
    use diesel::sql_types::{SmallInt, Text};
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = SmallInt)]
        kind: i16,
        #[diesel(sql_type = Text)]
        key: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT kind, key FROM user_session_invalidations ORDER BY xid")
            .load(&mut db.connect().await)
            .await
            .unwrap();
    rows.into_iter().map(|r| (r.kind, r.key)).collect()
}

#[tokio::test]
async fn writes_that_cannot_make_an_entry_wrong_insert_nothing() {
    use sha2::Digest as _;
    let db = CacheDb::new(true).await;
    db.exec(
        "INSERT INTO auth_user (id, name) VALUES ('u', 'U'); \
         INSERT INTO user_session (id, expires_at, user_id) VALUES ('tok', now() + interval '1 day', 'u')",
    )
    .await;
    // Inserts, an extension, a recorded use, an update that changes nothing.
    db.exec("UPDATE user_session SET expires_at = expires_at + interval '1 hour'")
        .await;
    db.exec("UPDATE user_session SET last_seen_at = now() + interval '1 minute'")
        .await;
    db.exec("UPDATE auth_user SET name = name").await;
    assert_eq!(rows(&db).await, vec![]);

    // An earlier expiry, another column, the user, a delete, a truncate.
    db.exec("UPDATE user_session SET expires_at = expires_at - interval '2 hours'")
        .await;
    db.exec("UPDATE user_session SET country = 'fr'").await;
    db.exec("UPDATE auth_user SET name = 'V'").await;
    db.exec("DELETE FROM user_session").await;
    db.exec("TRUNCATE user_session").await;
    // A write rolled back inserts nothing either.
    db.exec("BEGIN; DELETE FROM auth_user; ROLLBACK").await;
    let digest = hex::encode(sha2::Sha256::digest("tok"));
    assert_eq!(
        rows(&db).await,
        vec![
            (1, digest.clone()),
            (1, digest.clone()),
            (2, "u".to_owned()),
            (1, digest),
            (3, String::new()),
        ]
    );
    let all = rows(&db)
        .await
        .iter()
        .map(|(_, k)| k.clone())
        .collect::<String>();
    assert!(!all.contains("tok"), "no stored id in the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_open_delays_nobody_elses_invalidations() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let held = a
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    cached(&b, held.token.as_str()).await;
    // Its transaction takes an id now and stays open through the test.
    let mut open = db.connect().await;
    open.batch_execute(&format!(
        "BEGIN; DELETE FROM user_session WHERE id = '{}'",
        held.session.id.as_str()
    ))
    .await
    .unwrap();
    for _ in 0..20 {
        let s = a
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, s.token.as_str()).await;
        let before = stats(&b);
        a.invalidate_session(&s.session.id).await.unwrap();
        let lag = handled(&b, &before, 1).await;
        assert!(lag < Duration::from_secs(5), "{lag:?}");
        assert!(!valid(&b, s.token.as_str()).await);
        // Not committed: still valid, and still served.
        assert!(valid(&b, held.token.as_str()).await);
    }
    let before = stats(&b);
    open.batch_execute("COMMIT").await.unwrap();
    handled(&b, &before, 1).await;
    assert!(
        !valid(&b, held.token.as_str()).await,
        "committed late, seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_past_a_stalled_reader_empties_its_cache() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    // `a` trims (a short retention); `b` polls once a second, so its
    // previous snapshot is always older than what `a` has trimmed.
    let ms = Duration::from_millis;
    let a: Manager = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(
            CacheOptions::new()
                .with_poll_interval(ms(10))
                .with_retention(ms(100))
                .with_max_poll_age(ms(100)),
        )
        .await
        .unwrap();
    let b: Manager = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(
            CacheOptions::new()
                .with_poll_interval(Duration::from_secs(1))
                .with_retention(Duration::from_secs(30))
                .with_max_poll_age(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let s = a.create_session(alice, Attributes::new()).await.unwrap();
    cached(&b, s.token.as_str()).await;
    let flushes = stats(&b).flushes;
    db.exec(&format!(
        "DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await;
    // The row goes within a few retentions.
    let start = Instant::now();
    while !rows(&db).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "never trimmed");
        tokio::time::sleep(ms(20)).await;
    }
    until("b found the outbox trimmed past it", || {
        stats(&b).flushes > flushes
    })
    .await;
    assert!(
        !valid(&b, s.token.as_str()).await,
        "revoked, trimmed, served"
    );
    drop(a);
}

#[cfg(feature = "pooler")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_go_through_pgbouncer_in_transaction_mode() {
    let db = CacheDb::new(true).await;
    let Some(bin) = crate::support::pgbouncer::find_or_skip("this test") else {
        return;
    };
    let bouncer = crate::support::pgbouncer::PgBouncer::start(&bin, &db.url, 2);
    let alice = db.user("alice", "Alice").await;
    let pool = PoolOptions::new()
        .with_max_size(3)
        .build_pooler(&bouncer.url())
        .await
        .unwrap();
    let b = SessionManager::new(PostgresAdapter::new(pool))
        .with_cache(options())
        .await
        .unwrap();
    let stats = || b.cache_stats().unwrap();
    for _ in 0..20 {
        let s = b
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        let served = async {
            for _ in 0..50 {
                let hits = stats().hits;
                assert!(
                    b.validate_session(s.token.as_str())
                        .await
                        .unwrap()
                        .is_some()
                );
                if stats().hits > hits {
                    return true;
                }
            }
            false
        };
        assert!(served.await, "{:?}", stats());
        let before = stats();
        db.exec(&format!(
            "DELETE FROM user_session WHERE id = '{}'",
            s.session.id.as_str()
        ))
        .await;
        until("the invalidation", || {
            stats().invalidations > before.invalidations
        })
        .await;
        assert!(
            b.validate_session(s.token.as_str())
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(stats().poll_failures, 0, "{:?}", stats());
}

#[tokio::test]
async fn the_upgrade_from_the_notify_migration_replaces_its_triggers() {
    let db = CacheDb::new(false).await;
    // As installed by the previous release: its migration, recorded.
    db.exec(include_str!(
        "../../migrations-cache/2026-12-01-000001_cache_triggers/up.sql"
    ))
    .await;
    db.exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('20261201000001')")
        .await;
    let triggers = async || {
        crate::support::scalar(
            &mut db.connect().await,
            "SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'lucia_diesel_notify%'",
        )
        .await
    };
    assert_eq!(triggers().await, 4);
    let err = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::CacheTriggers(_))),
        "{err:?}"
    );
    let applied = run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(applied, vec!["20261203000000".to_owned()]);
    assert_eq!(triggers().await, 0, "the notify triggers are gone");
    let functions = crate::support::scalar(
        &mut db.connect().await,
        "SELECT count(*) AS n FROM pg_proc \
         WHERE proname IN ('user_session_notify', 'auth_user_notify')",
    )
    .await;
    assert_eq!(functions, 0);
    let alice = db.user("alice", "Alice").await;
    let b = db.instance::<Attributes>().await;
    let s = b.create_session(alice, Attributes::new()).await.unwrap();
    cached(&b, s.token.as_str()).await;
    let before = stats(&b);
    db.exec(&format!(
        "DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await;
    handled(&b, &before, 1).await;
    assert!(!valid(&b, s.token.as_str()).await);
}

/// The outbox dropped and made again (its migration reverted and run
/// again) under a running cache: polls fail meanwhile, and once it is back
/// revocations reach the cache again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_made_again_under_a_running_cache() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let sql = cache_triggers_sql(&TableNames::default());
    db.exec(&sql.down).await;
    until("a poll failed", || !stats(&b).serving).await;
    db.exec(&sql.up).await;
    until("polls succeed again", || stats(&b).serving).await;
    for _ in 0..5 {
        let s = a
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, s.token.as_str()).await;
        let before = stats(&b);
        a.invalidate_session(&s.session.id).await.unwrap();
        handled(&b, &before, 1).await;
        assert!(!valid(&b, s.token.as_str()).await);
    }
}
