//! Session rotation and re-authentication (issue #23) on a real
//! PostgreSQL: what a rotated session keeps, what is refused, the cost in
//! statements, crashes before, inside and after the one `UPDATE`, racing
//! validations of the old token, the adapter's provided (non-atomic)
//! rotation, and the `authenticated_at` migration.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use lucia_diesel::{
    Adapter, Attributes, CreatedSession, DatabaseSession, DatabaseUser, Error, Liveness, PgPool,
    PoolOptions, PostgresAdapter, SchemaProblem, Session, SessionAndUser, SessionId,
    SessionManager, SessionManagerBuilder, SessionRotation, SessionToken, TableName, TableNames,
    TokenStorage, migrations,
};
use serde_json::json;

use crate::adapter_suite::{Fixture, default_fixture, pool};
use crate::round_trips::counted;
use crate::support::clock::ManualClock;
use crate::support::{TestDb, admin, scalar, server_url, unique_name};

type Manager = SessionManager<PostgresAdapter<PgPool>>;
type Builder = SessionManagerBuilder<PostgresAdapter<PgPool>>;

const US: Duration = Duration::microseconds(1);

/// A manager on the fixture's tables (a pool of 4) with `clock`.
async fn manager(
    f: &Fixture<PostgresAdapter<PgPool>>,
    clock: &ManualClock,
    configure: impl FnOnce(Builder) -> Builder,
) -> Manager {
    let builder =
        SessionManager::builder(PostgresAdapter::new(pool(&f.db).await)).with_clock(clock.clone());
    configure(builder).build().unwrap()
}

fn country(c: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert("country".into(), json!(c));
    a
}

/// A session row as the table holds it.
#[derive(diesel::QueryableByName, Debug, Clone, PartialEq)]
struct Stored {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    country: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    last_seen_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    authenticated_at: DateTime<Utc>,
}

/// The session rows (default tables) that match `filter`, by id.
async fn rows_where(db: &TestDb, filter: &str) -> Vec<Stored> {
    let mut conn = db.connect().await;
    diesel::sql_query(format!(
        "SELECT id, user_id, country, expires_at, created_at, last_seen_at, authenticated_at \
         FROM user_session WHERE {filter} ORDER BY id"
    ))
    .load::<Stored>(&mut conn)
    .await
    .unwrap()
}

/// Every session row of `user` (default tables), by id.
async fn rows_of(db: &TestDb, user: &str) -> Vec<Stored> {
    rows_where(db, &format!("user_id = '{user}'")).await
}

/// The one session row of `user`; fails unless there is exactly one.
async fn only_row_of(db: &TestDb, user: &str) -> Stored {
    let mut rows = rows_of(db, user).await;
    assert_eq!(
        rows.len(),
        1,
        "{user} has exactly one session row: {rows:?}"
    );
    rows.remove(0)
}

async fn all_rows(db: &TestDb) -> Vec<Stored> {
    rows_where(db, "true").await
}

/// The one session row of `user` is `session`'s.
async fn assert_only_row_is(db: &TestDb, user: &str, session: &Session<String, Attributes>) {
    assert_eq!(only_row_of(db, user).await.id, session.id.as_str());
}

/// The user a token validates to, if any.
async fn user_of(m: &Manager, token: &str) -> Option<String> {
    m.validate_session(token).await.unwrap().map(|(s, u)| {
        assert_eq!(s.user_id, u.id);
        u.id
    })
}

/// A fixture with user `alice`, and a manager on its tables on a clock of
/// its own (`configure` sets the rest).
async fn alice_and_manager(
    configure: impl FnOnce(Builder) -> Builder,
) -> (
    Fixture<PostgresAdapter<PgPool>>,
    ManualClock,
    Manager,
    String,
) {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, configure).await;
    let alice = f.create_user("alice").await;
    (f, clock, m, alice)
}

/// A session of `user` with the attribute `country` `c`.
async fn sign_in(m: &Manager, user: &str, c: &str) -> CreatedSession<String, Attributes> {
    m.create_session(user.to_owned(), country(c)).await.unwrap()
}

/// `token` validates to nothing.
async fn dead<A: Adapter>(m: &SessionManager<A>, token: &str) -> bool {
    m.validate_session(token).await.unwrap().is_none()
}

/// What `token` validates to; fails with `what` unless it is valid.
async fn validated<A: Adapter>(
    m: &SessionManager<A>,
    token: &str,
    what: &str,
) -> (
    Session<A::UserId, A::SessionAttributes>,
    DatabaseUser<A::UserId, A::UserAttributes>,
) {
    m.validate_session(token).await.unwrap().expect(what)
}

/// `reauthenticate_keeping_token` refuses `session`.
async fn keeping_token_refuses<A: Adapter>(
    m: &SessionManager<A>,
    session: &Session<A::UserId, A::SessionAttributes>,
) -> bool {
    m.reauthenticate_keeping_token(session)
        .await
        .unwrap()
        .is_none()
}

// ---------------------------------------------------------------------------
// 1. What a rotated session keeps.

#[tokio::test]
async fn rotation_keeps_the_session_and_retires_the_old_token() {
    let (f, clock, m, alice) = alice_and_manager(|b| b).await;
    let bob = f.create_user("bob").await;
    let t0 = clock.get();
    let old = sign_in(&m, &alice, "nl").await;
    let bobs = sign_in(&m, &bob, "de").await;
    let bob_row = only_row_of(&f.db, &bob).await;
    // A use recorded 10 minutes in, so last_seen_at differs from created_at.
    clock.advance(Duration::minutes(10));
    let (seen, _) = validated(&m, old.token.as_str(), "valid").await;
    assert_eq!(seen.last_seen_at, t0 + Duration::minutes(10));
    let before = only_row_of(&f.db, &alice).await;
    assert_eq!(before.authenticated_at, t0);

    // Two minutes later (within the activity resolution: nothing to write).
    clock.advance(Duration::minutes(2));
    let rotated = m
        .rotate_session(&seen)
        .await
        .unwrap()
        .expect("a live session rotates");
    assert_ne!(rotated.token.as_str(), old.token.as_str());
    assert_ne!(rotated.session.id, old.session.id);
    assert_eq!(rotated.session.id, m.session_id(rotated.token.as_str()));
    let s = &rotated.session;
    assert!(s.fresh, "a rotated session is sent again");
    assert_eq!(s.user_id, alice);
    assert_eq!(s.attributes, country("nl"));
    assert_eq!(
        (
            s.expires_at,
            s.created_at,
            s.last_seen_at,
            s.authenticated_at
        ),
        (
            before.expires_at,
            t0,
            t0 + Duration::minutes(10),
            before.authenticated_at
        )
    );

    // The row moved: same columns, new id, and still the only one.
    let after = only_row_of(&f.db, &alice).await;
    assert_eq!(
        after,
        Stored {
            id: s.id.as_str().to_owned(),
            ..before
        }
    );

    assert!(dead(&m, old.token.as_str()).await, "the old token is dead");
    let (v, u) = validated(&m, rotated.token.as_str(), "the new token validates").await;
    assert_eq!(u.id, alice);
    assert_eq!(v.id, s.id);
    assert!(!v.fresh);
    assert_eq!(v.attributes, country("nl"));
    assert_eq!(
        (
            v.expires_at,
            v.created_at,
            v.last_seen_at,
            v.authenticated_at
        ),
        (
            s.expires_at,
            s.created_at,
            s.last_seen_at,
            s.authenticated_at
        )
    );
    // The old token stays dead after the new one was used.
    assert!(dead(&m, old.token.as_str()).await);
    // Bob's session: untouched.
    assert_eq!(only_row_of(&f.db, &bob).await, bob_row);
    assert_eq!(user_of(&m, bobs.token.as_str()).await, Some(bob));
}

