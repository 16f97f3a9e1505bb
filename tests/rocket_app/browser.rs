//! A real browser (headless Chromium through chromedriver, driven with
//! fantoccini) runs the example app: sign-up -> login -> sessions page with
//! three devices -> revoke -> logout -> a session ended elsewhere -> an
//! error page; then every page at a phone's width (375 px, no sideways
//! scrolling), and the 503 page of an instance whose database is down,
//! whose sign-out clears the cookie. A screenshot of each page goes under
//! `target/browser-screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; `.ci/run`
//! installs them. Without them the test says so and stops (in CI, where
//! `CI` is set, that is a failure).

use std::error::Error;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cookie::SameSite;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use lucia_diesel::{PoolOptions, PostgresAdapter, SessionManager};
use serde_json::{Value, json};

use super::common::hashing::Hasher;
use super::{Sessions, accounts, app as example, app_database};

/// What a step of a browser script returns: fantoccini's errors and the
/// waits' own messages alike.
type Step<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

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

/// A new headless Chromium session through chromedriver on `driver_port`
/// (plain http on loopback: no TLS connector).
async fn start_browser(driver_port: u16, chromium: &str, profile_dir: &str) -> Client {
    let Value::Object(capabilities) = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1100,820",
                format!("--user-data-dir={profile_dir}"),
            ],
        },
    }) else {
        unreachable!("a JSON object literal")
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromedriver session")
}

