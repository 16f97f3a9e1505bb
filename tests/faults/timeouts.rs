//! Statements that do not finish: `statement_timeout`, `lock_timeout`,
//! `pg_cancel_backend`, and a server that stops answering altogether.

use super::*;

/// Runs a validation while the session table is locked and returns its
/// error; the lock is released afterwards and the same connection (pool of
/// one) must then serve the next call.
async fn blocked_validation(
    server: &Server,
    pool: PgPool,
    interrupt: impl AsyncFnOnce(i32),
) -> Error {
    let before = backend_pid(&pool).await;
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool.clone())));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let mut locker = server.lock_sessions().await;
    let token = created.token.as_str().to_owned();
    let m2 = Arc::clone(&m);
    let call = tokio::spawn(async move { m2.validate_session(&token).await.map(|s| s.is_some()) });
    interrupt(server.waiting_backend().await).await;
    let err = bounded("validate", call).await.unwrap().unwrap_err();
    locker.batch_execute("COMMIT").await.unwrap();
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some(),
        "the connection is usable after {err:?}"
    );
    assert_eq!(backend_pid(&pool).await, before, "the same connection");
    assert_healthy(&m).await;
    err
}

#[tokio::test]
async fn statement_timeout_lock_timeout_and_cancel_are_typed_timeouts() {
    let server = Server::start().await;
    let one = |url: String, statement: u64| async move {
        options()
            .with_max_size(1)
            .with_statement_timeout(Some(Duration::from_millis(statement)))
            .build(&url)
            .await
            .unwrap()
    };

    let pool = one(server.app_url(""), 300).await;
    let t = Instant::now();
    let err = blocked_validation(&server, pool, async |_| {}).await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("statement timeout")),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));

    let pool = one(server.app_url("&options=-c%20lock_timeout%3D200"), 5000).await;
    let err = blocked_validation(&server, pool, async |_| {}).await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("lock timeout")),
        "{err:?}"
    );

    let pool = one(server.app_url(""), 5000).await;
    let err = blocked_validation(&server, pool, async |pid| {
        server
            .exec(&format!("SELECT pg_cancel_backend({pid})"))
            .await;
    })
    .await;
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("user request")),
        "{err:?}"
    );
    assert!(err.is_transient());
}

/// A backend process stopped with `SIGSTOP` (a frozen server: the socket
/// stays open and nothing answers); `SIGCONT` on drop, so a failing test
/// never leaves it stopped.
struct Frozen(i32);

