//! The example app's routes: sign-up, login, logout, sessions, password.

use lucia_diesel::rocket::{CurrentSession, MaybeSession, SessionFairing};
use lucia_diesel::{PgPool, PostgresAdapter, SessionId, SessionManager};
use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{Build, Rocket, State, catch, catchers, get, post, routes};
use serde::{Deserialize, Serialize};

use super::accounts::{self, AccountError};
use super::pages::{self, Page, SessionRow};

/// Session attributes: the extra column of `user_session` added by the
/// example's migration (when a session was created and last used are the
/// crate's own columns).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    pub user_agent: Option<String>,
}

/// User attributes: extra columns of `auth_user`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    pub username: String,
}

pub type Adapter = PostgresAdapter<PgPool, String, SessionInfo, UserInfo>;
pub type Sessions = SessionManager<Adapter>;
type Current = CurrentSession<Adapter>;
type Maybe = MaybeSession<Adapter>;

/// The app, ready to launch: the session manager and pool in managed state,
/// the session fairing, routes and catchers.
pub fn build(rocket: Rocket<Build>, sessions: Sessions, pool: PgPool) -> Rocket<Build> {
    rocket
        .manage(sessions)
        .manage(pool)
        .attach(SessionFairing::new())
        .mount(
            "/",
            routes![
                home,
                home_signed_out,
                login_page,
                login,
                signup_page,
                signup,
                logout,
                logout_signed_out,
                sessions_page,
                revoke,
                revoke_others,
                password_page,
                change_password
            ],
        )
        .register("/", catchers![unauthorized, unavailable])
}

/// The request's `User-Agent`, for the sessions page.
pub struct UserAgent(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UserAgent {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let agent = req
            .headers()
            .get_one("User-Agent")
            .map(|a| a.chars().take(200).collect());
        Outcome::Success(UserAgent(agent))
    }
}

fn store_failure(e: &lucia_diesel::Error) -> Page {
    eprintln!("session store error: {e}");
    pages::unavailable()
}

/// Starts a new session for `user_id` and sets its cookie. Any session the
/// browser had before is invalidated first: a login never keeps a token
/// that existed before it (session fixation).
async fn start_session(
    sessions: &Sessions,
    cookies: &CookieJar<'_>,
    previous: &Maybe,
    user_id: String,
    agent: UserAgent,
) -> Result<(), lucia_diesel::Error> {
    if let Some(old) = &previous.0 {
        sessions.invalidate_session(&old.session.id).await?;
    }
    let info = SessionInfo {
        user_agent: agent.0,
    };
    let created = sessions.create_session(user_id, info).await?;
    cookies.add(sessions.create_session_cookie(created.token.as_str()));
    Ok(())
}

#[get("/?<notice>")]
fn home(current: Current, notice: Option<&str>) -> Page {
    let notice = match notice {
        Some("password-changed") => {
            Some("Your password was changed and every other session signed out.")
        }
        _ => None,
    };
    pages::home(
        &current.user.attributes.username,
        current.session.expires_at,
        notice,
    )
}

#[get("/", rank = 2)]
fn home_signed_out() -> Redirect {
    Redirect::to("/login")
}

/// A page, or a redirect elsewhere. (One per request: its size does not matter.)
#[derive(rocket::Responder)]
#[allow(clippy::large_enum_variant)]
enum PageOrRedirect {
    Page(Page),
    Redirect(Redirect),
}

#[get("/login")]
fn login_page(current: Maybe) -> PageOrRedirect {
    match current.0 {
        Some(_) => PageOrRedirect::Redirect(Redirect::to("/")),
        None => PageOrRedirect::Page(pages::login(Status::Ok, "", None)),
    }
}

#[derive(FromForm)]
struct LoginForm<'r> {
    username: &'r str,
    password: &'r str,
}

#[post("/login", data = "<form>")]
async fn login(
    form: Form<LoginForm<'_>>,
    previous: Maybe,
    agent: UserAgent,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    let username = form.username.trim().to_ascii_lowercase();
    let wrong = || {
        pages::login(
            Status::Unauthorized,
            &username,
            Some("Wrong username or password."),
        )
    };
    // A name no account can have (NUL, other characters, wrong length) is
    // wrong without asking the database.
    if accounts::normalize_username(&username).is_err()
        || form.password.is_empty()
        || form.password.len() > 1024
    {
        return Err(wrong());
    }
    match accounts::log_in(pool, &username, form.password.to_owned()).await {
        Ok(Some(user_id)) => {
            match start_session(sessions, cookies, &previous, user_id, agent).await {
                Ok(()) => Ok(Redirect::to("/")),
                Err(e) => Err(store_failure(&e)),
            }
        }
        Ok(None) => Err(wrong()),
        Err(AccountError::Store(e)) => Err(store_failure(&e)),
        Err(AccountError::Taken) => Err(wrong()),
    }
}

#[get("/signup")]
fn signup_page(current: Maybe) -> PageOrRedirect {
    match current.0 {
        Some(_) => PageOrRedirect::Redirect(Redirect::to("/")),
        None => PageOrRedirect::Page(pages::signup(Status::Ok, "", None)),
    }
}

#[derive(FromForm)]
struct SignupForm<'r> {
    username: &'r str,
    password: &'r str,
    confirm: &'r str,
}

