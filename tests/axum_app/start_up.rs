//! Start-up: the URL the example prints answers, and the throwaway cluster
//! both examples start without `DATABASE_URL` (`examples/common/database.rs`)
//! is printed with its port and removed however the example ends: Ctrl-C
//! in a terminal (SIGINT to the whole foreground process group), SIGTERM,
//! or a crash (SIGKILL, no destructor runs).

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};

use super::common::database;
use super::end_to_end::Server;
use super::*;

#[tokio::test]
async fn the_printed_url_answers_with_the_routes() {
    let server = Server::start().await;
    let line = api::banner(server.addr);
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let path = url
        .strip_prefix(&server.base)
        .unwrap_or_else(|| panic!("{url} is not the server's"));
    let index = server.call(Method::GET, path, &[], None).await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.body);
    let listed: Vec<&str> = index.body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, api::ROUTES);
    // Every route listed is there (without a session or a body it answers
    // 401, 415 or 422, never the 404 of an unknown route).
    for route in listed {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "some-id");
        let method: Method = method.parse().unwrap();
        let res = server.call(method, &path, &[], None).await;
        assert_ne!(res.status, StatusCode::NOT_FOUND, "{route}: {}", res.body);
        assert!(!res.status.is_server_error(), "{route}: {}", res.body);
    }
    let missing = server.call(Method::GET, "/api/nothing", &[], None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Set in the child process the test below starts.
const CHILD: &str = "LUCIA_EXAMPLE_CLUSTER_CHILD";

/// In a child process of the test below (else nothing): starts the
/// throwaway cluster as the examples do, says so, and waits to be ended.
#[test]
#[ignore = "a child process of the_throwaway_cluster_is_removed_however_the_example_ends"]
fn throwaway_cluster_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let url = database::database_url(None).unwrap();
    println!("READY {url}");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn the_throwaway_cluster_is_removed_however_the_example_ends() {
    std::thread::scope(|s| {
        for (signal, number, whole_group) in
            [("INT", 2, true), ("TERM", 15, false), ("KILL", 9, false)]
        {
            s.spawn(move || end_a_child(signal, number, whole_group));
        }
    });
}

/// Starts the child in a process group of its own (as a shell starts a
/// job), ends it with `signal` (sent to its whole group when `whole_group`,
/// as Ctrl-C in a terminal does), and checks that its cluster is gone.
fn end_a_child(signal: &str, number: i32, whole_group: bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "axum_app::start_up::throwaway_cluster_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let printed = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // libtest writes the test's name first, on the same line.
    let Some(url) = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once("READY ").map(|(_, url)| url.to_owned()))
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{signal}: the child did not start a cluster: {}",
            printed.join().unwrap()
        );
    };
    let port: u16 = url
        .strip_prefix("postgres://postgres@127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));
    assert!(listening(port), "{signal}: the cluster runs on {port}");
    let dirs = cluster_dirs(pid);
    assert_eq!(dirs.len(), 1, "{signal}: {dirs:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "{signal}: still running"
    );

    let target = if whole_group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let sent = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), target])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(number), "{signal}: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while listening(port) || dirs[0].exists() {
        assert!(
            Instant::now() < deadline,
            "{signal}: the cluster on {port} outlived the example"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = printed.join().unwrap();
    assert!(
        stderr.contains(&format!(
            "DATABASE_URL is not set: started a throwaway PostgreSQL cluster at {url} "
        )),
        "{signal}: {stderr}"
    );
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The directories of the clusters process `pid` started (testkit names
/// them after the process).
fn cluster_dirs(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("lucia-diesel-pg-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
