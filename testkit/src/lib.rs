//! Dev-only helpers for lucia-diesel's tests and examples: a throwaway
//! PostgreSQL cluster, started from the installed server binaries, and
//! streaming standbys of it.
//!
//! The integration tests, the example app and the bench all need a
//! PostgreSQL server. They use `DATABASE_URL` when it is set; without it
//! they start a private [`Cluster`] here instead of relying on a server that
//! may not exist. This crate is a workspace member and a dev-dependency of
//! `lucia-diesel`; it is never published.
//!
//! # The cluster's rules
//! - The server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`,
//!   `pg_basebackup`) come from the directory in `LUCIA_PG_BIN` when it is
//!   set (CI's run against PostgreSQL 18 sets it to the output of
//!   `.ci/pg18.sh`), else from the newest `/usr/lib/postgresql/*/bin`, else
//!   from `PATH` ([`find_bin_dir`]). Without them [`Cluster::start`] says
//!   how to install them. As root the directory must be readable by the
//!   `postgres` user (under `/opt`, say, not `/root`).
//! - `initdb` and `postgres` refuse to run as root: as root ([`is_root`])
//!   the cluster runs as the `postgres` system user, on a directory that
//!   user owns.
//! - The server listens on 127.0.0.1 only, on a free port, with its Unix
//!   socket in the cluster's own directory under the system temp dir.
//! - It is tuned for tests, not durability: `fsync`, `synchronous_commit`
//!   and `full_page_writes` are off. `pg_stat_statements` is preloaded
//!   when the server has it.
//! - Dropping a [`Cluster`] stops the server and deletes its directory; a
//!   cluster kept for the whole process (in a `static`, whose `Drop` never
//!   runs), or an example's, is cleaned up when the process exits, however
//!   it exits: Ctrl-C, SIGTERM or a crash ([`Cluster::stop_when_process_exits`],
//!   built on [`after_this_process`], whose watcher no terminal signal reaches).
//! - [`Cluster::start_standby`] copies a running cluster with
//!   `pg_basebackup -R` into a hot standby that streams from it; the
//!   standby is a [`Cluster`] too, with replication controls
//!   ([`Cluster::pause_replay`], [`Cluster::resume_replay`],
//!   [`Cluster::wait_for_replay`], [`Cluster::promote`]) beside the usual
//!   stop and start. [`Cluster::psql`] asks either server anything.
//!
//! # Examples
//! ```no_run
//! let cluster = testkit::Cluster::start()?;
//! let url = cluster.url("postgres");
//! // ... connect to `url` ...
//! drop(cluster); // stops the server, deletes its directory
//! # Ok::<(), String>(())
//! ```
//!
//! A primary and a hot standby, with replay paused for a while:
//! ```no_run
//! let primary = testkit::Cluster::start()?;
//! let standby = primary.start_standby()?; // streams once this returns
//! standby.pause_replay()?;
//! primary.psql("CREATE TABLE t (x int)")?; // not on the standby yet
//! standby.resume_replay()?;
//! primary.wait_for_replay(&standby, std::time::Duration::from_secs(10))?;
//! assert_eq!(standby.psql("SELECT pg_is_in_recovery()")?, "t");
//! # Ok::<(), String>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, clippy::unwrap_used)]

mod cluster;
mod process;
mod standby;

#[doc(inline)]
pub use cluster::{Cluster, find_bin_dir};
#[doc(inline)]
pub use process::{after_this_process, is_root};
