//! Styled error pages: Rocket's catchers for the statuses this app can
//! answer with, and a default one for any other. (401 is not here: a
//! missing session sends the browser to the sign-in page, see `app.rs`.)

use rocket::http::Status;
use rocket::{Catcher, Request, catch, catchers};

use super::pages::{self, Page};

/// Every catcher of this module.
pub fn catchers() -> Vec<Catcher> {
    catchers![
        forbidden,
        not_found,
        payload_too_large,
        unprocessable,
        too_many_requests,
        internal_error,
        unavailable,
        any_other
    ]
}

/// The page for `status`: what happened and what to do, in plain words.
pub fn page_for(status: Status) -> Page {
    let (title, text) = match status.code {
        403 => (
            "Request refused",
            "This request came from another site, or says it did, so it was refused to \
             protect your account. Go back to this site's page and try again there.",
        ),
        404 => (
            "Page not found",
            "There is no page at this address. Check the address, or start again from the \
             start page.",
        ),
        413 => (
            "Too much data",
            "The form sent more data than this site accepts. Go back and send less.",
        ),
        422 => (
            "Form not understood",
            "The form arrived incomplete or malformed. Go back, reload the page and send it \
             again.",
        ),
        429 => (
            "Too many requests",
            "This site is busy or you tried too often. Wait a moment, then try again.",
        ),
        503 => return pages::unavailable(),
        500..=599 => (
            "Something went wrong",
            "The server could not answer this request. Please try again in a moment.",
        ),
        _ => (
            "That did not work",
            "The request could not be answered. Go back and try again.",
        ),
    };
    let page = pages::error(status, title, text);
    if status == Status::TooManyRequests {
        page.with_retry_after(super::common::hashing::BUSY_RETRY_AFTER_SECS)
    } else {
        page
    }
}

#[catch(403)]
fn forbidden() -> Page {
    page_for(Status::Forbidden)
}

#[catch(404)]
fn not_found() -> Page {
    page_for(Status::NotFound)
}

#[catch(413)]
fn payload_too_large() -> Page {
    page_for(Status::PayloadTooLarge)
}

#[catch(422)]
fn unprocessable() -> Page {
    page_for(Status::UnprocessableEntity)
}

#[catch(429)]
fn too_many_requests() -> Page {
    page_for(Status::TooManyRequests)
}

#[catch(500)]
fn internal_error() -> Page {
    page_for(Status::InternalServerError)
}

#[catch(503)]
fn unavailable() -> Page {
    page_for(Status::ServiceUnavailable)
}

#[catch(default)]
fn any_other(status: Status, _req: &Request<'_>) -> Page {
    page_for(status)
}
