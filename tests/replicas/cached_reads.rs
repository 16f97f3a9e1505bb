//! The validation cache over a `ReplicatedPool`: a read from a standby that
//! has not replayed a revocation, made after the poll that reported the revocation
//! was handled, is never cached.

use std::time::{Duration, Instant};

use diesel_async::AsyncConnection as _;
use lucia_diesel::cache::CacheOptions;
use lucia_diesel::migrations::{CACHE_MIGRATIONS, run_embedded_migrations};
use lucia_diesel::{Attributes, PostgresAdapter, SessionManager};

use super::{Pair, usable, wait_until};

const LAG: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standbys_stale_read_after_an_invalidation_is_never_cached() {
    let pair = Pair::start().await;
    let conn = diesel_async::AsyncPgConnection::establish(&pair.primary.url)
        .await
        .unwrap();
    run_embedded_migrations(conn, CACHE_MIGRATIONS)
        .await
        .unwrap();
    let pool = pair.pool(LAG).await;
    pair.caught_up().await;
    // Polls must go to the primary: a standby's outbox is refused.
    let standby = lucia_diesel::SingleConnection::establish(&pair.standby.url)
        .await
        .unwrap();
    let err = SessionManager::new(PostgresAdapter::new(pool.clone()))
        .with_cache_polling(CacheOptions::new(), standby)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, lucia_diesel::Error::Config(lucia_diesel::ConfigError::CachePollSource(w)) if w.contains("standby")),
        "{err:?}"
    );
    let b = SessionManager::new(PostgresAdapter::new(pool.clone()))
        .with_cache(CacheOptions::new().with_max_poll_age(std::time::Duration::from_secs(30)))
        .await
        .unwrap();
    let stats = || b.cache_stats().unwrap();
    let revoked = b
        .create_session("user-1".to_owned(), Attributes::new())
        .await
        .unwrap();
    let token = revoked.token.as_str();
    pair.caught_up().await;
    wait_until("the standby serves reads", Duration::from_secs(10), || {
        usable(&pool)
    })
    .await;
    // Fills wait until no invalidation (the start counts as one) is within
    // the bound before them; then it is served from memory.
    let mut served = false;
    for _ in 0..400 {
        let hits = stats().hits;
        assert!(b.validate_session(token).await.unwrap().is_some());
        if stats().hits > hits {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "never served from memory: {:?}", stats());

    // Revoked on the primary (plain SQL) while the standby replays nothing.
    pair.standby.control(|s| s.pause_replay()).await;
    let before = stats();
    pair.primary
        .exec(&format!(
            "DELETE FROM user_session WHERE id = '{}'",
            revoked.session.id.as_str()
        ))
        .await;
    let revoked_at = Instant::now();
    wait_until("the invalidation", Duration::from_secs(5), || {
        stats().invalidations > before.invalidations
    })
    .await;
    // The standby still has the row, within the bound: valid for these
    // requests (the replica module's documented window), but never kept,
    // so none of them is a hit.
    let mut stale = 0;
    while revoked_at.elapsed() < LAG / 2 {
        if b.validate_session(token).await.unwrap().is_some() {
            stale += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = stats();
    assert!(stale > 0, "the paused standby answered");
    assert_eq!(after.hits, before.hits, "{after:?}");
    assert_eq!(after.fills, before.fills, "{after:?}");
    assert!(after.dropped_fills >= before.dropped_fills + stale);

    // Past the bound the primary answers, and nothing stale is in memory.
    wait_until("the standby is skipped", Duration::from_secs(10), || {
        !usable(&pool)
    })
    .await;
    assert!(b.validate_session(token).await.unwrap().is_none());
    pair.standby.control(|s| s.resume_replay()).await;
    pair.caught_up().await;
    wait_until("the standby serves again", Duration::from_secs(10), || {
        usable(&pool)
    })
    .await;
    assert!(b.validate_session(token).await.unwrap().is_none());
}
