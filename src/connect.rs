//! Opening a connection, with or without TLS: the one place the pools, the
//! pooler and the replica probes connect. The TLS settings
//! ([`TlsConfig`]) exist without the `rustls` feature too, as a type with
//! no values, so callers hold an `Option<TlsConfig>` either way.

use diesel_async::AsyncPgConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{Client, Config, Connection, NoTls};

#[cfg(feature = "rustls")]
pub(crate) use crate::tls::TlsConfig;

/// Without the `rustls` feature: TLS settings, which cannot be made.
#[cfg(not(feature = "rustls"))]
#[derive(Debug, Clone)]
pub(crate) enum TlsConfig {}

/// A client on `config`, over verified TLS when `tls` is given, its
/// connection driven by a task of its own.
pub(crate) async fn client(
    config: &Config,
    tls: Option<&TlsConfig>,
) -> Result<Client, tokio_postgres::Error> {
    match tls {
        Some(tls) => tls_client(config, tls).await,
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

#[cfg(feature = "rustls")]
async fn tls_client(config: &Config, tls: &TlsConfig) -> Result<Client, tokio_postgres::Error> {
    let (config, connector) = tls.connector(config);
    let (client, connection) = config.connect(connector).await?;
    tokio::spawn(drive(connection));
    Ok(client)
}

#[cfg(not(feature = "rustls"))]
async fn tls_client(_: &Config, tls: &TlsConfig) -> Result<Client, tokio_postgres::Error> {
    match *tls {}
}

/// Drives a connection until it ends.
async fn drive<S, T>(connection: Connection<S, T>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(target: "lucia_diesel::pool", error = %e, "database connection ended");
    }
}

/// A diesel-async connection to `url`, as the pools open them.
///
/// The tokio-postgres connection is driven by a task of its own and the
/// [`AsyncPgConnection`] is made from the client alone. diesel-async then
/// awaits each query directly; from a connection it drives itself, it would
/// race every query against a broadcast of the connection's errors (a
/// resubscription, a `select` and a receiver per query). A query on a lost
/// connection fails all the same, with the client's "connection closed"
/// ([`Error::Unavailable`](crate::Error::Unavailable)), and `is_broken`
/// sees the closed client, so the pool drops it. What is given up:
/// LISTEN/NOTIFY notifications are not delivered on pooled connections.
pub(crate) async fn diesel(
    url: &str,
    tls: Option<&TlsConfig>,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let config: Config = url.parse().map_err(|e| {
        diesel::ConnectionError::InvalidConnectionUrl(format!(
            "the database URL cannot be parsed: {e}"
        ))
    })?;
    let client = client(&config, tls)
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    AsyncPgConnection::try_from(client).await
}