#[tokio::test]
async fn a_rotated_session_rotates_again_and_lists_once() {
    let (_f, _clock, m, alice) = alice_and_manager(|b| b).await;
    let first = sign_in(&m, &alice, "fr").await;
    let second = m.rotate_session(&first.session).await.unwrap().unwrap();
    let third = m.rotate_session(&second.session).await.unwrap().unwrap();
    // The session value of a token already rotated away is refused.
    assert!(m.rotate_session(&first.session).await.unwrap().is_none());
    assert!(m.rotate_session(&second.session).await.unwrap().is_none());
    let tokens = [&first.token, &second.token, &third.token];
    let mut valid = Vec::new();
    for t in tokens {
        valid.push(user_of(&m, t.as_str()).await.is_some());
    }
    assert_eq!(valid, [false, false, true]);
    let listed = m.get_user_sessions(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, third.session.id);
    assert_eq!(listed[0].created_at, first.session.created_at);
    assert_eq!(listed[0].attributes, country("fr"));
}

// ---------------------------------------------------------------------------
// 2. One statement each.

#[tokio::test]
async fn rotation_and_reauthentication_are_one_cached_statement_each() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let (source, counter) = counted(&f.db).await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(PostgresAdapter::new(source))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let created = m.create_session(alice, country("nl")).await.unwrap();
    counter.take();

    let rotated = m.rotate_session(&created.session).await.unwrap().unwrap();
    assert_eq!(
        counter.take(),
        (1, 1),
        "rotate_session: one statement, prepared"
    );
    let rotated = m.rotate_session(&rotated.session).await.unwrap().unwrap();
    assert_eq!(counter.take(), (1, 0), "rotate_session again: cached");
    clock.advance(Duration::minutes(1));
    let re = m.reauthenticate(&rotated.session).await.unwrap().unwrap();
    assert_eq!(
        counter.take(),
        (1, 0),
        "reauthenticate: one cached statement"
    );
    clock.advance(Duration::minutes(1));
    let kept = m
        .reauthenticate_keeping_token(&re.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter.take(),
        (1, 0),
        "reauthenticate_keeping_token: one cached statement"
    );
    assert_eq!(kept.id, re.session.id);
    // Refusals cost the same one statement, and nothing else.
    assert!(m.rotate_session(&created.session).await.unwrap().is_none());
    assert_eq!(counter.take(), (1, 0), "an unknown session: one statement");
    assert!(m.reauthenticate(&created.session).await.unwrap().is_none());
    assert_eq!(counter.take(), (1, 0));
    // A well-formed check that needs no database.
    assert!(m.is_recent_sign_in(&kept, Duration::minutes(1)));
    assert_eq!(counter.take(), (0, 0), "is_recent_sign_in: no query");
}

// ---------------------------------------------------------------------------
// 3. Refusals: no new token, nothing changed.

#[tokio::test]
async fn rotating_an_unknown_session_gives_none() {
    let (f, _clock, m, alice) = alice_and_manager(|b| b).await;
    let other = sign_in(&m, &alice, "nl").await;
    let gone = sign_in(&m, &alice, "be").await;
    m.invalidate_session(&gone.session.id).await.unwrap();
    let before = all_rows(&f.db).await;
    assert!(m.rotate_session(&gone.session).await.unwrap().is_none());
    assert!(m.reauthenticate(&gone.session).await.unwrap().is_none());
    assert!(keeping_token_refuses(&m, &gone.session).await);
    assert_eq!(all_rows(&f.db).await, before, "nothing written");
    assert!(user_of(&m, gone.token.as_str()).await.is_none());
    assert_eq!(user_of(&m, other.token.as_str()).await, Some(alice));
    // A session value made up by hand (an id never stored).
    let mut forged = other.session.clone();
    forged.id = SessionId::new("0".repeat(64));
    assert!(m.rotate_session(&forged).await.unwrap().is_none());
    forged.id = SessionId::new("");
    assert!(m.rotate_session(&forged).await.unwrap().is_none());
    assert_eq!(all_rows(&f.db).await, before);
}

#[tokio::test]
async fn rotating_an_expired_session_gives_none_and_leaves_it() {
    let (f, clock, m, alice) = alice_and_manager(|b| b).await;
    let t0 = clock.get();
    let created = sign_in(&m, &alice, "nl").await;
    assert_eq!(created.session.expires_at, t0 + Duration::days(30));
    let before = all_rows(&f.db).await;
    // At its expiry (Lucia's rule: expires_at <= now is expired).
    clock.set(t0 + Duration::days(30));
    assert!(m.rotate_session(&created.session).await.unwrap().is_none());
    assert!(m.reauthenticate(&created.session).await.unwrap().is_none());
    clock.set(t0 + Duration::days(31));
    assert!(m.rotate_session(&created.session).await.unwrap().is_none());
    assert_eq!(all_rows(&f.db).await, before, "neither moved nor revived");
    assert!(user_of(&m, created.token.as_str()).await.is_none());
    // One microsecond before its expiry it rotates (a fresh session).
    let later = sign_in(&m, &alice, "nl").await;
    clock.set(later.session.expires_at - US);
    let rotated = m.rotate_session(&later.session).await.unwrap().unwrap();
    assert_eq!(rotated.session.expires_at, later.session.expires_at);
}

