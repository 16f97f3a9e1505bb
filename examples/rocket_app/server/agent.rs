//! "Firefox on Android": a short description of a `User-Agent` header for
//! the sessions page.
//!
//! Hand-written on purpose. The sessions page needs a browser family and
//! an operating system, nothing more. The small parser crate (`woothee`)
//! has had no release since 2021 and its dataset shows its age; the kept
//! ones (`user-agent-parser`, `uaparser`) load the uap-core `regexes.yaml`
//! file, a thousand regular expressions compiled at start-up, which the
//! example would have to ship. Browsers have also frozen most of their
//! user-agent strings (same OS version, `Mozilla/5.0` prefix), so the
//! tokens checked below are stable. The order matters: Edge and Opera say
//! "Chrome" too, Chrome says "Safari", iOS says "like Mac OS X", Android
//! says "Linux".

/// Browser families by a token of their user agent, most specific first.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Vivaldi/", "Vivaldi"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
];

/// Operating systems by a token of their user agent, most specific first.
const SYSTEMS: &[(&str, &str)] = &[
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
    ("FreeBSD", "FreeBSD"),
];

/// "Chrome on Windows", "curl", or "Unknown browser".
pub fn describe(agent: Option<&str>) -> String {
    let agent = agent.unwrap_or_default();
    let browser = BROWSERS
        .iter()
        .find(|(token, _)| agent.contains(token))
        .map(|(_, name)| (*name).to_owned())
        .or_else(|| product(agent));
    let system = SYSTEMS
        .iter()
        .find(|(token, _)| agent.contains(token))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b,
        (None, Some(s)) => format!("Unknown browser on {s}"),
        (None, None) => "Unknown browser".to_owned(),
    }
}

/// The first product name of an agent that is not a browser
/// (`curl/8.5.0` gives "curl"), if it is a plain word.
fn product(agent: &str) -> Option<String> {
    let name = agent.split(['/', ' ']).next()?;
    let plain = (1..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    (plain && name != "Mozilla").then(|| name.to_owned())
}