/// Runs `script` in a new browser session, then ends the session (and its
/// Chromium) whether the script passed, returned an error or panicked.
async fn with_browser<S, F>(driver_port: u16, chromium: &str, profile_dir: &str, script: S)
where
    S: FnOnce(Client) -> F,
    F: Future<Output = Step> + Send + 'static,
{
    let client = start_browser(driver_port, chromium, profile_dir).await;
    let run = tokio::spawn(script(client.clone())).await;
    let closed = client.close().await;
    match run {
        Ok(result) => result.unwrap(),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
    closed.expect("end the browser session");
}

async fn click(b: &Client, css: &str) -> Step {
    b.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

async fn type_into(b: &Client, css: &str, text: &str) -> Step {
    b.find(Locator::Css(css)).await?.send_keys(text).await?;
    Ok(())
}

async fn count(b: &Client, css: &str) -> Step<usize> {
    Ok(b.find_all(Locator::Css(css)).await?.len())
}

/// Waits (up to 15 s) until the URL ends with `suffix`: a click that
/// submits a form returns before the next page has loaded.
async fn wait_url(b: &Client, suffix: &str) -> Step {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = b.current_url().await?;
        if url.as_str().ends_with(suffix) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("waited for a URL ending in {suffix:?}, still at {url}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 15 s) until the element's text contains `text`.
async fn wait_text(b: &Client, css: &str, text: &str) -> Step {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = match b.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if got.contains(text) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("waited for {css:?} to contain {text:?}, it says {got:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's width and the viewport's, in CSS pixels.
async fn widths(b: &Client) -> Step<(u64, u64)> {
    let got = b
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await?;
    let pair = got.as_array().ok_or("two numbers")?;
    let number = |i: usize| pair.get(i).and_then(Value::as_u64).ok_or("a width");
    Ok((number(0)?, number(1)?))
}

/// The page at `url` (once its `h1` says `title`) fits the viewport: no
/// horizontal scrolling.
async fn assert_fits(b: &Client, url: &str, title: &str) -> Step {
    b.goto(url).await?;
    wait_text(b, "h1", title).await?;
    let (page, viewport) = widths(b).await?;
    if page > viewport {
        return Err(format!("{url}: {page} px wide in a {viewport} px viewport").into());
    }
    Ok(())
}

async fn screenshot(b: &Client, path: PathBuf) -> Step {
    let png = b.screenshot().await?;
    if !png.starts_with(b"\x89PNG") {
        return Err("the screenshot is not a PNG".into());
    }
    std::fs::write(path, png)?;
    Ok(())
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

    with_browser(driver_port, &chromium, &profile_dir, |b| {
        let base = base.clone();
        let shots = shots.clone();
        async move {
            let shot = |name: &str| screenshot(&b, shots.join(format!("{name}.png")));

            b.goto(&format!("{base}/")).await?;
            wait_url(&b, "/login").await?;
            click(&b, "a[href='/signup']").await?;
            wait_url(&b, "/signup").await?;
            type_into(&b, "#username", "browser_user").await?;
            type_into(&b, "#password", "correct-horse-battery").await?;
            type_into(&b, "#confirm", "correct-horse-battery").await?;
            shot("01-signup").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, "h1", "Hello, browser_user").await?;
            shot("02-home-after-signup").await?;

            let cookies = b.get_all_cookies().await?;
            let session = cookies
                .iter()
                .find(|c| c.name() == "auth_session")
                .ok_or("no session cookie")?;
            assert_eq!(session.http_only(), Some(true));
            assert_eq!(session.secure(), Some(true));
            assert_eq!(session.same_site(), Some(SameSite::Lax));
            assert_eq!(session.path(), Some("/"));

            click(&b, "header form button").await?; // Sign out
            wait_url(&b, "/login").await?;
            wait_text(&b, ".notice", "You are signed out.").await?;
            assert!(
                !b.get_all_cookies()
                    .await?
                    .iter()
                    .any(|c| c.name() == "auth_session"),
                "logout removed the cookie"
            );

            type_into(&b, "#username", "browser_user").await?;
            type_into(&b, "#password", "wrong-password").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, ".error", "Wrong username or password").await?;
            shot("03-login-wrong-password").await?;
            type_into(&b, "#password", "correct-horse-battery").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, "h1", "Hello, browser_user").await?;
            shot("04-home-after-login").await?;
            Ok(())
        }
    })
    .await;

    // A phone signed in three days ago and last seen two hours ago, so
    // there is something to revoke and the page shows three devices.
    let user_id = match accounts::log_in(
        &pool,
        &Hasher::new(1, 0),
        "browser_user",
        "correct-horse-battery".into(),
    )
    .await
    {
        Ok(Some(id)) => id,
        other => panic!("log in: {other:?}"),
    };
    let phone = other_device
        .create_session(
            user_id.clone(),
            example::SessionInfo {
                user_agent: Some(
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 \
                     (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1"
                        .into(),
                ),
                ip_address: Some("198.51.100.7".into()),
            },
        )
        .await
        .unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE user_session SET created_at = now() - interval '3 days', \
             last_seen_at = now() - interval '2 hours' WHERE ip_address = '198.51.100.7'",
        ),
        &mut db.connect().await,
    )
    .await
    .unwrap();
    let ended_elsewhere: Sessions = SessionManager::new(
        PostgresAdapter::new(pool.clone())
            .with_session_attributes::<example::SessionInfo>()
            .with_user_attributes::<example::UserInfo>(),
    );

    let narrow_base = base.clone();
    let phone_user = user_id.clone();
    with_browser(driver_port, &chromium, &format!("{profile_dir}-2"), |b| {
        let shots = shots.clone();
        async move {
            let shot = |name: &str| screenshot(&b, shots.join(format!("{name}.png")));
            b.goto(&format!("{base}/login")).await?;
            type_into(&b, "#username", "browser_user").await?;
            type_into(&b, "#password", "correct-horse-battery").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, "h1", "Hello, browser_user").await?;
            click(&b, "header a[href='/sessions']").await?;
            wait_text(&b, "h1", "Your sessions").await?;
            assert_eq!(
                count(&b, "tbody tr").await?,
                3,
                "this browser, the first browser and the phone"
            );
            assert_eq!(count(&b, ".tag").await?, 1, "the current session is marked");
            let table = b.find(Locator::Css("table")).await?.text().await?;
            for want in [
                "Chrome on Linux",
                "Safari on iOS",
                "from 198.51.100.7",
                "from 127.0.0.1",
                "2 hours ago",
                "Now",
            ] {
                assert!(table.contains(want), "{want} in {table}");
            }
            shot("05-sessions-three-devices").await?;
            // Revoke the phone (the last row: seen longest ago).
            click(&b, "tbody tr:last-child button.danger").await?;
            wait_text(&b, ".notice", "The session was signed out.").await?;
            assert_eq!(count(&b, "tbody tr").await?, 2);
            shot("06-sessions-after-revoke").await?;
            click(&b, "form[action='/sessions/revoke-others'] button").await?;
            wait_text(&b, ".notice", "Every other session").await?;
            assert_eq!(count(&b, "tbody tr").await?, 1, "only this browser is left");
            let button = b
                .find(Locator::Css(
                    "form[action='/sessions/revoke-others'] button",
                ))
                .await?;
            assert!(!button.is_enabled().await?, "nothing left to sign out");
            assert_eq!(
                button.css_value("cursor").await?,
                "not-allowed",
                "and it looks disabled"
            );
            shot("07-sessions-after-sign-out-elsewhere").await?;
            click(&b, "header form button").await?; // Sign out
            wait_url(&b, "/login").await?;
            wait_text(&b, ".notice", "You are signed out.").await?;
            shot("08-after-logout").await?;
            b.goto(&format!("{base}/sessions")).await?;
            wait_url(&b, "/login").await?;

            // Signed in again, then signed out from elsewhere: the next
            // page says why this browser is at the sign-in page.
            type_into(&b, "#username", "browser_user").await?;
            type_into(&b, "#password", "correct-horse-battery").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, "h1", "Hello, browser_user").await?;
            ended_elsewhere.invalidate_user_sessions(&user_id).await?;
            click(&b, "header a[href='/sessions']").await?;
            wait_url(&b, "/login").await?;
            wait_text(&b, ".notice", "Your session has ended").await?;
            shot("09-session-ended-elsewhere").await?;

            b.goto(&format!("{base}/no/such/page")).await?;
            wait_text(&b, "h1", "Page not found").await?;
            shot("10-not-found").await?;
            Ok(())
        }
    })
    .await;

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
        "05-sessions-three-devices",
        "08-after-logout",
        "09-session-ended-elsewhere",
        "10-not-found",
    ] {
        assert!(
            std::fs::metadata(shots.join(format!("{n}.png")))
                .unwrap()
                .len()
                > 1000
        );
    }

    // At a phone's width (375 px) every page fits without scrolling
    // sideways, the sessions table too (a session from a long IPv6 address
    // among them), and so does the 503 page of a second instance of the
    // app whose database cannot be reached; its sign-out clears the cookie.
    other_device
        .create_session(
            phone_user,
            example::SessionInfo {
                user_agent: Some(
                    "Mozilla/5.0 (Linux; Android 15; Pixel 9 Pro) AppleWebKit/537.36 \
                     (KHTML, like Gecko) Chrome/141.0.0.0 Mobile Safari/537.36"
                        .into(),
                ),
                ip_address: Some("2001:db8:85a3:8d3:1319:8a2e:370:7348".into()),
            },
        )
        .await
        .unwrap();
    let down_port = free_port();
    let down_pool = PoolOptions::new()
        .with_checkout_timeout(Duration::from_secs(1))
        .build_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let down_sessions: Sessions = SessionManager::new(
        PostgresAdapter::new(down_pool.clone())
            .with_session_attributes::<example::SessionInfo>()
            .with_user_attributes::<example::UserInfo>(),
    );
    let down_config = rocket::Config {
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        port: down_port,
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    };
    let down = example::build(rocket::custom(down_config), down_sessions, down_pool)
        .ignite()
        .await
        .unwrap();
    let down_shutdown = down.shutdown();
    let down_serving = tokio::spawn(down.launch());
    wait_for_port(down_port);
    with_browser(driver_port, &chromium, &format!("{profile_dir}-3"), |b| {
        let shots = shots.clone();
        let base = narrow_base;
        let down = format!("http://127.0.0.1:{down_port}");
        async move {
            let shot = |name: &str| screenshot(&b, shots.join(format!("{name}.png")));
            b.set_window_size(375, 812).await?;
            assert_fits(&b, &format!("{base}/login"), "Sign in").await?;
            let (_, viewport) = widths(&b).await?;
            if viewport > 400 {
                return Err(format!("the window is {viewport} px wide, not a phone's").into());
            }
            assert_fits(&b, &format!("{base}/signup"), "Create an account").await?;
            b.goto(&format!("{base}/login")).await?;
            type_into(&b, "#username", "browser_user").await?;
            type_into(&b, "#password", "correct-horse-battery").await?;
            click(&b, "button[type=submit]").await?;
            wait_text(&b, "h1", "Hello, browser_user").await?;
            shot("11-home-375px").await?;
            assert_fits(&b, &format!("{base}/"), "Hello, browser_user").await?;
            assert_fits(&b, &format!("{base}/sessions"), "Your sessions").await?;
            assert_eq!(
                count(&b, "tbody tr").await?,
                2,
                "this browser and the phone"
            );
            shot("12-sessions-375px").await?;
            assert_fits(&b, &format!("{base}/password"), "Change your password").await?;
            // Just signed in: deleting the account asks for nothing more.
            assert_fits(&b, &format!("{base}/account/delete"), "Delete your account").await?;
            let prompt = format!("{base}/reauthenticate?next=delete-account");
            assert_fits(&b, &prompt, "Confirm it is you").await?;
            assert_fits(&b, &format!("{base}/no/such/page"), "Page not found").await?;

            // Signed in, at the instance whose database is down.
            assert_fits(&b, &format!("{down}/"), "Temporarily unavailable").await?;
            shot("13-unavailable-375px").await?;
            click(&b, "main form[action='/logout'] button").await?;
            wait_url(&b, "/login").await?;
            wait_text(
                &b,
                ".notice",
                "You are signed out in this browser. The session store could not be reached",
            )
            .await?;
            assert!(
                !b.get_all_cookies()
                    .await?
                    .iter()
                    .any(|c| c.name() == "auth_session"),
                "the 503 page's sign-out removed the cookie"
            );
            shot("14-signed-out-while-down-375px").await?;
            Ok(())
        }
    })
    .await;
    for n in ["12-sessions-375px", "13-unavailable-375px"] {
        assert!(
            std::fs::metadata(shots.join(format!("{n}.png")))
                .unwrap()
                .len()
                > 1000
        );
    }
    down_shutdown.notify();
    let _ = down_serving.await;
    shutdown.notify();
    let _ = serving.await;
    // The two Chromium profiles.
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(format!("{profile_dir}-2"));
    let _ = std::fs::remove_dir_all(format!("{profile_dir}-3"));
}
