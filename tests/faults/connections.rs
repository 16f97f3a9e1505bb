//! Lost connections: the database down when the pool is built and at call
//! time, backends terminated while idle or busy, and a connection reported
//! lost never lent again.

use super::*;

#[tokio::test]
async fn database_down_at_pool_build_and_at_call_time() {
    let mut server = Server::start().await;
    server.control(|c| c.stop("fast")).await;
    let checkout = Duration::from_millis(500);

    let t = Instant::now();
    let err = bounded(
        "build",
        options()
            .with_checkout_timeout(checkout)
            .build(&server.app_url("")),
    )
    .await
    .unwrap_err();
    let took = t.elapsed();
    assert!(took < checkout + Duration::from_millis(500), "{took:?}");
    match &err {
        Error::PoolTimeout {
            last_error: Some(cause),
        } => assert!(
            cause.to_string().to_lowercase().contains("connect"),
            "{cause}"
        ),
        other => panic!("expected a pool timeout with its cause, got {other:?}"),
    }
    assert!(err.to_string().contains("last connection error"), "{err}");

    server.control(Cluster::start_again).await;
    let pool = options()
        .with_checkout_timeout(checkout)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();

    server.control(|c| c.stop("fast")).await;
    for _ in 0..3 {
        let t = Instant::now();
        let err = bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(t.elapsed() < checkout + Duration::from_millis(500));
        let err = bounded("create", m.create_session(user(1), Attributes::new()))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }

    server.control(Cluster::start_again).await;
    let (s, _) = bounded("validate", m.validate_session(created.token.as_str()))
        .await
        .unwrap()
        .expect("valid again once the database is back");
    assert_eq!(s.id, created.session.id);
    assert_healthy(&m).await;
}

#[tokio::test]
async fn terminated_idle_connections_cost_at_most_one_error_each() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(4)
        .build(&server.app_url(""))
        .await
        .unwrap();
    // Open all four connections, then let them sit idle.
    let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.bb8().get()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    assert_eq!(pool.state().idle_connections, 4);
    let m = SessionManager::new(PostgresAdapter::new(pool));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();

    let killed = server
        .count(&format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = '{APP}'"
        ))
        .await;
    assert_eq!(killed, 4);
    let mut results = Vec::new();
    for _ in 0..12 {
        results.push(bounded("validate", m.validate_session(created.token.as_str())).await);
    }
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.len() <= 4, "{errors:?}");
    for e in &errors {
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    }
    for r in &results[8..] {
        assert!(matches!(r, Ok(Some(_))), "recovered: {r:?}");
    }
    eprintln!("idle connections terminated: {} errors", errors.len());
    assert_healthy(&m).await;
}

#[tokio::test]
async fn terminated_busy_connection_gives_one_typed_error() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(2)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let mut locker = server.lock_sessions().await;
    let token = created.token.as_str().to_owned();
    let m2 = Arc::clone(&m);
    let call = tokio::spawn(async move { m2.validate_session(&token).await.map(|s| s.is_some()) });
    let pid = server.waiting_backend().await;
    let t = Instant::now();
    server
        .exec(&format!("SELECT pg_terminate_backend({pid})"))
        .await;
    let err = bounded("validate", call).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    locker.batch_execute("COMMIT").await.unwrap();
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    assert_healthy(&m).await;
}

/// An error that says the connection is gone must retire the connection
/// even before its socket reports the close (the race the busy case above
/// hits under load). Simulated deterministically: a trigger raises the
/// server's "terminating connection" message on a connection that stays open.
#[tokio::test]
async fn a_connection_reported_lost_is_never_lent_again() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(1)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool.clone()));
    let before = backend_pid(&pool).await;
    server
        .exec(
            "CREATE FUNCTION goodbye() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               RAISE EXCEPTION 'terminating connection due to administrator command'; END $$; \
             CREATE TRIGGER goodbye BEFORE INSERT ON user_session \
               FOR EACH ROW EXECUTE FUNCTION goodbye();",
        )
        .await;
    let err = m
        .create_session(user(1), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_ne!(backend_pid(&pool).await, before, "the pool retired it");
    server.exec("DROP TRIGGER goodbye ON user_session").await;
    assert_healthy(&m).await;
}
