//! Server-rendered HTML: a layout, the forms, the sessions table, error
//! pages, and an HTML escaper. The look is `/style.css` (see `assets.rs`):
//! no inline styles or scripts, so the pages work under a CSP of
//! `default-src 'none'; style-src 'self'`.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{Responder, Response};

use super::common::database::UNAVAILABLE_RETRY_AFTER_SECS;

/// An HTML page, never cached (it may show personal data).
pub struct Page {
    pub status: Status,
    pub html: String,
    /// `Retry-After`, in seconds (for 429 and 503 pages).
    pub retry_after: Option<u64>,
}

impl Page {
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        let mut res = Response::build();
        res.status(self.status)
            .header(ContentType::HTML)
            .header(Header::new("Cache-Control", "no-store"));
        if let Some(secs) = self.retry_after {
            res.header(Header::new("Retry-After", secs.to_string()));
        }
        res.sized_body(self.html.len(), std::io::Cursor::new(self.html))
            .ok()
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the header offers.
#[derive(Clone, Copy)]
pub enum Nav<'a> {
    /// The signed-in user's links and a sign-out button.
    User(&'a str),
    /// Sign in and create an account.
    Guest,
    /// Nothing but the site's name (error pages, which may be shown to
    /// anyone).
    Plain,
}

/// The layout around every page.
pub fn layout(status: Status, title: &str, nav: Nav<'_>, body: &str) -> Page {
    let nav = match nav {
        Nav::User(name) => format!(
            "<a href=\"/\">Home</a><a href=\"/sessions\">Sessions</a><a href=\"/password\">Password</a>\
             <span class=\"muted\">{}</span>\
             <form method=\"post\" action=\"/logout\"><button class=\"link\" type=\"submit\">Sign out</button></form>",
            esc(name)
        ),
        Nav::Guest => {
            "<a href=\"/login\">Sign in</a><a href=\"/signup\">Create account</a>".to_owned()
        }
        Nav::Plain => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · lucia-diesel example</title>\
         <link rel=\"stylesheet\" href=\"/style.css\">\
         <link rel=\"icon\" href=\"/favicon.ico\" type=\"image/svg+xml\"></head>\
         <body><header><a class=\"brand\" href=\"/\">lucia-diesel example</a>{nav}</header>\
         <main>{body}</main></body></html>",
        title = esc(title)
    );
    Page {
        status,
        html,
        retry_after: None,
    }
}

fn message(error: Option<&str>, notice: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    if let Some(n) = notice {
        let _ = write!(out, "<p class=\"notice\" role=\"status\">{}</p>", esc(n));
    }
    out
}

/// The sign-in form. `notice` says why the visitor is here (signed out,
/// or the session ended elsewhere).
pub fn login(status: Status, username: &str, error: Option<&str>, notice: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Sign in</h1>{}\
         <form method=\"post\" action=\"/login\">\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" value=\"{}\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">No account yet? <a href=\"/signup\">Create one</a>.</p></div>",
        message(error, notice),
        esc(username)
    );
    layout(status, "Sign in", Nav::Guest, &body)
}

pub fn signup(status: Status, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Create an account</h1>{}\
         <form method=\"post\" action=\"/signup\">\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" value=\"{}\" required>\
         <p class=\"muted\">3 to 32 letters, digits, '_' or '-'.</p>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">Repeat the password</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <p class=\"muted\">At least 8 characters.</p>\
         <button type=\"submit\">Create account</button></form>\
         <p class=\"muted\">Have an account? <a href=\"/login\">Sign in</a>.</p></div>",
        message(error, None),
        esc(username)
    );
    layout(status, "Create an account", Nav::Guest, &body)
}

/// The session limits the home page states.
pub struct SessionRules {
    pub expires_at: DateTime<Utc>,
    pub idle_timeout: Option<Duration>,
    pub ends_at: Option<DateTime<Utc>>,
}

pub fn home(username: &str, limits: &SessionRules, notice: Option<&str>) -> Page {
    let mut rules = format!(
        "This session expires on {} unless you use it; every visit in its second half extends it.",
        fmt_time(limits.expires_at)
    );
    if let Some(idle) = limits.idle_timeout {
        let _ = write!(rules, " It ends after {} without use.", fmt_duration(idle));
    }
    if let Some(end) = limits.ends_at {
        let _ = write!(rules, " It ends on {} at the latest.", fmt_time(end));
    }
    let body = format!(
        "<div class=\"card\"><h1>Hello, {name}!</h1>{}\
         <p>You are signed in as <strong>{name}</strong>. {rules}</p>\
         <p><a href=\"/sessions\">Manage your sessions</a> · <a href=\"/password\">Change your password</a></p></div>",
        message(None, notice),
        name = esc(username)
    );
    layout(Status::Ok, "Home", Nav::User(username), &body)
}

/// One row of the sessions page.
pub struct SessionRow {
    pub id: String,
    /// "Firefox on Android".
    pub device: String,
    /// The address it signed in from.
    pub address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub current: bool,
}

