//! Restart and crash under load: 32 clients keep creating, validating and
//! invalidating sessions while the server goes down and comes back.

use super::*;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    transient: AtomicU64,
    /// Each typed transient error, with when it happened.
    errors: Mutex<Vec<(Instant, String)>>,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    fn record<T>(&self, what: &str, result: Result<lucia_diesel::Result<T>, ()>) -> Option<T> {
        match result {
            Ok(Ok(value)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Ok(Err(e)) if e.is_transient() => {
                self.transient.fetch_add(1, Ordering::Relaxed);
                self.errors
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("{what}: {e}")));
                None
            }
            Ok(Err(e)) => {
                self.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{what}: {e:?}"));
                None
            }
            Err(()) => {
                self.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{what} hung for {CALL_BOUND:?}"));
                None
            }
        }
    }
}

struct Load {
    m: Arc<Manager>,
    known: Arc<Vec<(SessionToken, String)>>,
    created: Arc<Mutex<Vec<(SessionToken, String)>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

/// One of 32 clients: creates a session every 4th call, validates a
/// known-valid one otherwise, backing off briefly after an error.
async fn client(i: usize, load: Arc<Load>) {
    let mut n = i;
    while !load.stop.load(Ordering::Relaxed) {
        n += 1;
        let ok = if n.is_multiple_of(4) {
            let user = user(i);
            let r = tokio::time::timeout(
                CALL_BOUND,
                load.m.create_session(user.clone(), Attributes::new()),
            )
            .await
            .map_err(drop);
            match load.tally.record("create", r) {
                Some(c) => {
                    load.created.lock().unwrap().push((c.token, user));
                    true
                }
                None => false,
            }
        } else {
            let (token, user) = &load.known[n % load.known.len()];
            let r = tokio::time::timeout(CALL_BOUND, load.m.validate_session(token.as_str()))
                .await
                .map_err(drop);
            match load.tally.record("validate", r) {
                Some(Some((_, u))) if &u.id == user => true,
                Some(other) => {
                    load.tally.unexpected.lock().unwrap().push(format!(
                        "a valid session came back as {:?}",
                        other.map(|(_, u)| u.id)
                    ));
                    false
                }
                None => false,
            }
        };
        if !ok {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Validates every session in `sessions` (16 at a time); all must be valid.
async fn assert_all_valid(m: &Arc<Manager>, sessions: Vec<(SessionToken, String)>) {
    let sessions = Arc::new(sessions);
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (m, sessions, next) = (Arc::clone(m), Arc::clone(&sessions), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap();
                    let Some((token, user)) = sessions.get(i) else {
                        return;
                    };
                    let found = bounded("validate", m.validate_session(token.as_str()))
                        .await
                        .unwrap_or_else(|e| panic!("after recovery: {e:?}"));
                    assert_eq!(
                        found.map(|(_, u)| u.id).as_ref(),
                        Some(user),
                        "session {i} lost"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `pg_ctl restart -m fast`.
    Restart,
    /// `pg_ctl stop -m immediate`, down for a second, then start (crash recovery).
    Crash,
}

async fn under_load(fault: Fault) {
    let mut server = Server::start().await;
    // Commits must survive a crash: the test cluster turns this off for speed.
    server
        .exec("ALTER SYSTEM SET synchronous_commit = on")
        .await;
    server.exec("SELECT pg_reload_conf()").await;
    let pool = options()
        .with_max_size(16)
        .build(&server.app_url(""))
        .await
        .unwrap();
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(pool)));
    let mut known = Vec::new();
    for i in 0..64 {
        let c = m.create_session(user(i), Attributes::new()).await.unwrap();
        known.push((c.token, user(i)));
    }
    let load = Arc::new(Load {
        m: Arc::clone(&m),
        known: Arc::new(known),
        created: Arc::default(),
        tally: Arc::default(),
        stop: Arc::default(),
    });
    let clients: Vec<_> = (0..32)
        .map(|i| tokio::spawn(client(i, Arc::clone(&load))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok_before = load.tally.ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "the load runs");
    let started = "SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8 AS n";
    let first_start = server.count(started).await;

    match fault {
        Fault::Restart => server.control(|c| c.restart()).await,
        Fault::Crash => {
            server.control(|c| c.stop("immediate")).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.control(Cluster::start_again).await;
        }
    }

    // Recovery: a known session validates again, within a bound.
    let down_since = Instant::now();
    loop {
        let r = bounded("validate", m.validate_session(load.known[0].0.as_str())).await;
        if let Ok(Some(_)) = r {
            break;
        }
        assert!(
            down_since.elapsed() < Duration::from_secs(20),
            "no recovery: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stale connections are gone within moments; then a quiet second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = Instant::now();
    let transient_settled = load.tally.transient.load(Ordering::Relaxed);
    let ok_settled = load.tally.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let unexpected = load.tally.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "untyped or wrong results: {unexpected:#?}"
    );
    let transient = load.tally.transient.load(Ordering::Relaxed);
    let ok = load.tally.ok.load(Ordering::Relaxed);
    let replaced = m.adapter().source().state().statistics;
    eprintln!(
        "{fault:?}: {ok} ok, {transient} typed transient errors; connections: {} created, {} dropped as broken",
        replaced.connections_created,
        replaced.connections_closed_broken + replaced.connections_closed_invalid
    );
    // The fault happened, and every connection of the pool died with it.
    assert_ne!(
        server.count(started).await,
        first_start,
        "the server restarted"
    );
    assert!(
        replaced.connections_closed_broken + replaced.connections_closed_invalid >= 16,
        "{replaced:?}"
    );
    // A restart can pass unnoticed (queries in flight finish, connections
    // that die between queries are replaced at checkout); a crash that
    // keeps the server down longer than the checkout timeout cannot.
    if fault == Fault::Crash {
        assert!(transient > 0, "the crash was felt by the clients");
    }
    let late: Vec<_> = load
        .tally
        .errors
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= settled)
        .map(|(at, e)| format!("+{:?} {e}", *at - settled))
        .collect();
    assert_eq!(
        transient, transient_settled,
        "no errors once recovered (full recovery): {late:#?}"
    );
    assert!(ok > ok_settled + 100, "the load ran on after recovery");

    // Nothing lost: every session created before or during the fault validates.
    let mut all: Vec<_> = load
        .known
        .iter()
        .map(|(t, u)| (t.clone(), u.clone()))
        .collect();
    let created: Vec<_> = load.created.lock().unwrap().drain(..).collect();
    assert!(!created.is_empty());
    all.extend(created);
    assert_all_valid(&m, all).await;
    assert_healthy(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_recovers_with_nothing_lost() {
    under_load(Fault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_recovers_with_nothing_lost() {
    under_load(Fault::Crash).await;
}
