//! What each call costs: one statement per adapter operation, prepared once
//! per connection and then served from diesel-async's statement cache, and
//! operation futures small enough that copying them stays cheap.

use std::sync::{Arc, Mutex};

use chrono::{Duration, DurationRound, Utc};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::AsyncConnection;
use lucia_diesel::SessionId;
use lucia_diesel::{
    Adapter, Attributes, DatabaseSession, PgPool, PoolOptions, PostgresAdapter, SessionManager,
    SingleConnection,
};
use serde_json::json;

use crate::adapter_suite::{Fixture, default_fixture, make_tables};
use crate::support::TestDb;

#[derive(Default, Clone)]
pub(crate) struct Counter(Arc<Mutex<(usize, usize)>>);

impl Instrumentation for Counter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let mut c = self.0.lock().unwrap();
        match event {
            InstrumentationEvent::StartQuery { .. } => c.0 += 1,
            InstrumentationEvent::CacheQuery { .. } => c.1 += 1,
            _ => {}
        }
    }
}

impl Counter {
    pub(crate) fn take(&self) -> (usize, usize) {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// One connection to `db` whose statements are counted, as an adapter's source.
pub(crate) async fn counted(db: &TestDb) -> (SingleConnection, Counter) {
    let counter = Counter::default();
    let mut conn = db.connect().await;
    conn.set_instrumentation(counter.clone());
    (SingleConnection::new(conn), counter)
}

/// A session of `user_id` that expires in an hour, with `{"country": ..}`.
fn session_in(id: &str, user_id: &str, country: &str) -> DatabaseSession<String, Attributes> {
    DatabaseSession {
        id: id.to_owned().into(),
        user_id: user_id.to_owned(),
        expires_at: Utc::now() + Duration::hours(1),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes: serde_json::from_value(json!({ "country": country })).unwrap(),
    }
}

#[tokio::test]
async fn each_operation_is_one_cached_statement() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let (source, counter) = counted(&f.db).await;
    let adapter = PostgresAdapter::new(source);
    let f = Fixture {
        adapter,
        names: f.names,
        db: f.db,
    };
    for round in 0..3 {
        let expect_prepares = usize::from(round == 0);
        let id = SessionId::from(format!("s{round}"));
        macro_rules! check {
            ($what:literal, $call:expr) => {
                check!($what, $call, 0)
            };
            ($what:literal, $call:expr, $extra:expr) => {{
                let r = $call.await.unwrap();
                assert_eq!(
                    counter.take(),
                    (1 + $extra, expect_prepares + $extra),
                    "{} in round {round}",
                    $what
                );
                r
            }};
        }
        // The first call that reads or writes attributes also looks up the
        // attribute columns, once.
        check!(
            "set_session",
            f.adapter.set_session(&session_in(id.as_str(), &uid, "us")),
            usize::from(round == 0)
        );
        check!("get_session_and_user", f.adapter.get_session_and_user(&id));
        check!("get_user_sessions", f.adapter.get_user_sessions(&uid));
        check!(
            "update_session_expiration",
            f.adapter
                .update_session_expiration(&id, Utc::now() + Duration::hours(2))
        );
        let stored = session_in(id.as_str(), &uid, "us");
        let refresh = lucia_diesel::SessionRefresh {
            expires_at: Utc::now() + Duration::hours(3),
            extend_if_expiring_by: Utc::now() + Duration::days(1),
            seen_at: Utc::now(),
            seen_if_last_seen_by: Utc::now(),
        };
        check!(
            "refresh_session",
            f.adapter.refresh_session(&id, &stored, refresh)
        );
        check!("delete_session", f.adapter.delete_session(&id));
        check!(
            "delete_other_user_sessions",
            f.adapter.delete_other_user_sessions(&uid, &id)
        );
        check!("delete_user_sessions", f.adapter.delete_user_sessions(&uid));
        check!(
            "delete_expired_sessions",
            f.adapter.delete_expired_sessions(Utc::now())
        );
    }
}

type CountedManager = lucia_diesel::SessionManager<PostgresAdapter<SingleConnection>>;

/// A manager on a counted connection, built by `configure` with a manual
/// clock, and a session of its validated once (its statements prepared).
async fn validated_once(
    configure: impl FnOnce(
        lucia_diesel::SessionManagerBuilder<PostgresAdapter<SingleConnection>>,
    )
        -> lucia_diesel::SessionManagerBuilder<PostgresAdapter<SingleConnection>>,
) -> (
    CountedManager,
    Counter,
    crate::support::clock::ManualClock,
    lucia_diesel::SessionToken,
    Fixture<PostgresAdapter<lucia_diesel::PgPool>>,
) {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let (source, counter) = counted(&f.db).await;
    let clock = crate::support::clock::ManualClock::at(Utc::now());
    let builder = lucia_diesel::SessionManager::builder(PostgresAdapter::new(source))
        .with_clock(clock.clone());
    let m = configure(builder).build().unwrap();
    let created = m.create_session(uid, Attributes::new()).await.unwrap();
    m.validate_session(created.token.as_str())
        .await
        .unwrap()
        .unwrap();
    counter.take();
    (m, counter, clock, created.token, f)
}

/// The manager's hot path: a valid session that needs nothing costs one
/// query; extending or deleting an expired one costs one more.
#[tokio::test]
async fn validate_session_costs_one_query_plus_one_to_extend_or_expire() {
    let (m, counter, clock, token, _fixture) = validated_once(|b| b).await;
    let token = token.as_str();
    m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take(), (1, 0), "valid session: one cached query");
    assert!(m.validate_session("not-a-token").await.unwrap().is_none());
    assert_eq!(counter.take(), (0, 0), "malformed token: no query");
    clock.advance(Duration::days(20));
    assert!(m.validate_session(token).await.unwrap().unwrap().0.fresh);
    assert_eq!(counter.take().0, 2, "extension: one more");
    clock.advance(Duration::days(31));
    assert!(m.validate_session(token).await.unwrap().is_none());
    assert_eq!(counter.take().0, 2, "expired: one more to delete");
}

