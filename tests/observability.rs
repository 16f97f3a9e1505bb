//! `tracing` output: a span for every adapter and manager operation, a
//! countable `outcome` for every validation, and never a token or a stored
//! session id in any span, field or event.

use chrono::Duration;
use lucia_diesel::{
    Adapter, Attributes, PgPool, PostgresAdapter, SessionManager, TableNames, TokenStorage,
};

use crate::adapter_suite::{default_fixture, pool};
use crate::support::capture::Capture;
use crate::support::clock::ManualClock;

fn count(lines: &[String], pred: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|l| pred(l)).count()
}

#[tokio::test]
async fn spans_and_outcomes_without_secrets() {
    let f = default_fixture().await;
    let clock = ManualClock::new();
    let manager = |storage| {
        let clock = clock.clone();
        let db = &f.db;
        async move {
            SessionManager::builder(PostgresAdapter::new(pool(db).await))
                .with_clock(clock)
                .with_token_storage(storage)
                .build()
                .unwrap()
        }
    };
    let m = manager(TokenStorage::Hashed).await;
    let compat = manager(TokenStorage::LuciaCompatible).await;
    let broken: SessionManager<PostgresAdapter<PgPool>> = SessionManager::new(
        PostgresAdapter::new(pool(&f.db).await)
            .with_table_names(TableNames::new("missing_u", "missing_s").unwrap()),
    );
    let alice = f.create_user("alice").await;

    let capture = Capture::start();

    let s1 = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let s2 = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let c1 = compat
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    // valid (twice), then extended (twice), then expired, unknown, malformed, error.
    assert!(
        m.validate_session(s1.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        compat
            .validate_session(c1.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    clock.advance(Duration::days(20));
    assert!(
        m.validate_session(s1.token.as_str())
            .await
            .unwrap()
            .unwrap()
            .0
            .fresh
    );
    assert!(
        m.validate_session(s2.token.as_str())
            .await
            .unwrap()
            .unwrap()
            .0
            .fresh
    );
    clock.advance(Duration::days(31));
    assert!(
        m.validate_session(s2.token.as_str())
            .await
            .unwrap()
            .is_none()
    );
    let unknown = "a".repeat(40);
    assert!(m.validate_session(&unknown).await.unwrap().is_none());
    assert!(m.validate_session("not a token").await.unwrap().is_none());
    assert!(broken.validate_session(&unknown).await.is_err());

    assert_eq!(m.get_user_sessions(&alice).await.unwrap().len(), 0);
    let adapter = m.adapter();
    assert!(
        adapter
            .update_session_expiration(&s1.session.id, clock.get() + Duration::days(1))
            .await
            .unwrap()
    );
    m.invalidate_session(&s1.session.id).await.unwrap();
    assert_eq!(m.delete_expired_sessions().await.unwrap(), 1, "c1");
    let s3 = m
        .create_session(alice.clone(), Attributes::new())
        .await
        .unwrap();
    let s4 = m.rotate_session(&s3.session).await.unwrap().unwrap();
    let s5 = m.reauthenticate(&s4.session).await.unwrap().unwrap();
    assert_eq!(
        m.invalidate_other_sessions(&alice, &s5.session.id)
            .await
            .unwrap(),
        0
    );
    assert_eq!(m.invalidate_user_sessions(&alice).await.unwrap(), 1);
    assert_eq!(
        adapter.delete_expired_batch(clock.get(), 10).await.unwrap(),
        0
    );
    let lines = capture.lines();
    drop(capture);
    let all = lines.join("\n");

    // A span for every manager and adapter operation.
    for name in [
        "create_session",
        "validate_session",
        "invalidate_session",
        "invalidate_user_sessions",
        "invalidate_other_sessions",
        "rotate_session",
        "reauthenticate",
        "get_user_sessions",
        "delete_expired_sessions",
    ] {
        let span = format!("span lucia_diesel::session {name}");
        assert!(lines.iter().any(|l| l.starts_with(&span)), "{span}\n{all}");
    }
    for name in [
        "get_session_and_user",
        "get_user_sessions",
        "set_session",
        "update_session_expiration",
        "refresh_session",
        "delete_session",
        "delete_user_sessions",
        "delete_other_user_sessions",
        "rotate_session",
        "delete_expired_sessions",
        "delete_expired_batch",
    ] {
        let span = format!("span lucia_diesel::postgres {name}");
        assert!(lines.iter().any(|l| l.starts_with(&span)), "{span}\n{all}");
    }

    // One outcome event per validation, each outcome counted exactly.
    let outcomes = |o: &str| {
        count(&lines, |l| {
            l.starts_with("event lucia_diesel::session")
                && l.contains("in=validate_session")
                && l.contains(&format!(" outcome={o}"))
        })
    };
    assert_eq!(outcomes("valid"), 2, "{all}");
    assert_eq!(outcomes("extended"), 2, "{all}");
    assert_eq!(outcomes("expired"), 1, "{all}");
    assert_eq!(outcomes("unknown"), 1, "{all}");
    assert_eq!(outcomes("malformed"), 1, "{all}");
    assert_eq!(outcomes("error"), 1, "{all}");
    assert_eq!(
        count(&lines, |l| l.contains(" outcome=")),
        8,
        "no other outcome events: {all}"
    );
    let error = lines.iter().find(|l| l.contains("outcome=error")).unwrap();
    assert!(
        error.contains(" WARN ") && error.contains("missing_s"),
        "{error}"
    );

    // Fields that help: the user id on validations, counts on bulk operations.
    assert!(
        all.contains(&format!("record validate_session user_id={alice:?}")),
        "{all}"
    );
    assert!(all.contains("record delete_user_sessions rows=1"), "{all}");
    assert!(
        all.contains("record invalidate_user_sessions sessions=1"),
        "{all}"
    );
    assert!(
        all.contains("record refresh_session extended=true"),
        "{all}"
    );
    assert!(
        all.contains("record get_session_and_user found=false"),
        "{all}"
    );

    // Never a token or a stored id (in Lucia-compatible mode they are equal).
    for secret in [
        s1.token.as_str(),
        s2.token.as_str(),
        c1.token.as_str(),
        s1.session.id.as_str(),
        s2.session.id.as_str(),
        c1.session.id.as_str(),
        s3.token.as_str(),
        s4.token.as_str(),
        s5.token.as_str(),
        s3.session.id.as_str(),
        s4.session.id.as_str(),
        s5.session.id.as_str(),
        &unknown,
        "not a token",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}
