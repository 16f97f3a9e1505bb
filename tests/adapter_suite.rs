//! Lucia's adapter test suite (`testAdapter`), written once and run for every
//! configuration: table names, user id types and connection sources.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel_async::SimpleAsyncConnection;
use lucia_diesel::SessionId;
use lucia_diesel::{
    Adapter, Attributes, ConnectionSource, DatabaseSession, PoolOptions, PostgresAdapter,
    SingleConnection, TableName, TableNames, UserId, migrations,
};
use serde_json::json;

use crate::support::TestDb;

/// A user id type the suite can make fresh values of and write as SQL.
pub trait TestUserId: UserId {
    fn fresh() -> Self;
    fn sql_literal(&self) -> String;
}

static NEXT: AtomicI64 = AtomicI64::new(1);

impl TestUserId for String {
    fn fresh() -> Self {
        format!(
            "user-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
    fn sql_literal(&self) -> String {
        format!("'{self}'")
    }
}
impl TestUserId for i32 {
    fn fresh() -> Self {
        NEXT.fetch_add(1, Ordering::Relaxed) as i32
    }
    fn sql_literal(&self) -> String {
        self.to_string()
    }
}
impl TestUserId for i64 {
    fn fresh() -> Self {
        (1 << 40) + NEXT.fetch_add(1, Ordering::Relaxed)
    }
    fn sql_literal(&self) -> String {
        self.to_string()
    }
}
impl TestUserId for uuid::Uuid {
    fn fresh() -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
    fn sql_literal(&self) -> String {
        format!("'{self}'::uuid")
    }
}

/// An adapter on tables made for one test, with Lucia's test attributes:
/// `username` on users, `country` on sessions.
pub struct Fixture<A> {
    pub adapter: A,
    pub names: TableNames,
    pub db: TestDb,
}

impl<A: Adapter> Fixture<A>
where
    A::UserId: TestUserId,
{
    pub async fn create_user(&self, username: &str) -> A::UserId {
        let id = A::UserId::fresh();
        self.db
            .exec(&format!(
                "INSERT INTO {} (id, username) VALUES ({}, '{username}')",
                self.names.user().to_sql(),
                id.sql_literal()
            ))
            .await;
        id
    }

    pub async fn session_rows(&self) -> i64 {
        let mut conn = self.db.connect().await;
        crate::support::scalar(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM {}",
                self.names.session().to_sql()
            ),
        )
        .await
    }
}

/// Creates the tables for `names` with user id type `U` and the test attributes.
pub async fn make_tables<U: UserId>(db: &TestDb, names: &TableNames) {
    let mut conn = db.connect().await;
    migrations::create_tables::<U>(&mut conn, names)
        .await
        .expect("create tables");
    conn.batch_execute(&format!(
        "ALTER TABLE {} ADD COLUMN username TEXT NOT NULL UNIQUE; ALTER TABLE {} ADD COLUMN country TEXT;",
        names.user().to_sql(),
        names.session().to_sql()
    ))
    .await
    .expect("add attribute columns");
}

pub async fn pool(db: &TestDb) -> lucia_diesel::PgPool {
    PoolOptions::new()
        .with_max_size(4)
        .build(&db.url)
        .await
        .expect("build pool")
}

/// Default names, created by the embedded migrations, over a `PgPool`.
pub async fn default_fixture() -> Fixture<PostgresAdapter<lucia_diesel::PgPool>> {
    let db = TestDb::new().await;
    migrations::run_pending_migrations(db.connect().await)
        .await
        .expect("migrate");
    db.exec("ALTER TABLE auth_user ADD COLUMN username TEXT NOT NULL UNIQUE; ALTER TABLE user_session ADD COLUMN country TEXT;")
        .await;
    let adapter = PostgresAdapter::new(pool(&db).await);
    Fixture {
        adapter,
        names: TableNames::default(),
        db,
    }
}

/// Tables under `names` with user ids of type `U`, over any source.
pub async fn custom_fixture<U, S, F, Fut>(
    mut db: TestDb,
    names: impl FnOnce(&str) -> TableNames,
    source: F,
) -> Fixture<PostgresAdapter<S, U>>
where
    U: TestUserId,
    S: ConnectionSource,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let schema = db.extra_schema("ldq").await;
    let names = names(&schema);
    make_tables::<U>(&db, &names).await;
    let adapter = PostgresAdapter::new(source(db.url.clone()).await)
        .with_table_names(names.clone())
        .with_user_id::<U>();
    Fixture { adapter, names, db }
}

