//! Account routes: sign up, sign in (throttled), sign out (even while the
//! database is down), change the password (which signs out every other
//! session and rotates this one's token).

use std::time::Instant;

use lucia_diesel::PgPool;
use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::{FlashMessage, FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{State, get, post};

use super::app::{
    ClientInfo, Current, EndedSession, LoginNotice, Maybe, PageOrRedirect, Sessions, ToLogin,
    presented, start_session, store_failure,
};
use super::common::accounts::{self, AccountError};
use super::common::hashing::{BUSY_RETRY_AFTER_SECS, Hasher};
use super::common::sign_out::Presented;
use super::common::throttle::{Attempt, LoginThrottle, Throttled};
use super::pages::{self, Page};

/// Shown with a 429 when every hashing slot and queue place is taken.
pub(super) const BUSY: &str =
    "The server is busy checking other passwords. Please try again in a moment.";

#[get("/login")]
pub fn login_page(
    current: Maybe,
    ended: EndedSession,
    flash: Option<FlashMessage<'_>>,
) -> PageOrRedirect {
    if current.0.is_some() {
        return PageOrRedirect::Redirect(Redirect::to("/"));
    }
    let notice = flash
        .and_then(|f| LoginNotice::from_code(f.message()))
        .or(ended.0.then_some(LoginNotice::SessionEnded));
    PageOrRedirect::Page(pages::login(
        Status::Ok,
        "",
        None,
        notice.map(LoginNotice::text),
    ))
}

#[derive(FromForm)]
pub struct LoginForm<'r> {
    username: &'r str,
    password: &'r str,
}

/// "Try again in 12 minutes": a wait, rounded up to a unit people read.
fn wait_text(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".to_owned(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// A signed-in user's password check over its budget (the password page,
/// the re-authentication prompt): the wait in seconds, and the text.
pub(super) fn too_many_wrong_passwords(why: Throttled) -> (u64, String) {
    let secs = why.retry_after_secs();
    let text = format!(
        "Too many wrong passwords. Try again in {}.",
        wait_text(secs)
    );
    (secs, text)
}

fn throttled_page(username: &str, why: Throttled) -> Page {
    let secs = why.retry_after_secs();
    let text = match why {
        Throttled::Account { .. } => format!(
            "Too many failed sign-ins for this account. Try again in {}, or sign in from \
             a device or network you used before.",
            wait_text(secs)
        ),
        Throttled::AccountAddress { .. } => format!(
            "Too many failed sign-ins for this account from your network. Try again in {}.",
            wait_text(secs)
        ),
        Throttled::Address { .. } => format!(
            "Too many failed sign-ins from your network. Try again in {}.",
            wait_text(secs)
        ),
    };
    pages::login(Status::TooManyRequests, username, Some(&text), None).with_retry_after(secs)
}

#[allow(clippy::too_many_arguments)]
#[post("/login", data = "<form>")]
pub async fn login(
    form: Form<LoginForm<'_>>,
    previous: Maybe,
    client: ClientInfo,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    hasher: &State<Hasher>,
    throttle: &State<LoginThrottle>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    let username = form.username.trim().to_ascii_lowercase();
    // A name no account can have (NUL, other characters, wrong length) is
    // wrong without asking the database, and counts for the address only.
    let account = accounts::normalize_username(&username).ok();
    // Counted as a failure from here until settled; dropped unsettled (a
    // busy hasher, a database error) it counts for nothing.
    let attempt = match throttle.begin(account.as_deref(), client.address, Instant::now()) {
        Ok(attempt) => attempt,
        Err(why) => return Err(throttled_page(&username, why)),
    };
    let wrong = |attempt: Attempt<'_>| {
        attempt.failed();
        pages::login(
            Status::Unauthorized,
            &username,
            Some("Wrong username or password."),
            None,
        )
    };
    let Some(name) = account.as_deref() else {
        return Err(wrong(attempt));
    };
    if !accounts::plausible_password(form.password) {
        return Err(wrong(attempt));
    }
    match accounts::log_in(pool, hasher, name, form.password.to_owned()).await {
        Ok(Some(user_id)) => {
            attempt.succeeded(Instant::now());
            match start_session(sessions, cookies, &previous, user_id, client).await {
                Ok(()) => Ok(Redirect::to("/")),
                Err(e) => Err(store_failure(&e)),
            }
        }
        Ok(None) | Err(AccountError::Taken) => Err(wrong(attempt)),
        Err(AccountError::Busy) => {
            Err(
                pages::login(Status::TooManyRequests, &username, Some(BUSY), None)
                    .with_retry_after(BUSY_RETRY_AFTER_SECS),
            )
        }
        Err(AccountError::Store(e)) => Err(store_failure(&e)),
    }
}

#[get("/signup")]
pub fn signup_page(current: Maybe) -> PageOrRedirect {
    match current.0 {
        Some(_) => PageOrRedirect::Redirect(Redirect::to("/")),
        None => PageOrRedirect::Page(pages::signup(Status::Ok, "", None)),
    }
}

#[derive(FromForm)]
pub struct SignupForm<'r> {
    username: &'r str,
    password: &'r str,
    confirm: &'r str,
}

