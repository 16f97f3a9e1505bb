//! Revocations reaching the other instance: by the crate, by writers
//! outside it (plain SQL, TRUNCATE), on custom table names.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_other_instance_within_milliseconds() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let mut lags = Vec::new();
    for _ in 0..1000 {
        let created = a
            .create_session(alice.clone(), Attributes::new())
            .await
            .unwrap();
        let token = created.token.as_str();
        cached(&b, token).await;
        cached(&a, token).await;
        // From the start of the revoking call to its invalidation handled.
        let (before, start) = (stats(&b), Instant::now());
        a.invalidate_session(&created.session.id).await.unwrap();
        handled(&b, &before, 1).await;
        lags.push(start.elapsed());
        assert!(!valid(&b, token).await, "served after its invalidation");
        // The revoking instance forgot it at once.
        assert!(!valid(&a, token).await);
    }
    lags.sort();
    println!(
        "revocation lag over {} revocations: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        percentile(&lags, 50),
        percentile(&lags, 99),
        lags[lags.len() - 1]
    );

    // All of a user's sessions ("sign out everywhere", a password change).
    let bob = db.user("bob", "Bob").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let created = a
            .create_session(bob.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, created.token.as_str()).await;
        tokens.push(created.token);
    }
    let kept = a
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    cached(&b, kept.token.as_str()).await;
    let before = stats(&b);
    assert_eq!(a.invalidate_user_sessions(&bob).await.unwrap(), 3);
    handled(&b, &before, 3).await;
    for token in &tokens {
        assert!(!valid(&b, token.as_str()).await);
    }
    assert!(
        valid(&b, kept.token.as_str()).await,
        "another user's session stays"
    );
    assert_eq!(stats(&b).bypasses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_outside_the_crate_invalidate_every_instance() {
    let db = CacheDb::new(true).await;
    let carol = db.user("carol", "Carol").await;
    let b = db.instance::<Named>().await;
    let session = async || {
        let created = b
            .create_session(carol.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, created.token.as_str()).await;
        created
    };
    // Runs `sql` (with `{id}` replaced by the session's id) and waits until
    // `b` has handled its `n` invalidations.
    let write = async |sql: &str, id: &str, n: u64| {
        let before = stats(&b);
        db.exec(&sql.replace("{id}", id)).await;
        handled(&b, &before, n).await;
    };

    let s = session().await;
    write(
        "DELETE FROM user_session WHERE id = '{id}'",
        s.session.id.as_str(),
        1,
    )
    .await;
    assert!(!valid(&b, s.token.as_str()).await, "deleted by plain SQL");

    let s = session().await;
    let sql = "UPDATE user_session SET expires_at = now() - interval '1 second' WHERE id = '{id}'";
    write(sql, s.session.id.as_str(), 1).await;
    let before = stats(&b);
    assert!(!valid(&b, s.token.as_str()).await, "expired by plain SQL");
    // Found expired, it was deleted: that invalidates too.
    handled(&b, &before, 1).await;

    // An extension inserts nothing (the cache's earlier expiry only sends
    // it to the database sooner); a later invalidation is the barrier that
    // shows none came before it.
    let s = session().await;
    let extended = "UPDATE user_session SET expires_at = expires_at + interval '1 day', \
                    last_seen_at = now() WHERE id = '{id}'";
    db.exec(&extended.replace("{id}", s.session.id.as_str()))
        .await;
    let other = session().await;
    write(
        "DELETE FROM user_session WHERE id = '{id}'",
        other.session.id.as_str(),
        1,
    )
    .await;
    let before = stats(&b);
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(stats(&b).hits, before.hits + 1, "still cached");
    assert_eq!(got.expires_at, s.session.expires_at);
    // An earlier expiry invalidates: then the database's.
    let shortened =
        "UPDATE user_session SET expires_at = expires_at - interval '1 hour' WHERE id = '{id}'";
    write(shortened, s.session.id.as_str(), 1).await;
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    let expected = s.session.expires_at + chrono::Duration::days(1) - chrono::Duration::hours(1);
    assert_eq!(got.expires_at, expected);

    // Any other column changed invalidates, with the new value.
    let s = session().await;
    write(
        "UPDATE user_session SET country = 'se' WHERE id = '{id}'",
        s.session.id.as_str(),
        1,
    )
    .await;
    let (got, _) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(
        got.attributes.get("country"),
        Some(&serde_json::json!("se"))
    );

    let s = session().await;
    write(
        "UPDATE auth_user SET name = 'Carol Two' WHERE id = 'carol'",
        "",
        1,
    )
    .await;
    let (_, user) = b.validate_session(s.token.as_str()).await.unwrap().unwrap();
    assert_eq!(
        user.attributes.name, "Carol Two",
        "the new attribute, not the cached one"
    );

    let dave = db.user("dave", "Dave").await;
    let d = b.create_session(dave, Attributes::new()).await.unwrap();
    cached(&b, d.token.as_str()).await;
    let s = session().await;
    // An invalidation for each of carol's sessions and one for carol.
    let sessions = crate::support::scalar(
        &mut db.connect().await,
        "SELECT count(*) AS n FROM user_session WHERE user_id = 'carol'",
    )
    .await;
    let sql = "DELETE FROM user_session WHERE user_id = 'carol'; DELETE FROM auth_user WHERE id = 'carol'";
    write(sql, "", u64::try_from(sessions).unwrap() + 1).await;
    assert!(!valid(&b, s.token.as_str()).await, "user deleted");
    assert!(
        valid(&b, d.token.as_str()).await,
        "another user's session stays"
    );
    cached(&b, d.token.as_str()).await;

    let flushes = stats(&b).flushes;
    write("TRUNCATE user_session", "", 1).await;
    assert!(!valid(&b, d.token.as_str()).await, "sessions truncated");
    assert_eq!(stats(&b).flushes, flushes + 1);

    let erin = db.user("erin", "Erin").await;
    let e = b.create_session(erin, Attributes::new()).await.unwrap();
    cached(&b, e.token.as_str()).await;
    // Truncating the users cascades to the sessions: both tables insert an
    // "everything" row.
    write("TRUNCATE auth_user CASCADE", "", 1).await;
    assert!(!valid(&b, e.token.as_str()).await, "users truncated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_table_names_get_their_triggers_from_the_generated_ddl() {
    use lucia_diesel::migrations::create_tables_sql;
    let db = CacheDb::new(false).await;
    let names = TableNames::new("Auth.Users", "Auth.Session Rows").unwrap();
    let tables = create_tables_sql::<String>(&names);
    let triggers = cache_triggers_sql(&names);
    db.exec(&tables.up).await;
    db.exec(&triggers.up).await;
    db.exec(r#"INSERT INTO "Auth"."Users" (id) VALUES ('zoe')"#)
        .await;
    let m: Manager =
        SessionManager::new(PostgresAdapter::new(db.pool().await).with_table_names(names.clone()))
            .with_cache(options())
            .await
            .unwrap();
    let s = m
        .create_session("zoe".into(), Attributes::new())
        .await
        .unwrap();
    cached(&m, s.token.as_str()).await;
    let before = stats(&m);
    db.exec(&format!(
        r#"DELETE FROM "Auth"."Session Rows" WHERE id = '{}'"#,
        s.session.id.as_str()
    ))
    .await;
    handled(&m, &before, 1).await;
    assert!(!valid(&m, s.token.as_str()).await);
    // The down migration removes what the up one made.
    db.exec(&triggers.down).await;
    let err = SessionManager::new(PostgresAdapter::new(db.pool().await).with_table_names(names))
        .with_cache(options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::CacheTriggers(_))),
        "{err:?}"
    );
}

/// The cache over a deadpool pool of the application's: polls, serving and
/// revocations as over the crate's own pool.
#[cfg(feature = "deadpool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_over_a_deadpool_pool_sees_revocations() {
    use diesel_async::pooled_connection::{AsyncDieselConnectionManager, deadpool::Pool};
    let db = CacheDb::new(true).await;
    let pool = Pool::builder(AsyncDieselConnectionManager::<AsyncPgConnection>::new(
        &db.url,
    ))
    .max_size(2)
    .build()
    .unwrap();
    let a = SessionManager::new(PostgresAdapter::new(pool))
        .with_cache(options())
        .await
        .unwrap();
    let b = db.instance::<Attributes>().await;
    let dave = db.user("dave", "Dave").await;
    for _ in 0..20 {
        let created = b
            .create_session(dave.clone(), Attributes::new())
            .await
            .unwrap();
        let token = created.token.as_str();
        let start = Instant::now();
        let cached_a = loop {
            let hits = a.cache_stats().unwrap().hits;
            assert!(a.validate_session(token).await.unwrap().is_some());
            if a.cache_stats().unwrap().hits > hits {
                break true;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "never served");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(cached_a);
        let before = a.cache_stats().unwrap();
        b.invalidate_session(&created.session.id).await.unwrap();
        until("the invalidation", || {
            a.cache_stats().unwrap().invalidations > before.invalidations
        })
        .await;
        assert!(a.validate_session(token).await.unwrap().is_none());
    }
    assert_eq!(a.cache_stats().unwrap().poll_failures, 0);
}

/// "Sign out my other devices" on one instance: the other instance stops
/// serving every session of the user but the one kept, within the
/// invalidation bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_the_others_reaches_the_other_instance() {
    let db = CacheDb::new(true).await;
    let fay = db.user("fay", "Fay").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let mut created = Vec::new();
    for _ in 0..4 {
        let s = a
            .create_session(fay.clone(), Attributes::new())
            .await
            .unwrap();
        cached(&b, s.token.as_str()).await;
        created.push(s);
    }
    let before = stats(&b);
    let keep = &created[2];
    assert_eq!(
        a.invalidate_other_sessions(&fay, &keep.session.id)
            .await
            .unwrap(),
        3
    );
    handled(&b, &before, 3).await;
    for (i, s) in created.iter().enumerate() {
        assert_eq!(
            valid(&b, s.token.as_str()).await,
            i == 2,
            "on b, session {i}"
        );
        assert_eq!(
            valid(&a, s.token.as_str()).await,
            i == 2,
            "on a, session {i}"
        );
    }
}

