//! What a cache serves: a hit answers as the database did with no query;
//! sessions due for a write go to the database; a validation that read
//! before a revocation never caches it; the events it counts.

use super::*;

/// Counts the statements a connection runs, but the outbox's polls.
#[derive(Clone, Default)]
struct SessionQueries(Arc<Mutex<usize>>);

impl diesel::connection::Instrumentation for SessionQueries {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::StartQuery { query, .. } = event
            && !query.to_string().contains("_invalidations")
        {
            *self.0.lock().unwrap() += 1;
        }
    }
}

impl SessionQueries {
    fn take(&self) -> usize {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn a_hit_makes_no_query_and_answers_as_the_database_did() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let counter = SessionQueries::default();
    let mut conn = db.connect().await;
    conn.set_instrumentation(counter.clone());
    let source = Arc::new(lucia_diesel::SingleConnection::new(conn));
    let adapter = PostgresAdapter::new(source).with_user_attributes::<Named>();
    let m = SessionManager::new(adapter)
        .with_cache(options())
        .await
        .unwrap();
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    let token = created.token.as_str();
    counter.take();
    let (session, user) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take(), 1, "a miss reads the database");
    for _ in 0..3 {
        let (again, same_user) = m.validate_session(token).await.unwrap().unwrap();
        assert_eq!(counter.take(), 0, "a hit makes no query");
        assert_eq!(again.id, session.id);
        assert_eq!(again.expires_at, session.expires_at);
        assert_eq!(again.last_seen_at, session.last_seen_at);
        assert!(!again.fresh);
        assert_eq!(same_user.attributes, user.attributes);
        assert_eq!(same_user.attributes.name, "Alice");
    }
    let s = m.cache_stats().unwrap();
    assert_eq!(
        (s.fills, s.hits, s.misses, s.bypasses),
        (1, 3, 1, 0),
        "{s:?}"
    );
    assert!(s.serving);
    // Unknown and malformed tokens are not cached: each unknown one reads.
    for _ in 0..2 {
        assert!(m.validate_session(&"a".repeat(40)).await.unwrap().is_none());
    }
    assert_eq!(counter.take(), 2);

    // Without a cache, every validation reads, as before.
    let mut conn = db.connect().await;
    conn.set_instrumentation(counter.clone());
    let plain = SessionManager::new(PostgresAdapter::new(lucia_diesel::SingleConnection::new(
        conn,
    )));
    assert!(plain.cache_stats().is_none());
    for _ in 0..2 {
        assert!(plain.validate_session(token).await.unwrap().is_some());
    }
    assert_eq!(counter.take(), 3, "a column lookup, then a read each");
}

/// A user's name whose decoding (after the row was read, before the cache
/// is filled) waits at the gate, when one is set: the validation is held
/// between its read and its fill.
#[derive(Debug, Clone)]
struct Gated;

type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);
static GATE: Mutex<Option<Gate>> = Mutex::new(None);

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Named::deserialize(d)?;
        let gate = GATE.lock().unwrap().take();
        if let Some((read, release)) = gate {
            read.send(()).unwrap();
            release.recv().unwrap();
        }
        Ok(Self)
    }
}

/// Sets the gate; returns (read, release): a validation that reads sends on
/// the first and waits for the second.
fn set_gate() -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (read_tx, read_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *GATE.lock().unwrap() = Some((read_tx, release_rx));
    (read_rx, release_tx)
}

/// Waits (on a blocking thread) for the held validation to have read.
async fn read_happened(read: mpsc::Receiver<()>) {
    let waited = tokio::task::spawn_blocking(move || read.recv_timeout(Duration::from_secs(20)));
    waited.await.unwrap().expect("the validation never read");
}

