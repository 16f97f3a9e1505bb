//! Security headers on every response, error pages included, and a styled
//! page for error responses that arrive as plain text.
//!
//! Rocket's default `Shield` already sends `X-Content-Type-Options:
//! nosniff`, `X-Frame-Options: SAMEORIGIN` and a `Permissions-Policy`;
//! this fairing adds the two it does not have.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{ContentType, Header};
use rocket::{Request, Response};

use super::errors;

/// Nothing is allowed unless listed: the stylesheet and the icon come from
/// this site, forms post to it, and no other site may frame the pages
/// (clickjacking). The pages have no scripts at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Links to other sites carry no address of this one. Not `no-referrer`:
/// under it browsers send `Origin: null` with the site's own form posts,
/// which the CSRF check (rightly) refuses.
pub const REFERRER_POLICY: &str = "same-origin";

/// Sets `Content-Security-Policy` and `Referrer-Policy` on every response.
pub struct SecurityHeaders;

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, _req: &'r Request<'_>, res: &mut Response<'r>) {
        // Error answers that are not pages (the crate's CSRF refusal is a
        // plain-text 403 from a route, so no catcher sees it) get the
        // styled page for their status.
        if res.status().code >= 400 && res.content_type() == Some(ContentType::Plain) {
            let page = errors::page_for(res.status());
            res.set_header(ContentType::HTML);
            res.set_header(Header::new("Cache-Control", "no-store"));
            res.set_sized_body(page.html.len(), std::io::Cursor::new(page.html));
        }
        res.set_header(Header::new(
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY,
        ));
        res.set_header(Header::new("Referrer-Policy", REFERRER_POLICY));
    }
}
