//! This process: who it runs as, and work left for after it exits.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

/// Whether this process runs as root. Servers that refuse root (`initdb`,
/// `postgres`, PgBouncer) then run as the `postgres` system user.
#[must_use]
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs the shell command `cleanup` once this process has exited, from a
/// watcher process of its own that polls for this one every half second.
///
/// For servers kept for a whole test run in a `static`, whose `Drop` never
/// runs, and for an example's throwaway cluster: the cleanup runs however
/// this process ends (a normal exit, a panic, SIGTERM, SIGKILL, a crash).
/// The watcher leads a process group of its own and ignores SIGINT and
/// SIGHUP, so Ctrl-C in a terminal (which signals the whole foreground
/// group) or closing the terminal stops this process, not the watcher.
///
/// Returns false when the watcher could not be started (then nothing
/// will clean up, and the caller should keep its own `Drop`).
pub fn after_this_process(cleanup: &str) -> bool {
    let watcher = format!(
        "trap '' INT HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &watcher])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}
