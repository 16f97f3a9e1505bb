//! The session manager against PostgreSQL: life cycle, expiry, extension,
//! races, Lucia-compatible storage.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use lucia_diesel::{
    Attributes, PgPool, PostgresAdapter, SessionManager, SessionToken, TokenStorage,
};
use serde_json::json;

use crate::adapter_suite::{Fixture, default_fixture, pool};
use crate::support::clock::ManualClock;

type Manager = SessionManager<PostgresAdapter<PgPool>>;

async fn manager(
    f: &Fixture<PostgresAdapter<PgPool>>,
    clock: &ManualClock,
    storage: TokenStorage,
) -> Manager {
    SessionManager::builder(PostgresAdapter::new(pool(&f.db).await))
        .with_clock(clock.clone())
        .with_token_storage(storage)
        .build()
        .unwrap()
}

fn country(c: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert("country".into(), json!(c));
    a
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
}

async fn rows(f: &Fixture<PostgresAdapter<PgPool>>) -> Vec<Row> {
    let mut conn = f.db.connect().await;
    diesel::sql_query("SELECT id, expires_at FROM user_session ORDER BY id")
        .load::<Row>(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn full_life_cycle() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let created = m
        .create_session(alice.clone(), country("nl"))
        .await
        .unwrap();
    assert!(created.session.fresh);
    assert_eq!(created.session.expires_at, clock.get() + Duration::days(30));
    assert_eq!(created.token.as_str().len(), 40);

    let (session, user) = m
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .expect("valid");
    assert!(!session.fresh);
    assert_eq!(session.id, created.session.id);
    assert_eq!(session.expires_at, created.session.expires_at);
    assert_eq!(session.attributes, country("nl"));
    assert_eq!(user.id, alice);
    assert_eq!(user.attributes.get("username"), Some(&json!("alice")));

    let listed = m.get_user_sessions(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);

    m.invalidate_session(&session.id).await.unwrap();
    assert!(
        m.validate_session(created.token.as_str())
            .await
            .unwrap()
            .is_none(),
        "replay after logout fails"
    );
    m.invalidate_session(&session.id).await.unwrap();
    assert!(rows(&f).await.is_empty());
}

#[tokio::test]
async fn stored_id_is_a_hash_and_cannot_be_replayed() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    let stored = rows(&f).await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].id, created.token.as_str());
    assert_eq!(stored[0].id.len(), 64, "lowercase hex SHA-256");
    assert!(
        stored[0]
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(
        m.validate_session(&stored[0].id).await.unwrap().is_none(),
        "the stored id is not a token"
    );
    let debug = format!("{created:?} {m:?}");
    assert!(
        !debug.contains(created.token.as_str()),
        "Debug never shows the token: {debug}"
    );
    assert!(!debug.contains(&stored[0].id));
}

#[tokio::test]
async fn expired_session_is_deleted_on_validation() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    clock.set(created.session.expires_at);
    assert!(
        m.validate_session(created.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(rows(&f).await.is_empty(), "expired session deleted");
}

#[tokio::test]
async fn extension_at_the_half_life_is_persisted() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    let t0 = clock.get();
    let token = created.token.as_str();

    clock.set(t0 + Duration::days(15) - Duration::microseconds(1));
    let (s, _) = m.validate_session(token).await.unwrap().unwrap();
    assert!(!s.fresh, "just before the half-life: no extension");
    assert_eq!(rows(&f).await[0].expires_at, t0 + Duration::days(30));

    let at = t0 + Duration::days(15);
    clock.set(at);
    let (s, _) = m.validate_session(token).await.unwrap().unwrap();
    assert!(s.fresh, "at the half-life: extended");
    assert_eq!(s.expires_at, at + Duration::days(30));
    assert_eq!(
        rows(&f).await[0].expires_at,
        at + Duration::days(30),
        "persisted"
    );

    let (s, _) = m.validate_session(token).await.unwrap().unwrap();
    assert!(!s.fresh, "extended once, then quiet");
}

#[tokio::test]
async fn get_user_sessions_lists_live_sessions_only() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let old = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    clock.set(clock.get() + Duration::days(20));
    let new = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    clock.set(clock.get() + Duration::days(11));
    let live = m.get_user_sessions(&alice).await.unwrap();
    assert_eq!(
        live.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![new.session.id]
    );
    assert_eq!(m.delete_expired_sessions().await.unwrap(), 1);
    assert!(
        m.validate_session(old.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(m.invalidate_user_sessions(&alice).await.unwrap(), 1);
}

#[tokio::test]
async fn malformed_tokens_never_reach_the_database() {
    let f = default_fixture().await;
    // A manager whose adapter has no tables at all: any query would fail.
    let broken = SessionManager::new(
        PostgresAdapter::new(pool(&f.db).await)
            .with_table_names(lucia_diesel::TableNames::new("missing_u", "missing_s").unwrap()),
    );
    let huge = "a".repeat(1 << 20);
    for token in [
        "",
        " ",
        ".",
        "abc",
        &"a".repeat(39),
        &"a".repeat(41),
        &"A".repeat(40),
        &"а".repeat(40),
        &format!("{}\0", "a".repeat(39)),
        &huge,
        "' OR 1=1 --aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        assert!(
            broken.validate_session(token).await.unwrap().is_none(),
            "{:.50}",
            token
        );
    }
    // A well-formed token does query (and fails: the tables are missing).
    assert!(broken.validate_session(&"a".repeat(40)).await.is_err());
}

