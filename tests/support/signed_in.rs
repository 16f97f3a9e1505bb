//! The framework-free part of the step-up tests (`*_app/step_up.rs`): a
//! manager on a schema of its own with user `alice`, on a clock at `t0`,
//! held by the app under test; and the checks of the session cookie the
//! three frameworks share.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lucia_diesel::{
    Attributes, PgPool, PoolOptions, PostgresAdapter, Session, SessionManager, migrations,
};

use super::TestDb;
use super::clock::ManualClock;

pub type Adapter = PostgresAdapter<PgPool>;
pub type Sessions = SessionManager<Adapter>;

pub const US: Duration = Duration::microseconds(1);
/// The window of `RecentSession<Adapter, 300>`.
pub const WINDOW: Duration = Duration::seconds(300);

/// What gives a test its manager: the manager itself, an `Arc` of it, or
/// the app under test that holds it.
pub trait HasSessions {
    fn sessions(&self) -> &Sessions;
}

impl HasSessions for Arc<Sessions> {
    fn sessions(&self) -> &Sessions {
        self
    }
}

/// A manager on a schema of its own with user `alice`, on a clock at `t0`,
/// held by `app` (the app under test, or what it is built from).
pub struct SignedIn<H> {
    _db: TestDb,
    clock: ManualClock,
    lifetime: Duration,
    pub t0: DateTime<Utc>,
    pub app: H,
}

impl<H> SignedIn<H> {
    /// Sessions live `lifetime` (extended in its second half); uses are
    /// recorded hourly, so no validation here writes for that alone. `app`
    /// takes the manager.
    pub async fn new(lifetime: Duration, app: impl AsyncFnOnce(Sessions) -> H) -> Self {
        let db = TestDb::new().await;
        migrations::run_pending_migrations(db.connect().await)
            .await
            .unwrap();
        db.exec("INSERT INTO auth_user (id) VALUES ('alice')").await;
        let pool = PoolOptions::new()
            .with_max_size(4)
            .build(&db.url)
            .await
            .unwrap();
        let clock = ManualClock::new();
        let sessions = SessionManager::builder(PostgresAdapter::new(pool))
            .with_clock(clock.clone())
            .with_session_lifetime(lifetime)
            .with_activity_resolution(Duration::hours(1))
            .build()
            .unwrap();
        Self {
            _db: db,
            t0: clock.get(),
            clock,
            lifetime,
            app: app(sessions).await,
        }
    }

    /// Moves the clock to `t0 + offset`.
    pub fn at(&self, offset: Duration) {
        self.clock.set(self.t0 + offset);
    }
}

impl<H: HasSessions> SignedIn<H> {
    pub fn sessions(&self) -> &Sessions {
        self.app.sessions()
    }

    /// A sign-in at `t0`: the token.
    pub async fn sign_in(&self) -> String {
        self.clock.set(self.t0);
        let created = self
            .sessions()
            .create_session("alice".to_owned(), Attributes::new())
            .await
            .unwrap();
        assert_eq!(created.session.authenticated_at, self.t0);
        created.token.into_string()
    }

    /// `alice`'s one stored session.
    pub async fn only_session(&self) -> Session<String, Attributes> {
        let mut all = self
            .sessions()
            .get_user_sessions(&"alice".to_owned())
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "one session: {all:?}");
        all.remove(0)
    }

    /// `alice`'s one stored session is `token`'s, signed in at
    /// `t0 + offset` and living a lifetime from then, created at `t0`.
    pub async fn assert_reauthenticated(&self, token: &str, offset: Duration) {
        let stored = self.only_session().await;
        assert_eq!(stored.id, self.sessions().session_id(token));
        assert_eq!(stored.expires_at, self.t0 + offset + self.lifetime);
        assert_eq!(stored.authenticated_at, self.t0 + offset);
        assert_eq!(stored.created_at, self.t0);
    }
}

/// The one `Set-Cookie` of the session cookie among `set_cookies` (every
/// `Set-Cookie` value of a response), split into its attributes; fails
/// unless there is exactly one.
pub fn the_session_cookie(set_cookies: &[String]) -> Vec<String> {
    let session: Vec<&String> = set_cookies
        .iter()
        .filter(|v| v.starts_with("auth_session="))
        .collect();
    assert_eq!(
        session.len(),
        1,
        "exactly one session cookie: {set_cookies:?}"
    );
    session[0].split("; ").map(str::to_owned).collect()
}

/// The session cookie's attributes `parts` have the secure defaults and
/// `max_age`.
pub fn has_attributes(parts: &[String], max_age: &str) {
    for want in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", max_age] {
        assert!(
            parts.iter().any(|p| p == want),
            "{want} missing from {parts:?}"
        );
    }
}

/// A rotation's answer: the cookie `parts` set the token `new` answered
/// in the body (not `old`), with the secure defaults and a full lifetime,
/// in a response that is not to be stored (`cache_control`).
pub fn assert_new_cookie(
    parts: &[String],
    cache_control: Option<&str>,
    new: &str,
    old: &str,
    max_age: &str,
) {
    assert_eq!(cache_control, Some("no-store"));
    has_attributes(parts, max_age);
    assert_ne!(new, old);
    assert_eq!(parts[0], format!("auth_session={new}"), "the new token");
}
