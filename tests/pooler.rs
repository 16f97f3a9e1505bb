//! `PoolerPool` behind a real PgBouncer in transaction pooling mode, and
//! what happens to `PgPool` when prepared statements vanish under it.
//!
//! Each test that needs a bouncer of a particular shape starts its own in
//! front of the test server. PgBouncer hands out server connections last in,
//! first out (`server_round_robin = 0`), which makes the failure of named
//! statements reproducible: a client that holds the most recently used
//! server connection in an open transaction pushes the next statement onto
//! another server connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use lucia_diesel::SessionId;
use lucia_diesel::{
    Adapter, Attributes, ConnectionSource, DatabaseSession, Error, PoolOptions, PostgresAdapter,
    SchemaProblem, SessionManager, TableNames,
};
use serde_json::json;

use crate::adapter_suite::make_tables;
use crate::support::TestDb;
use crate::support::pgbouncer;

/// A test schema with the session tables, named with their schema (a
/// pooler passes no `options=-csearch_path`), and one user.
struct Tables {
    db: TestDb,
    names: TableNames,
}

impl Tables {
    async fn new() -> Self {
        let mut db = TestDb::new().await;
        let schema = db.extra_schema("ldp").await;
        let names = TableNames::new(
            &format!("{schema}.auth_user"),
            &format!("{schema}.user_session"),
        )
        .unwrap();
        make_tables::<String>(&db, &names).await;
        let tables = Self { db, names };
        for i in 0..32 {
            tables.add_user(&user(i)).await;
        }
        tables
    }

    async fn add_user(&self, id: &str) {
        self.db
            .exec(&format!(
                "INSERT INTO {} (id, username) VALUES ('{id}', '{id}')",
                self.names.user().to_sql()
            ))
            .await;
    }

    fn adapter<S: ConnectionSource>(&self, source: S) -> PostgresAdapter<S> {
        PostgresAdapter::new(source).with_table_names(self.names.clone())
    }

    async fn count(&self, filter: &str) -> i64 {
        let mut conn = self.db.connect().await;
        crate::support::scalar(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM {} {filter}",
                self.names.session().to_sql()
            ),
        )
        .await
    }
}

fn user(i: usize) -> String {
    format!("user-{}", i % 32)
}

fn options() -> PoolOptions {
    PoolOptions::new()
        .with_checkout_timeout(Duration::from_millis(1500))
        .with_statement_timeout(Some(Duration::from_secs(3)))
}

fn session(id: &str, user: &str) -> DatabaseSession<String> {
    let mut attributes = Attributes::new();
    attributes.insert("country".into(), json!("nl"));
    DatabaseSession {
        id: id.to_owned().into(),
        user_id: user.to_owned(),
        expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes,
    }
}

/// A client of the bouncer that holds one server connection in an open
/// transaction until dropped.
struct Pin(tokio_postgres::Client);

impl Pin {
    async fn new(url: &str) -> Self {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the bouncer");
        tokio::spawn(connection);
        client
            .simple_query("BEGIN; SELECT 1")
            .await
            .expect("open a transaction");
        Self(client)
    }

