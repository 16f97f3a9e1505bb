//! Server-rendered HTML: a layout, the forms, and an HTML escaper.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{Responder, Response};

/// An HTML page, never cached (it may show personal data).
pub struct Page {
    pub status: Status,
    pub html: String,
}

impl<'r> Responder<'r, 'static> for Page {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        Response::build()
            .status(self.status)
            .header(ContentType::HTML)
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(self.html.len(), std::io::Cursor::new(self.html))
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

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem;display:flex;align-items:center;gap:1.5rem}
header a{color:#cfd6e4;text-decoration:none} header a:hover{color:#fff}
header .brand{font-weight:700;color:#fff;margin-right:auto}
header form{margin:0}
main{max-width:44rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:1.5rem 1.75rem;margin-bottom:1.25rem}
h1{font-size:1.5rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password]{width:100%;padding:.6rem .7rem;border:1px solid #c9cfdb;border-radius:6px;font-size:1rem}
button{background:#2f5bea;color:#fff;border:0;border-radius:6px;padding:.6rem 1.1rem;font-size:.95rem;cursor:pointer;margin-top:1.1rem}
button.link{background:none;color:#cfd6e4;padding:0;margin:0}
button.danger{background:#c6354a} button.quiet{background:#e7eaf0;color:#1d2330}
.error{background:#fdecee;color:#8a1c2b;border:1px solid #f5c2ca;padding:.6rem .8rem;border-radius:6px}
.notice{background:#e8f6ee;color:#1d5b36;border:1px solid #bfe5cc;padding:.6rem .8rem;border-radius:6px}
table{width:100%;border-collapse:collapse} td,th{text-align:left;padding:.55rem .4rem;border-bottom:1px solid #eceef3;vertical-align:middle}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#667}
.tag{background:#2f5bea;color:#fff;border-radius:999px;font-size:.75rem;padding:.1rem .55rem;margin-left:.4rem;white-space:nowrap}
td button{white-space:nowrap}
.muted{color:#667;font-size:.9rem}
";

/// The layout around every page. `user` is the signed-in username.
pub fn layout(status: Status, title: &str, user: Option<&str>, body: &str) -> Page {
    let nav = match user {
        Some(name) => format!(
            "<a href=\"/\">Home</a><a href=\"/sessions\">Sessions</a><a href=\"/password\">Password</a>\
             <span class=\"muted\">{}</span>\
             <form method=\"post\" action=\"/logout\"><button class=\"link\" type=\"submit\">Sign out</button></form>",
            esc(name)
        ),
        None => "<a href=\"/login\">Sign in</a><a href=\"/signup\">Create account</a>".to_owned(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · lucia-diesel example</title><style>{STYLE}</style></head>\
         <body><header><a class=\"brand\" href=\"/\">lucia-diesel example</a>{nav}</header>\
         <main>{body}</main></body></html>",
        title = esc(title)
    );
    Page { status, html }
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

pub fn login(status: Status, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Sign in</h1>{}\
         <form method=\"post\" action=\"/login\">\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" value=\"{}\" required>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">No account yet? <a href=\"/signup\">Create one</a>.</p></div>",
        message(error, None),
        esc(username)
    );
    layout(status, "Sign in", None, &body)
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
    layout(status, "Create an account", None, &body)
}

pub fn home(username: &str, expires_at: DateTime<Utc>, notice: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Hello, {name}!</h1>{}\
         <p>You are signed in as <strong>{name}</strong>. This session expires on {} unless you use it; \
         every visit in its second half extends it.</p>\
         <p><a href=\"/sessions\">Manage your sessions</a> · <a href=\"/password\">Change your password</a></p></div>",
        message(None, notice),
        fmt_time(expires_at),
        name = esc(username)
    );
    layout(Status::Ok, "Home", Some(username), &body)
}

/// One row of the sessions page.
pub struct SessionRow {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub current: bool,
}

pub fn sessions(username: &str, rows: &[SessionRow], notice: Option<&str>) -> Page {
    let mut table = String::from(
        "<table><thead><tr><th>Device</th><th>Created</th><th>Expires</th><th></th></tr></thead><tbody>",
    );
    for row in rows {
        let _ = write!(
            table,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>\
             <form method=\"post\" action=\"/sessions/revoke\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
             <button class=\"{}\" type=\"submit\" style=\"margin:0\">{}</button></form></td></tr>",
            esc(row
                .user_agent
                .as_deref()
                .map(short_agent)
                .unwrap_or("Unknown device")),
            if row.current {
                "<span class=\"tag\">this browser</span>"
            } else {
                ""
            },
            row.created_at.map(fmt_time).unwrap_or_default(),
            fmt_time(row.expires_at),
            esc(&row.id),
            if row.current { "quiet" } else { "danger" },
            if row.current { "Sign out" } else { "Revoke" },
        );
    }
    table.push_str("</tbody></table>");
    let others = rows.iter().filter(|r| !r.current).count();
    let body = format!(
        "<div class=\"card\"><h1>Your sessions</h1>{}{table}\
         <form method=\"post\" action=\"/sessions/revoke-others\">\
         <button class=\"danger\" type=\"submit\"{}>Sign out everywhere else</button></form></div>",
        message(None, notice),
        if others == 0 { " disabled" } else { "" }
    );
    layout(Status::Ok, "Sessions", Some(username), &body)
}

pub fn password(status: Status, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<div class=\"card\"><h1>Change your password</h1>{}\
         <form method=\"post\" action=\"/password\">\
         <label for=\"current\">Current password</label><input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">Repeat the new password</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <p class=\"muted\">Changing it signs out every other session.</p>\
         <button type=\"submit\">Change password</button></form></div>",
        message(error, None)
    );
    layout(status, "Change password", Some(username), &body)
}

pub fn unavailable() -> Page {
    layout(
        Status::ServiceUnavailable,
        "Unavailable",
        None,
        "<div class=\"card\"><h1>Temporarily unavailable</h1><p>The session store cannot be reached. Please try again in a moment.</p></div>",
    )
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A short description of a user agent for the sessions table.
fn short_agent(agent: &str) -> &str {
    for (needle, name) in [
        ("Edg/", "Edge"),
        ("Chrome/", "Chrome"),
        ("Firefox/", "Firefox"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ] {
        if agent.contains(needle) {
            return name;
        }
    }
    agent
}
