//! The cost of the web framework integrations per validated request: the
//! same handler (`GET /me` behind the session layer or middleware, with
//! `CurrentSession`, answering the user id) served by axum and by
//! actix-web, each with two worker threads, driven over keep-alive HTTP/1.1
//! connections from one client runtime. Rounds alternate the frameworks so
//! that a shared machine's drift hits both alike; the report gives the
//! median requests per second of each and the ratio.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p lucia-diesel-bench --bin frameworks -- [SECS] [ROUNDS]
//! ```
//!
//! Without `DATABASE_URL` it starts a throwaway cluster. Two managers are
//! measured: validating on the database (a round trip per request) and
//! from the validation cache (no round trip: the framework's share is the
//! largest there). The numbers go in BENCHMARKS.md by hand.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use lucia_diesel::cache::CacheOptions;
use lucia_diesel::migrations::{CACHE_MIGRATIONS, run_embedded_migrations};
use lucia_diesel::{Attributes, PgPool, PoolOptions, PostgresAdapter, SessionManager};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type Adapter = PostgresAdapter<PgPool>;
type Manager = SessionManager<Adapter>;

const DATABASE: &str = "session_bench_frameworks";
const USERS: usize = 1_000;
const CONCURRENCY: [usize; 2] = [1, 32];

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (server, _cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = testkit::Cluster::start()?;
            (cluster.url("postgres"), Some(cluster))
        }
    };
    let (url, tokens) = client.block_on(setup(&server))?;
    println!(
        "# frameworks: {secs} s x {rounds} rounds, median req/s; GET /me validates \
         (CurrentSession), GET /plain does not (no session layer): the integration's \
         cost per request is 1/me - 1/plain"
    );
    println!(
        "| manager | c | axum /me | actix /me | actix / axum | axum /plain | actix /plain | integration us: axum | actix |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for cached in [false, true] {
        let axum = Axum::start(&url, cached)?;
        let actix = Actix::start(&url, cached)?;
        for c in CONCURRENCY {
            let mut runs: [Vec<f64>; 4] = Default::default();
            for _ in 0..rounds {
                for (i, (addr, path)) in [
                    (axum.addr, "/me"),
                    (actix.addr, "/me"),
                    (axum.addr, "/plain"),
                    (actix.addr, "/plain"),
                ]
                .into_iter()
                .enumerate()
                {
                    runs[i].push(client.block_on(load(addr, path, &tokens, c, secs))?);
                }
            }
            let [a, x, ap, xp] = runs.each_mut().map(|r| median(r));
            // Per request at c concurrent clients: c / rate.
            let cost = |with: f64, without: f64| 1e6 * c as f64 * (1.0 / with - 1.0 / without);
            let manager = if cached { "cached" } else { "database" };
            println!(
                "| {manager} | {c} | {a:.0} | {x:.0} | {:.3} | {ap:.0} | {xp:.0} | {:.1} | {:.1} |",
                x / a,
                cost(a, ap),
                cost(x, xp)
            );
            eprintln!("  rounds: {runs:.0?}");
        }
        drop(axum);
        drop(actix);
    }
    client.block_on(async {
        let mut admin = AsyncPgConnection::establish(&server).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .await?;
        Res::Ok(())
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A database of its own with the crate's tables, the cache's outbox, and
/// `USERS` users with a session each: their tokens.
async fn setup(server: &str) -> Res<(String, Vec<String>)> {
    let mut admin = AsyncPgConnection::establish(server).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{DATABASE}"),
        None => return Err("DATABASE_URL must be a URL".into()),
    };
    lucia_diesel::migrations::run_pending_migrations_at(&url).await?;
    run_embedded_migrations(AsyncPgConnection::establish(&url).await?, CACHE_MIGRATIONS).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.batch_execute(&format!(
        "INSERT INTO auth_user (id) SELECT 'user-' || g FROM generate_series(1, {USERS}) g"
    ))
    .await?;
    let sessions = SessionManager::new(PostgresAdapter::new(PoolOptions::new().build(&url).await?));
    let mut tokens = Vec::with_capacity(USERS);
    for i in 1..=USERS {
        let created = sessions
            .create_session(format!("user-{i}"), Attributes::new())
            .await?;
        tokens.push(created.token.into_string());
    }
    Ok((url, tokens))
}

/// The manager each server validates with: 32 connections, and the cache
/// when `cached`.
async fn manager(url: &str, cached: bool) -> Res<Manager> {
    let pool = PoolOptions::new().with_max_size(32).build(url).await?;
    let manager = SessionManager::new(PostgresAdapter::new(pool));
    Ok(if cached {
        manager.with_cache(CacheOptions::new()).await?
    } else {
        manager
    })
}

/// The server's address, and a way to stop it.
struct Axum {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Axum {
    fn start(url: &str, cached: bool) -> Res<Self> {
        use axum::routing::get;
        use lucia_diesel::axum::{CurrentSession, SessionLayer};
        async fn me(current: CurrentSession<Adapter>) -> String {
            current.user.id
        }
        async fn plain() -> String {
            "user".to_owned()
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let manager = runtime.block_on(manager(url, cached))?;
        let router = axum::Router::new()
            .route("/me", get(me))
            .layer(SessionLayer::new())
            .route("/plain", get(plain))
            .with_state(Arc::new(manager));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            axum::serve(listener, router).await
        });
        Ok(Self {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Axum {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Actix {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Actix {
    fn start(url: &str, cached: bool) -> Res<Self> {
        use actix_web::{App, HttpServer, web};
        use lucia_diesel::actix::{CurrentSession, SessionMiddleware};
        async fn me(current: CurrentSession<Adapter>) -> String {
            current.user.id
        }
        async fn plain() -> String {
            "user".to_owned()
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let url = url.to_owned();
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let sessions = match manager(&url, cached).await {
                    Ok(m) => web::Data::new(m),
                    Err(e) => return drop(sender.send(Err(e.to_string()))),
                };
                let server = HttpServer::new(move || {
                    App::new().route("/plain", web::get().to(plain)).service(
                        web::scope("")
                            .app_data(sessions.clone())
                            .wrap(SessionMiddleware::new())
                            .route("/me", web::get().to(me)),
                    )
                })
                .workers(2)
                .disable_signals()
                .listen(listener);
                let server = match server {
                    Ok(s) => s.run(),
                    Err(e) => return drop(sender.send(Err(e.to_string()))),
                };
                let _ = sender.send(Ok(server.handle()));
                let _ = server.await;
            });
        });
        let handle = receiver.recv()??;
        Ok(Self {
            addr,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Actix {
    fn drop(&mut self) {
        let stopped = self.handle.stop(false);
        futures_executor(stopped);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a future to completion on a runtime of its own (for `Drop`).
fn futures_executor(fut: impl std::future::Future<Output = ()>) {
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() {
        runtime.block_on(fut);
    }
}

/// `c` keep-alive connections sending `GET /me` with a session cookie in
/// turn for `secs`: the requests per second answered 200.
async fn load(addr: SocketAddr, path: &str, tokens: &[String], c: usize, secs: f64) -> Res<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..c {
        let requests: Vec<Vec<u8>> = tokens
            .iter()
            .skip(i)
            .step_by(c)
            .map(|t| {
                format!("GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: auth_session={t}\r\n\r\n")
                    .into_bytes()
            })
            .collect();
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(&requests[n % requests.len()]).await?;
                read_response(&mut stream, &mut buf).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Res::Ok(())
        }));
    }
    // Warm up, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (start, before) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let count = done.load(Ordering::Relaxed) - before;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(rate)
}

/// Reads one response with a `Content-Length` body; fails unless it is a
/// 200.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) -> Res<()> {
    let mut len = 0;
    let (head, body_len) = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        len += n;
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?.to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .ok_or("no content-length")?
                .trim()
                .parse::<usize>()?;
            break (end + 4, body_len);
        }
    };
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(format!("{:?}", String::from_utf8_lossy(&buf[..head])).into());
    }
    let mut have = len - head;
    while have < body_len {
        let n = stream.read(&mut buf[..]).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        have += n;
    }
    Ok(())
}