impl Frozen {
    fn stop(pid: i32) -> Self {
        signal(pid, "STOP");
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: i32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// The pid of the one backend with this `application_name`.
async fn backend_of(server: &Server, app: &str) -> i32 {
    let pid = server
        .count(&format!(
            "SELECT COALESCE(max(pid), 0)::int8 AS n FROM pg_stat_activity WHERE application_name = '{app}'"
        ))
        .await;
    assert_ne!(pid, 0, "no backend named {app}");
    i32::try_from(pid).unwrap()
}

const FROZEN_STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// The client-side deadline of an operation: the statement timeout plus
/// its margin (a tenth, at least 250 ms).
const FROZEN_DEADLINE: Duration = Duration::from_millis(750);

/// A validation through `m` while the server behind its one connection is
/// frozen: a typed timeout at the deadline, never later (the server's
/// `statement_timeout` cannot act while it is stopped), then the
/// connection is gone and the next call is served on a new one.
async fn frozen_validation<A: lucia_diesel::Adapter>(
    server: &Server,
    m: &SessionManager<A>,
    app: &str,
    token: &str,
) {
    let pid = backend_of(server, app).await;
    let frozen = Frozen::stop(pid);
    let start = Instant::now();
    let err = bounded("validate", m.validate_session(token))
        .await
        .map(|s| s.is_some())
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, Error::Timeout { message, .. } if message.contains("deadline")),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        took >= FROZEN_DEADLINE && took < FROZEN_DEADLINE + Duration::from_millis(750),
        "the call took {took:?}, the deadline is {FROZEN_DEADLINE:?}"
    );
    drop(frozen);
    // Retired: the next call opens a new connection, and the old one's
    // backend goes away once it runs again.
    let valid = bounded("validate", m.validate_session(token)).await;
    assert!(valid.unwrap().is_some(), "a valid session after the thaw");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = server
            .count(&format!(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .await;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the frozen connection was kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(backend_of(server, app).await, pid);
}

/// A server that stops answering without closing the socket (here its
/// backend process is stopped with `SIGSTOP`): every call still returns
/// within the statement timeout plus the margin, on both kinds of pool,
/// including the first read of a new adapter (which also looks up the
/// attribute columns: both statements share the one deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_costs_a_typed_timeout_at_the_deadline() {
    let server = Server::start().await;
    let setup = SessionManager::new(PostgresAdapter::new(
        options().build(&server.url).await.unwrap(),
    ));
    let token = setup
        .create_session(user(1), Attributes::new())
        .await
        .unwrap()
        .token;
    let pool_options = || {
        options()
            .with_max_size(1)
            .with_statement_timeout(Some(FROZEN_STATEMENT_TIMEOUT))
    };

    let app = "lucia_frozen_pgpool";
    let url = format!("{}?application_name={app}", server.url);
    let m = SessionManager::new(PostgresAdapter::new(
        pool_options().build(&url).await.unwrap(),
    ));
    // The pool opened its connection when built: the adapter's first read
    // (column lookup, then the read) meets the frozen server.
    frozen_validation(&server, &m, app, token.as_str()).await;
    // A warm adapter, frozen mid-use.
    frozen_validation(&server, &m, app, token.as_str()).await;
    assert_healthy(&SessionManager::new(PostgresAdapter::new(
        options().build(&server.url).await.unwrap(),
    )))
    .await;

    #[cfg(feature = "pooler")]
    {
        let app = "lucia_frozen_pooler";
        let url = format!("{}?application_name={app}", server.url);
        let m = SessionManager::new(PostgresAdapter::new(
            pool_options().build_pooler(&url).await.unwrap(),
        ));
        frozen_validation(&server, &m, app, token.as_str()).await;
        frozen_validation(&server, &m, app, token.as_str()).await;
    }
}

/// What a call meeting a frozen server may fail with: the operation's
/// deadline, or, where the pool tests a connection on checkout with a
/// round trip (bb8's and deadpool's defaults), the checkout timeout
/// (`FROZEN_CHECKOUT` in these tests); never later than its bound.
fn assert_frozen_error(err: &Error, took: Duration) {
    let slack = Duration::from_millis(750);
    match err {
        Error::Timeout { message, .. } if message.contains("deadline") => assert!(
            took >= FROZEN_DEADLINE && took < FROZEN_DEADLINE + slack,
            "took {took:?}, the deadline is {FROZEN_DEADLINE:?}"
        ),
        Error::PoolTimeout { .. } => assert!(
            took >= FROZEN_CHECKOUT && took < FROZEN_CHECKOUT + slack,
            "took {took:?}, the checkout timeout is {FROZEN_CHECKOUT:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(err.is_transient());
}

/// The checkout timeout of the `Bounded` pools under test.
const FROZEN_CHECKOUT: Duration = Duration::from_millis(300);

/// The application's own queries through `run`, frozen mid-call: a typed
/// timeout at the source's deadline, the connection retired, the next call
/// served on a new one.
async fn frozen_run<S: ConnectionSource>(server: &Server, source: &S, app: &str) -> Error {
    let app_query =
        async |conn: &mut AsyncPgConnection| -> Result<i32, Error> { Ok(pid_of(conn).await) };
    let before = bounded("run", source.run(app_query)).await.unwrap();
    let pid = backend_of(server, app).await;
    assert_eq!(before, pid);
    let frozen = Frozen::stop(pid);
    let start = Instant::now();
    let err = bounded("run", source.run(app_query)).await.unwrap_err();
    let took = start.elapsed();
    assert_frozen_error(&err, took);
    drop(frozen);
    let after = bounded("run", source.run(app_query)).await.unwrap();
    if matches!(err, Error::Timeout { .. }) {
        assert_ne!(after, pid, "a connection past its deadline was lent again");
    }
    err
}

/// `run` bounds the application's queries like the crate's, on a `PgPool`
/// and on pools the application built itself (bb8, deadpool) wrapped in
/// `Bounded`, whose checkout is bounded too; sessions over a `Bounded` pool
/// time out like over a `PgPool`. A `PoolerPool` refuses `run` by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_queries_and_the_apps_own_pools_are_bounded_on_a_frozen_server() {
    use diesel_async::pooled_connection::AsyncDieselConnectionManager;
    use lucia_diesel::Bounded;
    let server = Server::start().await;
    let token = SessionManager::new(PostgresAdapter::new(
        options().build(&server.url).await.unwrap(),
    ))
    .create_session(user(1), Attributes::new())
    .await
    .unwrap()
    .token;

    let app = "lucia_frozen_run";
    let url = format!("{}?application_name={app}", server.url);
    let pool = options()
        .with_max_size(1)
        .with_statement_timeout(Some(FROZEN_STATEMENT_TIMEOUT))
        .build(&url)
        .await
        .unwrap();
    // A `PgPool` tests no connection with a round trip on checkout: the
    // deadline is what stops the call.
    let err = frozen_run(&server, &pool, app).await;
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // The closure's own errors come back as they are, in its own type.
    #[derive(Debug)]
    enum AppError {
        Sessions(Error),
        NoSuchAccount,
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            Self::Sessions(e)
        }
    }
    let err = pool
        .run(async |_conn| Err::<(), _>(AppError::NoSuchAccount))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::NoSuchAccount), "{err:?}");
    let frozen = Frozen::stop(backend_of(&server, app).await);
    let err = pool
        .run(async |conn| Ok::<_, AppError>(pid_of(conn).await))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::Sessions(Error::Timeout { .. })),
        "{err:?}"
    );
    drop(frozen);

    // The application's bb8 pool, bounded.
    let app = "lucia_frozen_bb8";
    let url = format!("{}?application_name={app}", server.url);
    let bb8 = bb8::Pool::builder()
        .max_size(1)
        .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(&url))
        .await
        .unwrap();
    let source = Bounded::new(bb8.clone())
        .with_checkout_timeout(FROZEN_CHECKOUT)
        .with_operation_timeout(FROZEN_DEADLINE);
    frozen_run(&server, &source, app).await;
    let m = SessionManager::new(PostgresAdapter::new(source.clone()));
    assert!(m.validate_session(token.as_str()).await.unwrap().is_some());
    let frozen = Frozen::stop(backend_of(&server, app).await);
    let start = Instant::now();
    let err = bounded("validate", m.validate_session(token.as_str()))
        .await
        .unwrap_err();
    assert_frozen_error(&err, start.elapsed());
    drop(frozen);
    assert!(m.validate_session(token.as_str()).await.unwrap().is_some());
    // Its checkout waits at most the checkout timeout, though bb8's own
    // connection timeout is 30 s.
    let held = bb8.get().await.unwrap();
    let start = Instant::now();
    let err = bounded("validate", m.validate_session(token.as_str()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PoolTimeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    drop(held);
    assert!(m.validate_session(token.as_str()).await.unwrap().is_some());

    #[cfg(feature = "deadpool")]
    {
        let app = "lucia_frozen_deadpool";
        let url = format!("{}?application_name={app}", server.url);
        let deadpool = diesel_async::pooled_connection::deadpool::Pool::builder(
            AsyncDieselConnectionManager::<AsyncPgConnection>::new(&url),
        )
        .max_size(1)
        .build()
        .unwrap();
        let source = Bounded::new(deadpool)
            .with_checkout_timeout(FROZEN_CHECKOUT)
            .with_operation_timeout(FROZEN_DEADLINE);
        frozen_run(&server, &source, app).await;
        let m = SessionManager::new(PostgresAdapter::new(source));
        assert!(m.validate_session(token.as_str()).await.unwrap().is_some());
        let frozen = Frozen::stop(backend_of(&server, app).await);
        let start = Instant::now();
        let err = bounded("validate", m.validate_session(token.as_str()))
            .await
            .unwrap_err();
        assert_frozen_error(&err, start.elapsed());
        drop(frozen);
        assert!(m.validate_session(token.as_str()).await.unwrap().is_some());
    }

    #[cfg(feature = "pooler")]
    {
        let pooled = options().build_pooler(&server.url).await.unwrap();
        let err = pooled
            .run(async |_conn| Ok::<_, Error>(()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(lucia_diesel::ConfigError::PoolerQueries)),
            "{err:?}"
        );
    }
}