#[tokio::test]
async fn rotating_an_idle_session_gives_none_at_the_idle_boundary() {
    for (offset, live) in [(-US, true), (Duration::zero(), false), (US, false)] {
        let (f, clock, m, alice) =
            alice_and_manager(|b| b.with_idle_timeout(Duration::hours(1))).await;
        let created = sign_in(&m, &alice, "nl").await;
        // Far from expiry: only the idle timeout decides.
        assert_eq!(
            created.session.expires_at,
            created.session.created_at + Duration::days(30)
        );
        let before = all_rows(&f.db).await;
        clock.advance(Duration::hours(1) + offset);
        let rotated = m.rotate_session(&created.session).await.unwrap();
        assert_eq!(rotated.is_some(), live, "idle for 1 h {offset:?}");
        if live {
            assert_only_row_is(&f.db, &alice, &rotated.unwrap().session).await;
        } else {
            assert_eq!(all_rows(&f.db).await, before, "{offset:?}");
            assert!(m.reauthenticate(&created.session).await.unwrap().is_none());
        }
    }
}

#[tokio::test]
async fn rotating_a_session_past_its_absolute_lifetime_gives_none() {
    for (offset, live) in [(-US, true), (Duration::zero(), false), (US, false)] {
        let f = default_fixture().await;
        let clock = ManualClock::new();
        // Made by a manager without the limit (so it expires in 30 days),
        // rotated by one with a one-day absolute lifetime: only the
        // absolute lifetime decides.
        let plain = manager(&f, &clock, |b| b).await;
        let strict = manager(&f, &clock, |b| b.with_absolute_lifetime(Duration::days(1))).await;
        let alice = f.create_user("alice").await;
        let created = sign_in(&plain, &alice, "nl").await;
        let before = all_rows(&f.db).await;
        clock.advance(Duration::days(1) + offset);
        let rotated = strict.rotate_session(&created.session).await.unwrap();
        assert_eq!(rotated.is_some(), live, "1 day old {offset:?}");
        if live {
            // The manager without the limit would have rotated it too.
            assert_eq!(
                rotated.unwrap().session.created_at,
                created.session.created_at
            );
        } else {
            assert_eq!(all_rows(&f.db).await, before, "{offset:?}");
            assert!(
                plain
                    .rotate_session(&created.session)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }
}

#[tokio::test]
async fn rotating_with_another_users_id_gives_none_and_touches_nobody() {
    let (f, _clock, m, alice) = alice_and_manager(|b| b).await;
    let bob = f.create_user("bob").await;
    let alices = sign_in(&m, &alice, "nl").await;
    let bobs = sign_in(&m, &bob, "de").await;
    let before = all_rows(&f.db).await;

    // Alice's session presented as bob's.
    let mut forged = alices.session.clone();
    forged.user_id = bob.clone();
    assert!(m.rotate_session(&forged).await.unwrap().is_none());
    assert!(m.reauthenticate(&forged).await.unwrap().is_none());
    assert!(keeping_token_refuses(&m, &forged).await);
    // Bob's session presented as alice's.
    let mut forged = bobs.session.clone();
    forged.user_id = alice.clone();
    assert!(m.rotate_session(&forged).await.unwrap().is_none());
    // A user that does not exist.
    forged.user_id = "nobody".to_owned();
    assert!(m.rotate_session(&forged).await.unwrap().is_none());

    assert_eq!(all_rows(&f.db).await, before, "no row changed");
    assert_eq!(user_of(&m, alices.token.as_str()).await, Some(alice));
    assert_eq!(user_of(&m, bobs.token.as_str()).await, Some(bob));
}

// ---------------------------------------------------------------------------
// 4. The absolute deadline survives rotation.

#[tokio::test]
async fn rotated_sessions_keep_their_absolute_deadline() {
    let (f, clock, m, alice) =
        alice_and_manager(|b| b.with_absolute_lifetime(Duration::days(1))).await;
    let t0 = clock.get();
    let deadline = t0 + Duration::days(1);
    let created = sign_in(&m, &alice, "nl").await;
    assert_eq!(created.session.expires_at, deadline);

    clock.set(t0 + Duration::hours(12));
    let rotated = m.rotate_session(&created.session).await.unwrap().unwrap();
    assert_eq!(
        rotated.session.created_at, t0,
        "the lifetime is not restarted"
    );
    assert!(rotated.session.expires_at <= deadline);
    assert_eq!(only_row_of(&f.db, &alice).await.created_at, t0);
    // Rotating again later: still t0.
    clock.set(t0 + Duration::hours(18));
    let rotated = m.rotate_session(&rotated.session).await.unwrap().unwrap();
    assert_eq!(rotated.session.created_at, t0);
    assert!(rotated.session.expires_at <= deadline);

    clock.set(deadline - US);
    let (s, _) = validated(&m, rotated.token.as_str(), "valid until the deadline").await;
    assert_eq!(s.created_at, t0);
    assert!(s.expires_at <= deadline, "{}", s.expires_at);
    assert!(only_row_of(&f.db, &alice).await.expires_at <= deadline);

    clock.set(deadline);
    assert!(m.rotate_session(&s).await.unwrap().is_none());
    assert!(
        dead(&m, rotated.token.as_str()).await,
        "dead at created_at + 1 day"
    );
}

/// A sliding lifetime shorter than the absolute one: a rotation never moves
/// the expiry, and extensions after it stop at the original deadline.
#[tokio::test]
async fn rotation_never_extends_the_expiry() {
    let (_f, clock, m, alice) = alice_and_manager(|b| {
        b.with_session_lifetime(Duration::hours(2))
            .with_absolute_lifetime(Duration::days(1))
    })
    .await;
    let t0 = clock.get();
    let mut current = sign_in(&m, &alice, "nl").await;
    for hour in 1..24 {
        clock.set(t0 + Duration::hours(hour));
        let (s, _) = m
            .validate_session(current.token.as_str())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("invalid after {hour} h"));
        let rotated = m.rotate_session(&s).await.unwrap().unwrap();
        assert_eq!(rotated.session.expires_at, s.expires_at, "{hour} h");
        assert_eq!(rotated.session.created_at, t0);
        assert!(rotated.session.expires_at <= t0 + Duration::days(1));
        current = rotated;
    }
    clock.set(t0 + Duration::days(1));
    assert!(dead(&m, current.token.as_str()).await);
}

// ---------------------------------------------------------------------------
// 5. Crashes before, inside and after the statement.

/// A manager whose connections carry an `application_name` of their own,
/// so the test can find their backends.
async fn tagged_manager(f: &Fixture<PostgresAdapter<PgPool>>) -> (Arc<Manager>, String) {
    let app = unique_name("rot");
    let pool = PoolOptions::new()
        .with_max_size(2)
        .build(&format!("{}&application_name={app}", f.db.url))
        .await
        .unwrap();
    (
        Arc::new(SessionManager::new(PostgresAdapter::new(pool))),
        app,
    )
}

/// The pid of the one backend of `app` in `condition` (waits for it).
async fn backend_where(app: &str, condition: &str) -> i32 {
    let mut conn = admin().await;
    let deadline = Instant::now() + StdDuration::from_secs(20);
    loop {
        let pid = scalar(
            &mut conn,
            &format!(
                "SELECT COALESCE(max(pid), 0)::int8 AS n FROM pg_stat_activity \
                 WHERE application_name = '{app}' AND {condition}"
            ),
        )
        .await;
        if pid != 0 {
            return i32::try_from(pid).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no backend of {app} got to {condition}"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

async fn terminate(pid: i32) {
    let mut conn = admin().await;
    let killed = scalar(
        &mut conn,
        &format!("SELECT pg_terminate_backend({pid})::int::int8 AS n"),
    )
    .await;
    assert_eq!(killed, 1, "backend {pid} terminated");
}

/// Bounds a call so that a hang fails the test.
async fn bounded<T>(what: &str, op: impl Future<Output = T>) -> T {
    tokio::time::timeout(StdDuration::from_secs(20), op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// `m.rotate_session(session)` on a task of its own.
fn spawn_rotation(
    m: &Arc<Manager>,
    session: &Session<String, Attributes>,
) -> tokio::task::JoinHandle<lucia_diesel::Result<Option<CreatedSession<String, Attributes>>>> {
    let (m, session) = (Arc::clone(m), session.clone());
    tokio::spawn(async move { m.rotate_session(&session).await })
}

/// The rotation failed as the database went away.
fn assert_unavailable(result: lucia_diesel::Result<Option<CreatedSession<String, Attributes>>>) {
    match &result {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

/// A rotation whose backend is terminated while it waits for the row lock:
/// a typed error, and the old token (only) still valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_waiting_for_the_row_leaves_the_old_token() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let (m, app) = tagged_manager(&f).await;
    let created = sign_in(&m, &alice, "nl").await;
    let before = only_row_of(&f.db, &alice).await;

    let mut locker = f.db.connect().await;
    locker
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '30s'; BEGIN; \
             SELECT 1 FROM user_session WHERE id = '{}' FOR UPDATE",
            created.session.id.as_str()
        ))
        .await
        .unwrap();
    let call = spawn_rotation(&m, &created.session);
    let pid = backend_where(&app, "wait_event_type = 'Lock'").await;
    terminate(pid).await;
    assert_unavailable(bounded("rotate_session", call).await.expect("no panic"));
    locker.batch_execute("COMMIT").await.unwrap();

    assert_eq!(only_row_of(&f.db, &alice).await, before, "row unchanged");
    assert_eq!(
        bounded("validate", user_of(&m, created.token.as_str())).await,
        Some(alice.clone())
    );
    // The same session rotates once the database answers again.
    let rotated = bounded("rotate", m.rotate_session(&created.session))
        .await
        .unwrap()
        .unwrap();
    assert_only_row_is(&f.db, &alice, &rotated.session).await;
    assert_eq!(user_of(&m, rotated.token.as_str()).await, Some(alice));
    assert!(user_of(&m, created.token.as_str()).await.is_none());
}

/// A rotation whose backend is terminated after the row changed, before
/// the commit (a trigger stalls the statement for the marker user): the
/// change is rolled back, the old token (only) still valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_update_before_the_commit_leaves_the_old_token() {
    let f = default_fixture().await;
    let marker = f.create_user("marker").await;
    let alice = f.create_user("alice").await;
    let (m, app) = tagged_manager(&f).await;
    let created = sign_in(&m, &marker, "nl").await;
    let alices = sign_in(&m, &alice, "nl").await;
    f.db.exec(&format!(
        "CREATE TABLE stalled (id text); \
         CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id = '{marker}' THEN \
             INSERT INTO stalled VALUES (NEW.id); PERFORM pg_sleep(60); \
           END IF; RETURN NULL; END $$; \
         CREATE TRIGGER stall AFTER UPDATE ON user_session \
           FOR EACH ROW EXECUTE FUNCTION stall();"
    ))
    .await;
    let before = only_row_of(&f.db, &marker).await;

    let call = spawn_rotation(&m, &created.session);
    let pid = backend_where(&app, "wait_event = 'PgSleep'").await;
    terminate(pid).await;
    assert_unavailable(bounded("rotate_session", call).await.expect("no panic"));

    assert_eq!(only_row_of(&f.db, &marker).await, before, "rolled back");
    let mut conn = f.db.connect().await;
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) AS n FROM stalled").await,
        0,
        "the trigger's write went with the rest"
    );
    assert_eq!(
        bounded("validate", user_of(&m, created.token.as_str())).await,
        Some(marker.clone())
    );
    // Other sessions rotate meanwhile (the trigger ignores them).
    let rotated = bounded("rotate", m.rotate_session(&alices.session))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        user_of(&m, rotated.token.as_str()).await,
        Some(alice.clone())
    );
    assert_only_row_is(&f.db, &alice, &rotated.session).await;
}

/// A completed rotation: only the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_rotation_leaves_only_the_new_token() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let (m, app) = tagged_manager(&f).await;
    let created = sign_in(&m, &alice, "nl").await;
    let rotated = m.rotate_session(&created.session).await.unwrap().unwrap();
    // Every connection of the manager dies right after the commit.
    let mut conn = admin().await;
    scalar(
        &mut conn,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE application_name = '{app}'"
        ),
    )
    .await;
    assert_only_row_is(&f.db, &alice, &rotated.session).await;
    // A fresh manager (no connection of the dead pool) sees the same.
    let (fresh, _) = tagged_manager(&f).await;
    assert_eq!(user_of(&fresh, rotated.token.as_str()).await, Some(alice));
    assert!(user_of(&fresh, created.token.as_str()).await.is_none());
}

