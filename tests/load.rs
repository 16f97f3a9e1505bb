//! A bounded load test: 32 concurrent clients run a mixed workload (create,
//! validate, extend, invalidate, list, revoke all) for `LOAD_SECS` seconds
//! (default 20) with zero unexpected errors and zero lost sessions.
//!
//! Each client owns two users, so it knows exactly which of their sessions
//! must exist (user b's are revoked all at once now and then, user a's only
//! one by one): every session whose creation returned `Ok` must validate at
//! the end unless the client invalidated it, and then it must not.
//! Extension is exercised with a time-lapse clock: over the run, the
//! manager's time moves 20 days of the 30-day lifetime, so sessions made
//! early are extended when used late, and none expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use lucia_diesel::{
    Attributes, Clock, PgPool, PoolOptions, PostgresAdapter, SessionManager, SessionToken,
};

use crate::support::TestDb;

type Manager = SessionManager<PostgresAdapter<PgPool>>;

const CLIENTS: usize = 32;
/// How far the manager's clock moves over the run (of a 30-day lifetime).
const SIMULATED_DAYS: i64 = 20;
/// The longest one call may take before it counts as hung.
const CALL_BOUND: Duration = Duration::from_secs(10);

fn load_secs() -> u64 {
    std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20)
        .max(1)
}

/// Real time since `start`, sped up so that `run` maps to
/// [`SIMULATED_DAYS`], and stopped there.
#[derive(Debug)]
struct TimeLapse {
    start: Instant,
    run: Duration,
    base: DateTime<Utc>,
}

impl Clock for TimeLapse {
    fn now(&self) -> DateTime<Utc> {
        let fraction = (self.start.elapsed().as_secs_f64() / self.run.as_secs_f64()).min(1.0);
        let micros = (fraction * (SIMULATED_DAYS * 86_400_000_000) as f64) as i64;
        self.base + chrono::Duration::microseconds(micros)
    }
}

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Tracked {
    token: SessionToken,
    id: lucia_diesel::SessionId,
    user: String,
}

#[derive(Default)]
struct Report {
    ops: HashMap<&'static str, u64>,
    extended: u64,
    alive: Vec<Tracked>,
    dead: Vec<Tracked>,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }
}

async fn bounded<T>(op: impl Future<Output = lucia_diesel::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_BOUND, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err(format!("hung for {CALL_BOUND:?}")),
    }
}

async fn client(i: usize, m: Arc<Manager>, until: Instant) -> Report {
    let users = [format!("load-{i}-a"), format!("load-{i}-b")];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    let mut r = Report::default();
    while Instant::now() < until {
        let roll = rng.below(100);
        let user = &users[rng.below(2)];
        let op = match roll {
            0..20 => "create",
            20..70 => "validate",
            70..76 => "invalidate",
            76..88 => "list",
            88..89 => "invalidate_user",
            _ => "validate_unknown",
        };
        let op = match op {
            "validate" | "invalidate" if r.alive.is_empty() => "create",
            op => op,
        };
        *r.ops.entry(op).or_default() += 1;
        match op {
            "create" => match bounded(m.create_session(user.clone(), Attributes::new())).await {
                Ok(c) => r.alive.push(Tracked {
                    id: c.session.id,
                    token: c.token,
                    user: user.clone(),
                }),
                Err(e) => r.fail(format!("create: {e}")),
            },
            "validate" => {
                let s = &r.alive[rng.below(r.alive.len())];
                match bounded(m.validate_session(s.token.as_str())).await {
                    Ok(Some((session, u))) if session.id == s.id && u.id == s.user => {
                        r.extended += u64::from(session.fresh);
                    }
                    Ok(other) => {
                        let got = other.map(|(s, u)| (s.id, u.id));
                        r.fail(format!("validate: a live session came back as {got:?}"));
                    }
                    Err(e) => r.fail(format!("validate: {e}")),
                }
            }
            "invalidate" => {
                let s = r.alive.swap_remove(rng.below(r.alive.len()));
                match bounded(m.invalidate_session(&s.id)).await {
                    Ok(()) => r.dead.push(s),
                    Err(e) => {
                        r.fail(format!("invalidate: {e}"));
                        r.alive.push(s);
                    }
                }
            }
            "list" => match bounded(m.get_user_sessions(user)).await {
                Ok(listed) => {
                    let mut got: Vec<_> = listed.into_iter().map(|s| s.id).collect();
                    let mut want: Vec<_> = r
                        .alive
                        .iter()
                        .filter(|s| &s.user == user)
                        .map(|s| s.id.clone())
                        .collect();
                    got.sort();
                    want.sort();
                    if got != want {
                        r.fail(format!(
                            "list: {} sessions listed, {} expected",
                            got.len(),
                            want.len()
                        ));
                    }
                }
                Err(e) => r.fail(format!("list: {e}")),
            },
            "invalidate_user" => {
                // Only user b's: user a's sessions live long enough to be extended.
                let user = &users[1];
                let mine = r.alive.iter().filter(|s| &s.user == user).count() as u64;
                match bounded(m.invalidate_user_sessions(user)).await {
                    Ok(n) if n == mine => {
                        let (gone, kept) = std::mem::take(&mut r.alive)
                            .into_iter()
                            .partition(|s| &s.user == user);
                        r.alive = kept;
                        r.dead.extend::<Vec<_>>(gone);
                    }
                    Ok(n) => r.fail(format!("invalidate_user: {n} deleted, {mine} expected")),
                    Err(e) => r.fail(format!("invalidate_user: {e}")),
                }
            }
            "validate_unknown" => {
                // A replayed token of an invalidated session, or a stranger's.
                let token = match r.dead.len() {
                    0 => SessionToken::generate().unwrap(),
                    n => r.dead[rng.below(n)].token.clone(),
                };
                match bounded(m.validate_session(token.as_str())).await {
                    Ok(None) => {}
                    Ok(Some(_)) => r.fail("an invalid token validated".into()),
                    Err(e) => r.fail(format!("validate_unknown: {e}")),
                }
            }
            _ => {}
        }
    }
    r
}