/// Lucia's test session expiry: whole seconds, a little in the future.
fn expires_in(secs: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::seconds(secs))
        .duration_trunc(Duration::microseconds(1))
        .expect("truncate")
}

fn session<U>(user_id: U, expires_at: DateTime<Utc>, country: &str) -> DatabaseSession<U> {
    let mut attributes = Attributes::new();
    attributes.insert("country".into(), json!(country));
    DatabaseSession {
        id: format!("session-{}", NEXT.fetch_add(1, Ordering::Relaxed)).into(),
        user_id,
        expires_at,
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes,
    }
}

pub async fn unknown_ids<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    assert!(
        f.adapter
            .get_session_and_user(&SessionId::from("no-such-session"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.adapter
            .get_user_sessions(&A::UserId::fresh())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !f.adapter
            .update_session_expiration(&SessionId::from("no-such-session"), expires_in(60))
            .await
            .unwrap()
    );
    assert!(
        !f.adapter
            .delete_session(&SessionId::from("no-such-session"))
            .await
            .unwrap()
    );
    assert_eq!(
        f.adapter
            .delete_user_sessions(&A::UserId::fresh())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        f.session_rows().await,
        0,
        "no call on unknown ids created a row"
    );
}

pub async fn set_and_get<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let user_id = f.create_user("alice").await;
    let s = session(user_id.clone(), expires_in(10), "us");
    f.adapter.set_session(&s).await.unwrap();
    let (got, user) = f
        .adapter
        .get_session_and_user(&s.id)
        .await
        .unwrap()
        .expect("session exists");
    assert_eq!(got, s);
    assert_eq!(user.id, user_id);
    assert_eq!(user.attributes.get("username"), Some(&json!("alice")));
    assert_eq!(
        user.attributes.len(),
        1,
        "only extra columns are attributes: {:?}",
        user.attributes
    );
    assert_eq!(got.attributes.len(), 1, "only extra columns are attributes");
}

pub async fn user_sessions<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    let a1 = session(alice.clone(), expires_in(10), "us");
    let a2 = session(alice.clone(), expires_in(-10), "nl");
    let b1 = session(bob.clone(), expires_in(10), "fr");
    for s in [&a1, &a2, &b1] {
        f.adapter.set_session(s).await.unwrap();
    }
    let mut got = f.adapter.get_user_sessions(&alice).await.unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a1, a2];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        got, want,
        "both of alice's sessions, expired included, none of bob's"
    );
}

pub async fn update_expiration<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let user_id = f.create_user("alice").await;
    let s = session(user_id, expires_in(10), "us");
    f.adapter.set_session(&s).await.unwrap();
    let later = expires_in(3600);
    assert!(
        f.adapter
            .update_session_expiration(&s.id, later)
            .await
            .unwrap()
    );
    let (got, _) = f
        .adapter
        .get_session_and_user(&s.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.expires_at, later);
    assert_eq!(got.attributes, s.attributes, "attributes untouched");
}

pub async fn delete_session<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let user_id = f.create_user("alice").await;
    let s = session(user_id.clone(), expires_in(10), "us");
    let other = session(user_id, expires_in(10), "us");
    f.adapter.set_session(&s).await.unwrap();
    f.adapter.set_session(&other).await.unwrap();
    assert!(f.adapter.delete_session(&s.id).await.unwrap());
    assert!(
        f.adapter
            .get_session_and_user(&s.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !f.adapter.delete_session(&s.id).await.unwrap(),
        "a second delete finds nothing"
    );
    assert!(
        f.adapter
            .get_session_and_user(&other.id)
            .await
            .unwrap()
            .is_some(),
        "others untouched"
    );
}