// ---------------------------------------------------------------------------
// 6. Racing validations of the old token.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validations_racing_a_rotation_never_see_another_user() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    let m = Arc::new(SessionManager::new(PostgresAdapter::new(
        PoolOptions::new()
            .with_max_size(6)
            .with_checkout_timeout(StdDuration::from_secs(30))
            .build(&f.db.url)
            .await
            .unwrap(),
    )));
    let alices = sign_in(&m, &alice, "nl").await;
    let bobs = sign_in(&m, &bob, "de").await;

    let validate = |token: &SessionToken| {
        let (m, token) = (Arc::clone(&m), token.as_str().to_owned());
        tokio::spawn(async move {
            m.validate_session(&token)
                .await
                .map(|found| found.map(|(s, u)| (s.user_id, u.id)))
        })
    };
    let mut alice_calls = Vec::new();
    let mut bob_calls = Vec::new();
    let mut rotation = None;
    for i in 0..200 {
        alice_calls.push(validate(&alices.token));
        bob_calls.push(validate(&bobs.token));
        if i == 100 {
            let (m, session) = (Arc::clone(&m), alices.session.clone());
            rotation = Some(tokio::spawn(
                async move { m.rotate_session(&session).await },
            ));
        }
    }
    let rotated = bounded("rotation", rotation.unwrap())
        .await
        .unwrap()
        .unwrap()
        .expect("the rotation succeeds");
    let (mut some, mut none) = (0, 0);
    for call in alice_calls {
        match bounded("validation", call).await.unwrap().unwrap() {
            Some(users) => {
                assert_eq!(users, (alice.clone(), alice.clone()));
                some += 1;
            }
            None => none += 1,
        }
    }
    for call in bob_calls {
        let users = bounded("validation", call).await.unwrap().unwrap();
        assert_eq!(
            users,
            Some((bob.clone(), bob.clone())),
            "bob's token is bob's"
        );
    }
    eprintln!("old token during the rotation: {some} valid, {none} not");
    assert_eq!(
        user_of(&m, rotated.token.as_str()).await,
        Some(alice.clone())
    );
    assert!(user_of(&m, alices.token.as_str()).await.is_none());
    assert_eq!(user_of(&m, bobs.token.as_str()).await, Some(bob.clone()));
    assert_only_row_is(&f.db, &alice, &rotated.session).await;
    assert_only_row_is(&f.db, &bob, &bobs.session).await;
}

