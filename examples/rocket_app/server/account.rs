//! The sensitive action: deleting the account needs a sign-in within the
//! last five minutes ([`Recent`]). An older session is sent to confirm its
//! password first; that re-authentication also gives the session a new
//! token.

use std::time::Instant;

use lucia_diesel::PgPool;
use lucia_diesel::rocket::RecentSession;
use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::{State, get, post};

use super::app::{Adapter, ClientInfo, Current, LoginNotice, Sessions, ToLogin, store_failure};
use super::common::accounts::{self, AccountError};
use super::common::hashing::{BUSY_RETRY_AFTER_SECS, Hasher};
use super::common::throttle::LoginThrottle;
use super::pages::{self, Page};
use super::sign_in::{BUSY, too_many_wrong_passwords};

/// How recent a sign-in deleting the account needs: five minutes.
pub const RECENT_SIGN_IN_SECS: u64 = 300;

/// A session signed in within [`RECENT_SIGN_IN_SECS`]; an older one is
/// forwarded to the routes of rank 2 below, which ask for the password.
pub type Recent = RecentSession<Adapter, RECENT_SIGN_IN_SECS>;

/// Where a re-authentication may lead: only these pages (never a URL from
/// the request, so the form cannot redirect elsewhere).
#[derive(Clone, Copy)]
pub enum Next {
    Home,
    DeleteAccount,
}

impl Next {
    pub fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("delete-account") => Self::DeleteAccount,
            _ => Self::Home,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::DeleteAccount => "delete-account",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Home => "/",
            Self::DeleteAccount => "/account/delete",
        }
    }
}

/// To the password prompt, then back to deleting the account.
fn ask_password_first() -> Redirect {
    Redirect::to("/reauthenticate?next=delete-account")
}

#[get("/reauthenticate?<next>")]
pub fn reauthenticate_page(current: Current, next: Option<&str>) -> Page {
    let name = &current.user.attributes.username;
    pages::reauthenticate(Status::Ok, name, Next::from_code(next).code(), None)
}

#[derive(FromForm)]
pub struct PasswordForm<'r> {
    password: &'r str,
    next: Option<&'r str>,
}

/// Checks the password again (throttled like a sign-in: a stolen session
/// cannot guess it freely) and records the re-authentication, with a new
/// token for the session.
#[allow(clippy::too_many_arguments)]
#[post("/reauthenticate", data = "<form>")]
pub async fn reauthenticate(
    form: Form<PasswordForm<'_>>,
    mut current: Current,
    client: ClientInfo,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    hasher: &State<Hasher>,
    throttle: &State<LoginThrottle>,
) -> Result<Redirect, Page> {
    let name = current.user.attributes.username.clone();
    let next = Next::from_code(form.next);
    let refuse =
        |status, msg: &str| Err(pages::reauthenticate(status, &name, next.code(), Some(msg)));
    let attempt = match throttle.begin(Some(&name), client.address, Instant::now()) {
        Ok(attempt) => attempt,
        Err(why) => {
            let (secs, text) = too_many_wrong_passwords(why);
            return refuse(Status::TooManyRequests, &text).map_err(|p| p.with_retry_after(secs));
        }
    };
    if !accounts::plausible_password(form.password) {
        attempt.failed();
        return refuse(Status::Unauthorized, "Wrong password.");
    }
    let password = form.password.to_owned();
    match accounts::check_password_of(pool, hasher, &current.user.id, password).await {
        Ok(true) => attempt.succeeded(Instant::now()),
        Ok(false) => {
            attempt.failed();
            return refuse(Status::Unauthorized, "Wrong password.");
        }
        Err(AccountError::Busy) => {
            return refuse(Status::TooManyRequests, BUSY)
                .map_err(|p| p.with_retry_after(BUSY_RETRY_AFTER_SECS));
        }
        Err(AccountError::Store(e)) => return Err(store_failure(&e)),
        Err(AccountError::Taken) => return Err(pages::unavailable()),
    }
    match current.reauthenticate(sessions).await {
        Ok(Some(_)) => Ok(Redirect::to(next.path())),
        // Signed out meanwhile: the fairing clears the cookie.
        Ok(None) => Ok(Redirect::to("/login")),
        Err(e) => Err(store_failure(&e)),
    }
}

#[get("/account/delete")]
pub fn delete_page(current: Recent) -> Page {
    pages::delete_account(&current.user.attributes.username)
}

#[get("/account/delete", rank = 2)]
pub fn delete_page_needs_password(_current: Current) -> Redirect {
    ask_password_first()
}

/// Deletes the account: its sessions through the manager (so a cache
/// forgets them at once), then the user, its password and any session
/// signed in meanwhile, in one transaction.
#[post("/account/delete")]
pub async fn delete(
    current: Recent,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    cookies: &CookieJar<'_>,
) -> Result<ToLogin, Page> {
    let user_id = &current.user.id;
    sessions
        .invalidate_user_sessions(user_id)
        .await
        .map_err(|e| store_failure(&e))?;
    match accounts::delete_account(pool, user_id).await {
        Ok(_) => {}
        Err(AccountError::Store(e)) => return Err(store_failure(&e)),
        Err(AccountError::Busy | AccountError::Taken) => return Err(pages::unavailable()),
    }
    cookies.add(sessions.create_blank_session_cookie());
    Ok(ToLogin(Some(LoginNotice::AccountDeleted)))
}

#[post("/account/delete", rank = 2)]
pub fn delete_needs_password(_current: Current) -> Redirect {
    ask_password_first()
}