/// With an idle timeout and an absolute lifetime set, a validation with
/// nothing due (no extension, no use to record yet) is still one query;
/// a use to record once the activity resolution has passed is one more.
#[tokio::test]
async fn validate_session_with_timeouts_costs_one_query_when_nothing_is_due() {
    let (m, counter, clock, token, _fixture) = validated_once(|b| {
        b.with_idle_timeout(Duration::hours(1))
            .with_absolute_lifetime(Duration::days(7))
    })
    .await;
    let token = token.as_str();
    clock.advance(Duration::minutes(1));
    m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take(), (1, 0), "nothing due: one cached query");
    clock.advance(Duration::minutes(10));
    m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take().0, 2, "a use to record: one more");
    clock.advance(Duration::minutes(1));
    m.validate_session(token).await.unwrap().unwrap();
    assert_eq!(counter.take(), (1, 0), "recorded: one query again");
}

/// Two adapters on one connection, one on the default tables (statements
/// cached under a type) and one on tables of the same names in another
/// schema (cached under their SQL text): each prepares its own statements
/// and only ever sees its own rows.
#[tokio::test]
async fn default_and_custom_names_never_share_a_cached_statement() {
    use lucia_diesel::{TableNames, migrations};

    let mut db = TestDb::new().await;
    migrations::run_pending_migrations(db.connect().await)
        .await
        .expect("migrate");
    let schema = db.extra_schema("ldk").await;
    let custom_names = TableNames::new(
        &format!("{schema}.auth_user"),
        &format!("{schema}.user_session"),
    )
    .unwrap();
    make_tables::<String>(&db, &custom_names).await;
    db.exec(&format!(
        "INSERT INTO auth_user (id) VALUES ('default-user'); \
         INSERT INTO {schema}.auth_user (id, username) VALUES ('custom-user', 'c');"
    ))
    .await;

    let (source, counter) = counted(&db).await;
    let source = Arc::new(source);
    let default = PostgresAdapter::new(Arc::clone(&source));
    let custom = PostgresAdapter::new(Arc::clone(&source)).with_table_names(custom_names);
    let session = |user: &str, hours: i64| DatabaseSession {
        id: "shared-id".to_owned().into(),
        user_id: user.to_owned(),
        expires_at: (Utc::now() + Duration::hours(hours))
            .duration_trunc(Duration::seconds(1))
            .unwrap(),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes: Attributes::new(),
    };

    for round in 0..3 {
        // Both adapters prepare each statement once, in the first round.
        let prepares = 2 * usize::from(round == 0);
        let d = session("default-user", 1 + round);
        let c = session("custom-user", 10 + round);
        default.set_session(&d).await.unwrap();
        custom.set_session(&c).await.unwrap();
        // Each adapter's first statement comes after its one catalog lookup
        // of the attribute columns (the same text for both: prepared once).
        let lookups = 2 * usize::from(round == 0);
        assert_eq!(
            counter.take(),
            (2 + lookups, prepares + lookups / 2),
            "set_session, round {round}"
        );

        let found_d = default
            .get_session_and_user(&SessionId::from("shared-id"))
            .await
            .unwrap();
        let found_c = custom
            .get_session_and_user(&SessionId::from("shared-id"))
            .await
            .unwrap();
        // The columns are known since set_session: no lookup here.
        assert_eq!(
            counter.take(),
            (2, prepares),
            "get_session_and_user, round {round}"
        );
        let (found_d, user_d) = found_d.unwrap();
        let (found_c, user_c) = found_c.unwrap();
        assert_eq!(user_d.id, "default-user");
        assert_eq!(user_c.id, "custom-user");
        assert_eq!(found_d.expires_at, d.expires_at);
        assert_eq!(found_c.expires_at, c.expires_at);

        let mine = default
            .get_user_sessions(&"default-user".to_owned())
            .await
            .unwrap();
        let theirs = custom
            .get_user_sessions(&"default-user".to_owned())
            .await
            .unwrap();
        assert_eq!(
            counter.take(),
            (2, prepares),
            "get_user_sessions, round {round}"
        );
        assert_eq!(mine.len(), 1);
        assert!(theirs.is_empty());

        assert!(
            default
                .delete_session(&SessionId::from("shared-id"))
                .await
                .unwrap()
        );
        assert_eq!(counter.take(), (1, usize::from(round == 0)));
        assert!(
            custom
                .get_session_and_user(&SessionId::from("shared-id"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            !default
                .delete_session(&SessionId::from("shared-id"))
                .await
                .unwrap()
        );
        assert!(
            custom
                .delete_session(&SessionId::from("shared-id"))
                .await
                .unwrap()
        );
        assert!(
            custom
                .get_session_and_user(&SessionId::from("shared-id"))
                .await
                .unwrap()
                .is_none()
        );
        counter.take();
    }
}

/// An insert the table refuses (here: a session for a user that does not
/// exist) says nothing about the columns: no column lookup again and no
/// second insert, only the insert and the query that names the error.
#[tokio::test]
async fn a_refused_insert_is_not_retried() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let (source, counter) = counted(&f.db).await;
    let adapter = PostgresAdapter::new(source);
    // The first insert with attributes looks up the columns once.
    adapter
        .set_session(&session_in("ok", &uid, "se"))
        .await
        .unwrap();
    assert_eq!(counter.take().0, 2, "column lookup and insert");
    let err = adapter
        .set_session(&session_in("nope", "ghost", "se"))
        .await;
    assert!(
        matches!(err, Err(lucia_diesel::Error::UnknownUser)),
        "{err:?}"
    );
    assert_eq!(
        counter.take().0,
        2,
        "the insert and the user lookup, nothing more"
    );
    let err = adapter.set_session(&session_in("ok", &uid, "se")).await;
    assert!(
        matches!(err, Err(lucia_diesel::Error::DuplicateSessionId)),
        "{err:?}"
    );
    assert_eq!(counter.take().0, 1, "one insert");
}

/// Every operation's future stays small: callers copy it on each call
/// (from the callee's frame into their own state), so state kept inline
/// that only a rare path needs (the pool's connection test, the pooler's
/// statement, the column lookup and its retry) is a cost on every request.
/// Before they were boxed, `get_session_and_user` was about 5 KB in a
/// release build. The limit holds the client-side deadline's timer too
/// (about 130 bytes in a debug build).
#[tokio::test]
async fn hot_path_futures_stay_small() {
    const LIMIT: usize = 2560;
    let pool = PoolOptions::new()
        .build_lazy("postgres://127.0.0.1:1/x")
        .unwrap();
    let adapter: PostgresAdapter<PgPool, String, Attributes, Attributes> =
        PostgresAdapter::new(pool.clone());
    let sizes = [
        (
            "get_session_and_user",
            size_of_val(&adapter.get_session_and_user(&SessionId::from("x"))),
        ),
        (
            "update_session_expiration",
            size_of_val(
                &adapter.update_session_expiration(&SessionId::from("x"), chrono::Utc::now()),
            ),
        ),
        (
            "delete_session",
            size_of_val(&adapter.delete_session(&SessionId::from("x"))),
        ),
    ];
    let manager = SessionManager::new(adapter);
    let validate = size_of_val(&manager.validate_session("x"));
    for (op, size) in sizes.into_iter().chain([("validate_session", validate)]) {
        println!("{op}: {size} bytes");
        assert!(size <= LIMIT, "{op}'s future is {size} bytes");
    }
}