// ---------------------------------------------------------------------------
// 7. Re-authentication and recent sign-ins.

#[tokio::test]
async fn reauthenticate_moves_authenticated_at_and_rotates() {
    let (f, clock, m, alice) = alice_and_manager(|b| b).await;
    let t0 = clock.get();
    let created = sign_in(&m, &alice, "nl").await;
    assert_eq!(created.session.authenticated_at, t0, "set at creation");
    assert_eq!(only_row_of(&f.db, &alice).await.authenticated_at, t0);

    // Nanoseconds on the clock: cut to microseconds, as stored.
    clock.set(t0 + Duration::hours(1) + Duration::nanoseconds(123_456_789));
    let at = t0 + Duration::hours(1) + Duration::microseconds(123_456);
    let re = m.reauthenticate(&created.session).await.unwrap().unwrap();
    assert_ne!(re.token.as_str(), created.token.as_str());
    assert!(re.session.fresh);
    assert_eq!(re.session.authenticated_at, at);
    assert_eq!(
        (re.session.created_at, re.session.expires_at),
        (t0, created.session.expires_at)
    );
    let row = only_row_of(&f.db, &alice).await;
    assert_eq!(
        (row.id.as_str(), row.authenticated_at),
        (re.session.id.as_str(), at)
    );
    assert!(user_of(&m, created.token.as_str()).await.is_none());
    let (v, _) = validated(&m, re.token.as_str(), "valid").await;
    assert_eq!(v.authenticated_at, at);

    // A plain rotation keeps authenticated_at.
    clock.advance(Duration::minutes(1));
    let rotated = m.rotate_session(&v).await.unwrap().unwrap();
    assert_eq!(rotated.session.authenticated_at, at);

    // A clock behind the stored time never moves authenticated_at back.
    clock.set(t0 + Duration::minutes(30));
    let behind = m.reauthenticate(&rotated.session).await.unwrap().unwrap();
    assert_eq!(behind.session.authenticated_at, at);
    assert_eq!(only_row_of(&f.db, &alice).await.authenticated_at, at);
}

#[tokio::test]
async fn reauthenticate_keeping_token_moves_only_authenticated_at() {
    let (f, clock, m, alice) = alice_and_manager(|b| b).await;
    let t0 = clock.get();
    let created = sign_in(&m, &alice, "nl").await;
    let before = only_row_of(&f.db, &alice).await;

    clock.advance(Duration::minutes(3) + US);
    let now = clock.get();
    let kept = m
        .reauthenticate_keeping_token(&created.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.id, created.session.id);
    assert!(!kept.fresh, "same token: nothing to send again");
    assert_eq!(kept.authenticated_at, now);
    assert_eq!(kept.attributes, country("nl"));
    assert_eq!(
        (kept.expires_at, kept.created_at, kept.last_seen_at),
        (before.expires_at, t0, t0)
    );
    assert_eq!(
        only_row_of(&f.db, &alice).await,
        Stored {
            authenticated_at: now,
            ..before.clone()
        }
    );
    let (v, _) = validated(&m, created.token.as_str(), "the same token still works").await;
    assert_eq!(v.authenticated_at, now);

    // Expired: None, row untouched.
    clock.set(before.expires_at);
    let row = only_row_of(&f.db, &alice).await;
    assert!(keeping_token_refuses(&m, &created.session).await);
    assert_eq!(only_row_of(&f.db, &alice).await, row);
}

#[tokio::test]
async fn is_recent_sign_in_at_its_boundary() {
    let (_f, clock, m, alice) = alice_and_manager(|b| b).await;
    let created = sign_in(&m, &alice, "nl").await;
    clock.advance(Duration::hours(2));
    let re = m.reauthenticate(&created.session).await.unwrap().unwrap();
    let at = re.session.authenticated_at;
    let within = Duration::minutes(10);
    for (now, recent) in [
        (at, true),
        (at + within - US, true),
        (at + within, true),
        // The manager's time is cut to microseconds.
        (at + within + Duration::nanoseconds(999), true),
        (at + within + US, false),
        (at + Duration::days(1), false),
    ] {
        clock.set(now);
        assert_eq!(
            m.is_recent_sign_in(&re.session, within),
            recent,
            "{} after",
            now - at
        );
    }
    // The original session value still carries the sign-in time.
    clock.set(at);
    assert!(!m.is_recent_sign_in(&created.session, Duration::hours(1)));
    assert!(m.is_recent_sign_in(&created.session, Duration::hours(2)));
}