#[allow(clippy::too_many_arguments)]
#[post("/signup", data = "<form>")]
pub async fn signup(
    form: Form<SignupForm<'_>>,
    previous: Maybe,
    client: ClientInfo,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    hasher: &State<Hasher>,
    throttle: &State<LoginThrottle>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    let username = match accounts::normalize_username(form.username) {
        Ok(u) => u,
        Err(msg) => {
            return Err(pages::signup(
                Status::UnprocessableEntity,
                form.username,
                Some(msg),
            ));
        }
    };
    if let Err(msg) = accounts::check_password(form.password) {
        return Err(pages::signup(
            Status::UnprocessableEntity,
            &username,
            Some(msg),
        ));
    }
    if form.password != form.confirm {
        return Err(pages::signup(
            Status::UnprocessableEntity,
            &username,
            Some("The passwords do not match."),
        ));
    }
    match accounts::sign_up(pool, hasher, &username, form.password.to_owned()).await {
        Ok(user_id) => {
            // Signed in from here: this address is the account's first.
            throttle.signed_in(&username, client.address, Instant::now());
            match start_session(sessions, cookies, &previous, user_id, client).await {
                Ok(()) => Ok(Redirect::to("/")),
                Err(e) => Err(store_failure(&e)),
            }
        }
        Err(AccountError::Taken) => Err(pages::signup(
            Status::Conflict,
            &username,
            Some("That username is taken. Please choose another."),
        )),
        Err(AccountError::Busy) => {
            Err(
                pages::signup(Status::TooManyRequests, &username, Some(BUSY))
                    .with_retry_after(BUSY_RETRY_AFTER_SECS),
            )
        }
        Err(AccountError::Store(e)) => Err(store_failure(&e)),
    }
}

/// What a sign-out needs from the request (see `app::presented`): the
/// token, read by the rule validation uses (so the session ended is the
/// one the request would be validated with; a cookie sent twice is none),
/// and whether it carries a session cookie at all (then it is cleared).
pub struct SignOutRequest(Option<Presented>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SignOutRequest {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(SignOutRequest(presented(req)))
    }
}

/// Signs out without validating first, so that it works while the database
/// cannot be reached: the cookie is cleared in any case, and the session
/// deleted when the database answers (within the pool's bounds). A
/// request whose cookie names no single session (sent twice) ends none.
#[post("/logout")]
pub async fn logout(
    request: SignOutRequest,
    sessions: &State<Sessions>,
    cookies: &CookieJar<'_>,
) -> ToLogin {
    let Some(presented) = request.0.filter(|p| p.has_cookie) else {
        return ToLogin(None);
    };
    cookies.add(sessions.create_blank_session_cookie());
    let Some(credential) = presented.credential else {
        return ToLogin(Some(LoginNotice::SignedOut));
    };
    match sessions
        .invalidate_session(&sessions.session_id(credential.token()))
        .await
    {
        Ok(()) => ToLogin(Some(LoginNotice::SignedOut)),
        Err(e) => {
            eprintln!("sign-out: the session store failed, the cookie is cleared anyway: {e}");
            ToLogin(Some(LoginNotice::SignedOutOffline))
        }
    }
}

#[get("/password")]
pub fn password_page(current: Current) -> Page {
    pages::password(Status::Ok, &current.user.attributes.username, None)
}

#[derive(FromForm)]
pub struct PasswordForm<'r> {
    current: &'r str,
    new: &'r str,
    confirm: &'r str,
}

/// Changes the password. Wrong current passwords count against the
/// account's sign-in budget, so a stolen session cannot guess it freely.
#[allow(clippy::too_many_arguments)]
#[post("/password", data = "<form>")]
pub async fn change_password(
    form: Form<PasswordForm<'_>>,
    mut current: Current,
    client: ClientInfo,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    hasher: &State<Hasher>,
    throttle: &State<LoginThrottle>,
) -> Result<Redirect, Page> {
    let name = current.user.attributes.username.clone();
    let refuse = |status, msg: &str| Err(pages::password(status, &name, Some(msg)));
    if let Err(msg) = accounts::check_password(form.new) {
        return refuse(Status::UnprocessableEntity, msg);
    }
    if form.new != form.confirm {
        return refuse(
            Status::UnprocessableEntity,
            "The new passwords do not match.",
        );
    }
    let attempt = match throttle.begin(Some(&name), client.address, Instant::now()) {
        Ok(attempt) => attempt,
        Err(why) => {
            let (secs, text) = too_many_wrong_passwords(why);
            return refuse(Status::TooManyRequests, &text).map_err(|p| p.with_retry_after(secs));
        }
    };
    match accounts::change_password(
        pool,
        hasher,
        &current.user.id,
        form.current.to_owned(),
        form.new.to_owned(),
    )
    .await
    {
        Ok(true) => attempt.succeeded(Instant::now()),
        Ok(false) => {
            attempt.failed();
            return refuse(Status::Unauthorized, "The current password is wrong.");
        }
        Err(AccountError::Busy) => {
            return refuse(Status::TooManyRequests, BUSY)
                .map_err(|p| p.with_retry_after(BUSY_RETRY_AFTER_SECS));
        }
        Err(AccountError::Store(e)) => return Err(store_failure(&e)),
        Err(AccountError::Taken) => return Err(pages::unavailable()),
    }
    // This browser just proved the password: every other session ends,
    // and this one stays with a new token (the fairing sends its cookie)
    // and a fresh sign-in time. Others first: they are found by this id.
    current
        .sign_out_others(sessions)
        .await
        .map_err(|e| store_failure(&e))?;
    let kept = current
        .reauthenticate(sessions)
        .await
        .map_err(|e| store_failure(&e))?;
    Ok(Redirect::to(if kept.is_some() {
        "/?notice=password-changed"
    } else {
        "/login"
    }))
}
