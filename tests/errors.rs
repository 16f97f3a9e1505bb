//! The error type itself: settings rejected by name when they are built,
//! causes kept and returned by `source()`, SQLSTATEs, and no secret in any
//! rendering of an error.

use std::error::Error as _;
use std::time::Duration;

use chrono::Utc;
use lucia_diesel::{
    Adapter, Attributes, ConfigError, DatabaseSession, Error, PoolOptions, PostgresAdapter,
    SessionId, SessionManager,
};

use crate::adapter_suite::pool;
use crate::support::TestDb;

#[tokio::test]
async fn settings_are_rejected_by_name_when_built() {
    let url = "postgres://127.0.0.1:1/x";
    let cases = [
        (PoolOptions::new().with_max_size(0), ConfigError::PoolSize),
        (
            PoolOptions::new().with_checkout_timeout(Duration::ZERO),
            ConfigError::CheckoutTimeout,
        ),
        (
            PoolOptions::new().with_statement_timeout(Some(Duration::ZERO)),
            ConfigError::StatementTimeout,
        ),
    ];
    for (options, expected) in cases {
        match options.build_lazy(url) {
            Err(Error::Config(e)) => assert_eq!(e, expected),
            other => panic!("{expected:?}: {other:?}"),
        }
    }
    match PoolOptions::new().build_lazy("postgres://x:y@host:notaport/db") {
        Err(Error::Config(ConfigError::DatabaseUrl(reason))) => {
            assert!(!reason.contains("x:y"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let pool = PoolOptions::new().build_lazy(url).unwrap();
    for lifetime in [chrono::Duration::seconds(1), chrono::Duration::days(3651)] {
        let built = SessionManager::builder(PostgresAdapter::new(pool.clone()))
            .with_session_lifetime(lifetime)
            .build();
        assert_eq!(built.unwrap_err(), ConfigError::SessionLifetime);
    }
    let adapter = PostgresAdapter::new(pool);
    match adapter.delete_expired_batch(Utc::now(), 0).await {
        Err(Error::Config(ConfigError::CleanupBatchSize)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn causes_are_kept_and_returned_by_source() {
    // A database that cannot be reached: the driver's error is the cause.
    let pool = PoolOptions::new()
        .with_checkout_timeout(Duration::from_millis(500))
        .build_lazy("postgres://postgres@127.0.0.1:1/x")
        .unwrap();
    let err = PostgresAdapter::new(pool)
        .get_session_and_user(&SessionId::from("x"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let cause = match &err {
        Error::PoolTimeout {
            last_error: Some(cause),
        } => cause.to_string(),
        Error::Unavailable {
            source: Some(cause),
            ..
        } => cause.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(err.source().map(ToString::to_string), Some(cause));

    // A server's error: a `DatabaseError` with its SQLSTATE.
    let db = TestDb::new().await;
    let adapter = PostgresAdapter::new(pool_for(&db).await);
    let err = adapter
        .get_session_and_user(&SessionId::from("x"))
        .await
        .unwrap_err();
    let Error::Database(inner) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(inner.code(), Some("42P01"), "{inner:?}");
    let source = err.source().expect("a cause");
    let as_db = source.downcast_ref::<lucia_diesel::DatabaseError>();
    assert_eq!(as_db, Some(inner));
}

async fn pool_for(db: &TestDb) -> lucia_diesel::PgPool {
    pool(db).await
}

/// PostgreSQL's `DETAIL` names key values, and a Lucia-compatible session
/// id is the token: it must not reach any rendering of the error or its
/// causes.
#[tokio::test]
async fn no_rendering_of_an_error_holds_a_key_value() {
    let db = TestDb::new().await;
    lucia_diesel::migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    db.exec(
        "ALTER TABLE user_session ADD COLUMN note text UNIQUE; INSERT INTO auth_user VALUES ('u')",
    )
    .await;
    let adapter = PostgresAdapter::new(pool(&db).await);
    let session = |id: &str| DatabaseSession {
        id: SessionId::from(id),
        user_id: "u".to_owned(),
        expires_at: Utc::now() + chrono::Duration::days(1),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes: serde_json::from_value::<Attributes>(
            serde_json::json!({"note": "secret-note"}),
        )
        .unwrap(),
    };
    adapter.set_session(&session("first")).await.unwrap();
    let err = adapter.set_session(&session("second")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidAttributes { .. }), "{err:?}");
    let mut shown = format!("{err} {err:?}");
    let mut cause = err.source();
    while let Some(c) = cause {
        shown.push_str(&format!(" {c} {c:?}"));
        cause = c.source();
    }
    assert!(!shown.contains("secret-note"), "{shown}");
    assert!(shown.contains("unique"), "{shown}");

    // A failed CHECK: PostgreSQL's DETAIL shows the whole row, id first
    // (in Lucia-compatible storage the id is the token).
    db.exec("ALTER TABLE user_session ADD CONSTRAINT no_bad CHECK (note <> 'bad')")
        .await;
    let mut bad = session("secret-session-id");
    bad.attributes.insert("note".into(), "bad".into());
    let err = adapter.set_session(&bad).await.unwrap_err();
    assert!(matches!(err, Error::InvalidAttributes { .. }), "{err:?}");
    let mut shown = format!("{err} {err:?}");
    let mut cause = err.source();
    while let Some(c) = cause {
        shown.push_str(&format!(" {c} {c:?}"));
        cause = c.source();
    }
    assert!(!shown.contains("secret-session-id"), "{shown}");
    assert!(shown.contains("no_bad"), "{shown}");
}
