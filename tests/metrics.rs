//! Metrics (feature `metrics`), read back as values through a
//! `DebuggingRecorder`: validations by outcome (idle and absolute with the
//! test clock), sessions created, extended and deleted, errors by kind,
//! statement and checkout histograms, pool gauges, the cache's lookups and
//! invalidations; and never a token, session id or user id as a label.
//!
//! Each test installs its recorder as the thread's local recorder: a
//! `#[tokio::test]` runs every task it spawns (the pool's, the cache's
//! poller) on its own thread, so tests running in parallel never see each
//! other's values.

use std::collections::BTreeMap;

use chrono::Duration;
use lucia_diesel::metrics::{
    ERRORS, POOL_CHECKOUT_WAIT, POOL_CONNECTIONS, SESSIONS_CREATED, SESSIONS_DELETED,
    SESSIONS_EXTENDED, SESSIONS_ROTATED, STATEMENT_DURATION, VALIDATIONS,
};
use lucia_diesel::{
    Attributes, CreatedSession, PgPool, PostgresAdapter, SessionManager, TableNames,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::adapter_suite::{default_fixture, pool};
use crate::support::clock::ManualClock;

/// A new session of `user` with no attributes.
async fn sign_in<A>(m: &SessionManager<A>, user: &str) -> CreatedSession<String, Attributes>
where
    A: lucia_diesel::Adapter<UserId = String, SessionAttributes = Attributes>,
{
    m.create_session(user.to_owned(), Attributes::new())
        .await
        .unwrap()
}

/// Whether `token` validates, and if so whether the session was extended.
async fn validated<A: lucia_diesel::Adapter>(m: &SessionManager<A>, token: &str) -> Option<bool> {
    m.validate_session(token)
        .await
        .unwrap()
        .map(|(session, _)| session.fresh)
}

/// A metric's name and its labels, sorted.
type Key = (String, Vec<(String, String)>);

/// What a recorder holds, read once.
struct Recorded(BTreeMap<Key, DebugValue>);

impl Recorded {
    fn take(snapshotter: &Snapshotter) -> Self {
        let mut values = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            values.insert((key.name().to_owned(), labels), value);
        }
        Self(values)
    }

    /// A counter's value with exactly these labels (0 when never counted).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.0.get(&key(name, labels)) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// A counter's values by the value of its one label, those counted.
    /// (Counters registered up front show 0 until counted.)
    fn by_label(&self, name: &str) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for ((n, labels), value) in &self.0 {
            if let (true, [(_, v)], DebugValue::Counter(c)) = (n == name, labels.as_slice(), value)
                && *c > 0
            {
                counts.insert(v.clone(), *c);
            }
        }
        counts
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.0.get(&key(name, labels)) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("{name} {labels:?} is not a gauge: {other:?}"),
        }
    }

    /// A histogram's samples (every label set).
    fn samples(&self, name: &str) -> Vec<f64> {
        let mut samples = Vec::new();
        for ((n, _), value) in &self.0 {
            if let (true, DebugValue::Histogram(v)) = (n == name, value) {
                samples.extend(v.iter().map(|f| f.into_inner()));
            }
        }
        samples
    }

    /// Every label value recorded must differ from each of `secrets`.
    fn assert_no_label_in(&self, secrets: &[&str]) {
        for (name, labels) in self.0.keys() {
            assert!(name.starts_with("lucia_diesel_"), "{name}");
            for (label, value) in labels {
                assert!(
                    !secrets.iter().any(|s| s == value || value.contains(s)),
                    "{name}{{{label}={value}}} holds a secret"
                );
            }
        }
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn outcome(o: &str) -> [(&str, &str); 1] {
    [("outcome", o)]
}

#[tokio::test]
async fn validations_sessions_errors_statements_and_pool() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    lucia_diesel::metrics::describe();

    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(pool(&f.db).await))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let broken: SessionManager<PostgresAdapter<PgPool>> = SessionManager::new(
        PostgresAdapter::new(pool(&f.db).await)
            .with_table_names(TableNames::new("missing_u", "missing_s").unwrap()),
    );
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    // The fixture's own setup is not counted.
    drop(Recorded::take(&snapshotter));

    let s1 = sign_in(&m, &alice).await;
    let s2 = sign_in(&m, &alice).await;
    let s3 = sign_in(&m, &bob).await;
    // Two rotations; a re-authentication keeping the token is none.
    let s3 = m.rotate_session(&s3.session).await.unwrap().unwrap();
    let s3 = m.reauthenticate(&s3.session).await.unwrap().unwrap();
    let kept = m.reauthenticate_keeping_token(&s3.session).await.unwrap();
    assert!(kept.is_some());
    for _ in 0..3 {
        assert!(validated(&m, s1.token.as_str()).await.is_some());
    }
    let unknown = "a".repeat(40);
    assert!(m.validate_session(&unknown).await.unwrap().is_none());
    assert!(m.validate_session("not a token").await.unwrap().is_none());
    // Extended (valid, and counted as extended), then s2 expired and deleted.
    clock.advance(Duration::days(20));
    assert_eq!(validated(&m, s1.token.as_str()).await, Some(true));
    clock.advance(Duration::days(11));
    assert_eq!(validated(&m, s2.token.as_str()).await, None);
    assert!(broken.validate_session(&unknown).await.is_err());
    assert!(
        broken
            .create_session(alice.clone(), Attributes::new())
            .await
            .is_err()
    );
    // One row each; the second logout deletes nothing.
    m.invalidate_session(&s1.session.id).await.unwrap();
    m.invalidate_session(&s1.session.id).await.unwrap();
    assert_eq!(m.invalidate_user_sessions(&bob).await.unwrap(), 1);
    let s4 = sign_in(&m, &alice).await;
    f.db.exec("UPDATE user_session SET expires_at = now() - interval '1 day'")
        .await;
    clock.set(chrono::Utc::now());
    assert_eq!(m.delete_expired_sessions().await.unwrap(), 1);
    let r = Recorded::take(&snapshotter);

    let outcomes = r.by_label(VALIDATIONS);
    let expected: BTreeMap<String, u64> = [
        ("valid", 4),
        ("unknown", 1),
        ("malformed", 1),
        ("expired", 1),
        ("error", 1),
    ]
    .map(|(o, n)| (o.to_owned(), n))
    .into();
    assert_eq!(outcomes, expected);
    assert_eq!(r.counter(SESSIONS_EXTENDED, &[]), 1);
    assert_eq!(r.counter(SESSIONS_CREATED, &[]), 4);
    assert_eq!(r.counter(SESSIONS_ROTATED, &[]), 2);
    let deleted = r.by_label(SESSIONS_DELETED);
    let expected: BTreeMap<String, u64> =
        [("ended", 1), ("logout", 1), ("user", 1), ("cleanup", 1)]
            .map(|(o, n)| (o.to_owned(), n))
            .into();
    assert_eq!(deleted, expected);
    let errors = [("operation", "validate_session"), ("kind", "database")];
    assert_eq!(r.counter(ERRORS, &errors), 1, "{:?}", r.0.keys());
    let errors = [("operation", "create_session"), ("kind", "database")];
    assert_eq!(r.counter(ERRORS, &errors), 1, "{:?}", r.0.keys());

    // A statement each: 4 creates, 6 reads (the malformed token makes none),
    // 1 extension, 1 delete of s2, 3 deletes, the cleanup's one.
    let statements = r.samples(STATEMENT_DURATION);
    assert!(statements.len() >= 16, "{}", statements.len());
    assert!(
        statements.iter().all(|s| (0.0..10.0).contains(s)),
        "{statements:?}"
    );
    let waits = r.samples(POOL_CHECKOUT_WAIT);
    assert!(waits.len() >= 16, "{}", waits.len());
    assert!(waits.iter().all(|s| (0.0..5.0).contains(s)), "{waits:?}");
    // Set at the last checkout: the connection lent then was in use.
    let in_use = r.gauge(
        POOL_CONNECTIONS,
        &[("pool", "default"), ("state", "in_use")],
    );
    let idle = r.gauge(POOL_CONNECTIONS, &[("pool", "default"), ("state", "idle")]);
    assert_eq!(in_use, 1.0);
    let open = m.adapter().source().state().connections;
    assert_eq!(in_use + idle, f64::from(open));

    let ids = [&s1, &s2, &s3, &s4].map(|s| s.session.id.as_str().to_owned());
    let tokens = [&s1, &s2, &s3, &s4].map(|s| s.token.as_str().to_owned());
    let mut secrets: Vec<&str> = ids.iter().chain(&tokens).map(String::as_str).collect();
    secrets.extend([alice.as_str(), bob.as_str(), unknown.as_str()]);
    r.assert_no_label_in(&secrets);
}