// ---------------------------------------------------------------------------
// 8. The provided `Adapter::rotate_session`.

/// Forwards the required methods to a `PostgresAdapter`, leaving every
/// provided one (rotation included) to the trait's defaults.
struct Plain(PostgresAdapter<PgPool>);

type PlainSession = DatabaseSession<String, Attributes>;

impl Adapter for Plain {
    type UserId = String;
    type SessionAttributes = Attributes;
    type UserAttributes = Attributes;

    fn get_session_and_user(
        &self,
        session_id: &SessionId,
    ) -> impl Future<Output = lucia_diesel::Result<Option<SessionAndUser<Self>>>> + Send {
        self.0.get_session_and_user(session_id)
    }

    fn get_user_sessions(
        &self,
        user_id: &String,
    ) -> impl Future<Output = lucia_diesel::Result<Vec<PlainSession>>> + Send {
        self.0.get_user_sessions(user_id)
    }

    fn set_session(
        &self,
        session: &PlainSession,
    ) -> impl Future<Output = lucia_diesel::Result<()>> + Send {
        self.0.set_session(session)
    }

    fn update_session_expiration(
        &self,
        session_id: &SessionId,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = lucia_diesel::Result<bool>> + Send {
        self.0.update_session_expiration(session_id, expires_at)
    }

    fn delete_session(
        &self,
        session_id: &SessionId,
    ) -> impl Future<Output = lucia_diesel::Result<bool>> + Send {
        self.0.delete_session(session_id)
    }

    fn delete_user_sessions(
        &self,
        user_id: &String,
    ) -> impl Future<Output = lucia_diesel::Result<u64>> + Send {
        self.0.delete_user_sessions(user_id)
    }

    fn delete_expired_sessions(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = lucia_diesel::Result<u64>> + Send {
        self.0.delete_expired_sessions(now)
    }
}

#[tokio::test]
async fn the_provided_rotation_behaves_as_documented() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = SessionManager::builder(Plain(PostgresAdapter::new(pool(&f.db).await)))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    let t0 = clock.get();
    let created = m
        .create_session(alice.clone(), country("nl"))
        .await
        .unwrap();
    let bobs = m.create_session(bob.clone(), country("de")).await.unwrap();
    let bob_row = only_row_of(&f.db, &bob).await;
    let before = only_row_of(&f.db, &alice).await;

    // Rotation: a new id with every other column, the old id gone.
    clock.advance(Duration::minutes(2));
    let rotated = m.rotate_session(&created.session).await.unwrap().unwrap();
    assert_ne!(rotated.token.as_str(), created.token.as_str());
    assert!(rotated.session.fresh);
    assert_eq!(
        only_row_of(&f.db, &alice).await,
        Stored {
            id: rotated.session.id.as_str().to_owned(),
            ..before.clone()
        }
    );
    assert!(dead(&m, created.token.as_str()).await);
    let (v, u) = validated(&m, rotated.token.as_str(), "valid").await;
    assert_eq!((u.id.as_str(), v.created_at), (alice.as_str(), t0));
    assert_eq!(v.attributes, country("nl"));

    // Re-authentication on the same id: only authenticated_at moves.
    clock.advance(Duration::minutes(1));
    let now = clock.get();
    let kept = m.reauthenticate_keeping_token(&v).await.unwrap().unwrap();
    assert_eq!(
        (kept.id.clone(), kept.authenticated_at),
        (v.id.clone(), now)
    );
    assert_eq!(
        only_row_of(&f.db, &alice).await,
        Stored {
            id: rotated.session.id.as_str().to_owned(),
            authenticated_at: now,
            ..before.clone()
        }
    );
    assert!(user_of_plain(&m, rotated.token.as_str()).await.is_some());
    // And with a new token.
    clock.advance(Duration::minutes(1));
    let re = m.reauthenticate(&kept).await.unwrap().unwrap();
    assert_eq!(re.session.authenticated_at, clock.get());
    assert!(user_of_plain(&m, rotated.token.as_str()).await.is_none());
    assert_eq!(
        user_of_plain(&m, re.token.as_str()).await,
        Some(alice.clone())
    );

    // Another user's session: refused, nothing touched.
    let mut forged = re.session.clone();
    forged.user_id = bob.clone();
    let alice_row = only_row_of(&f.db, &alice).await;
    assert!(m.rotate_session(&forged).await.unwrap().is_none());
    assert!(keeping_token_refuses(&m, &forged).await);
    assert_eq!(only_row_of(&f.db, &alice).await, alice_row);
    assert_eq!(only_row_of(&f.db, &bob).await, bob_row);
    assert_eq!(user_of_plain(&m, bobs.token.as_str()).await, Some(bob));

    // Unknown: refused.
    assert!(m.rotate_session(&created.session).await.unwrap().is_none());

    // Expired: refused, its row neither moved nor copied.
    clock.set(alice_row.expires_at);
    assert!(m.rotate_session(&re.session).await.unwrap().is_none());
    assert!(keeping_token_refuses(&m, &re.session).await);
    assert_eq!(only_row_of(&f.db, &alice).await, alice_row);
}

async fn user_of_plain(m: &SessionManager<Plain>, token: &str) -> Option<String> {
    m.validate_session(token).await.unwrap().map(|(_, u)| u.id)
}

/// `Adapter::rotate_session` itself, on both implementations: an id already
/// taken is a typed error that changes nothing, an id PostgreSQL cannot
/// hold is refused, and ids that cannot exist find nothing.
#[tokio::test]
async fn adapter_rotation_refuses_taken_and_unstorable_ids() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, |b| b).await;
    let alices = sign_in(&m, &alice, "nl").await;
    let bobs = sign_in(&m, &bob, "de").await;
    let before = all_rows(&f.db).await;
    let postgres = PostgresAdapter::new(pool(&f.db).await);
    let plain = Plain(PostgresAdapter::new(pool(&f.db).await));
    let live = Liveness {
        expires_after: clock.get(),
        seen_after: DateTime::<Utc>::UNIX_EPOCH,
        created_after: DateTime::<Utc>::UNIX_EPOCH,
    };
    let rotation = |from, to, user_id| SessionRotation {
        from,
        to,
        user_id,
        live,
        authenticated_at: DateTime::<Utc>::UNIX_EPOCH,
    };
    let (a, b) = (&alices.session.id, &bobs.session.id);
    let (ua, nul_user) = (&alice, &"alice\0".to_owned());
    let (nul, empty) = (&SessionId::new("a\0b"), &SessionId::new(""));
    let fresh = &SessionId::new("f".repeat(64));

    for (name, taken) in [
        (
            "postgres",
            postgres.rotate_session(rotation(a, b, ua)).await,
        ),
        ("provided", plain.rotate_session(rotation(a, b, ua)).await),
    ] {
        assert!(
            matches!(taken, Err(Error::DuplicateSessionId)),
            "{name}: {taken:?}"
        );
        assert_eq!(all_rows(&f.db).await, before, "{name}: nothing changed");
    }
    let unstorable = postgres.rotate_session(rotation(a, nul, ua)).await;
    assert!(
        matches!(unstorable, Err(Error::InvalidSessionId)),
        "{unstorable:?}"
    );
    let unstorable = postgres.rotate_session(rotation(a, empty, ua)).await;
    assert!(
        matches!(unstorable, Err(Error::InvalidSessionId)),
        "{unstorable:?}"
    );
    assert_eq!(all_rows(&f.db).await, before);
    for (from, user) in [(nul, ua), (empty, ua), (a, nul_user)] {
        let found = postgres.rotate_session(rotation(from, fresh, user)).await;
        assert!(matches!(found, Ok(None)), "{found:?}");
        let found = plain.rotate_session(rotation(from, fresh, user)).await;
        assert!(matches!(found, Ok(None)), "provided: {found:?}");
    }
    assert_eq!(all_rows(&f.db).await, before);
    // And a rotation to a free id works on both, one after the other.
    let moved = postgres
        .rotate_session(rotation(a, fresh, ua))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.created_at, alices.session.created_at);
    let back = plain
        .rotate_session(rotation(fresh, a, ua))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, moved);
    assert_eq!(all_rows(&f.db).await, before);
}

