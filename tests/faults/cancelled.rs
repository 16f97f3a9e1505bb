//! Futures dropped mid-query leave no cross-talk on reused connections.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_futures_leave_no_cross_talk() {
    let server = Server::start().await;
    // One connection, so every call after a cancellation reuses it.
    let pool = options()
        .with_max_size(1)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let mut sessions = Vec::new();
    for i in 0..4 {
        let c = m.create_session(user(i), Attributes::new()).await.unwrap();
        sessions.push((c, user(i)));
    }
    let check_all = async || {
        for (c, u) in &sessions {
            let (s, user) = bounded("validate", m.validate_session(c.token.as_str()))
                .await
                .unwrap()
                .expect("valid");
            assert_eq!((&s.id, &user.id), (&c.session.id, u), "cross-talk");
            let listed = bounded("list", m.get_user_sessions(u)).await.unwrap();
            assert!(
                listed.iter().all(|s| &s.user_id == u),
                "cross-talk in a list"
            );
        }
    };

    // Dropped while waiting on a lock, i.e. certainly mid-query.
    let mut locker = server.lock_sessions().await;
    let (c0, _) = &sessions[0];
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        m.validate_session(c0.token.as_str()),
    )
    .await;
    assert!(dropped.is_err(), "still blocked when dropped");
    let dropped =
        tokio::time::timeout(Duration::from_millis(100), m.get_user_sessions(&user(1))).await;
    assert!(dropped.is_err());
    locker.batch_execute("COMMIT").await.unwrap();
    check_all().await;

    // Dropped at arbitrary points: before, during and after the round trip.
    let tokens: Vec<&str> = sessions.iter().map(|(c, _)| c.token.as_str()).collect();
    crate::support::drop_validations_midway(&m, &tokens, check_all).await;
    assert_healthy(&m).await;
}
