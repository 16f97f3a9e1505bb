//! The actix-web integration against PostgreSQL: the extractors and the
//! middleware through actix's test service (`extractors.rs`), the shared
//! CSRF table through the test service and over a real socket
//! (`cross_origin.rs`), and the example's JSON API over a socket
//! (`example.rs`).

// The examples' code, of which the tests use the API, not the start-up.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/common/mod.rs"]
mod common;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../axum_app/frozen.rs"]
mod frozen;
#[allow(dead_code)]
#[path = "../../examples/actix_app/server/mod.rs"]
mod server;

mod account;
mod cross_origin;
mod example;
mod extractors;
mod step_up;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::{App, HttpResponse, test, web};
use chrono::Utc;
use lucia_diesel::actix::{CurrentSession, MaybeSession, SessionMiddleware};
use lucia_diesel::{Attributes, PgPool, PoolOptions, PostgresAdapter, SessionManager, migrations};

use crate::support::TestDb;
use crate::support::clock::ManualClock;
use crate::support::csrf::HOST;

type Adapter = PostgresAdapter<PgPool>;
type Sessions = SessionManager<Adapter>;

/// A manager on a test schema of its own, with a clock the test moves.
struct Fixture {
    db: TestDb,
    clock: ManualClock,
    sessions: web::Data<Sessions>,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::new().await;
        migrations::run_pending_migrations(db.connect().await)
            .await
            .unwrap();
        let pool = PoolOptions::new()
            .with_max_size(4)
            .build(&db.url)
            .await
            .unwrap();
        let clock = ManualClock::at(Utc::now());
        let sessions = manager(pool, clock.clone());
        Self {
            db,
            clock,
            sessions,
        }
    }

    /// A user straight in the table, and a session for it: its token.
    async fn user_with_session(&self, id: &str) -> String {
        self.db
            .exec(&format!("INSERT INTO auth_user (id) VALUES ('{id}')"))
            .await;
        self.sessions
            .create_session(id.to_owned(), Attributes::new())
            .await
            .unwrap()
            .token
            .into_string()
    }
}

fn manager(pool: PgPool, clock: ManualClock) -> web::Data<Sessions> {
    web::Data::new(
        SessionManager::builder(PostgresAdapter::new(pool))
            .with_clock(clock)
            .build()
            .unwrap(),
    )
}

/// Reports the session it sees: `none`, or the user id.
async fn probe(current: MaybeSession<Adapter>) -> String {
    current.0.map_or_else(|| "none".to_owned(), |c| c.user.id)
}

/// The signed-in user's id and session id, as JSON; 401 without.
async fn me(current: CurrentSession<Adapter>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user": current.user.id,
        "session": current.session.id.as_str(),
        "expires_at": current.session.expires_at,
    }))
}

/// Both extractors: each reports whether the session was just extended.
async fn twice(first: CurrentSession<Adapter>, second: MaybeSession<Adapter>) -> String {
    let second = second.0.expect("the same session");
    format!("{} {}", first.session.fresh, second.session.fresh)
}

/// A handler that sets the session cookie itself (as a login does): the
/// middleware must not add its own beside it.
async fn own_cookie(current: MaybeSession<Adapter>) -> HttpResponse {
    let _ = current;
    HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, "auth_session=handler; Path=/"))
        .finish()
}

/// Signs out the user's other sessions: how many went.
async fn others(current: CurrentSession<Adapter>, sessions: web::Data<Sessions>) -> HttpResponse {
    match current.sign_out_others(&sessions).await {
        Ok(n) => HttpResponse::Ok().body(n.to_string()),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// The probe app: the routes above behind the middleware (bearer tokens
/// accepted or not).
fn probe_app(
    sessions: web::Data<Sessions>,
    bearer: bool,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(sessions)
        .wrap(SessionMiddleware::new().with_bearer_tokens(bearer))
        .route("/probe", web::route().to(probe))
        .route("/me", web::get().to(me))
        .route("/twice", web::get().to(twice))
        .route("/own-cookie", web::get().to(own_cookie))
        .route("/others", web::post().to(others))
}

/// A request to `path` with the test `Host` and the `(name, value)` headers.
fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> test::TestRequest {
    let mut req = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path)
        .insert_header((header::HOST, HOST));
    for (name, value) in headers {
        req = req.append_header((*name, *value));
    }
    req
}

/// The `Set-Cookie` of the session cookie, split into its attributes.
fn session_set_cookie<B>(res: &ServiceResponse<B>) -> Option<Vec<String>> {
    let mut found = res
        .headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("auth_session="));
    let first = found.next()?;
    assert!(found.next().is_none(), "one session Set-Cookie at most");
    Some(first.split("; ").map(str::to_owned).collect())
}

fn no_store<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.as_bytes())
        == Some(b"no-store")
}

async fn body_text<B: MessageBody>(res: ServiceResponse<B>) -> String {
    String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
}

async fn body_json<B: MessageBody>(res: ServiceResponse<B>) -> serde_json::Value {
    let text = body_text(res).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