// ---------------------------------------------------------------------------
// 9. The `authenticated_at` migration.

/// A session table migrated before `authenticated_at`: the migration gives
/// every existing row its `created_at`, and the session still validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_backfills_authenticated_at_with_created_at() {
    let db = TestDb::new().await;
    let url = db.url.clone();
    let applied = tokio::task::spawn_blocking(move || {
        use diesel::Connection as _;
        use diesel_migrations::MigrationHarness as _;
        let mut conn = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
            AsyncPgConnection,
        >::establish(&url)
        .unwrap();
        let mut applied = Vec::new();
        for _ in 0..2 {
            let version = conn.run_next_migration(migrations::MIGRATIONS).unwrap();
            applied.push(version.to_string());
        }
        applied
    })
    .await
    .unwrap();
    assert_eq!(applied, ["20261126000000", "20261201000000"]);

    let adapter = PostgresAdapter::new(
        PoolOptions::new()
            .with_max_size(2)
            .build(&db.url)
            .await
            .unwrap(),
    );
    match adapter.verify_schema().await {
        Err(Error::Schema(e)) => assert!(
            e.problems().iter().any(|p| matches!(
                p,
                SchemaProblem::MissingColumn {
                    column: "authenticated_at",
                    ..
                }
            )),
            "{e}"
        ),
        other => panic!("expected the missing column, got {other:?}"),
    }
    let m = SessionManager::new(adapter);
    let token = SessionToken::generate().unwrap();
    let id = m.session_id(token.as_str());
    let now = crate::support::now();
    let created_at = now - Duration::days(3);
    db.exec(&format!(
        "INSERT INTO auth_user (id) VALUES ('alice'); \
         INSERT INTO user_session (id, user_id, expires_at, created_at, last_seen_at) \
         VALUES ('{}', 'alice', '{}', '{}', '{}')",
        id.as_str(),
        (now + Duration::days(20)).to_rfc3339(),
        created_at.to_rfc3339(),
        (now - Duration::minutes(1)).to_rfc3339(),
    ))
    .await;

    let applied = migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    assert_eq!(applied, ["20261203100000"]);
    m.adapter().verify_schema().await.unwrap();
    let mut conn = db.connect().await;
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) AS n FROM user_session WHERE authenticated_at = created_at",
        )
        .await,
        1
    );
    let (s, u) = validated(&m, token.as_str(), "the session survives the migration").await;
    assert_eq!(u.id, "alice");
    assert_eq!((s.created_at, s.authenticated_at), (created_at, created_at));
    assert!(!m.is_recent_sign_in(&s, Duration::days(1)));
    assert!(m.is_recent_sign_in(&s, Duration::days(4)));
    // And it rotates.
    let rotated = m.rotate_session(&s).await.unwrap().unwrap();
    assert_eq!(rotated.session.authenticated_at, created_at);
    assert!(dead(&m, token.as_str()).await);
}

/// Drops a schema made by the test (not one of its `TestDb`'s) at the end.
struct DropSchema(String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        crate::support::cleanup(
            server_url(),
            &[format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0)],
        );
    }
}

