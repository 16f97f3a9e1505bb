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