/// A session deleted by a transaction that commits while the validation
/// waits to extend it is never brought back.
#[tokio::test]
async fn extension_never_resurrects_a_concurrently_deleted_session() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = Arc::new(manager(&f, &clock, TokenStorage::Hashed).await);
    let alice = f.create_user("alice").await;
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    clock.set(clock.get() + Duration::days(20));

    let mut deleter = f.db.connect().await;
    deleter
        .batch_execute(&format!(
            "BEGIN; DELETE FROM user_session WHERE id = '{}'; SELECT pg_backend_pid();",
            created.session.id.as_str()
        ))
        .await
        .unwrap();
    let token = created.token.as_str().to_owned();
    let m2 = Arc::clone(&m);
    let validation = tokio::spawn(async move { m2.validate_session(&token).await });
    // Wait until the validation is blocked on the row lock.
    let mut watcher = f.db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut blocked = false;
    for _ in 0..500 {
        let w = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH cur AS%'",
        )
        .get_result::<Waiting>(&mut watcher)
        .await
        .unwrap();
        if w.n > 0 {
            blocked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(blocked, "the extension waited for the deleting transaction");
    deleter.batch_execute("COMMIT").await.unwrap();
    let result = validation.await.unwrap().unwrap();
    assert!(
        result.is_none(),
        "deleted meanwhile: invalid, no fresh cookie"
    );
    assert!(rows(&f).await.is_empty(), "not resurrected");
}

/// 500 concurrent validations of one session due for extension: all valid,
/// exactly one write, no deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_storm_writes_once() {
    let f = default_fixture().await;
    f.db.exec(
        "CREATE TABLE writes (n INT NOT NULL); INSERT INTO writes VALUES (0); \
         CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE writes SET n = n + 1; RETURN NEW; END $$; \
         CREATE TRIGGER count_writes AFTER UPDATE ON user_session FOR EACH ROW EXECUTE FUNCTION count_write();",
    )
    .await;
    let clock = ManualClock::new();
    let m = Arc::new(manager(&f, &clock, TokenStorage::Hashed).await);
    let alice = f.create_user("alice").await;
    let created = m.create_session(alice, Attributes::new()).await.unwrap();
    clock.set(clock.get() + Duration::days(20));
    let token: Arc<str> = created.token.as_str().into();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let m = Arc::clone(&m);
            let token = Arc::clone(&token);
            tokio::spawn(async move { m.validate_session(&token).await })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        let (s, _) = t
            .await
            .unwrap()
            .unwrap()
            .expect("every validation succeeds");
        fresh += usize::from(s.fresh);
        assert_eq!(s.expires_at, clock.get() + Duration::days(30));
    }
    assert_eq!(fresh, 1, "exactly one request extended the session");
    #[derive(diesel::QueryableByName)]
    struct Writes {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        n: i32,
    }
    let mut conn = f.db.connect().await;
    let w = diesel::sql_query("SELECT n FROM writes")
        .get_result::<Writes>(&mut conn)
        .await
        .unwrap();
    assert_eq!(w.n, 1, "one row update");
}