/// `authenticated_at_sql` on custom, oddly quoted, schema-qualified names
/// upgrades a table made without the column: `verify_schema` names the
/// missing column before and passes after.
#[tokio::test]
async fn authenticated_at_sql_upgrades_custom_tables() {
    let db = TestDb::new().await;
    let schema = format!(r#"We "ird" {}"#, db.schema);
    let names = TableNames::from_parts(
        TableName::qualified(Some(&schema), r#"the "users""#).unwrap(),
        TableName::qualified(Some(&schema), r#"We "ird".sessions"#).unwrap(),
    );
    let quoted = format!(r#""We ""ird"" {}""#, db.schema);
    let _drop = DropSchema(quoted.clone());
    let session_table = names.session().to_sql();
    assert_eq!(session_table, format!(r#"{quoted}."We ""ird"".sessions""#));

    let mut conn = db.connect().await;
    migrations::create_tables::<String>(&mut conn, &names)
        .await
        .unwrap();
    // As the DDL of a version before authenticated_at made it.
    conn.batch_execute(&format!(
        "ALTER TABLE {session_table} DROP COLUMN authenticated_at; \
         INSERT INTO {} (id) VALUES ('alice');",
        names.user().to_sql()
    ))
    .await
    .unwrap();
    let adapter = PostgresAdapter::new(
        PoolOptions::new()
            .with_max_size(2)
            .build(&db.url)
            .await
            .unwrap(),
    )
    .with_table_names(names.clone());
    let missing = SchemaProblem::MissingColumn {
        table: session_table.clone(),
        column: "authenticated_at",
    };
    match adapter.verify_schema().await {
        Err(Error::Schema(e)) => {
            assert!(e.problems().contains(&missing), "{e}");
            assert!(e.to_string().contains("authenticated_at"), "{e}");
        }
        other => panic!("expected the missing column, got {other:?}"),
    }

    let m = SessionManager::new(adapter);
    let token = SessionToken::generate().unwrap();
    let now = crate::support::now();
    let created_at = now - Duration::days(2);
    conn.batch_execute(&format!(
        "INSERT INTO {session_table} (id, user_id, expires_at, created_at, last_seen_at) \
         VALUES ('{}', 'alice', '{}', '{}', '{}')",
        m.session_id(token.as_str()).as_str(),
        (now + Duration::days(20)).to_rfc3339(),
        created_at.to_rfc3339(),
        now.to_rfc3339(),
    ))
    .await
    .unwrap();

    let sql = migrations::authenticated_at_sql(&names);
    conn.batch_execute(&sql.up).await.unwrap();
    m.adapter().verify_schema().await.unwrap();
    let (s, _) = validated(&m, token.as_str(), "the session survives the upgrade").await;
    assert_eq!(s.authenticated_at, created_at);
    let re = m.reauthenticate(&s).await.unwrap().unwrap();
    assert!(re.session.authenticated_at >= now, "moved to now");
    assert!(re.session.authenticated_at <= m.now());

    // The down migration takes the column away again.
    conn.batch_execute(&sql.down).await.unwrap();
    match m.adapter().verify_schema().await {
        Err(Error::Schema(e)) => assert!(e.problems().contains(&missing), "{e}"),
        other => panic!("expected the missing column, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The validation cache (feature `cache`).

/// Validates `token` on `m` until one validation is a cache hit.
#[cfg(feature = "cache")]
async fn until_cached(m: &Manager, token: &str) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    loop {
        let hits = m.cache_stats().unwrap().hits;
        assert!(user_of(m, token).await.is_some());
        if m.cache_stats().unwrap().hits > hits {
            return;
        }
        assert!(Instant::now() < deadline, "never served from the cache");
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
}

/// Waits until `m` has handled two polls after `committed` (the second
/// began after a commit made when `m` had handled `committed`).
#[cfg(feature = "cache")]
async fn polled_past(m: &Manager, committed: u64) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while m.cache_stats().unwrap().polls < committed + 2 {
        assert!(Instant::now() < deadline, "the cache never polled");
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
}

/// A rotation on one instance: that instance forgets the old token at
/// once, the other once it has polled past the commit; the new token is
/// valid on both.
#[cfg(feature = "cache")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_both_instances_caches() {
    use lucia_diesel::cache::CacheOptions;
    let f = default_fixture().await;
    migrations::run_embedded_migrations(f.db.connect().await, migrations::CACHE_MIGRATIONS)
        .await
        .unwrap();
    let instance = async || -> Manager {
        SessionManager::new(PostgresAdapter::new(pool(&f.db).await))
            .with_cache(CacheOptions::new().with_max_poll_age(StdDuration::from_secs(30)))
            .await
            .unwrap()
    };
    let (a, b) = (instance().await, instance().await);
    let alice = f.create_user("alice").await;
    let created = sign_in(&a, &alice, "nl").await;
    let old = created.token.as_str();
    until_cached(&a, old).await;
    until_cached(&b, old).await;

    let rotated = a.rotate_session(&created.session).await.unwrap().unwrap();
    let committed = b.cache_stats().unwrap().polls;
    assert!(user_of(&a, old).await.is_none(), "forgotten at once");
    // Two polls later, the second begun after the commit: gone on b too.
    polled_past(&b, committed).await;
    assert!(user_of(&b, old).await.is_none(), "b served the old token");
    for m in [&a, &b] {
        assert_eq!(
            user_of(m, rotated.token.as_str()).await,
            Some(alice.clone())
        );
    }

    // Re-authentication keeping the token: b serves the new time after it.
    let (s, _) = validated(&b, rotated.token.as_str(), "valid").await;
    until_cached(&b, rotated.token.as_str()).await;
    let kept = a.reauthenticate_keeping_token(&s).await.unwrap().unwrap();
    assert!(kept.authenticated_at >= s.authenticated_at);
    let committed = b.cache_stats().unwrap().polls;
    polled_past(&b, committed).await;
    let (seen, _) = validated(&b, rotated.token.as_str(), "valid").await;
    assert_eq!(seen.authenticated_at, kept.authenticated_at);
}

/// In Lucia-compatible storage the id is the token: a rotation stores the
/// new token itself, and a session Lucia wrote (a custom id, not one of
/// ours) rotates to a token of ours, so a leaked Lucia id stops working.
#[tokio::test]
async fn lucia_compatible_sessions_rotate_to_a_new_stored_token() {
    let (f, clock, m, alice) =
        alice_and_manager(|b| b.with_token_storage(TokenStorage::LuciaCompatible)).await;
    let created = sign_in(&m, &alice, "se").await;
    assert_eq!(created.session.id.as_str(), created.token.as_str());
    let rotated = m.rotate_session(&created.session).await.unwrap().unwrap();
    assert_eq!(rotated.session.id.as_str(), rotated.token.as_str());
    assert_eq!(only_row_of(&f.db, &alice).await.id, rotated.token.as_str());
    assert!(dead(&m, created.token.as_str()).await);
    assert_eq!(
        user_of(&m, rotated.token.as_str()).await,
        Some(alice.clone())
    );

    let bob = f.create_user("bob").await;
    f.db.exec(&format!(
        "INSERT INTO user_session (id, user_id, expires_at, country) \
         VALUES ('Custom-ID_123', '{bob}', '{}', 'no')",
        (clock.get() + Duration::days(1)).to_rfc3339()
    ))
    .await;
    let (lucias, _) = m.validate_session("Custom-ID_123").await.unwrap().unwrap();
    let ours = m.reauthenticate(&lucias).await.unwrap().unwrap();
    assert_eq!(ours.token.as_str().len(), 40);
    assert_eq!(only_row_of(&f.db, &bob).await.id, ours.token.as_str());
    assert_eq!(
        only_row_of(&f.db, &bob).await.country.as_deref(),
        Some("no")
    );
    assert!(dead(&m, "Custom-ID_123").await);
    assert_eq!(user_of(&m, ours.token.as_str()).await, Some(bob));
}