#[post("/signup", data = "<form>")]
async fn signup(
    form: Form<SignupForm<'_>>,
    previous: Maybe,
    agent: UserAgent,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
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
    match accounts::sign_up(pool, &username, form.password.to_owned()).await {
        Ok(user_id) => match start_session(sessions, cookies, &previous, user_id, agent).await {
            Ok(()) => Ok(Redirect::to("/")),
            Err(e) => Err(store_failure(&e)),
        },
        Err(AccountError::Taken) => Err(pages::signup(
            Status::Conflict,
            &username,
            Some("That username is taken. Please choose another."),
        )),
        Err(AccountError::Store(e)) => Err(store_failure(&e)),
    }
}

#[post("/logout")]
async fn logout(
    current: Current,
    sessions: &State<Sessions>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    sessions
        .invalidate_session(&current.session.id)
        .await
        .map_err(|e| store_failure(&e))?;
    cookies.add(sessions.create_blank_session_cookie());
    Ok(Redirect::to("/login"))
}

#[post("/logout", rank = 2)]
fn logout_signed_out() -> Redirect {
    Redirect::to("/login")
}

#[get("/sessions?<notice>")]
async fn sessions_page(
    current: Current,
    sessions: &State<Sessions>,
    notice: Option<&str>,
) -> Result<Page, Page> {
    let list = sessions
        .get_user_sessions(&current.user.id)
        .await
        .map_err(|e| store_failure(&e))?;
    let mut rows: Vec<SessionRow> = list
        .into_iter()
        .map(|s| SessionRow {
            current: s.id == current.session.id,
            id: s.id.into_string(),
            created_at: Some(s.created_at),
            expires_at: s.expires_at,
            user_agent: s.attributes.user_agent,
        })
        .collect();
    rows.sort_by_key(|r| (!r.current, std::cmp::Reverse(r.created_at)));
    let notice = match notice {
        Some("revoked") => Some("The session was signed out."),
        Some("others-revoked") => Some("Every other session was signed out."),
        _ => None,
    };
    Ok(pages::sessions(
        &current.user.attributes.username,
        &rows,
        notice,
    ))
}

#[derive(FromForm)]
struct RevokeForm<'r> {
    id: &'r str,
}

#[post("/sessions/revoke", data = "<form>")]
async fn revoke(
    form: Form<RevokeForm<'_>>,
    current: Current,
    sessions: &State<Sessions>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    let id = SessionId::new(form.id);
    if id == current.session.id {
        sessions
            .invalidate_session(&id)
            .await
            .map_err(|e| store_failure(&e))?;
        cookies.add(sessions.create_blank_session_cookie());
        return Ok(Redirect::to("/login"));
    }
    // Only the user's own sessions can be revoked.
    let own = sessions
        .get_user_sessions(&current.user.id)
        .await
        .map_err(|e| store_failure(&e))?;
    if own.iter().any(|s| s.id == id) {
        sessions
            .invalidate_session(&id)
            .await
            .map_err(|e| store_failure(&e))?;
    }
    Ok(Redirect::to("/sessions?notice=revoked"))
}

#[post("/sessions/revoke-others")]
async fn revoke_others(current: Current, sessions: &State<Sessions>) -> Result<Redirect, Page> {
    let own = sessions
        .get_user_sessions(&current.user.id)
        .await
        .map_err(|e| store_failure(&e))?;
    for s in own.iter().filter(|s| s.id != current.session.id) {
        sessions
            .invalidate_session(&s.id)
            .await
            .map_err(|e| store_failure(&e))?;
    }
    Ok(Redirect::to("/sessions?notice=others-revoked"))
}

#[get("/password")]
fn password_page(current: Current) -> Page {
    pages::password(Status::Ok, &current.user.attributes.username, None)
}

#[derive(FromForm)]
struct PasswordForm<'r> {
    current: &'r str,
    new: &'r str,
    confirm: &'r str,
}

#[post("/password", data = "<form>")]
async fn change_password(
    form: Form<PasswordForm<'_>>,
    current: Current,
    agent: UserAgent,
    sessions: &State<Sessions>,
    pool: &State<PgPool>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Page> {
    let name = current.user.attributes.username.clone();
    if let Err(msg) = accounts::check_password(form.new) {
        return Err(pages::password(
            Status::UnprocessableEntity,
            &name,
            Some(msg),
        ));
    }
    if form.new != form.confirm {
        return Err(pages::password(
            Status::UnprocessableEntity,
            &name,
            Some("The new passwords do not match."),
        ));
    }
    match accounts::change_password(
        pool,
        &current.user.id,
        form.current.to_owned(),
        form.new.to_owned(),
    )
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(pages::password(
                Status::Unauthorized,
                &name,
                Some("The current password is wrong."),
            ));
        }
        Err(AccountError::Store(e)) => return Err(store_failure(&e)),
        Err(AccountError::Taken) => return Err(pages::unavailable()),
    }
    // Revoke every session, this one included, then give this browser a new one.
    sessions
        .invalidate_user_sessions(&current.user.id)
        .await
        .map_err(|e| store_failure(&e))?;
    start_session(
        sessions,
        cookies,
        &MaybeSession(None),
        current.user.id.clone(),
        agent,
    )
    .await
    .map_err(|e| store_failure(&e))?;
    Ok(Redirect::to("/?notice=password-changed"))
}

#[catch(401)]
fn unauthorized() -> Redirect {
    Redirect::to("/login")
}

#[catch(503)]
fn unavailable() -> Page {
    pages::unavailable()
}