/// `invalidate_user_sessions` during a validation storm: afterwards no
/// session of the user validates and none comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_user_sessions_during_a_validation_storm() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = Arc::new(manager(&f, &clock, TokenStorage::Hashed).await);
    let alice = f.create_user("alice").await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(
            m.create_session(alice.clone(), Attributes::new())
                .await
                .unwrap()
                .token,
        );
    }
    clock.set(clock.get() + Duration::days(20)); // every validation wants to extend
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tokens: Arc<Vec<SessionToken>> = Arc::new(tokens);
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (m, tokens, stop) = (Arc::clone(&m), Arc::clone(&tokens), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !std::sync::atomic::AtomicBool::load(
                    &stop,
                    std::sync::atomic::Ordering::Relaxed,
                ) {
                    m.validate_session(tokens[(i + n) % tokens.len()].as_str())
                        .await
                        .unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(m.invalidate_user_sessions(&alice).await.unwrap(), 10);
    for t in tokens.iter() {
        assert!(m.validate_session(t.as_str()).await.unwrap().is_none());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(rows(&f).await.is_empty(), "no session came back");
}

/// Rows in Lucia v3's exact format (the token itself in `id`) validate in
/// Lucia-compatible mode, and sessions made here are what Lucia expects.
#[tokio::test]
async fn lucia_compatible_storage_shares_rows_with_lucia() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::LuciaCompatible).await;
    let alice = f.create_user("alice").await;
    // What Lucia v3 writes: a 40-character base32 id, expires_at, user_id.
    let lucia_id = "x2aj4qkrvbp7mzjbwdpsbpwdsrh2vlhzpavmt3cm";
    let expires = clock.get() + Duration::days(29);
    let mut conn = f.db.connect().await;
    diesel::sql_query(
        "INSERT INTO user_session (id, user_id, expires_at, country) VALUES ($1, $2, $3, 'se')",
    )
    .bind::<Text, _>(lucia_id)
    .bind::<Text, _>(&alice)
    .bind::<Timestamptz, _>(expires)
    .execute(&mut conn)
    .await
    .unwrap();
    let (s, u) = m
        .validate_session(lucia_id)
        .await
        .unwrap()
        .expect("Lucia's session validates");
    assert_eq!(s.id, lucia_id.into());
    assert_eq!(s.attributes, country("se"));
    assert_eq!(u.id, alice);
    // And the reverse: the row holds the token itself.
    let created = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let found = rows(&f)
        .await
        .into_iter()
        .any(|r| r.id == created.token.as_str());
    assert!(found, "Lucia-compatible rows hold the token itself");
    // Custom Lucia ids (not base32) still work in this mode.
    diesel::sql_query(
        "INSERT INTO user_session (id, user_id, expires_at) VALUES ('Custom-ID_123', $1, $2)",
    )
    .bind::<Text, _>(&alice)
    .bind::<Timestamptz, _>(expires)
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(m.validate_session("Custom-ID_123").await.unwrap().is_some());
    // A hashed-mode manager does not accept Lucia's raw ids.
    let hashed = manager(&f, &clock, TokenStorage::Hashed).await;
    assert!(hashed.validate_session(lucia_id).await.unwrap().is_none());
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        e: bool,
    }
    let e = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM user_session WHERE id = $1) AS e")
        .bind::<Text, _>(lucia_id)
        .get_result::<Exists>(&mut conn)
        .await
        .unwrap();
    assert!(e.e, "a failed validation in the other mode deleted nothing");
}

#[tokio::test]
async fn create_session_for_unknown_user_is_typed() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let err = m
        .create_session("ghost".into(), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, lucia_diesel::Error::UnknownUser), "{err:?}");
    assert!(rows(&f).await.is_empty());
}

#[tokio::test]
async fn extreme_configuration_is_rejected_when_built() {
    let adapter = || {
        PostgresAdapter::new(
            lucia_diesel::PoolOptions::new()
                .build_lazy("postgres://127.0.0.1:1/x")
                .unwrap(),
        )
    };
    for lifetime in [
        Duration::zero(),
        Duration::seconds(-5),
        Duration::seconds(1),
        Duration::days(3651),
        Duration::MAX,
    ] {
        assert!(
            SessionManager::builder(adapter())
                .with_session_lifetime(lifetime)
                .build()
                .is_err(),
            "{lifetime:?}"
        );
    }
    let bad_cookie = lucia_diesel::CookieConfig::new()
        .with_name("__Host-s")
        .with_secure(false);
    assert!(
        SessionManager::builder(adapter())
            .with_cookie(bad_cookie)
            .build()
            .is_err()
    );
    assert!(
        SessionManager::builder(adapter())
            .with_session_lifetime(Duration::hours(1))
            .build()
            .is_ok()
    );
}

/// "Sign out my other devices": exactly `keep` stays; a `keep` of another
/// user keeps nothing of this user's and deletes nothing of the other's.
#[tokio::test]
async fn invalidate_other_sessions_leaves_exactly_keep() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let m = manager(&f, &clock, TokenStorage::Hashed).await;
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(
            m.create_session(alice.clone(), country("nl"))
                .await
                .unwrap(),
        );
    }
    let bobs = m.create_session(bob.clone(), country("se")).await.unwrap();
    let keep = &mine[1];
    assert_eq!(
        m.invalidate_other_sessions(&alice, &keep.session.id)
            .await
            .unwrap(),
        2
    );
    for (i, s) in mine.iter().enumerate() {
        let valid = m
            .validate_session(s.token.as_str())
            .await
            .unwrap()
            .is_some();
        assert_eq!(valid, i == 1, "session {i}");
    }
    assert!(
        m.validate_session(bobs.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    // Nothing more to delete.
    assert_eq!(
        m.invalidate_other_sessions(&alice, &keep.session.id)
            .await
            .unwrap(),
        0
    );

    // Another user's session as `keep`: all of alice's go, bob's stays.
    assert_eq!(
        m.invalidate_other_sessions(&alice, &bobs.session.id)
            .await
            .unwrap(),
        1
    );
    assert!(
        m.validate_session(keep.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        m.validate_session(bobs.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(rows(&f).await.len(), 1);
    // An unknown user: nothing.
    assert_eq!(
        m.invalidate_other_sessions(&"nobody".to_owned(), &bobs.session.id)
            .await
            .unwrap(),
        0
    );
}
