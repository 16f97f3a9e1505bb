//! The sampler: one tokio task per [`ReplicatedPool`](super::ReplicatedPool)
//! that asks each server, every quarter of `max_replica_lag`, where it
//! stands, and records the answers in the pool's [`State`].
//!
//! Each server is asked over a connection of its own, outside the pools,
//! so that a busy pool never delays a sample and a sample never takes a
//! caller's connection. The servers are asked independently (one that is
//! down or slow holds up no other), each probe bounded by
//! `max_replica_lag`: an answer later than that is of no use. The task
//! holds only a weak reference to the state, and ends at its next sample
//! once the last clone of the pool is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use futures_util::future::{join, join_all};
use tokio::time::MissedTickBehavior;

use super::health::{ReplicaProbe, State};
use crate::pool::PoolOptions;

/// The primary's WAL position (written, if not yet flushed), as a byte
/// position. A commit that has returned is within it, except under
/// asynchronous commit (`synchronous_commit = off`), whose commits reach
/// it once the WAL writer has written them.
const PRIMARY_PROBE: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8 AS position";

/// A replica's state: in recovery, and how far it has replayed and received.
const REPLICA_PROBE: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
     pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::int8 AS replayed, \
     pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::int8 AS received";

#[derive(QueryableByName)]
struct PrimaryRow {
    #[diesel(sql_type = BigInt)]
    position: i64,
}

#[derive(QueryableByName)]
struct ReplicaRow {
    #[diesel(sql_type = Bool)]
    in_recovery: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    replayed: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    received: Option<i64>,
}

/// Starts the sampler of `state`, whose replicas are `replica_urls` in
/// order. Must run within a tokio runtime.
pub(super) fn spawn(
    state: &Arc<State>,
    options: &PoolOptions,
    primary_url: &str,
    replica_urls: &[&str],
) {
    let every = (state.max_lag / 4).max(Duration::from_millis(1));
    let bound = state.max_lag;
    let link = |url: &str| Link {
        url: url.to_owned(),
        tls: options.tls.clone(),
        conn: None,
    };
    let weak = Arc::downgrade(state);
    let primary = watch(
        weak.clone(),
        link(primary_url),
        every,
        bound,
        PRIMARY_PROBE,
        {
            |state: &State, asked, row: Option<PrimaryRow>| {
                state.record_primary(asked, row.map(|r| r.position));
            }
        },
    );
    let replicas = replica_urls.iter().enumerate().map(|(i, url)| {
        watch(weak.clone(), link(url), every, bound, REPLICA_PROBE, {
            move |state: &State, asked, row: Option<ReplicaRow>| {
                let probe = row.map(|r| ReplicaProbe {
                    in_recovery: r.in_recovery,
                    replayed: r.replayed,
                    received: r.received,
                });
                state.record_replica(i, asked, probe);
            }
        })
    });
    let replicas = join_all(replicas);
    tokio::spawn(async move {
        join(primary, replicas).await;
    });
}

/// Asks one server `sql` every `every`, handing each answer (`None` when
/// none came within `bound`) to `record`, until the state is gone.
async fn watch<T: QueryableByName<Pg> + Send + 'static>(
    state: Weak<State>,
    mut link: Link,
    every: Duration,
    bound: Duration,
    sql: &'static str,
    record: impl Fn(&State, Instant, Option<T>) + Send,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if state.strong_count() == 0 {
            return;
        }
        let asked = Instant::now();
        let answer = link.ask(sql, bound).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        record(&state, asked, answer);
    }
}

/// A server and the sampler's connection to it, opened when needed and
/// dropped after any failure.
struct Link {
    /// May hold a password: never logged or shown.
    url: String,
    tls: Option<crate::connect::TlsConfig>,
    conn: Option<AsyncPgConnection>,
}

impl Link {
    /// `sql`'s one row, connecting first if needed, within `bound`.
    async fn ask<T: QueryableByName<Pg> + Send + 'static>(
        &mut self,
        sql: &'static str,
        bound: Duration,
    ) -> Option<T> {
        let answer = tokio::time::timeout(bound, async {
            if self.conn.is_none() {
                self.conn = Some(self.connect().await?);
            }
            let conn = self.conn.as_mut()?;
            diesel::sql_query(sql).get_result::<T>(conn).await.ok()
        });
        let answer = answer.await.ok().flatten();
        if answer.is_none() {
            self.conn = None;
        }
        answer
    }

    /// A connection as the pools open them (TLS included), without their
    /// statement timeout: each probe has its own bound.
    async fn connect(&self) -> Option<AsyncPgConnection> {
        crate::connect::diesel(&self.url, self.tls.as_ref())
            .await
            .ok()
    }
}
