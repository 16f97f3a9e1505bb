//! TLS to a server with a certificate from a self-signed CA: verified
//! connections, sessions over them, and no plaintext fallback.

use std::path::Path;
use std::process::Command;

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use lucia_diesel::tls::{TlsConfig, establish};
use lucia_diesel::{Attributes, Error, PoolOptions, PostgresAdapter, SessionManager, migrations};
use testkit::Cluster;

/// A CA and a server certificate for `localhost` / `127.0.0.1`, made with
/// the `openssl` command.
struct Certs {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl) is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs() -> Certs {
    let dir = std::env::temp_dir().join(format!(
        "ld-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=lucia-diesel test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let certs = Certs {
        ca: read("ca.crt"),
        cert: read("server.crt"),
        key: read("server.key"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    certs
}

/// The error of a connection attempt that must fail.
fn refused<T>(result: lucia_diesel::Result<T>) -> Error {
    match result {
        Ok(_) => panic!("the connection was expected to fail"),
        Err(e) => e,
    }
}

fn tls_cluster(certs: &Certs) -> Cluster {
    Cluster::start_with(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        &[("server.crt", &certs.cert), ("server.key", &certs.key)],
    )
    .unwrap()
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_verified_tls() {
    let certs = make_certs();
    let cluster = tls_cluster(&certs);
    let tls = TlsConfig::from_pem(&certs.ca).unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("postgres://postgres@{host}:{}/postgres", cluster.port());
        let mut conn = establish(&url, &tls).await.unwrap();
        let ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result::<Ssl>(&mut conn)
            .await
            .unwrap();
        assert!(ssl.ssl, "{host}: the connection is encrypted");
    }

    let url = format!("postgres://postgres@localhost:{}/postgres", cluster.port());
    migrations::run_pending_migrations(establish(&url, &tls).await.unwrap())
        .await
        .unwrap();
    let mut conn = establish(&url, &tls).await.unwrap();
    diesel::sql_query("INSERT INTO auth_user (id) VALUES ('tls-user')")
        .execute(&mut conn)
        .await
        .unwrap();
    let pool = PoolOptions::new()
        .with_tls(tls.clone())
        .with_max_size(2)
        .build(&url)
        .await
        .unwrap();
    let sessions = SessionManager::new(PostgresAdapter::new(pool));
    let created = sessions
        .create_session("tls-user".into(), Attributes::new())
        .await
        .unwrap();
    let (session, user) = sessions
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .expect("valid over TLS");
    assert_eq!(user.id, "tls-user");
    assert_eq!(session.id, created.session.id);

    // The pooler mode over the same verified TLS: sessions are shared.
    let pooled = PoolOptions::new()
        .with_tls(tls.clone())
        .with_max_size(2)
        .build_pooler(&url)
        .await
        .unwrap();
    let pooled = SessionManager::new(PostgresAdapter::new(pooled));
    let (_, user) = pooled
        .validate_session(created.token.as_str())
        .await
        .unwrap()
        .expect("valid through the pooler mode over TLS");
    assert_eq!(user.id, "tls-user");
    let other = pooled
        .create_session("tls-user".into(), Attributes::new())
        .await
        .unwrap();
    assert!(
        sessions
            .validate_session(other.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    #[cfg(feature = "cache")]
    cached_over_tls(&url, &tls, sessions, &other).await;
}

/// The validation cache over verified TLS: its polls on the TLS pool see a
/// revocation made by another instance.
#[cfg(feature = "cache")]
async fn cached_over_tls(
    url: &str,
    tls: &TlsConfig,
    revoker: SessionManager<PostgresAdapter<lucia_diesel::PgPool>>,
    created: &lucia_diesel::CreatedSession<String, Attributes>,
) {
    use std::time::{Duration, Instant};
    migrations::run_embedded_migrations(
        establish(url, tls).await.unwrap(),
        migrations::CACHE_MIGRATIONS,
    )
    .await
    .unwrap();
    let pool = PoolOptions::new()
        .with_tls(tls.clone())
        .with_max_size(2)
        .build(url)
        .await
        .unwrap();
    let cached = SessionManager::new(PostgresAdapter::new(pool))
        .with_cache(
            lucia_diesel::cache::CacheOptions::new().with_max_poll_age(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let stats = || cached.cache_stats().unwrap();
    let token = created.token.as_str();
    let start = Instant::now();
    loop {
        let hits = stats().hits;
        assert!(cached.validate_session(token).await.unwrap().is_some());
        if stats().hits > hits {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never served: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = stats();
    revoker
        .invalidate_session(&created.session.id)
        .await
        .unwrap();
    while stats().invalidations == before.invalidations {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "never invalidated: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cached.validate_session(token).await.unwrap().is_none());
    assert_eq!(stats().poll_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_missing_tls_is_refused() {
    let certs = make_certs();
    let cluster = tls_cluster(&certs);
    // (The password is ignored by the test server; it must never show up in an error.)
    let url = format!(
        "postgres://postgres:hunter2@localhost:{}/postgres",
        cluster.port()
    );

    // A server certificate from a CA we do not trust.
    let err = refused(establish(&url, &TlsConfig::webpki_roots()).await);
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = PoolOptions::new()
        .with_tls(TlsConfig::webpki_roots())
        .with_checkout_timeout(std::time::Duration::from_secs(2))
        .build(&url)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = PoolOptions::new()
        .with_tls(TlsConfig::webpki_roots())
        .with_checkout_timeout(std::time::Duration::from_secs(2))
        .build_pooler(&url)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");

    // Another self-signed CA is not ours either.
    let other = make_certs();
    let err = refused(establish(&url, &TlsConfig::from_pem(&other.ca).unwrap()).await);
    assert!(
        matches!(err, Error::Unavailable { .. }),
        "another CA: {err:?}"
    );

    // A server without TLS: no plaintext fallback (sslmode=prefer is raised
    // to require).
    let plain = Cluster::start().unwrap();
    let plain_url = format!("postgres://postgres@localhost:{}/postgres", plain.port());
    let err = refused(establish(&plain_url, &TlsConfig::from_pem(&certs.ca).unwrap()).await);
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = PoolOptions::new()
        .with_tls(TlsConfig::from_pem(&certs.ca).unwrap())
        .with_checkout_timeout(std::time::Duration::from_secs(2))
        .build_pooler(&plain_url)
        .await
        .unwrap_err();
    assert!(
        err.is_transient(),
        "the pooler mode has no plaintext fallback either: {err:?}"
    );
    // Unless the URL says so explicitly.
    establish(
        &format!("{plain_url}?sslmode=disable"),
        &TlsConfig::from_pem(&certs.ca).unwrap(),
    )
    .await
    .unwrap();

    // Bad CA input is a configuration error, not a panic.
    assert!(matches!(
        TlsConfig::from_pem(b"not a pem"),
        Err(lucia_diesel::ConfigError::NoCaCertificate
            | lucia_diesel::ConfigError::CaCertificate(_))
    ));
    assert!(matches!(
        TlsConfig::from_pem(b""),
        Err(lucia_diesel::ConfigError::NoCaCertificate)
    ));
    let err = refused(establish(&url, &TlsConfig::webpki_roots()).await);
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}