#[tokio::test]
async fn idle_and_absolute_limits_are_told_apart() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(pool(&f.db).await))
        .with_clock(clock.clone())
        .with_idle_timeout(Duration::hours(1))
        .with_absolute_lifetime(Duration::days(1))
        .build()
        .unwrap();
    let alice = f.create_user("alice").await;

    let idle = sign_in(&m, &alice).await;
    clock.advance(Duration::hours(1));
    assert_eq!(validated(&m, idle.token.as_str()).await, None);
    // Used every half hour, until a day after it was created.
    let old = sign_in(&m, &alice).await;
    for _ in 0..47 {
        clock.advance(Duration::minutes(30));
        assert!(validated(&m, old.token.as_str()).await.is_some());
    }
    clock.advance(Duration::minutes(30));
    assert_eq!(validated(&m, old.token.as_str()).await, None);

    let r = Recorded::take(&snapshotter);
    assert_eq!(r.counter(VALIDATIONS, &outcome("idle")), 1);
    assert_eq!(r.counter(VALIDATIONS, &outcome("absolute")), 1);
    assert_eq!(r.counter(VALIDATIONS, &outcome("valid")), 47);
    assert_eq!(r.counter(VALIDATIONS, &outcome("expired")), 0);
    assert_eq!(r.counter(SESSIONS_DELETED, &[("reason", "ended")]), 2);
}