/// A rotation on one instance: the other stops serving the old token
/// within the invalidation bound (the trigger queues both ids), serves the
/// new one, and a re-authentication that keeps the token reaches it too
/// (the other instance then reads the new `authenticated_at`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_the_other_instance() {
    let db = CacheDb::new(true).await;
    let gus = db.user("gus", "Gus").await;
    let a = db.instance::<Attributes>().await;
    let b = db.instance::<Attributes>().await;
    let s = a
        .create_session(gus.clone(), Attributes::new())
        .await
        .unwrap();
    cached(&b, s.token.as_str()).await;
    let before = stats(&b);
    let rotated = a.rotate_session(&s.session).await.unwrap().unwrap();
    handled(&b, &before, 2).await;
    assert!(!valid(&b, s.token.as_str()).await, "old token on b");
    assert!(!valid(&a, s.token.as_str()).await, "old token on a");
    assert!(valid(&b, rotated.token.as_str()).await, "new token on b");

    cached(&b, rotated.token.as_str()).await;
    let before = stats(&b);
    let (seen, _) = b
        .validate_session(rotated.token.as_str())
        .await
        .unwrap()
        .unwrap();
    let later = a
        .reauthenticate_keeping_token(&rotated.session)
        .await
        .unwrap()
        .unwrap();
    assert!(later.authenticated_at > seen.authenticated_at);
    handled(&b, &before, 1).await;
    let (now_on_b, _) = b
        .validate_session(rotated.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now_on_b.authenticated_at, later.authenticated_at);
}
