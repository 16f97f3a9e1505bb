//! The sessions page: every session of the signed-in user (device, address,
//! when it signed in, when it was last seen, when it expires), and revoking
//! one or all the others. Notices say what happened, and only that.

use lucia_diesel::{Adapter as _, SessionId};
use rocket::form::{Form, FromForm};
use rocket::http::CookieJar;
use rocket::response::Redirect;
use rocket::{State, get, post};

use super::agent;
use super::app::{Current, LoginNotice, Sessions, ToLogin, store_failure};
use super::pages::{self, Outcome, Page, SessionRow};

#[get("/sessions?<notice>")]
pub async fn page(
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
            device: agent::describe(s.attributes.user_agent.as_deref()),
            address: s.attributes.ip_address,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
        })
        .collect();
    rows.sort_by_key(|r| (!r.current, std::cmp::Reverse(r.last_seen_at)));
    let outcome = match notice {
        Some("revoked") => Some(Outcome::Done("The session was signed out.")),
        Some("not-found") => Some(Outcome::Nothing(
            "No session of yours has that id (it may have ended already): nothing was signed out.",
        )),
        Some("others-revoked") => Some(Outcome::Done("Every other session was signed out.")),
        Some("no-others") => Some(Outcome::Nothing(
            "There were no other sessions: nothing was signed out.",
        )),
        _ => None,
    };
    Ok(pages::sessions(
        &current.user.attributes.username,
        &rows,
        sessions.now(),
        outcome,
    ))
}

#[derive(FromForm)]
pub struct RevokeForm<'r> {
    id: &'r str,
}

/// The answer to a revoke: back to the list with a notice, or to the
/// sign-in page when it was this browser's own session. (One per request:
/// its size does not matter.)
#[derive(rocket::Responder)]
#[allow(clippy::large_enum_variant)]
pub enum Revoked {
    List(Redirect),
    ThisBrowser(ToLogin),
}

#[post("/sessions/revoke", data = "<form>")]
pub async fn revoke(
    form: Form<RevokeForm<'_>>,
    current: Current,
    sessions: &State<Sessions>,
    cookies: &CookieJar<'_>,
) -> Result<Revoked, Page> {
    let id = SessionId::new(form.id);
    if id == current.session.id {
        sessions
            .invalidate_session(&id)
            .await
            .map_err(|e| store_failure(&e))?;
        cookies.add(sessions.create_blank_session_cookie());
        return Ok(Revoked::ThisBrowser(ToLogin(Some(LoginNotice::SignedOut))));
    }
    // Only the user's own sessions can be revoked; "signed out" only when
    // one was (it may have ended between the list and the delete).
    let own = sessions
        .get_user_sessions(&current.user.id)
        .await
        .map_err(|e| store_failure(&e))?;
    let deleted = if own.iter().any(|s| s.id == id) {
        sessions
            .adapter()
            .delete_session(&id)
            .await
            .map_err(|e| store_failure(&e))?
    } else {
        false
    };
    let to = if deleted {
        "/sessions?notice=revoked"
    } else {
        "/sessions?notice=not-found"
    };
    Ok(Revoked::List(Redirect::to(to)))
}

#[post("/sessions/revoke-others")]
pub async fn revoke_others(current: Current, sessions: &State<Sessions>) -> Result<Redirect, Page> {
    let deleted = current
        .sign_out_others(sessions)
        .await
        .map_err(|e| store_failure(&e))?;
    Ok(Redirect::to(if deleted > 0 {
        "/sessions?notice=others-revoked"
    } else {
        "/sessions?notice=no-others"
    }))
}