pub async fn delete_user_sessions<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let alice = f.create_user("alice").await;
    let bob = f.create_user("bob").await;
    for _ in 0..3 {
        f.adapter
            .set_session(&session(alice.clone(), expires_in(10), "us"))
            .await
            .unwrap();
    }
    let b = session(bob.clone(), expires_in(10), "us");
    f.adapter.set_session(&b).await.unwrap();
    assert_eq!(f.adapter.delete_user_sessions(&alice).await.unwrap(), 3);
    assert!(
        f.adapter
            .get_user_sessions(&alice)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.adapter.get_user_sessions(&bob).await.unwrap(), vec![b]);
}

pub async fn delete_expired<A>(f: &Fixture<A>)
where
    A: Adapter<SessionAttributes = Attributes, UserAttributes = Attributes>,
    A::UserId: TestUserId,
{
    let user_id = f.create_user("alice").await;
    let now = Utc::now();
    let live = session(user_id.clone(), now + Duration::seconds(10), "us");
    let expired = session(user_id.clone(), now - Duration::seconds(10), "us");
    let at_now = session(user_id, now, "us");
    for s in [&live, &expired, &at_now] {
        f.adapter.set_session(s).await.unwrap();
    }
    assert_eq!(
        f.adapter.delete_expired_sessions(now).await.unwrap(),
        2,
        "expires_at <= now is expired"
    );
    assert!(
        f.adapter
            .get_session_and_user(&live.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        f.adapter
            .get_session_and_user(&expired.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.adapter
            .get_session_and_user(&at_now.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Runs every case of the suite, each on a fixture of its own.
macro_rules! adapter_suite {
    ($name:ident, $fixture:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn unknown_ids() {
                super::unknown_ids(&$fixture).await;
            }
            #[tokio::test]
            async fn set_session_then_get_session_and_user() {
                super::set_and_get(&$fixture).await;
            }
            #[tokio::test]
            async fn get_user_sessions() {
                super::user_sessions(&$fixture).await;
            }
            #[tokio::test]
            async fn update_session_expiration() {
                super::update_expiration(&$fixture).await;
            }
            #[tokio::test]
            async fn delete_session() {
                super::delete_session(&$fixture).await;
            }
            #[tokio::test]
            async fn delete_user_sessions() {
                super::delete_user_sessions(&$fixture).await;
            }
            #[tokio::test]
            async fn delete_expired_sessions() {
                super::delete_expired(&$fixture).await;
            }
        }
    };
}

adapter_suite!(default_names, default_fixture().await);

adapter_suite!(
    schema_qualified_names,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |schema| TableNames::new(
            &format!("{schema}.auth_user"),
            &format!("{schema}.user_session")
        )
        .unwrap(),
        |url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build(&url)
                .await
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    exotic_quoted_names,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |schema| TableNames::from_parts(
            TableName::qualified(Some(schema), r#"the "users" table"#).unwrap(),
            TableName::qualified(Some(schema), "Session; DROP TABLE x;--").unwrap(),
        ),
        |url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build(&url)
                .await
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    i64_user_ids,
    custom_fixture::<i64, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.users"), &format!("{s}.sessions")).unwrap(),
        |url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build(&url)
                .await
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    i32_user_ids,
    custom_fixture::<i32, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.users"), &format!("{s}.sessions")).unwrap(),
        |url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build(&url)
                .await
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    uuid_user_ids,
    custom_fixture::<uuid::Uuid, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.users"), &format!("{s}.sessions")).unwrap(),
        |url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build(&url)
                .await
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    bb8_pool_built_by_the_app,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        |url| async move {
            let manager = diesel_async::pooled_connection::AsyncDieselConnectionManager::<
                diesel_async::AsyncPgConnection,
            >::new(url);
            bb8::Pool::builder()
                .max_size(2)
                .build(manager)
                .await
                .unwrap()
        },
    )
    .await
);

// The same pool with the crate's deadlines added.
adapter_suite!(
    bb8_pool_built_by_the_app_bounded,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        |url| async move {
            let manager = diesel_async::pooled_connection::AsyncDieselConnectionManager::<
                diesel_async::AsyncPgConnection,
            >::new(url);
            let pool = bb8::Pool::builder()
                .max_size(2)
                .build(manager)
                .await
                .unwrap();
            lucia_diesel::Bounded::new(pool)
        },
    )
    .await
);

#[cfg(feature = "deadpool")]
adapter_suite!(
    deadpool_pool,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        |url| async move {
            let manager = diesel_async::pooled_connection::AsyncDieselConnectionManager::<
                diesel_async::AsyncPgConnection,
            >::new(url);
            diesel_async::pooled_connection::deadpool::Pool::builder(manager)
                .max_size(2)
                .build()
                .unwrap()
        },
    )
    .await
);

adapter_suite!(
    single_connection,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        |url| async move { SingleConnection::establish(&url).await.unwrap() },
    )
    .await
);

// Through a primary and its hot standby: reads on the standby, writes on
// the primary, which waits for the standby to apply each commit (the
// strict setting), so every read-after-write case holds.
adapter_suite!(
    replicated_pool,
    custom_fixture::<String, _, _, _>(
        TestDb::on(crate::replicas::strict_primary_url()).await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        crate::replicas::strict_pool,
    )
    .await
);

#[cfg(feature = "pooler")]
adapter_suite!(
    pooler_pool_behind_pgbouncer,
    custom_fixture::<String, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.auth_user"), &format!("{s}.user_session")).unwrap(),
        // A pooler passes no `options`, so the names carry their schema.
        |_url| async move {
            PoolOptions::new()
                .with_max_size(4)
                .build_pooler(crate::support::pgbouncer::shared_url())
                .await
                .unwrap()
        },
    )
    .await
);

