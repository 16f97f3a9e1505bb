//! The axum integration against PostgreSQL: the extractors and the layer
//! through `tower::ServiceExt::oneshot` (`extractors.rs`), the shared CSRF
//! table (`cross_origin.rs`), and the example's JSON API over a real socket
//! (`end_to_end.rs`): its login throttle (`throttling.rs`), logout
//! (`sign_out.rs`), a frozen database (`outage.rs`, on a cluster of its
//! own: `frozen.rs`), its start-up (`start_up.rs`) and its `/metrics`
//! (`metrics.rs`, feature `metrics`).

// Compiled once per example's tests, as each example compiles it; parts
// of it serve the other examples' tests only.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/common/mod.rs"]
mod common;
#[path = "../../examples/axum_app/server/mod.rs"]
mod server;
use common::PasswordLimits;
use common::hashing::Hasher;
use common::throttle::LoginThrottle;
use server::api;

mod account;
mod cross_origin;
mod end_to_end;
mod extractors;
#[allow(clippy::duplicate_mod)] // The other examples' tests include it too.
mod frozen;
#[cfg(feature = "metrics")]
mod metrics;
mod outage;
mod sign_out;
mod start_up;
mod step_up;
mod throttling;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use chrono::Utc;
use http_body_util::BodyExt as _;
use lucia_diesel::{PgPool, PoolOptions, PostgresAdapter, SessionManager, migrations};
use tower::ServiceExt as _;

use crate::support::TestDb;
use crate::support::clock::ManualClock;
use crate::support::csrf::HOST;

const APP_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("examples/axum_app/migrations");

/// The example's state on a test schema of its own, with a clock the test
/// moves.
struct App {
    db: TestDb,
    clock: ManualClock,
    state: api::AppState,
}

impl App {
    async fn new() -> Self {
        Self::with_limits(limits(Hasher::new(2, 4))).await
    }

    async fn with_limits(limits: PasswordLimits) -> Self {
        let db = TestDb::new().await;
        migrations::run_pending_migrations(db.connect().await)
            .await
            .unwrap();
        migrations::run_embedded_migrations(db.connect().await, APP_MIGRATIONS)
            .await
            .unwrap();
        let pool = PoolOptions::new()
            .with_max_size(4)
            .build(&db.url)
            .await
            .unwrap();
        let clock = ManualClock::at(Utc::now());
        let state = state(pool, clock.clone(), limits);
        Self { db, clock, state }
    }

    fn router(&self) -> Router {
        api::router(self.state.clone())
    }

    fn sessions(&self) -> &api::Sessions {
        &self.state.sessions
    }

    /// A user straight in the table, and a session for it: its token.
    async fn user_with_session(&self, id: &str) -> String {
        self.db
            .exec(&format!(
                "INSERT INTO auth_user (id, username) VALUES ('{id}', '{id}')"
            ))
            .await;
        self.sessions()
            .create_session(id.to_owned(), api::SessionInfo::default())
            .await
            .unwrap()
            .token
            .into_string()
    }
}

/// `hasher` and the throttle's default budgets.
fn limits(hasher: Hasher) -> PasswordLimits {
    PasswordLimits {
        hasher,
        throttle: LoginThrottle::default(),
    }
}

fn state(pool: PgPool, clock: ManualClock, limits: PasswordLimits) -> api::AppState {
    let sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<api::SessionInfo>()
            .with_user_attributes::<api::UserInfo>(),
    )
    .with_clock(clock)
    .build()
    .unwrap();
    api::AppState::new(sessions, pool, limits)
}

/// A request to `path` with the test `Host`, the `(name, value)` headers
/// and an empty body.
fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::empty()).unwrap()
}

async fn send(router: &Router, req: Request<Body>) -> Response<Body> {
    router.clone().oneshot(req).await.unwrap()
}

/// The body as JSON.
async fn json(res: Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

/// The `Set-Cookie` of the session cookie, split into its attributes.
fn session_set_cookie<B>(res: &Response<B>) -> Option<Vec<String>> {
    let mut found = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("auth_session="));
    let first = found.next()?;
    assert!(found.next().is_none(), "one session Set-Cookie at most");
    Some(first.split("; ").map(str::to_owned).collect())
}

/// The token a `Set-Cookie` stores.
fn cookie_token(parts: &[String]) -> String {
    parts[0].trim_start_matches("auth_session=").to_owned()
}

fn assert_cookie_attributes(parts: &[String], max_age: &str) {
    for want in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", max_age] {
        assert!(
            parts.iter().any(|p| p == want),
            "{want} missing from {parts:?}"
        );
    }
    assert_eq!(parts.len(), 6, "no other attributes: {parts:?}");
}

fn no_store<B>(res: &Response<B>) -> bool {
    res.headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.as_bytes())
        == Some(b"no-store")
}

/// A JSON request, as `request` builds it, with `body`.
fn json_request(path: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Request<Body> {
    let (parts, _) = request("POST", path, headers).into_parts();
    let mut req = Request::from_parts(parts, Body::from(body.to_string()));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    req
}

/// A route for every method that reports the session it sees (`none`, or
/// the user id), behind a layer that accepts bearer tokens or not.
fn probe_router(app: &App, bearer: bool) -> Router {
    use lucia_diesel::axum::{CurrentSession, MaybeSession, SessionLayer};

    async fn probe(current: MaybeSession<api::Adapter>) -> String {
        current.0.map_or_else(|| "none".to_owned(), |c| c.user.id)
    }
    /// Both extractors: each reports whether the session was just extended.
    async fn twice(
        first: CurrentSession<api::Adapter>,
        second: MaybeSession<api::Adapter>,
    ) -> String {
        let second = second.0.expect("the same session");
        format!("{} {}", first.session.fresh, second.session.fresh)
    }
    Router::new()
        .route("/probe", axum::routing::any(probe))
        .route("/twice", axum::routing::get(twice))
        .layer(SessionLayer::new().with_bearer_tokens(bearer))
        .with_state(Arc::clone(&app.state.sessions))
}

async fn text(res: Response<Body>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