// The held validation runs on the test's own thread (multi-thread runtime:
// the poller and the orchestration run on the workers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_that_read_before_a_revocation_never_caches_it() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let b = Arc::new(db.instance::<Gated>().await);

    // 1. The revocation commits and its invalidation is handled while the
    // validation is between its read and its fill: the fill is dropped.
    let s = b
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let before = stats(&b);
    let (read, release) = set_gate();
    let orchestrate = {
        let (b, db_url) = (Arc::clone(&b), db.url.clone());
        let id = s.session.id.as_str().to_owned();
        tokio::spawn(async move {
            read_happened(read).await;
            let mut conn = AsyncPgConnection::establish(&db_url).await.unwrap();
            conn.batch_execute(&format!("DELETE FROM user_session WHERE id = '{id}'"))
                .await
                .unwrap();
            handled(&b, &before, 1).await;
            release.send(()).unwrap();
        })
    };
    // Held at the gate on this thread until the orchestration releases it.
    let result = b.validate_session(s.token.as_str()).await;
    orchestrate.await.unwrap();
    // It read the row before the revocation: valid for this request.
    assert!(result.unwrap().is_some());
    let after = stats(&b);
    assert_eq!(after.dropped_fills, before.dropped_fills + 1, "{after:?}");
    assert_eq!(after.fills, before.fills);
    assert!(!valid(&b, s.token.as_str()).await, "never served after");

    // 2. The revocation's commit is held until the validation has read the
    // row and filled the cache: the invalidation that follows empties it.
    let s = b.create_session(alice, Attributes::new()).await.unwrap();
    let mut tx = db.connect().await;
    tx.batch_execute(&format!(
        "BEGIN; DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await
    .unwrap();
    let before = stats(&b);
    assert!(
        valid(&b, s.token.as_str()).await,
        "the delete is not committed"
    );
    assert_eq!(stats(&b).fills, before.fills + 1);
    tx.batch_execute("COMMIT").await.unwrap();
    handled(&b, &before, 1).await;
    assert!(!valid(&b, s.token.as_str()).await, "never served after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_due_for_a_write_or_expired_go_to_the_database() {
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let clock = ManualClock::new();
    let m: Manager = SessionManager::builder(PostgresAdapter::new(db.pool().await))
        .with_clock(clock.clone())
        .build()
        .unwrap()
        .with_cache(options())
        .await
        .unwrap();
    let s = m.create_session(alice, Attributes::new()).await.unwrap();
    let token = s.token.as_str();
    cached(&m, token).await;

    // Activity to record (the default resolution is 5 minutes): written,
    // and cached as written (a recorded use invalidates nothing).
    clock.advance(chrono::Duration::minutes(6));
    let before = stats(&m);
    let (got, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, clock.get());
    let after = stats(&m);
    assert_eq!((after.hits, after.fills), (before.hits, before.fills + 1));
    let (again, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(again.last_seen_at, clock.get());
    assert_eq!(stats(&m).hits, before.hits + 1);

    // In the second half of its lifetime: extended by the database, then
    // served from memory with the new expiry.
    clock.advance(chrono::Duration::days(16));
    let before = stats(&m);
    let (got, _) = m.validate_session(token).await.unwrap().unwrap();
    assert!(got.fresh);
    assert_eq!(stats(&m).hits, before.hits);
    let (again, _) = m.validate_session(token).await.unwrap().unwrap();
    assert_eq!((again.expires_at, again.fresh), (got.expires_at, false));
    assert_eq!(stats(&m).hits, before.hits + 1);

    // Past its expiry: invalid (and deleted), though it was cached.
    clock.advance(chrono::Duration::days(31));
    let before = stats(&m);
    assert!(!valid(&m, token).await);
    assert_eq!(stats(&m).hits, before.hits);
    assert_eq!(
        crate::support::scalar(
            &mut db.connect().await,
            "SELECT count(*) AS n FROM user_session"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cache_events_are_countable_and_carry_no_secret() {
    use crate::support::capture::Capture;
    use sha2::Digest as _;
    let db = CacheDb::new(true).await;
    let alice = db.user("alice", "Alice").await;
    let capture = Capture::start();
    let m = db.instance::<Attributes>().await;
    let s = m.create_session(alice, Attributes::new()).await.unwrap();
    cached(&m, s.token.as_str()).await;
    let before = stats(&m);
    db.exec(&format!(
        "DELETE FROM user_session WHERE id = '{}'",
        s.session.id.as_str()
    ))
    .await;
    handled(&m, &before, 1).await;
    assert!(!valid(&m, s.token.as_str()).await);
    let lines = capture.lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert!(count("event=hit") >= 1, "{lines:#?}");
    assert!(count("event=miss") >= 2, "{lines:#?}");
    assert_eq!(count("event=invalidate of=session"), 1, "{lines:#?}");
    let digest = hex::encode(sha2::Sha256::digest(s.session.id.as_str()));
    for line in &lines {
        for secret in [s.token.as_str(), s.session.id.as_str(), &digest] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}