#[cfg(all(feature = "pooler", feature = "uuid"))]
adapter_suite!(
    pooler_pool_uuid_user_ids,
    custom_fixture::<uuid::Uuid, _, _, _>(
        TestDb::new().await,
        |s| TableNames::new(&format!("{s}.users"), &format!("{s}.sessions")).unwrap(),
        |_url| async move {
            PoolOptions::new()
                .with_max_size(2)
                .build_pooler(crate::support::pgbouncer::shared_url())
                .await
                .unwrap()
        },
    )
    .await
);

/// The reads name the attribute columns, looked up once: a column dropped
/// or renamed later costs no error (the lookup is redone and the read
/// retried), and odd column names read the same as plain ones.
#[tokio::test]
async fn attribute_columns_follow_schema_changes() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let s = session(uid.clone(), expires_in(60), "se");
    f.adapter.set_session(&s).await.unwrap();
    let attributes = |found: Option<SessionAndUserOf>| {
        let (session, user) = found.expect("found");
        (session.attributes, user.attributes)
    };
    let (sa, ua) = attributes(f.adapter.get_session_and_user(&s.id).await.unwrap());
    assert_eq!(sa.get("country"), Some(&json!("se")));
    assert_eq!(ua.get("username"), Some(&json!("alice")));
    assert_eq!(sa.len() + ua.len(), 2, "{sa:?} {ua:?}");

    f.db.exec("ALTER TABLE user_session RENAME COLUMN country TO region")
        .await;
    let (sa, _) = attributes(f.adapter.get_session_and_user(&s.id).await.unwrap());
    assert_eq!(sa.get("region"), Some(&json!("se")));
    assert!(!sa.contains_key("country"));
    f.db.exec("ALTER TABLE user_session DROP COLUMN region")
        .await;
    let listed = f.adapter.get_user_sessions(&uid).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].attributes.is_empty(),
        "{:?}",
        listed[0].attributes
    );
    let (sa, ua) = attributes(f.adapter.get_session_and_user(&s.id).await.unwrap());
    assert!(sa.is_empty());
    assert_eq!(ua.get("username"), Some(&json!("alice")));

    // A column name no string literal can hold as it is: the generic reads.
    f.db.exec(r#"ALTER TABLE auth_user ADD COLUMN "it's \""odd""" INT DEFAULT 7"#)
        .await;
    let fresh = PostgresAdapter::new(pool(&f.db).await);
    for _ in 0..2 {
        let (_, ua) = attributes(fresh.get_session_and_user(&s.id).await.unwrap());
        assert_eq!(ua.get(r#"it's \"odd""#), Some(&json!(7)), "{ua:?}");
        assert_eq!(ua.get("username"), Some(&json!("alice")));
    }
}

type SessionAndUserOf = (DatabaseSession<String>, lucia_diesel::DatabaseUser<String>);
