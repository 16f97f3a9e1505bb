//! Session activity (`created_at`, `last_seen_at`) and the optional idle
//! timeout and absolute lifetime, on a real PostgreSQL with the injectable
//! clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lucia_diesel::{Attributes, PgPool, PostgresAdapter, SessionManager, TokenStorage};

use crate::adapter_suite::{Fixture, default_fixture, pool};
use crate::round_trips::counted;
use crate::support::clock::ManualClock;

type Manager = SessionManager<PostgresAdapter<PgPool>>;

async fn manager(
    f: &Fixture<PostgresAdapter<PgPool>>,
    clock: &ManualClock,
    configure: impl FnOnce(
        lucia_diesel::SessionManagerBuilder<PostgresAdapter<PgPool>>,
    ) -> lucia_diesel::SessionManagerBuilder<PostgresAdapter<PgPool>>,
) -> Manager {
    let builder =
        SessionManager::builder(PostgresAdapter::new(pool(&f.db).await)).with_clock(clock.clone());
    configure(builder).build().unwrap()
}

/// `created_at`, `last_seen_at` and `expires_at` of the one session row.
async fn times(
    f: &Fixture<PostgresAdapter<PgPool>>,
) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        last_seen_at: DateTime<Utc>,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        expires_at: DateTime<Utc>,
    }
    let mut conn = f.db.connect().await;
    let t: T = diesel::sql_query("SELECT created_at, last_seen_at, expires_at FROM user_session")
        .get_result(&mut conn)
        .await
        .unwrap();
    (t.created_at, t.last_seen_at, t.expires_at)
}

#[tokio::test]
async fn created_and_last_seen_are_part_of_the_session() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, |b| b).await;
    let alice = f.create_user("alice").await;
    let t0 = clock.get();
    let created = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    assert_eq!(
        (created.session.created_at, created.session.last_seen_at),
        (t0, t0)
    );
    assert_eq!(times(&f).await, (t0, t0, t0 + Duration::days(30)));
    // Within the resolution (5 minutes by default): nothing written.
    clock.advance(Duration::minutes(4));
    let (s, _) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.last_seen_at, t0);
    // Past it: recorded, without extending.
    clock.advance(Duration::minutes(2));
    let (s, _) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.last_seen_at, s.fresh),
        (t0 + Duration::minutes(6), false)
    );
    assert_eq!(times(&f).await.1, t0 + Duration::minutes(6));
    let listed = m.get_user_sessions(&alice).await.unwrap();
    assert_eq!(
        (listed[0].created_at, listed[0].last_seen_at),
        (t0, t0 + Duration::minutes(6))
    );
}

#[tokio::test]
async fn idle_timeout_at_its_boundary() {
    let us = Duration::microseconds(1);
    for (offset, valid) in [(-us, true), (Duration::zero(), false), (us, false)] {
        let f = default_fixture().await;
        let clock = ManualClock::new();
        let m = manager(&f, &clock, |b| b.with_idle_timeout(Duration::hours(1))).await;
        let alice = f.create_user("alice").await;
        let created = m.create_session(alice, Attributes::new()).await.unwrap();
        clock.advance(Duration::hours(1) + offset);
        let got = m.validate_session(created.token.as_str()).await.unwrap();
        assert_eq!(got.is_some(), valid, "idle for 1 h {offset:?}");
        // An idle session is deleted when it is presented.
        assert_eq!(f.session_rows().await, i64::from(valid), "{offset:?}");
    }
}

#[tokio::test]
async fn a_session_used_every_minute_stays_alive_until_idle_or_absolute_limits() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, |b| {
        b.with_session_lifetime(Duration::hours(2))
            .with_idle_timeout(Duration::minutes(30))
            .with_absolute_lifetime(Duration::hours(8))
            .with_activity_resolution(Duration::minutes(5))
    })
    .await;
    let alice = f.create_user("alice").await;
    let t0 = clock.get();
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    let token = created.token.as_str();
    // Used every minute: the idle timeout never fires, the sliding expiry
    // keeps moving, but never past created_at + 8 h.
    let mut last_expiry = created.session.expires_at;
    for minute in 1..(8 * 60) {
        clock.set(t0 + Duration::minutes(minute));
        let (s, _) = m
            .validate_session(token)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("invalid after {minute} minutes of use"));
        assert!(s.expires_at <= t0 + Duration::hours(8), "{minute}");
        assert!(s.expires_at >= last_expiry);
        last_expiry = s.expires_at;
    }
    assert_eq!(
        last_expiry,
        t0 + Duration::hours(8),
        "extended up to the cap"
    );
    clock.set(t0 + Duration::hours(8));
    assert!(
        m.validate_session(token).await.unwrap().is_none(),
        "absolute limit"
    );
    assert_eq!(f.session_rows().await, 0);
}