/// Each pool keeps its own checkout waits and gauges, under its name;
/// an unnamed pool is `default` (the other test checks that one).
#[tokio::test]
async fn pools_are_told_apart_by_name() {
    use lucia_diesel::{ConnectionSource as _, PoolOptions};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let f = default_fixture().await;
    let named = |name| PoolOptions::new().with_max_size(4).with_name(name);
    let app = named("app").build(&f.db.url).await.unwrap();
    let polls = named("cache_poll").build(&f.db.url).await.unwrap();
    drop(Recorded::take(&snapshotter));

    let first = app.connection().await.unwrap();
    let second = app.connection().await.unwrap();
    let one = polls.connection().await.unwrap();
    let r = Recorded::take(&snapshotter);
    let gauge = |pool, state| r.gauge(POOL_CONNECTIONS, &[("pool", pool), ("state", state)]);
    assert_eq!(gauge("app", "in_use"), 2.0);
    assert_eq!(gauge("cache_poll", "in_use"), 1.0);
    let waits = |pool| match r.0.get(&key(POOL_CHECKOUT_WAIT, &[("pool", pool)])) {
        Some(DebugValue::Histogram(v)) => v.len(),
        other => panic!("{pool}: {other:?}"),
    };
    assert_eq!((waits("app"), waits("cache_poll")), (2, 1));
    drop((first, second, one));
}

#[tokio::test]
async fn describe_gives_units_and_help() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    lucia_diesel::metrics::describe();
    metrics::counter!(VALIDATIONS, "outcome" => "valid").increment(1);
    metrics::histogram!(STATEMENT_DURATION).record(0.5);
    for (key, unit, help, _) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_owned();
        let help = help.unwrap_or_else(|| panic!("{name} has no help text"));
        assert!(!help.is_empty());
        let expected = if name.ends_with("_seconds") {
            metrics::Unit::Seconds
        } else {
            metrics::Unit::Count
        };
        assert_eq!(unit, Some(expected), "{name}");
    }
}

/// The cache's lookups and invalidations (feature `cache`).
#[cfg(feature = "cache")]
#[tokio::test]
async fn cache_lookups_and_invalidations() {
    use crate::cache::{CacheDb, Manager, cached, handled, stats};
    use lucia_diesel::metrics::{CACHE_INVALIDATION_DELAY, CACHE_INVALIDATIONS, CACHE_LOOKUPS};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let db = CacheDb::new(true).await;
    let m: Manager = db.instance().await;
    let alice = db.user("alice", "Alice").await;
    let s1 = sign_in(&m, &alice).await;
    let s2 = sign_in(&m, &alice).await;
    cached(&m, s1.token.as_str()).await;

    // Revoked by plain SQL: applied from the outbox by a poll.
    let before = stats(&m);
    db.exec(&format!(
        "DELETE FROM user_session WHERE id = '{}'",
        s1.session.id.as_str()
    ))
    .await;
    handled(&m, &before, 1).await;
    // Revoked by the manager: applied at once, and from the outbox later.
    m.invalidate_session(&s2.session.id).await.unwrap();

    // Read together: nothing runs in between on this one-thread runtime.
    let st = stats(&m);
    let r = Recorded::take(&snapshotter);
    assert!(st.hits >= 1 && st.misses >= 1, "{st:?}");
    assert_eq!(r.counter(CACHE_LOOKUPS, &[("result", "hit")]), st.hits);
    assert_eq!(r.counter(CACHE_LOOKUPS, &[("result", "miss")]), st.misses);
    assert_eq!(
        r.counter(CACHE_LOOKUPS, &[("result", "bypass")]),
        st.bypasses
    );
    // Counted by the poller after each poll; every hit was a valid validation.
    let valid = r.counter(VALIDATIONS, &outcome("valid"));
    assert!(valid >= st.hits, "{valid} valid, {st:?}");
    assert_eq!(r.counter(CACHE_INVALIDATIONS, &[("source", "own")]), 1);
    let polled = r.counter(CACHE_INVALIDATIONS, &[("source", "outbox")]);
    assert_eq!(polled, st.invalidations - 1, "{st:?}");
    assert!(polled >= 1, "{st:?}");
    // One sample per invalidation polled, each below the poll's own bound.
    let delays = r.samples(CACHE_INVALIDATION_DELAY);
    assert_eq!(delays.len() as u64, polled);
    assert!(delays.iter().all(|d| *d > 0.0 && *d < 20.0), "{delays:?}");

    let ids = [&s1, &s2].map(|s| s.session.id.as_str().to_owned());
    let tokens = [&s1, &s2].map(|s| s.token.as_str().to_owned());
    let mut secrets: Vec<&str> = ids.iter().chain(&tokens).map(String::as_str).collect();
    secrets.push(alice.as_str());
    r.assert_no_label_in(&secrets);
}