    async fn release(self) {
        self.0.simple_query("COMMIT").await.expect("commit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_break_behind_the_bouncer_and_unnamed_ones_do_not() {
    let Some(bouncer) = pgbouncer::own_or_skip("this test", 2) else {
        return;
    };
    let tables = Tables::new().await;
    let direct = tables.adapter(options().build(&tables.db.url).await.unwrap());
    direct.set_session(&session("s-1", &user(1))).await.unwrap();

    // PgPool: its statement is prepared on the server connection in use...
    let named = tables.adapter(
        options()
            .with_max_size(1)
            .build(&bouncer.url())
            .await
            .unwrap(),
    );
    assert!(
        named
            .get_session_and_user(&SessionId::from("s-1"))
            .await
            .unwrap()
            .is_some()
    );
    // ...which another client then holds, so the next call lands elsewhere.
    let pin = Pin::new(&bouncer.url()).await;
    let err = named
        .get_session_and_user(&SessionId::from("s-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { message, .. } if message.contains("prepared statement")),
        "{err:?}"
    );
    assert!(err.is_transient());
    // The connection was retired, so the next call prepares afresh.
    assert!(
        named
            .get_session_and_user(&SessionId::from("s-1"))
            .await
            .unwrap()
            .is_some()
    );
    pin.release().await;

    // PoolerPool: the same sequence never fails.
    let unnamed = tables.adapter(
        options()
            .with_max_size(1)
            .build_pooler(&bouncer.url())
            .await
            .unwrap(),
    );
    for _ in 0..3 {
        assert!(
            unnamed
                .get_session_and_user(&SessionId::from("s-1"))
                .await
                .unwrap()
                .is_some()
        );
        let pin = Pin::new(&bouncer.url()).await;
        assert!(
            unnamed
                .get_session_and_user(&SessionId::from("s-1"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            unnamed
                .update_session_expiration(
                    &SessionId::from("s-1"),
                    chrono::Utc::now() + chrono::Duration::days(2)
                )
                .await
                .unwrap()
        );
        pin.release().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_the_bouncer_loses_nothing() {
    const CLIENTS: usize = 32;
    const RUN: Duration = Duration::from_secs(4);
    let Some(bouncer) = pgbouncer::own_or_skip("this test", 3) else {
        return;
    };
    let tables = Tables::new().await;
    let pool = options()
        .with_max_size(10)
        .build_pooler(&bouncer.url())
        .await
        .unwrap();
    let manager = Arc::new(SessionManager::new(tables.adapter(pool)));
    let ops = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let clients = (0..CLIENTS).map(|i| {
        let (m, ops) = (Arc::clone(&manager), Arc::clone(&ops));
        tokio::spawn(async move {
            let (mut alive, mut dead) = (Vec::new(), Vec::new());
            let mut n = 0usize;
            while start.elapsed() < RUN {
                n += 1;
                let created = m.create_session(user(i), Attributes::new()).await.unwrap();
                let (s, u) = m
                    .validate_session(created.token.as_str())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    (s.id.as_str(), u.id.as_str()),
                    (created.session.id.as_str(), user(i).as_str())
                );
                assert!(!m.get_user_sessions(&user(i)).await.unwrap().is_empty());
                if n.is_multiple_of(3) {
                    m.invalidate_session(&created.session.id).await.unwrap();
                    dead.push(created.token);
                } else {
                    alive.push(created.token);
                }
                ops.fetch_add(4, Ordering::Relaxed);
            }
            (alive, dead)
        })
    });
    let results = futures_util::future::join_all(clients).await;
    let (mut alive, mut dead) = (0, 0);
    for result in results {
        let (a, d) = result.expect("a client panicked: an unexpected error");
        for token in &a {
            assert!(
                manager
                    .validate_session(token.as_str())
                    .await
                    .unwrap()
                    .is_some(),
                "a session was lost"
            );
        }
        for token in &d {
            assert!(
                manager
                    .validate_session(token.as_str())
                    .await
                    .unwrap()
                    .is_none(),
                "an invalidated session came back"
            );
        }
        (alive, dead) = (alive + a.len(), dead + d.len());
    }
    assert_eq!(tables.count("").await, alive as i64);
    assert!(
        alive > CLIENTS && dead > 0,
        "too little load: {alive} alive, {dead} dead"
    );
    eprintln!(
        "through pgbouncer (3 server connections): {} operations, {alive} sessions kept, {dead} invalidated, 0 errors",
        ops.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn verify_schema_and_typed_errors_through_the_pooler() {
    let tables = Tables::new().await;
    let pool = options()
        .with_max_size(2)
        .build_pooler(pgbouncer::shared_url())
        .await
        .unwrap();
    let adapter = tables.adapter(pool.clone());
    adapter.verify_schema().await.unwrap();
    let schema = tables.names.session().schema().unwrap().to_owned();
    let missing = PostgresAdapter::new(pool.clone()).with_table_names(
        TableNames::new(&format!("{schema}.auth_user"), &format!("{schema}.nope")).unwrap(),
    );
    match missing.verify_schema().await {
        Err(Error::Schema(e)) => assert!(
            e.problems()
                .iter()
                .any(|p| matches!(p, SchemaProblem::TableNotFound { .. })),
            "{e}"
        ),
        other => panic!("expected a schema error, got {other:?}"),
    }

    adapter
        .set_session(&session("t-1", &user(1)))
        .await
        .unwrap();
    assert!(matches!(
        adapter.set_session(&session("t-1", &user(2))).await,
        Err(Error::DuplicateSessionId)
    ));
    assert!(matches!(
        adapter.set_session(&session("t-2", "nobody")).await,
        Err(Error::UnknownUser)
    ));
    let mut bad = session("t-3", &user(1));
    bad.attributes.insert("no_such_column".into(), json!(1));
    assert!(matches!(
        adapter.set_session(&bad).await,
        Err(Error::InvalidAttributes { .. })
    ));
    let mut nul = session("t-4", &user(1));
    nul.attributes.insert("country".into(), json!("a\u{0}b"));
    assert!(matches!(
        adapter.set_session(&nul).await,
        Err(Error::InvalidAttributes { .. })
    ));
    assert_eq!(
        tables.count("").await,
        1,
        "only the first session was written"
    );
    // The existing row is untouched by the duplicate.
    let (s, u) = adapter
        .get_session_and_user(&SessionId::from("t-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.user_id.as_str(), u.id.as_str()),
        (user(1).as_str(), user(1).as_str())
    );
    assert_eq!(s.attributes.get("country"), Some(&json!("nl")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_kept_by_the_client_and_cancels_the_statement() {
    let tables = Tables::new().await;
    let pool = options()
        .with_max_size(2)
        .with_statement_timeout(Some(Duration::from_millis(300)))
        .build_pooler(
            &std::env::var("POOLER_URL").unwrap_or_else(|_| pgbouncer::shared_url().to_owned()),
        )
        .await
        .unwrap();
    let adapter = tables.adapter(pool);
    adapter
        .set_session(&session("w-1", &user(1)))
        .await
        .unwrap();

    let mut locker = tables.db.connect().await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM {} WHERE id = 'w-1' FOR UPDATE",
            tables.names.session().to_sql()
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let err = adapter
        .update_session_expiration(&SessionId::from("w-1"), chrono::Utc::now())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // The cancel request reached the server: nothing waits on the lock.
    let mut admin = crate::support::admin().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting = crate::support::scalar(
            &mut admin,
            &format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND position('{}' in query) > 0",
                tables.names.session().schema().unwrap()
            ),
        )
        .await;
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out statement still waits on the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    locker.batch_execute("COMMIT").await.unwrap();
    // The row was not changed, and the pool serves the next call.
    assert!(
        adapter
            .update_session_expiration(
                &SessionId::from("w-1"),
                chrono::Utc::now() + chrono::Duration::days(3)
            )
            .await
            .unwrap()
    );
    assert!(
        adapter
            .get_session_and_user(&SessionId::from("w-1"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pooler_going_away_is_a_typed_error_and_the_pool_recovers() {
    let Some(mut bouncer) = pgbouncer::own_or_skip("this test", 2) else {
        return;
    };
    let tables = Tables::new().await;
    let pool = options()
        .with_max_size(3)
        .build_pooler(&bouncer.url())
        .await
        .unwrap();
    let adapter = tables.adapter(pool);
    adapter
        .set_session(&session("d-1", &user(1)))
        .await
        .unwrap();

    bouncer.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = adapter
            .get_session_and_user(&SessionId::from("d-1"))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    bouncer.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match adapter.get_session_and_user(&SessionId::from("d-1")).await {
            Ok(found) => {
                assert!(found.is_some());
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn statements_deallocated_under_a_pg_pool_cost_one_transient_error() {
    let tables = Tables::new().await;
    let pool = options()
        .with_max_size(1)
        .build(&tables.db.url)
        .await
        .unwrap();
    let adapter = tables.adapter(pool.clone());
    adapter
        .set_session(&session("x-1", &user(1)))
        .await
        .unwrap();
    assert!(
        adapter
            .get_session_and_user(&SessionId::from("x-1"))
            .await
            .unwrap()
            .is_some()
    );

    // What a pooler in transaction mode (or a `DISCARD ALL`) does.
    let mut conn: diesel_async::pooled_connection::bb8::PooledConnection<'_, AsyncPgConnection> =
        pool.bb8().get().await.unwrap();
    conn.batch_execute("DEALLOCATE ALL").await.unwrap();
    drop(conn);

    let err = adapter
        .get_session_and_user(&SessionId::from("x-1"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("x-1"));
    // The connection was dropped; the next one prepares its statements anew.
    assert!(
        adapter
            .get_session_and_user(&SessionId::from("x-1"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(tables.count("").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_mid_query_leave_no_cross_talk() {
    let tables = Tables::new().await;
    // One connection, so every call after a drop reuses it.
    let pool = options()
        .with_max_size(1)
        .build_pooler(pgbouncer::shared_url())
        .await
        .unwrap();
    let m = SessionManager::new(tables.adapter(pool));
    let mut sessions = Vec::new();
    for i in 0..4 {
        sessions.push((
            m.create_session(user(i), Attributes::new()).await.unwrap(),
            user(i),
        ));
    }
    let check_all = async || {
        for (c, u) in &sessions {
            let (s, found) = m
                .validate_session(c.token.as_str())
                .await
                .unwrap()
                .expect("valid");
            assert_eq!((&s.id, &found.id), (&c.session.id, u), "cross-talk");
            let listed = m.get_user_sessions(u).await.unwrap();
            assert!(
                listed.iter().all(|s| &s.user_id == u),
                "cross-talk in a list"
            );
        }
    };

    // Dropped while waiting on a lock, i.e. certainly mid-query.
    let mut locker = tables.db.connect().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            tables.names.session().to_sql()
        ))
        .await
        .unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        m.validate_session(sessions[0].0.token.as_str()),
    )
    .await;
    assert!(dropped.is_err(), "still blocked when dropped");
    locker.batch_execute("COMMIT").await.unwrap();
    check_all().await;

    // Dropped at arbitrary points: before, during and after the round trip.
    let tokens: Vec<&str> = sessions.iter().map(|(c, _)| c.token.as_str()).collect();
    crate::support::drop_validations_midway(&m, &tokens, check_all).await;
}
