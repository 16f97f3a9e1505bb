//! TLS connections (feature `rustls`): managed and serverless PostgreSQL.
//!
//! Managed providers (Neon, Supabase, RDS, Cloud SQL, ...) require TLS.
//! [`TlsConfig`] says which certificate authorities to trust;
//! [`establish`] opens one verified connection and
//! [`PoolOptions::with_tls`](crate::PoolOptions::with_tls) makes a pool of them.
//!
//! With a `TlsConfig` the connection always uses TLS: a URL's default
//! `sslmode=prefer` is raised to `require`, so a server (or an attacker in
//! the middle) that offers no TLS gets no plaintext fallback. Certificates
//! are verified against the trusted roots and the host name (or IP address)
//! of the URL. Only an explicit `sslmode=disable` in the URL turns TLS off.
//!
//! # Examples
//! ```no_run
//! use lucia_diesel::{PoolOptions, PostgresAdapter, tls::TlsConfig};
//!
//! # async fn run() -> lucia_diesel::Result<()> {
//! // A provider with a public certificate authority:
//! let pool = PoolOptions::new()
//!     .with_tls(TlsConfig::webpki_roots())
//!     .build("postgres://app:secret@db.example.com/app")
//!     .await?;
//! // Or a CA bundle of the provider's (or a self-signed CA):
//! let tls = TlsConfig::from_pem(&std::fs::read("rds-ca.pem").expect("the CA file"))?;
//! # let _ = (pool, tls); Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConfigError, Error, Result};

/// Which certificate authorities a TLS connection trusts.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts the Mozilla root certificates (the `webpki-roots` crate): for
    /// providers whose servers have certificates from a public CA.
    #[must_use]
    pub fn webpki_roots() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Trusts the CA certificates in `pem` (one or more `BEGIN CERTIFICATE`
    /// blocks): a provider's CA bundle, or the CA of a self-signed setup.
    ///
    /// # Errors
    /// [`ConfigError::NoCaCertificate`] when `pem` holds no certificate,
    /// [`ConfigError::CaCertificate`] for one that cannot be read or used as
    /// a trust anchor.
    pub fn from_pem(pem: &[u8]) -> std::result::Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| ConfigError::CaCertificate(format!("unreadable PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ConfigError::CaCertificate(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ConfigError::NoCaCertificate);
        }
        Ok(Self::with_roots(roots))
    }

    /// A rustls configuration of the application's own (client
    /// certificates, custom verification, another crypto provider).
    #[must_use]
    pub fn from_client_config(config: ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    fn with_roots(roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            config: Arc::new(config),
        }
    }
}

/// Opens one connection to `database_url` over verified TLS.
///
/// # Errors
/// [`Error::Config`] for a URL that cannot be parsed; [`Error::Unavailable`]
/// when the server cannot be reached, offers no TLS, or presents a
/// certificate that does not verify.
pub async fn establish(database_url: &str, tls: &TlsConfig) -> Result<AsyncPgConnection> {
    connect(database_url, tls).await.map_err(|e| match e {
        diesel::ConnectionError::InvalidConnectionUrl(msg) => ConfigError::DatabaseUrl(msg).into(),
        other => Error::from(other),
    })
}

impl TlsConfig {
    /// `config` raised from `sslmode=prefer` to `require`, and the
    /// connector that verifies the server, for a connection of the crate's
    /// own.
    pub(crate) fn connector(
        &self,
        config: &tokio_postgres::Config,
    ) -> (tokio_postgres::Config, MakeRustlsConnect) {
        let mut config = config.clone();
        if config.get_ssl_mode() == SslMode::Prefer {
            config.ssl_mode(SslMode::Require);
        }
        (config, MakeRustlsConnect::new((*self.config).clone()))
    }
}

/// [`establish`] with diesel's error type, for the pool's connection setup.
pub(crate) async fn connect(
    database_url: &str,
    tls: &TlsConfig,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let config: tokio_postgres::Config =
        database_url.parse().map_err(|e: tokio_postgres::Error| {
            diesel::ConnectionError::InvalidConnectionUrl(e.to_string())
        })?;
    let (config, connector) = tls.connector(&config);
    let (client, connection) = config
        .connect(connector)
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}
