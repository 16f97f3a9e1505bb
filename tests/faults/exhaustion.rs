//! Pool exhaustion: typed timeouts within their bound, fair turns, and the
//! connection returned last lent first.

use super::*;

/// `err` is a `PoolTimeout` with no connection error behind it, after
/// waiting at least `checkout` and not much longer (queued waits may take
/// an eighth more, the pool timer's granularity).
fn assert_pool_timeout(err: &Error, took: Duration, checkout: Duration) {
    assert!(
        matches!(err, Error::PoolTimeout { last_error: None }),
        "{err:?}"
    );
    assert!(
        took >= checkout && took < checkout + Duration::from_millis(500),
        "{took:?}"
    );
}

#[tokio::test]
async fn pool_exhaustion_is_a_typed_timeout_within_its_bound() {
    let server = Server::start().await;
    let checkout = Duration::from_millis(300);
    let pool = options()
        .with_max_size(2)
        .with_checkout_timeout(checkout)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = SessionManager::new(PostgresAdapter::new(pool.clone()));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let first = pool.bb8().get().await.unwrap();
    let second = pool.bb8().get().await.unwrap();
    let t = Instant::now();
    let err = bounded("validate", m.validate_session(created.token.as_str()))
        .await
        .unwrap_err();
    assert_pool_timeout(&err, t.elapsed(), checkout);
    drop(first);
    assert!(
        bounded("validate", m.validate_session(created.token.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    drop(second);
    assert_healthy(&m).await;
}

/// Holds `pool`'s one connection and checks that a caller queued behind it
/// gets a `PoolTimeout` within its bound.
async fn queued_timeout(pool: &PgPool, checkout: Duration) {
    let held = pool.connection().await.unwrap();
    let t = Instant::now();
    let err = bounded("queued checkout", pool.connection())
        .await
        .map(drop)
        .unwrap_err();
    assert_pool_timeout(&err, t.elapsed(), checkout);
    drop(held);
}

/// Queued callers are timed out by one timer per pool, a task on the
/// runtime of a caller who had to wait. Once that runtime is gone, the next
/// caller who has to wait, on another runtime, starts the timer again: its
/// wait still ends in a `PoolTimeout` within its bound.
#[test]
fn queued_waits_time_out_on_every_runtime_the_pool_is_used_from() {
    let checkout = Duration::from_millis(300);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let url = crate::support::server_url();
    let first = runtime();
    let pool = first.block_on(async {
        options()
            .with_max_size(1)
            .with_checkout_timeout(checkout)
            .build(url)
            .await
            .unwrap()
    });
    first.block_on(queued_timeout(&pool, checkout));
    // The timer task is still there, waiting for its next tick: dropped
    // with its runtime.
    drop(first);
    let second = runtime();
    second.block_on(queued_timeout(&pool, checkout));
    second.block_on(queued_timeout(&pool, checkout));
}

/// At low load the pool lends the connection returned last, so one warm
/// server process serves call after call while the others go idle (and
/// close after the idle timeout).
#[tokio::test]
async fn the_connection_returned_last_is_lent_first() {
    let pool = options()
        .with_max_size(3)
        .build(crate::support::server_url())
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.connection().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut held {
        pids.push(pid_of(conn).await);
    }
    let last = pids[2];
    assert_ne!(pids[0], last, "three distinct connections");
    // Returned in order: the third one last.
    for conn in held {
        drop(conn);
    }
    for call in 0..5 {
        let mut conn = pool.connection().await.unwrap();
        assert_eq!(pid_of(&mut conn).await, last, "call {call}");
    }
}

/// More callers than connections, all asking again at once: each waits its
/// turn, none starves into a `PoolTimeout` while the pool is busy serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_serves_callers_in_turn() {
    let server = Server::start().await;
    let pool = options()
        .with_max_size(2)
        // Long enough that a loaded CI machine does not time out a fair
        // turn, short enough that a starving waiter (bb8 alone) does.
        .with_checkout_timeout(Duration::from_secs(1))
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let created = m.create_session(user(1), Attributes::new()).await.unwrap();
    let token: Arc<str> = created.token.as_str().into();
    let deadline = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (m, token) = (Arc::clone(&m), Arc::clone(&token));
            tokio::spawn(async move {
                let (mut ok, mut timeouts) = (0u32, 0u32);
                while Instant::now() < deadline {
                    match m.validate_session(&token).await {
                        Ok(Some(_)) => ok += 1,
                        Err(Error::PoolTimeout { .. }) => timeouts += 1,
                        other => panic!("{other:?}"),
                    }
                }
                (ok, timeouts)
            })
        })
        .collect();
    let (mut ok, mut timeouts) = (0, 0);
    for c in callers {
        let (o, t) = c.await.unwrap();
        assert!(o > 0, "a caller never got a turn");
        ok += o;
        timeouts += t;
    }
    eprintln!("saturated pool: {ok} validations, {timeouts} pool timeouts");
    assert_eq!(timeouts, 0, "{ok} served meanwhile");
}
