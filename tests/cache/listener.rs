//! The listening connection: lost, the server restarted, its runtime gone,
//! or not possible at all (no triggers, no server).

use super::*;

/// Terminates the backends of cache listeners on `db`; how many.
async fn kill_listeners(db: &CacheDb) -> i64 {
    crate::support::scalar(
        &mut db.connect().await,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE application_name = '{APPLICATION_NAME}' AND datname = current_database()"
        ),
    )
    .await
}

/// A login role of its own for a listener, so that a test can keep the
/// listener from reconnecting (`NOLOGIN`); dropped with the value.
struct ListenRole {
    name: String,
    server: String,
}

impl ListenRole {
    async fn new(db: &CacheDb) -> Self {
        let name = unique_name("ldl");
        db.exec(&format!("CREATE ROLE {name} LOGIN")).await;
        Self {
            name,
            server: db.server.clone(),
        }
    }

    /// `db`'s URL as this role (a later `user` parameter wins).
    fn url(&self, db: &CacheDb) -> String {
        let sep = if db.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}user={}", db.url, self.name)
    }

    async fn allow_login(&self, db: &CacheDb, allow: bool) {
        let login = if allow { "LOGIN" } else { "NOLOGIN" };
        db.exec(&format!("ALTER ROLE {} {login}", self.name)).await;
    }
}

impl Drop for ListenRole {
    fn drop(&mut self) {
        let drop = format!("DROP ROLE IF EXISTS {}", self.name);
        crate::support::cleanup(&self.server, &[drop]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_bypasses_the_cache_until_it_is_back() {
    let db = CacheDb::new(true).await;
    let role = ListenRole::new(&db).await;
    let alice = db.user("alice", "Alice").await;
    let b: Manager = SessionManager::new(PostgresAdapter::new(db.pool().await))
        .with_cache(CacheOptions::new(role.url(&db)))
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

    // Revocations race the listener's death; it cannot reconnect until the
    // role may log in again.
    let flushes = stats(&b).flushes;
    role.allow_login(&db, false).await;
    revoke(&revoked[0]).await;
    assert_eq!(kill_listeners(&db).await, 1);
    for c in &revoked[1..10] {
        revoke(c).await;
    }
    until("the listener noticed", || !stats(&b).listening).await;
    for c in &revoked[10..] {
        revoke(c).await;
    }
    // While it is down, nothing is served from memory.
    let down = stats(&b);
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked, served while down"
        );
    }
    for c in kept {
        assert!(valid(&b, c.token.as_str()).await);
    }
    let still_down = stats(&b);
    assert!(!still_down.listening);
    assert_eq!(still_down.hits, down.hits, "{still_down:?}");
    assert_eq!(still_down.bypasses, down.bypasses + 40);

    // Back: emptied first, then it serves and listens again.
    role.allow_login(&db, true).await;
    until("the listener is back", || stats(&b).listening).await;
    assert_eq!(
        stats(&b).flushes,
        flushes + 1,
        "emptied when it reconnected"
    );
    for c in revoked {
        assert!(
            !valid(&b, c.token.as_str()).await,
            "revoked while down, served after"
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_bypasses_then_flushes_and_resumes() {
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
    // Whatever the listener's state now, the revoked session is never valid.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match b.validate_session(one.token.as_str()).await {
            Ok(found) => assert!(found.is_none(), "revoked during the restart, served"),
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        if stats(&b).listening && stats(&b).flushes > flushes {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!valid(&b, one.token.as_str()).await);
    cached(&b, two.token.as_str()).await;
}

#[tokio::test]
async fn enabling_the_cache_needs_the_triggers_and_a_reachable_server() {
    let db = CacheDb::new(false).await;
    let manager = async || SessionManager::new(PostgresAdapter::new(db.pool().await));
    let err = manager()
        .await
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap_err();
    let Error::Config(ConfigError::CacheTriggers(table)) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(table, r#""user_session""#);
    assert!(err.to_string().contains("CACHE_MIGRATIONS"), "{err}");

    run_embedded_migrations(db.connect().await, CACHE_MIGRATIONS)
        .await
        .unwrap();
    db.exec("ALTER TABLE auth_user DISABLE TRIGGER lucia_diesel_notify")
        .await;
    let err = manager()
        .await
        .with_cache(CacheOptions::new(&db.url))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(ConfigError::CacheTriggers(t)) if t == r#""auth_user""#),
        "{err:?}"
    );
    db.exec("ALTER TABLE auth_user ENABLE TRIGGER lucia_diesel_notify")
        .await;
    assert!(
        manager()
            .await
            .with_cache(CacheOptions::new(&db.url))
            .await
            .is_ok()
    );

    // Settings refused before connecting, by name.
    let refused = [
        (
            CacheOptions::new(&db.url).with_ping_interval(Duration::ZERO),
            "ping",
        ),
        (
            CacheOptions::new(&db.url).with_ping_interval(Duration::from_secs(3601)),
            "ping",
        ),
        (
            CacheOptions::new(&db.url).with_max_age(Duration::from_secs(86_401)),
            "age",
        ),
        (
            CacheOptions::new(&db.url).with_max_age(Duration::MAX),
            "age",
        ),
    ];
    for (options, what) in refused {
        let err = manager().await.with_cache(options).await.unwrap_err();
        let expected = match what {
            "ping" => matches!(err, Error::Config(ConfigError::CachePingInterval)),
            _ => matches!(err, Error::Config(ConfigError::CacheMaxAge)),
        };
        assert!(expected, "{what}: {err:?}");
    }

    let err = manager()
        .await
        .with_cache(CacheOptions::new("postgres://x:y@host:notaport/db"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::DatabaseUrl(_))),
        "{err:?}"
    );
    let unreachable = "postgres://app:hunter2secret@127.0.0.1:1/db";
    let options = CacheOptions::new(unreachable);
    assert!(!format!("{options:?}").contains("hunter2secret"));
    let err = manager().await.with_cache(options).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("hunter2secret"),
        "{err:?}"
    );
}

/// A listener whose runtime shut down (its task aborted) leaves the cache
/// bypassed: nothing would invalidate it any more.
#[test]
fn a_listener_gone_with_its_runtime_leaves_the_cache_bypassed() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (app, listener) = (runtime(), runtime());
    let db = app.block_on(CacheDb::new(true));
    let (manager, alice) = app.block_on(async {
        let manager = SessionManager::new(PostgresAdapter::new(db.pool().await));
        (manager, db.user("alice", "Alice").await)
    });
    let b: Manager = listener
        .block_on(manager.with_cache(CacheOptions::new(&db.url)))
        .unwrap();
    let token = app.block_on(async {
        let c = b.create_session(alice, Attributes::new()).await.unwrap();
        cached(&b, c.token.as_str()).await;
        c.token
    });

    drop(listener);
    let before = stats(&b);
    assert!(!before.listening, "{before:?}");
    app.block_on(async {
        assert!(valid(&b, token.as_str()).await);
    });
    let after = stats(&b);
    assert_eq!(after.hits, before.hits, "{after:?}");
    assert_eq!(after.bypasses, before.bypasses + 1, "{after:?}");
    drop(b);
    drop(db);
}
