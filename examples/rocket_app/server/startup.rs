//! Start-up: the example's settings from the environment, and a launch
//! that says in one line why it could not listen.

use std::time::Duration;

use rocket::error::ErrorKind;
use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};

use super::common::database;

/// The example's own settings (Rocket reads its `ROCKET_*` ones itself).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `DATABASE_URL`: the database to use; none starts a throwaway cluster.
    pub database_url: Option<String>,
    /// `APP_INSECURE_COOKIES=1`: session cookies without `Secure`.
    pub insecure_cookies: bool,
    /// `APP_DB_TIMEOUT`: how long a request waits for a database connection
    /// (default 1 s) before the page says the store cannot be reached.
    /// Statements time out after 1.5 s (`common::database`).
    pub db_timeout: Duration,
    /// `APP_SESSION_LIFETIME`: the sliding session lifetime (crate default
    /// 30 days).
    pub session_lifetime: Option<Duration>,
    /// `APP_IDLE_TIMEOUT`: end sessions unused for this long (default off).
    pub idle_timeout: Option<Duration>,
    /// `APP_ABSOLUTE_LIFETIME`: end sessions this long after sign-in,
    /// however used (default off).
    pub absolute_lifetime: Option<Duration>,
}

impl Settings {
    /// The settings from `var` (`std::env::var` in the app), each checked:
    /// an error names the variable and what it expects.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let duration = |name: &str| set(name).map(|v| parse_duration(name, &v)).transpose();
        Ok(Self {
            database_url: set("DATABASE_URL"),
            insecure_cookies: set("APP_INSECURE_COOKIES").is_some_and(|v| v.trim() == "1"),
            db_timeout: duration("APP_DB_TIMEOUT")?.unwrap_or(database::CHECKOUT_TIMEOUT),
            session_lifetime: duration("APP_SESSION_LIFETIME")?,
            idle_timeout: duration("APP_IDLE_TIMEOUT")?,
            absolute_lifetime: duration("APP_ABSOLUTE_LIFETIME")?,
        })
    }
}

/// "90s", "15m", "8h", "30d", "500ms", or a number of seconds.
fn parse_duration(name: &str, text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => Some(Duration::from_millis(1)),
        "" | "s" => Some(Duration::from_secs(1)),
        "m" => Some(Duration::from_secs(60)),
        "h" => Some(Duration::from_secs(3_600)),
        "d" => Some(Duration::from_secs(86_400)),
        _ => None,
    };
    match (number.parse::<u32>(), scale) {
        (Ok(n), Some(scale)) if n > 0 => Ok(scale * n),
        _ => Err(format!(
            "{name}: expected a duration such as 500ms, 90s, 15m, 8h or 30d, got {text:?}"
        )),
    }
}

/// Ignites and launches `rocket`, printing where to open it once it
/// listens. An address in use is one line naming the port and
/// `ROCKET_PORT`, not Rocket's error dump.
pub async fn launch(rocket: Rocket<Build>) -> Result<(), String> {
    let rocket = rocket.attach(AdHoc::on_liftoff("open-in-browser line", |r| {
        Box::pin(async move {
            println!(
                "lucia-diesel example: open http://{}:{}/ (Ctrl-C to stop)",
                r.config().address,
                r.config().port
            );
        })
    }));
    let ignited = rocket.ignite().await.map_err(|e| e.to_string())?;
    let (address, port) = (ignited.config().address, ignited.config().port);
    match ignited.launch().await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            ErrorKind::Bind(io) if io.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
                "cannot listen on {address}:{port}: the port is in use (another copy of the \
                 example?); set ROCKET_PORT to another port, e.g. ROCKET_PORT={}",
                port.wrapping_add(1)
            )),
            ErrorKind::Bind(io) => Err(format!(
                "cannot listen on {address}:{port}: {io}; set ROCKET_ADDRESS and ROCKET_PORT \
                 to an address and port this machine can use"
            )),
            _ => Err(e.to_string()),
        },
    }
}
