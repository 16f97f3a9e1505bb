//! Streaming replication between [`Cluster`]s: a hot standby of a running
//! cluster, and the controls a replication test needs (pause and resume
//! replay, wait for it, promote), plus [`Cluster::psql`] to ask a server
//! anything without a driver.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;

/// How long [`Cluster::start_standby`] waits for the standby to stream.
const STREAMING_WAIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts a hot standby of this cluster, streaming from it, and waits
    /// until its WAL receiver streams.
    ///
    /// The standby is a cluster of its own (its own directory, port and
    /// socket, the same settings as every [`Cluster`]), copied with
    /// `pg_basebackup -R -X stream` (run as the `postgres` user when this
    /// process is root): `-R` writes `standby.signal` and a
    /// `primary_conninfo` naming this cluster's port, so the standby
    /// connects again by itself after either server restarts. It uses no
    /// replication slot, so it costs the primary nothing once dropped.
    /// Dropping the standby stops it and deletes its directory, like any
    /// cluster; dropping the primary first leaves it running, unable to
    /// stream, until it is dropped.
    ///
    /// # Errors
    /// A step that failed (`pg_basebackup`, the start, or no streaming
    /// within 60 s), with its output and the standby's log.
    pub fn start_standby(&self) -> Result<Cluster, String> {
        let mut standby = Cluster::new_dir()?;
        let port = self.port.to_string();
        let pg_basebackup = self.bin.join("pg_basebackup");
        standby.run(
            standby
                .command(&pg_basebackup)
                .arg("-D")
                .arg(standby.data_dir())
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"]),
            false,
        )?;
        // Appended after the primary's copied settings, so these win: the
        // standby's own port and socket directory.
        standby.configure("", &[])?;
        standby.pg_ctl(&["start", "-w", "-t", "60"])?;
        standby.stopped = false;
        let deadline = Instant::now() + STREAMING_WAIT;
        while !standby.is_streaming()? {
            if Instant::now() > deadline {
                return Err(format!(
                    "the standby did not stream within {STREAMING_WAIT:?}: {}",
                    standby.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(standby)
    }

    /// Whether this cluster's WAL receiver is streaming from a primary
    /// (`pg_stat_wal_receiver`); false on a primary.
    ///
    /// # Errors
    /// The server could not be asked (see [`Cluster::psql`]).
    pub fn is_streaming(&self) -> Result<bool, String> {
        let n =
            self.psql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")?;
        Ok(n == "1")
    }

    /// Pauses WAL replay on this standby (`pg_wal_replay_pause()`): it
    /// keeps receiving WAL but applies no further record, so its data
    /// stays as it is now while the primary moves on.
    ///
    /// # Errors
    /// As [`Cluster::psql`]; also when this cluster is not in recovery.
    pub fn pause_replay(&self) -> Result<(), String> {
        self.psql("SELECT pg_wal_replay_pause()").map(drop)
    }

    /// Resumes WAL replay after [`Cluster::pause_replay`]
    /// (`pg_wal_replay_resume()`).
    ///
    /// # Errors
    /// As [`Cluster::pause_replay`].
    pub fn resume_replay(&self) -> Result<(), String> {
        self.psql("SELECT pg_wal_replay_resume()").map(drop)
    }

    /// Waits up to `timeout` until `standby` has replayed everything this
    /// cluster had written when the call began (its
    /// `pg_current_wal_insert_lsn()`: with `synchronous_commit = off` the
    /// last commits may still be past `pg_current_wal_lsn()`).
    ///
    /// # Errors
    /// A server could not be asked, or the standby did not catch up in time.
    pub fn wait_for_replay(&self, standby: &Cluster, timeout: Duration) -> Result<(), String> {
        let lsn = self.psql("SELECT pg_current_wal_insert_lsn()")?;
        let caught_up = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        let deadline = Instant::now() + timeout;
        while standby.psql(&caught_up)? != "t" {
            if Instant::now() > deadline {
                return Err(format!(
                    "the standby did not replay up to {lsn} in {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Promotes this standby to a primary (`pg_ctl promote`), waiting up to
    /// 60 s until it accepts writes.
    ///
    /// # Errors
    /// As [`Cluster::pg_ctl`]; also when this cluster is not a standby.
    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["promote", "-w", "-t", "60"])
    }

    /// Runs `sql` in database `postgres` as the `postgres` superuser with
    /// `psql` (no `.psqlrc`, stopping at the first error) and returns its
    /// output: unaligned, without headers, trimmed (`"t"`, `"1"`, one row
    /// a line with columns between `|`).
    ///
    /// # Errors
    /// `psql` could not run or the statement failed: its error output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let port = self.port.to_string();
        let mut cmd = self.command(&psql);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .stdin(Stdio::null());
        let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql on port {port} failed ({}): {sql}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The end of the server log (its last 4000 characters), for errors.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or(&log).to_owned()
    }
}