/// Checks one client's sessions at the end: the live ones validate, the
/// invalidated ones do not.
async fn verify(m: Arc<Manager>, r: &mut Report) {
    for s in &r.alive {
        match bounded(m.validate_session(s.token.as_str())).await {
            Ok(Some((session, _))) if session.id == s.id => {}
            other => {
                let what = format!(
                    "lost: a live session came back as {:?}",
                    other.map(|o| o.is_some())
                );
                r.failures.push(what);
            }
        }
    }
    for s in &r.dead {
        match bounded(m.validate_session(s.token.as_str())).await {
            Ok(None) => {}
            other => {
                let what = format!(
                    "an invalidated session came back as {:?}",
                    other.map(|o| o.is_some())
                );
                r.failures.push(what);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_of_32_clients_loses_nothing() {
    let db = TestDb::new().await;
    lucia_diesel::migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    db.exec(&format!(
        "INSERT INTO auth_user (id) SELECT 'load-' || c || '-' || u \
         FROM generate_series(0, {}) c, unnest(ARRAY['a', 'b']) u",
        CLIENTS - 1
    ))
    .await;
    let secs = load_secs();
    let run = Duration::from_secs(secs);
    let clock = TimeLapse {
        start: Instant::now(),
        run,
        base: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
    };
    // The defaults: 10 connections for 32 clients, 5 s checkout timeout.
    let pool = PoolOptions::new().build(&db.url).await.unwrap();
    let m = Arc::new(
        SessionManager::builder(PostgresAdapter::new(pool))
            .with_clock(clock)
            .build()
            .unwrap(),
    );

    let until = Instant::now() + run;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(i, Arc::clone(&m), until)))
        .collect();
    let mut reports = Vec::new();
    for c in clients {
        reports.push(c.await.unwrap());
    }
    let checks: Vec<_> = reports
        .into_iter()
        .map(|mut r| {
            let m = Arc::clone(&m);
            tokio::spawn(async move {
                verify(m, &mut r).await;
                r
            })
        })
        .collect();
    let mut ops: HashMap<&str, u64> = HashMap::new();
    let (mut alive, mut dead, mut extended) = (0, 0, 0);
    let mut failures = Vec::new();
    for c in checks {
        let r = c.await.unwrap();
        for (op, n) in r.ops {
            *ops.entry(op).or_default() += n;
        }
        alive += r.alive.len();
        dead += r.dead.len();
        extended += r.extended;
        failures.extend(r.failures);
    }
    let total: u64 = ops.values().sum();
    eprintln!(
        "load: {CLIENTS} clients, {secs} s, {total} operations ({:.0}/s), {ops:?}; \
         {alive} live and {dead} invalidated sessions at the end, {extended} extensions",
        total as f64 / secs as f64
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        extended > 0,
        "sessions made early were extended when used late"
    );
    assert!(alive > 0 && dead > 0);
    let rows = {
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT count(*) AS n FROM user_session")
            .get_result::<N>(&mut db.connect().await)
            .await
            .unwrap()
            .n
    };
    assert_eq!(
        usize::try_from(rows).unwrap(),
        alive,
        "exactly the live sessions are stored"
    );
}
