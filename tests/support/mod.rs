//! Test database plumbing: one server per test run, one schema per test.
//! The throwaway cluster itself is the `testkit` crate (`testkit/`).

pub mod capture;
pub mod clock;
#[cfg(any(feature = "rocket", feature = "axum"))]
pub mod csrf;
#[cfg(feature = "pooler")]
pub mod pgbouncer;
#[cfg(any(feature = "actix", feature = "axum", feature = "rocket"))]
pub mod signed_in;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use testkit::Cluster;

/// The server every test shares: `DATABASE_URL` when set, otherwise a
/// private cluster started on first use and stopped when the process exits.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    // Before any test calls into the crate (see `capture`).
    capture::install();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
            let url = cluster.url("postgres");
            cluster.stop_when_process_exits();
            url
        }
    })
}

/// `url` with `options=-c search_path=<schema>` added.
pub fn url_with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// A schema of its own for one test, dropped (with everything in it) when
/// the value is dropped.
pub struct TestDb {
    pub schema: String,
    pub url: String,
    /// The server's URL (default search path).
    server: String,
    extra_schemas: Vec<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

impl TestDb {
    /// A schema on the shared test server.
    pub async fn new() -> Self {
        Self::on(server_url()).await
    }

    /// A schema on the server at `server` (a URL with the default search
    /// path), such as a replicated pair's primary.
    pub async fn on(server: &str) -> Self {
        let schema = unique_name("ld");
        let mut admin = AsyncPgConnection::establish(server)
            .await
            .expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create test schema");
        Self {
            url: url_with_search_path(server, &schema),
            schema,
            server: server.to_owned(),
            extra_schemas: Vec::new(),
        }
    }

    /// Another schema owned by this test (for schema-qualified names).
    pub async fn extra_schema(&mut self, prefix: &str) -> String {
        let schema = unique_name(prefix);
        AsyncPgConnection::establish(&self.server)
            .await
            .expect("connect to the test server")
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create extra schema");
        self.extra_schemas.push(schema.clone());
        schema
    }

    /// A connection with `search_path` set to this test's schema.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to test schema")
    }

    /// Runs SQL in this test's schema.
    pub async fn exec(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut schemas = vec![self.schema.clone()];
        schemas.append(&mut self.extra_schemas);
        let drops: Vec<String> = schemas
            .iter()
            .map(|s| format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .collect();
        cleanup(&self.server, &drops);
    }
}

/// Runs each statement on `server`, ignoring failures, from a thread and a
/// runtime of its own: for cleanup in `Drop`, which runs inside the test's
/// runtime.
pub fn cleanup(server: &str, statements: &[String]) {
    let (url, statements) = (server.to_owned(), statements.to_vec());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            if let Ok(mut conn) = AsyncPgConnection::establish(&url).await {
                for sql in statements {
                    let _ = conn.batch_execute(&sql).await;
                }
            }
        });
        Ok::<_, std::io::Error>(())
    })
    .join();
}

/// The time now, cut to microseconds as PostgreSQL stores it, so that a
/// session written with it reads back equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::DurationRound as _;
    chrono::Utc::now()
        .duration_trunc(chrono::Duration::microseconds(1))
        .expect("in range")
}

/// A superuser connection to the shared server (default search path).
pub async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(server_url())
        .await
        .expect("connect to the test server")
}

/// Runs a query that returns one `bigint` column named `n`.
pub async fn scalar(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// Drops 200 validations at arbitrary points (before, during and after
/// their round trip), cycling through `tokens`, and runs `check` every 20
/// and at the end: a dropped future must never leave a connection that
/// answers the next caller with someone else's rows.
pub async fn drop_validations_midway<A: lucia_diesel::Adapter>(
    m: &lucia_diesel::SessionManager<A>,
    tokens: &[&str],
    check: impl AsyncFn(),
) {
    for i in 0..200u64 {
        let token = tokens[usize::try_from(i).unwrap() % tokens.len()];
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(i * 37 % 3000),
            m.validate_session(token),
        )
        .await;
        if i.is_multiple_of(20) {
            check().await;
        }
    }
    check().await;
}