/// A message on the sessions page: something happened, or nothing did.
pub enum Outcome<'a> {
    Done(&'a str),
    Nothing(&'a str),
}

pub fn sessions(
    username: &str,
    rows: &[SessionRow],
    now: DateTime<Utc>,
    outcome: Option<Outcome<'_>>,
) -> Page {
    let mut table = String::from(
        "<table><thead><tr><th>Device</th><th>Signed in</th><th>Last seen</th><th>Expires</th><th></th></tr></thead><tbody>",
    );
    for row in rows {
        let last_seen = if row.current {
            "<span class=\"active\">Now</span>".to_owned()
        } else {
            format!(
                "<time datetime=\"{}\" title=\"{}\">{}</time>",
                row.last_seen_at.to_rfc3339(),
                fmt_time(row.last_seen_at),
                ago(now, row.last_seen_at)
            )
        };
        let _ = write!(
            table,
            "<tr><td><strong>{}</strong>{}<br><span class=\"muted\">from {}</span></td>\
             <td data-label=\"Signed in\">{}</td><td data-label=\"Last seen\">{last_seen}</td>\
             <td data-label=\"Expires\">{}</td><td class=\"action\">\
             <form method=\"post\" action=\"/sessions/revoke\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
             <button class=\"{}\" type=\"submit\">{}</button></form></td></tr>",
            esc(&row.device),
            if row.current {
                "<span class=\"tag\">this browser</span>"
            } else {
                ""
            },
            esc(row.address.as_deref().unwrap_or("an unknown address")),
            fmt_time(row.created_at),
            fmt_time(row.expires_at),
            esc(&row.id),
            if row.current { "quiet" } else { "danger" },
            if row.current { "Sign out" } else { "Revoke" },
        );
    }
    table.push_str("</tbody></table>");
    let others = rows.iter().filter(|r| !r.current).count();
    let (error, notice) = match outcome {
        Some(Outcome::Done(text)) => (None, Some(text)),
        Some(Outcome::Nothing(text)) => (Some(text), None),
        None => (None, None),
    };
    let body = format!(
        "<div class=\"card wide\"><h1>Your sessions</h1>{}{table}\
         <form method=\"post\" action=\"/sessions/revoke-others\">\
         <button class=\"danger\" type=\"submit\"{}>Sign out everywhere else</button>{}</form></div>",
        message(error, notice),
        if others == 0 { " disabled" } else { "" },
        if others == 0 {
            " <span class=\"muted\">No other sessions are signed in.</span>"
        } else {
            ""
        }
    );
    layout(Status::Ok, "Sessions", Nav::User(username), &body)
}

pub fn password(status: Status, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Change your password</h1>{}\
         <form method=\"post\" action=\"/password\">\
         <label for=\"current\">Current password</label><input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">Repeat the new password</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <p class=\"muted\">Changing it signs out every other session.</p>\
         <button type=\"submit\">Change password</button></form>\
         <p class=\"muted\"><a href=\"/account/delete\">Delete your account</a></p></div>",
        message(error, None)
    );
    layout(status, "Change password", Nav::User(username), &body)
}

/// The password prompt before a sensitive action; `next` says where to
/// go after it (a code of `account::Next`).
pub fn reauthenticate(status: Status, username: &str, next: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Confirm it is you</h1>{}\
         <p>This needs a recent sign-in. Enter your password to continue.</p>\
         <form method=\"post\" action=\"/reauthenticate\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Continue</button></form></div>",
        message(error, None),
        esc(next)
    );
    layout(status, "Confirm your password", Nav::User(username), &body)
}

/// The confirmation before deleting the account (shown only after a
/// recent sign-in).
pub fn delete_account(username: &str) -> Page {
    let body = "<div class=\"card\"><h1>Delete your account</h1>\
         <p>This deletes your account and signs out every session of it. It cannot be undone.</p>\
         <form method=\"post\" action=\"/account/delete\">\
         <button class=\"danger\" type=\"submit\">Delete my account</button></form></div>";
    layout(Status::Ok, "Delete account", Nav::User(username), body)
}

/// An error page: a title and a sentence, and a way back.
pub fn error(status: Status, title: &str, text: &str) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>{}</h1><p>{}</p>\
         <p class=\"muted\">{} {} · <a href=\"/\">Go to the start page</a></p></div>",
        esc(title),
        esc(text),
        status.code,
        esc(status.reason().unwrap_or("Error")),
    );
    layout(status, title, Nav::Plain, &body)
}

/// The page for a database in trouble (503). It offers to sign out: that
/// clears the cookie even while the database cannot be reached.
pub fn unavailable() -> Page {
    let status = Status::ServiceUnavailable;
    let body = format!(
        "<div class=\"card\"><h1>Temporarily unavailable</h1>\
         <p>The session store cannot be reached. Please try again in a moment.</p>\
         <form method=\"post\" action=\"/logout\"><p>You can still sign out of this browser.</p>\
         <button class=\"quiet\" type=\"submit\">Sign out</button></form>\
         <p class=\"muted\">{} {} · <a href=\"/\">Go to the start page</a></p></div>",
        status.code,
        esc(status.reason().unwrap_or("Error")),
    );
    layout(status, "Temporarily unavailable", Nav::Plain, &body)
        .with_retry_after(UNAVAILABLE_RETRY_AFTER_SECS)
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "90 seconds", "15 minutes", "8 hours", "30 days": the largest unit that
/// divides the duration.
fn fmt_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    for (unit, len) in [("day", 86_400), ("hour", 3_600), ("minute", 60)] {
        if secs >= len && secs % len == 0 {
            return plural(secs / len, unit);
        }
    }
    plural(secs, "second")
}

/// "just now", "3 minutes ago", "2 hours ago", "5 days ago".
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    match secs {
        ..60 => "just now".to_owned(),
        60..3_600 => format!("{} ago", plural(secs / 60, "minute")),
        3_600..86_400 => format!("{} ago", plural(secs / 3_600, "hour")),
        _ => format!("{} ago", plural(secs / 86_400, "day")),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
