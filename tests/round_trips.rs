//! One statement per adapter operation, prepared once per connection and
//! then served from diesel-async's statement cache.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::AsyncConnection;
use lucia_diesel::{Adapter, Attributes, DatabaseSession, PostgresAdapter, SingleConnection};
use serde_json::json;

use crate::adapter_suite::{Fixture, default_fixture};

#[derive(Default, Clone)]
struct Counter(Arc<Mutex<(usize, usize)>>);

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
    fn take(&self) -> (usize, usize) {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn each_operation_is_one_cached_statement() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let counter = Counter::default();
    let mut conn = f.db.connect().await;
    conn.set_instrumentation(counter.clone());
    let adapter = PostgresAdapter::new(SingleConnection::new(conn));
    let f = Fixture {
        adapter,
        names: f.names,
        db: f.db,
    };
    let mut attributes = Attributes::new();
    attributes.insert("country".into(), json!("us"));
    let make = |id: &str| DatabaseSession {
        id: id.to_owned(),
        user_id: uid.clone(),
        expires_at: Utc::now() + Duration::hours(1),
        attributes: attributes.clone(),
    };
    for round in 0..3 {
        let expect_prepares = usize::from(round == 0);
        let id = format!("s{round}");
        macro_rules! check {
            ($what:literal, $call:expr) => {{
                let r = $call.await.unwrap();
                assert_eq!(
                    counter.take(),
                    (1, expect_prepares),
                    "{} in round {round}",
                    $what
                );
                r
            }};
        }
        check!("set_session", f.adapter.set_session(&make(&id)));
        check!("get_session_and_user", f.adapter.get_session_and_user(&id));
        check!("get_user_sessions", f.adapter.get_user_sessions(&uid));
        check!(
            "update_session_expiration",
            f.adapter
                .update_session_expiration(&id, Utc::now() + Duration::hours(2))
        );
        check!(
            "extend_session_expiration",
            f.adapter.extend_session_expiration(
                &id,
                Utc::now() + Duration::hours(3),
                Utc::now() + Duration::days(1)
            )
        );
        check!("delete_session", f.adapter.delete_session(&id));
        check!("delete_user_sessions", f.adapter.delete_user_sessions(&uid));
        check!(
            "delete_expired_sessions",
            f.adapter.delete_expired_sessions(Utc::now())
        );
    }
}

/// The manager's hot path: a valid session that needs nothing costs one
/// query; extending or deleting an expired one costs one more.
#[tokio::test]
async fn validate_session_costs_one_query_plus_one_to_extend_or_expire() {
    use lucia_diesel::SessionManager;
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let counter = Counter::default();
    let mut conn = f.db.connect().await;
    conn.set_instrumentation(counter.clone());
    let clock = crate::support::clock::ManualClock::at(Utc::now());
    let m = SessionManager::builder(PostgresAdapter::new(SingleConnection::new(conn)))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let created = m.create_session(uid, Attributes::new()).await.unwrap();
    let token = created.token.as_str();
    m.validate_session(token).await.unwrap().unwrap();
    counter.take();
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