#[tokio::test]
async fn extension_is_capped_at_the_absolute_limit() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, |b| {
        b.with_session_lifetime(Duration::days(30))
            .with_absolute_lifetime(Duration::days(40))
    })
    .await;
    let alice = f.create_user("alice").await;
    let t0 = clock.get();
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    assert_eq!(created.session.expires_at, t0 + Duration::days(30));
    clock.set(t0 + Duration::days(20));
    let (s, _) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(s.fresh);
    assert_eq!(s.expires_at, t0 + Duration::days(40), "not t0 + 50 days");
    assert_eq!(times(&f).await.2, t0 + Duration::days(40));
    // Nothing left to extend: a later validation writes only activity.
    clock.set(t0 + Duration::days(30));
    let (s, _) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(!s.fresh);
    assert_eq!(s.expires_at, t0 + Duration::days(40));
}

/// 200 validations at once of a session due for activity (and, in the
/// second round, extension): every one valid, and the row written once
/// (counted by a trigger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_validations_write_the_row_once() {
    let f = default_fixture().await;
    f.db.exec(
        "CREATE TABLE writes (n int); INSERT INTO writes VALUES (0); \
         CREATE FUNCTION count_write() RETURNS trigger AS \
         $$ BEGIN UPDATE writes SET n = n + 1; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER count_write AFTER UPDATE ON user_session \
         FOR EACH ROW EXECUTE FUNCTION count_write();",
    )
    .await;
    let clock = ManualClock::new();
    let m = Arc::new(manager(&f, &clock, |b| b).await);
    let alice = f.create_user("alice").await;
    let t0 = clock.get();
    let token = m
        .create_session(alice, Attributes::new())
        .await
        .unwrap()
        .token;
    for (at, writes) in [(Duration::minutes(10), 1), (Duration::days(16), 2)] {
        clock.set(t0 + at);
        let calls = (0..200).map(|_| {
            let (m, token) = (Arc::clone(&m), token.as_str().to_owned());
            tokio::spawn(async move { m.validate_session(&token).await })
        });
        for call in futures_util::future::join_all(calls).await {
            assert!(call.unwrap().unwrap().is_some());
        }
        let mut conn = f.db.connect().await;
        let n = crate::support::scalar(&mut conn, "SELECT n::int8 AS n FROM writes").await;
        assert_eq!(n, writes, "after {at:?}");
        assert_eq!(times(&f).await.1, t0 + at);
    }
}

/// A validation with nothing due is one read statement; one that records
/// activity adds one write statement.
#[tokio::test]
async fn a_validation_with_nothing_due_is_one_read() {
    let f = default_fixture().await;
    let (source, counter) = counted(&f.db).await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(source))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let alice = f.create_user("alice").await;
    let token = m
        .create_session(alice, Attributes::new())
        .await
        .unwrap()
        .token;
    m.validate_session(token.as_str()).await.unwrap().unwrap();
    counter.take();
    clock.advance(Duration::minutes(1));
    m.validate_session(token.as_str()).await.unwrap().unwrap();
    assert_eq!(counter.take().0, 1, "one read");
    clock.advance(Duration::minutes(10));
    m.validate_session(token.as_str()).await.unwrap().unwrap();
    assert_eq!(counter.take().0, 2, "a read and the activity write");
}

/// A row written the way a Lucia app writes it (no activity columns): the
/// defaults make it valid, and its activity is recorded from then on.
#[tokio::test]
async fn a_lucia_written_row_validates_and_records_activity() {
    let f = default_fixture().await;
    let m = SessionManager::builder(PostgresAdapter::new(pool(&f.db).await))
        .with_token_storage(TokenStorage::LuciaCompatible)
        .with_idle_timeout(Duration::hours(1))
        .with_absolute_lifetime(Duration::days(60))
        .build()
        .unwrap();
    let alice = f.create_user("alice").await;
    let token = "lucia-session-id-of-a-node-app";
    f.db.exec(&format!(
        "INSERT INTO user_session (id, user_id, expires_at) \
         VALUES ('{token}', '{alice}', now() + interval '30 days')"
    ))
    .await;
    let (s, _) = m.validate_session(token).await.unwrap().unwrap();
    let now = Utc::now();
    assert!(
        (now - s.created_at).num_seconds().abs() < 60,
        "{:?}",
        s.created_at
    );
    assert!((now - s.last_seen_at).num_seconds().abs() < 60);
    // A row stamped long ago by the server is idle.
    f.db.exec("UPDATE user_session SET last_seen_at = now() - interval '2 hours'")
        .await;
    assert!(m.validate_session(token).await.unwrap().is_none());
}

#[tokio::test]
async fn timeouts_are_checked_when_built() {
    let f = default_fixture().await;
    let build = |b: lucia_diesel::SessionManagerBuilder<PostgresAdapter<PgPool>>| b.build();
    let base = || SessionManager::builder(PostgresAdapter::new(f.adapter.source().clone()));
    use lucia_diesel::ConfigError as E;
    assert_eq!(
        build(base().with_idle_timeout(Duration::zero())).unwrap_err(),
        E::IdleTimeout
    );
    assert_eq!(
        build(base().with_absolute_lifetime(Duration::days(-1))).unwrap_err(),
        E::AbsoluteLifetime
    );
    let resolution_too_long = base()
        .with_idle_timeout(Duration::minutes(5))
        .with_activity_resolution(Duration::minutes(5));
    assert_eq!(
        build(resolution_too_long).unwrap_err(),
        E::ActivityResolution
    );
    assert!(build(base().with_idle_timeout(Duration::minutes(6))).is_ok());
}
