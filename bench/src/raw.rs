//! The floor: the same operations on tokio-postgres directly, one prepared
//! statement each, over a pool of the same size.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls, Statement};

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    validate: Statement,
    touch: Statement,
    list: Statement,
    create: Statement,
    delete: Statement,
    delete_user: Statement,
    update_user: Statement,
}

/// A minimal fixed-size pool: a semaphore in front of a stack of connections.
pub struct RawPool {
    permits: Semaphore,
    conns: Mutex<Vec<Conn>>,
}

impl RawPool {
    pub async fn connect(url: &str, size: usize) -> Result<Self, tokio_postgres::Error> {
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(connection);
            conns.push(Conn {
                validate: client
                    .prepare(
                        "SELECT s.id, s.expires_at, s.user_id, s.country, u.id, u.username \
                         FROM user_session s INNER JOIN auth_user u ON u.id = s.user_id WHERE s.id = $1",
                    )
                    .await?,
                touch: client.prepare("UPDATE user_session SET expires_at = $1 WHERE id = $2").await?,
                list: client
                    .prepare("SELECT id, expires_at, user_id, country FROM user_session WHERE user_id = $1")
                    .await?,
                create: client
                    .prepare("INSERT INTO user_session (id, user_id, expires_at, country) VALUES ($1, $2, $3, $4)")
                    .await?,
                delete: client.prepare("DELETE FROM user_session WHERE id = $1").await?,
                delete_user: client.prepare("DELETE FROM user_session WHERE user_id = $1").await?,
                // The application's own write to a user row (a profile edit).
                update_user: client
                    .prepare("UPDATE auth_user SET username = username || '.' WHERE id = $1")
                    .await?,
                client,
            });
        }
        Ok(Self {
            permits: Semaphore::new(size),
            conns: Mutex::new(conns),
        })
    }

    async fn with<T>(&self, f: impl AsyncFnOnce(&Conn) -> T) -> T {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let conn = self
            .conns
            .lock()
            .expect("not poisoned")
            .pop()
            .expect("a permit means a free connection");
        let out = f(&conn).await;
        self.conns.lock().expect("not poisoned").push(conn);
        out
    }

    /// Session and user, decoded like the adapter decodes them.
    pub async fn validate(&self, id: &str) -> Result<bool, tokio_postgres::Error> {
        self.with(async |c| {
            let row = c.client.query_opt(&c.validate, &[&id]).await?;
            Ok(row
                .map(|r| {
                    let _: (
                        String,
                        DateTime<Utc>,
                        String,
                        Option<String>,
                        String,
                        String,
                    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                })
                .is_some())
        })
        .await
    }

    pub async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
        self.with(async |c| c.client.execute(&c.touch, &[&at, &id]).await)
            .await
    }

    pub async fn list(&self, user: &str) -> Result<usize, tokio_postgres::Error> {
        self.with(async |c| {
            let rows = c.client.query(&c.list, &[&user]).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let _: (String, DateTime<Utc>, String, Option<String>) =
                        (r.get(0), r.get(1), r.get(2), r.get(3));
                })
                .count())
        })
        .await
    }

    pub async fn create(
        &self,
        id: &str,
        user: &str,
        at: DateTime<Utc>,
        country: &str,
    ) -> Result<u64, tokio_postgres::Error> {
        self.with(async |c| {
            c.client
                .execute(&c.create, &[&id, &user, &at, &country])
                .await
        })
        .await
    }

    pub async fn delete(&self, id: &str) -> Result<u64, tokio_postgres::Error> {
        self.with(async |c| c.client.execute(&c.delete, &[&id]).await)
            .await
    }

    pub async fn delete_user(&self, user: &str) -> Result<u64, tokio_postgres::Error> {
        self.with(async |c| c.client.execute(&c.delete_user, &[&user]).await)
            .await
    }

    pub async fn update_user(&self, user: &str) -> Result<u64, tokio_postgres::Error> {
        self.with(async |c| c.client.execute(&c.update_user, &[&user]).await)
            .await
    }
}
