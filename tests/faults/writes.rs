//! Refused writes: a read-only database and a full disk.

use super::*;

#[tokio::test]
async fn read_only_database_refuses_writes_and_serves_valid_sessions() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let manager = |pool| {
        SessionManager::builder(PostgresAdapter::new(pool))
            .with_clock(clock.clone())
            .build()
            .unwrap()
    };
    let m = manager(options().build(&server.app_url("")).await.unwrap());
    // Seen from day 31: `expired` (made on day 0), `due` for extension
    // (day 11: 10 of 30 days left), `valid` (day 30: 29 days left).
    let expired = m.create_session(user(1), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(11));
    let due = m.create_session(user(2), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(19));
    let valid = m.create_session(user(1), Attributes::new()).await.unwrap();
    clock.advance(ChronoDuration::days(1));
    let rows = "SELECT count(*) AS n FROM user_session";
    let expiries = "SELECT sum(extract(epoch FROM expires_at))::int8 AS n FROM user_session";
    let (n0, e0) = (server.count(rows).await, server.count(expiries).await);
    assert_eq!(n0, 3);

    // An admin connection opened before the switch stays writable.
    let mut admin = server.admin().await;
    admin
        .batch_execute("ALTER DATABASE postgres SET default_transaction_read_only = on")
        .await
        .unwrap();
    // Settings apply to new connections: a new pool.
    let ro = manager(options().build(&server.app_url("")).await.unwrap());

    let err = ro
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let err = ro.invalidate_session(&valid.session.id).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let err = ro.invalidate_user_sessions(&user(1)).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    // A valid session validates.
    let (s, _) = ro
        .validate_session(valid.token.as_str())
        .await
        .unwrap()
        .expect("valid while read-only");
    assert!(!s.fresh);
    // One due for extension still validates, without the extension.
    let (s, _) = ro
        .validate_session(due.token.as_str())
        .await
        .unwrap()
        .expect("valid while read-only, not extended");
    assert!(!s.fresh);
    assert_eq!(s.expires_at, due.session.expires_at);
    // An expired one is invalid (its row stays until the database is writable).
    assert!(
        ro.validate_session(expired.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ro.get_user_sessions(&user(1)).await.unwrap().len(),
        1,
        "listing works"
    );
    // Nothing changed.
    assert_eq!(scalar(&mut admin, rows).await, n0);
    assert_eq!(scalar(&mut admin, expiries).await, e0);

    admin
        .batch_execute("ALTER DATABASE postgres RESET default_transaction_read_only")
        .await
        .unwrap();
    let m = manager(options().build(&server.app_url("")).await.unwrap());
    let (s, _) = m
        .validate_session(due.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(s.fresh, "extended once writable again");
    assert!(
        m.validate_session(expired.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(server.count(rows).await, 2, "the expired row is gone");
    assert_healthy(&m).await;
}

#[tokio::test]
async fn disk_full_fails_writes_typed_with_no_partial_state() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(
        options().build(&server.app_url("")).await.unwrap(),
    ))
    .with_clock(clock.clone())
    .build()
    .unwrap();
    let a = m.create_session(user(1), Attributes::new()).await.unwrap();
    server
        .exec(
            "CREATE TABLE disk_full (on_delete bool NOT NULL); \
             INSERT INTO disk_full VALUES (false); \
             CREATE FUNCTION raise_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF TG_OP <> 'DELETE' OR (SELECT on_delete FROM disk_full) THEN \
                 RAISE EXCEPTION 'could not extend file: No space left on device' \
                   USING ERRCODE = 'disk_full'; \
               END IF; \
               RETURN NULL; \
             END $$; \
             CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE OR DELETE ON user_session \
               FOR EACH ROW EXECUTE FUNCTION raise_disk_full();",
        )
        .await;
    let rows = "SELECT count(*) AS n FROM user_session";

    let err = m
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().contains("No space left")),
        "{err:?}"
    );
    assert_eq!(server.count(rows).await, 1, "nothing written");
    assert!(
        m.validate_session(a.token.as_str())
            .await
            .unwrap()
            .is_some(),
        "reads work"
    );
    // An extension is a write: it fails typed, and the session is not reported valid.
    clock.advance(ChronoDuration::days(20));
    let err = m.validate_session(a.token.as_str()).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");

    server.exec("UPDATE disk_full SET on_delete = true").await;
    let err = m.invalidate_session(&a.session.id).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
    assert_eq!(server.count(rows).await, 1, "still there");

    server.exec("DROP TRIGGER disk_full ON user_session").await;
    m.invalidate_session(&a.session.id).await.unwrap();
    assert_eq!(server.count(rows).await, 0);
    assert_healthy(&m).await;
}
