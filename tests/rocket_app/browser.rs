//! A real browser (headless Chromium through chromedriver) drives the
//! example app: sign-up -> login -> sessions page -> revoke -> logout, with
//! a screenshot of each page under `target/browser-screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; `.ci/run`
//! installs them. Without them the test says so and stops (in CI, where
//! `CI` is set, that is a failure).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};

use super::webdriver::WebDriver;
use super::{Sessions, accounts, app as example, app_database};

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_up_login_sessions_revoke_logout() {
    let (Some(chromium), Some(driver)) = (
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]),
    ) else {
        let msg = "the browser test needs chromium and chromedriver: apt-get install -y chromium chromium-driver";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    };

    // The example app on a port of its own.
    let db = app_database().await;
    let pool = PoolOptions::new()
        .with_max_size(4)
        .build(&db.url)
        .await
        .unwrap();
    let sessions: Sessions = SessionManager::builder(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<example::SessionInfo>()
            .with_user_attributes::<example::UserInfo>(),
    )
    .build()
    .unwrap();
    let other_device: Sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<example::SessionInfo>()
            .with_user_attributes::<example::UserInfo>(),
    );
    let port = free_port();
    let config = rocket::Config {
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        port,
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let server = example::build(rocket::custom(config), sessions, pool.clone())
        .ignite()
        .await
        .unwrap();
    let shutdown = server.shutdown();
    let serving = tokio::spawn(server.launch());
    wait_for_port(port);

    let driver_port = free_port();
    let _driver = KillOnDrop(
        Command::new(&driver)
            .arg(format!("--port={driver_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_for_port(driver_port);

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = std::env::temp_dir().join(format!("ld-chromium-{}", std::process::id()));
    let base = format!("http://127.0.0.1:{port}");
    let chromium = chromium.to_string_lossy().into_owned();
    let profile_dir = profile.to_string_lossy().into_owned();

    let chromium2 = chromium.clone();
    let script = tokio::task::spawn_blocking({
        let base = base.clone();
        let shots = shots.clone();
        move || -> Result<(), String> {
            let b = WebDriver::start(driver_port, &chromium, &profile_dir)?;
            let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));

            b.goto(&format!("{base}/"))?;
            b.wait_url("/login")?;
            b.click("a[href='/signup']")?;
            b.wait_url("/signup")?;
            b.type_into("#username", "browser_user")?;
            b.type_into("#password", "correct-horse-battery")?;
            b.type_into("#confirm", "correct-horse-battery")?;
            shot("01-signup")?;
            b.click("button[type=submit]")?;
            b.wait_text("h1", "Hello, browser_user")?;
            shot("02-home-after-signup")?;

            let cookies = b.cookies()?;
            let session = cookies
                .iter()
                .find(|c| c["name"] == "auth_session")
                .ok_or("no session cookie")?;
            assert_eq!(session["httpOnly"], true);
            assert_eq!(session["secure"], true);
            assert_eq!(session["sameSite"], "Lax");
            assert_eq!(session["path"], "/");

            b.click("header form button")?; // Sign out
            b.wait_url("/login")?;
            assert!(
                !b.cookies()?.iter().any(|c| c["name"] == "auth_session"),
                "logout removed the cookie"
            );

            b.type_into("#username", "browser_user")?;
            b.type_into("#password", "wrong-password")?;
            b.click("button[type=submit]")?;
            b.wait_text(".error", "Wrong username or password")?;
            shot("03-login-wrong-password")?;
            b.type_into("#password", "correct-horse-battery")?;
            b.click("button[type=submit]")?;
            b.wait_text("h1", "Hello, browser_user")?;
            shot("04-home-after-login")?;
            Ok(())
        }
    })
    .await
    .unwrap();
    script.unwrap();

    // Another device signs in, so there is something to revoke.
    let user_id =
        match accounts::log_in(&pool, "browser_user", "correct-horse-battery".into()).await {
            Ok(Some(id)) => id,
            other => panic!("log in: {other:?}"),
        };
    let phone = other_device
        .create_session(
            user_id,
            example::SessionInfo {
                created_at: None,
                user_agent: Some("Firefox/140.0 (phone)".into()),
            },
        )
        .await
        .unwrap();

    let shots2 = shots.clone();
    let script = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let shots = shots2;
        let b = WebDriver::start(driver_port, &chromium2, &format!("{}-2", profile.display()))?;
        let shot = |name: &str| b.screenshot(&shots.join(format!("{name}.png")));
        b.goto(&format!("{base}/login"))?;
        b.type_into("#username", "browser_user")?;
        b.type_into("#password", "correct-horse-battery")?;
        b.click("button[type=submit]")?;
        b.wait_text("h1", "Hello, browser_user")?;
        b.click("header a[href='/sessions']")?;
        b.wait_text("h1", "Your sessions")?;
        assert_eq!(
            b.count("tbody tr")?,
            3,
            "this browser, the first browser and the phone"
        );
        assert_eq!(b.count(".tag")?, 1, "the current session is marked");
        shot("05-sessions")?;
        b.click("button.danger[type=submit]")?; // Revoke the phone
        b.wait_text(".notice", "signed out")?;
        assert_eq!(b.count("tbody tr")?, 2);
        shot("06-sessions-after-revoke")?;
        b.click("form[action='/sessions/revoke-others'] button")?;
        b.wait_text(".notice", "Every other session")?;
        assert_eq!(b.count("tbody tr")?, 1, "only this browser is left");
        shot("07-sessions-after-sign-out-elsewhere")?;
        b.click("header form button")?; // Sign out
        b.wait_url("/login")?;
        shot("08-after-logout")?;
        b.goto(&format!("{base}/sessions"))?;
        b.wait_url("/login")?;
        Ok(())
    })
    .await
    .unwrap();
    script.unwrap();

    assert!(
        other_device
            .validate_session(phone.token.as_str())
            .await
            .unwrap()
            .is_none(),
        "the revoked phone session is gone"
    );
    for n in [
        "01-signup",
        "02-home-after-signup",
        "05-sessions",
        "08-after-logout",
    ] {
        assert!(
            std::fs::metadata(shots.join(format!("{n}.png")))
                .unwrap()
                .len()
                > 1000
        );
    }
    shutdown.notify();
    let _ = serving.await;
}
