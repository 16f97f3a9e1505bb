//! The stylesheet and the favicon, served from memory.
//!
//! The stylesheet is a file of its own (not a `<style>` element) so that
//! the Content-Security-Policy can allow styles from this site only
//! (`style-src 'self'`), without `'unsafe-inline'`. On narrow screens
//! (phones, under 40rem) the header wraps and the sessions table becomes
//! one block per session, each value labelled (`data-label`).

use rocket::get;
use rocket::http::{ContentType, Header};

/// A response of static bytes, cacheable for a day.
#[derive(rocket::Responder)]
pub struct Asset {
    body: &'static str,
    kind: ContentType,
    cache: Header<'static>,
}

impl Asset {
    fn new(kind: ContentType, body: &'static str) -> Self {
        Self {
            body,
            kind,
            cache: Header::new("Cache-Control", "public, max-age=86400"),
        }
    }
}

#[get("/style.css")]
pub fn stylesheet() -> Asset {
    Asset::new(ContentType::CSS, STYLESHEET)
}

/// An SVG icon (a white padlock on the brand blue). Browsers take an SVG
/// favicon at `/favicon.ico` when its type says so.
#[get("/favicon.ico")]
pub fn favicon() -> Asset {
    Asset::new(ContentType::SVG, FAVICON)
}

const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"7\" fill=\"#2f5bea\"/>\
<path d=\"M11 14v-3a5 5 0 0 1 10 0v3\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2.5\"/>\
<rect x=\"8\" y=\"14\" width=\"16\" height=\"11\" rx=\"2\" fill=\"#fff\"/>\
<circle cx=\"16\" cy=\"19.5\" r=\"1.8\" fill=\"#2f5bea\"/></svg>\n";

const STYLESHEET: &str = "\
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem;display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem}
header a{color:#cfd6e4;text-decoration:none} header a:hover{color:#fff}
header .brand{font-weight:700;color:#fff;margin-right:auto}
header form{margin:0}
main{max-width:44rem;margin:2rem auto;padding:0 1rem}
main:has(.wide){max-width:60rem}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:1.5rem 1.75rem;margin-bottom:1.25rem}
h1{font-size:1.5rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password]{width:100%;padding:.6rem .7rem;border:1px solid #c9cfdb;border-radius:6px;font-size:1rem}
button{background:#2f5bea;color:#fff;border:0;border-radius:6px;padding:.6rem 1.1rem;font-size:.95rem;cursor:pointer;margin-top:1.1rem}
button.link{background:none;color:#cfd6e4;padding:0;margin:0}
button.danger{background:#c6354a} button.quiet{background:#e7eaf0;color:#1d2330}
button:disabled,button.danger:disabled{background:#e7eaf0;color:#8a91a0;cursor:not-allowed}
.error{background:#fdecee;color:#8a1c2b;border:1px solid #f5c2ca;padding:.6rem .8rem;border-radius:6px}
.notice{background:#e8f6ee;color:#1d5b36;border:1px solid #bfe5cc;padding:.6rem .8rem;border-radius:6px}
table{width:100%;border-collapse:collapse} td,th{text-align:left;padding:.55rem .4rem;border-bottom:1px solid #eceef3;vertical-align:middle}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#667}
td form{margin:0} td button{white-space:nowrap;margin:0}
.tag{background:#2f5bea;color:#fff;border-radius:999px;font-size:.75rem;padding:.1rem .55rem;margin-left:.4rem;white-space:nowrap}
.active{color:#1d7a45;font-weight:600}
.muted{color:#667;font-size:.9rem}
td,.card{overflow-wrap:anywhere}
@media (max-width:40rem){
header{padding:.7rem 1rem;gap:.4rem 1rem}
main{margin:1rem auto;padding:0 .6rem}
.card{padding:1.1rem 1rem}
table,tbody,tr,td{display:block;width:100%}
thead{display:none}
tr{border-bottom:1px solid #eceef3;padding:.6rem 0}
td{border:0;padding:.15rem 0}
td[data-label]::before{content:attr(data-label) \": \";color:#667;font-size:.85rem}
td.action button{margin-top:.4rem}
}
";
