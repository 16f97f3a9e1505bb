//! Session tokens and the session ids stored for them.
//!
//! A [`SessionToken`] is the secret the client holds (in a cookie or an
//! `Authorization: Bearer` header): 25 bytes from the operating system's
//! CSPRNG, written as 40 characters of lowercase base32 without padding
//! (200 bits), exactly like Lucia v3's `generateIdFromEntropySize(25)`.
//!
//! A [`SessionId`] is what the session table's `id` column holds, a
//! separate type so that a token can never be passed where a stored id
//! belongs. Which id a token gets is chosen by [`TokenStorage`]: by default the SHA-256 of the token
//! ([`TokenStorage::Hashed`]), so a copy of the database cannot be replayed
//! as a cookie; or, to share the tables with a Lucia v3 Node application,
//! the token itself ([`TokenStorage::LuciaCompatible`]).
//!
//! Tokens arriving with a request are untrusted input: check them with
//! [`is_well_formed`] before they reach the database, and treat a token that
//! fails the check as an unknown session.

use std::fmt;

use sha2::{Digest, Sha256};

/// Number of random bytes in a token (200 bits).
const TOKEN_BYTES: usize = 25;

/// Length of a token in characters: 25 bytes of base32 without padding.
pub const TOKEN_LEN: usize = 40;

/// The base32 alphabet of RFC 4648, lower-cased (Lucia's alphabet).
const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Longest token accepted in [`TokenStorage::LuciaCompatible`] mode, in bytes.
pub const MAX_COMPAT_TOKEN_LEN: usize = 255;

/// The operating system's random number generator failed, so no session
/// token could be created ([`Error::Rng`](crate::Error::Rng)).
///
/// This is an operational problem of the host (no entropy source available,
/// e.g. a sandbox without `getrandom(2)` or `/dev/urandom`); retrying rarely
/// helps. No session was created. `getrandom`'s error is the `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed; no session token was created")]
pub struct RngError(#[source] getrandom::Error);

/// A secret session token: what the client holds and presents.
///
/// Its [`Debug`](fmt::Debug) output is `SessionToken(<redacted>)`, and it has
/// no `Display`, so it cannot end up in a log line by accident; read it with
/// [`as_str`](Self::as_str) only to put it into a cookie or a response.
/// Tokens are not compared with each other: a presented token is looked
/// up by its [`SessionId`].
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    /// Draws a new token: 25 bytes from the OS CSPRNG (`getrandom`), encoded
    /// as 40 characters of lowercase base32 without padding.
    ///
    /// # Errors
    /// [`RngError`] when the operating system's random number generator fails.
    pub fn generate() -> Result<Self, RngError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(RngError)?;
        Ok(Self(base32_lower(&bytes)))
    }

    /// The token as text, to put into a cookie or a response body.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as an owned `String`.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// Where the session table's `id` column comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TokenStorage {
    /// The `id` column holds the lowercase hex SHA-256 of the token
    /// (64 characters). The token itself never reaches the database, so a
    /// database dump or a leaked backup cannot be replayed as a cookie.
    /// Requests must present a token of exactly 40 base32 characters.
    #[default]
    Hashed,
    /// The `id` column holds the token itself, exactly like Lucia v3, so a
    /// Rust service and a Lucia Node application can share the session
    /// tables and validate each other's sessions. Anyone who can read the
    /// session table can impersonate its users; prefer [`Hashed`](Self::Hashed)
    /// unless the tables are shared.
    LuciaCompatible,
}

/// The id of a session as the session table stores it: by default the
/// lowercase hex SHA-256 of its token, in [`TokenStorage::LuciaCompatible`]
/// mode the token itself.
///
/// A type of its own, so that a token is never passed where a stored id
/// belongs: [`SessionManager::invalidate_session`](crate::SessionManager::invalidate_session)
/// and the [`Adapter`](crate::Adapter) take a `SessionId`, and a token
/// becomes one only through [`session_id_for`] (or
/// [`SessionManager::session_id`](crate::SessionManager::session_id)).
///
/// In the default storage mode an id is safe to show, for example to let a
/// user revoke a session from a list ([`as_str`](Self::as_str)); in the
/// Lucia-compatible mode it is the token. Its `Debug` output never shows it.
///
/// # Examples
/// ```no_run
/// use lucia_diesel::{PostgresAdapter, SessionManager, SingleConnection};
///
/// # async fn logout(
/// #     sessions: &SessionManager<PostgresAdapter<SingleConnection>>,
/// #     token: &str,
/// # ) -> lucia_diesel::Result<()> {
/// // Log out the session a request presented:
/// sessions.invalidate_session(&sessions.session_id(token)).await?;
/// # Ok(()) }
/// ```
///
/// A token where a stored id belongs does not compile:
/// ```compile_fail
/// use lucia_diesel::{PostgresAdapter, SessionManager, SingleConnection};
///
/// # async fn logout(
/// #     sessions: &SessionManager<PostgresAdapter<SingleConnection>>,
/// #     token: &str,
/// # ) -> lucia_diesel::Result<()> {
/// sessions.invalidate_session(token).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// An id as the session table holds it: one read back from a session
    /// list, a form or an existing table. Ids PostgreSQL cannot store
    /// (empty, over [`MAX_SESSION_ID_BYTES`],
    /// holding NUL) are never found and never stored.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether PostgreSQL can hold it: text cannot hold NUL, and ids longer
    /// than [`MAX_SESSION_ID_BYTES`] are never stored.
    pub(crate) fn storable(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= MAX_SESSION_ID_BYTES && !self.0.contains('\0')
    }
}

/// The longest session id the adapter stores or looks up, in bytes. Longer
/// ids are never found, and `set_session` rejects them.
pub const MAX_SESSION_ID_BYTES: usize = 512;

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In Lucia-compatible storage the id is the token itself.
        f.write_str("SessionId(<redacted>)")
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// The [`SessionId`] a token is stored under in the given storage mode.
///
/// [`TokenStorage::Hashed`]: the lowercase hex SHA-256 of the token's UTF-8
/// bytes (64 characters). [`TokenStorage::LuciaCompatible`]: the token
/// unchanged.
#[must_use]
pub fn session_id_for(token: &str, storage: TokenStorage) -> SessionId {
    SessionId(match storage {
        TokenStorage::Hashed => {
            // Into a buffer, not `hex::encode` (which collects the string
            // char by char): every validation hashes a token.
            let mut hex = [0; 64];
            hex::encode_to_slice(Sha256::digest(token.as_bytes()), &mut hex)
                .expect("64 bytes hold a SHA-256 digest in hex");
            String::from_utf8_lossy(&hex).into_owned()
        }
        TokenStorage::LuciaCompatible => token.to_owned(),
    })
}

/// Whether a token presented by a client can be one of ours under the given
/// storage mode. A token that fails this check is an unknown session: reject
/// it before any query.
///
/// - [`TokenStorage::Hashed`]: exactly [`TOKEN_LEN`] (40) bytes, each one of
///   `abcdefghijklmnopqrstuvwxyz234567`. Upper case, other Unicode (including
///   look-alike letters), NUL, whitespace and punctuation are all rejected.
/// - [`TokenStorage::LuciaCompatible`] (applications may have used custom
///   session ids with Lucia): 1 to [`MAX_COMPAT_TOKEN_LEN`] (255) bytes, each
///   printable ASCII (`!` to `~`) other than `"`, `,`, `;` and `\`: the
///   characters a cookie value can carry unencoded. Space, control
///   characters, NUL and non-ASCII are rejected.
#[must_use]
pub fn is_well_formed(token: &str, storage: TokenStorage) -> bool {
    let bytes = token.as_bytes();
    match storage {
        TokenStorage::Hashed => {
            // A range test per byte, not a search of the alphabet: this
            // runs on every request (see BENCHMARKS.md's notes).
            bytes.len() == TOKEN_LEN && bytes.iter().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
        }
        TokenStorage::LuciaCompatible => {
            (1..=MAX_COMPAT_TOKEN_LEN).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|&b| matches!(b, b'!'..=b'~') && !matches!(b, b'"' | b',' | b';' | b'\\'))
        }
    }
}

/// RFC 4648 base32 with the lowercase alphabet and no padding.
fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    // Bits not yet written, right-aligned in `buffer`; `bits` of them.
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[usize::from((buffer >> bits) & 0x1f)],
            ));
        }
        // Keep only the bits still pending so the buffer never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        // The last group is padded on the right with zero bits.
        out.push(char::from(
            BASE32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn well_formed_accepts_exactly_the_alphabet() {
        for b in 0u8..128 {
            let token = format!("{}{}", "a".repeat(TOKEN_LEN - 1), char::from(b));
            assert_eq!(
                is_well_formed(&token, TokenStorage::Hashed),
                BASE32_ALPHABET.contains(&b),
                "byte {b}"
            );
        }
    }

    #[test]
    fn a_million_tokens_are_unique_40_chars_of_the_alphabet() {
        let mut seen = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let token = SessionToken::generate().unwrap().into_string();
            assert_eq!(token.len(), TOKEN_LEN);
            assert!(
                token.bytes().all(|b| BASE32_ALPHABET.contains(&b)),
                "{token}"
            );
            assert!(is_well_formed(&token, TokenStorage::Hashed));
            assert!(seen.insert(token), "duplicate token");
        }
        assert_eq!(seen.len(), 1_000_000);
    }

    #[test]
    fn base32_rfc4648_vectors_lowercased() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "my"),
            (b"fo", "mzxq"),
            (b"foo", "mzxw6"),
            (b"foob", "mzxw6yq"),
            (b"fooba", "mzxw6ytb"),
            (b"foobar", "mzxw6ytboi"),
        ];
        for (input, expected) in cases {
            assert_eq!(base32_lower(input), *expected, "{input:?}");
        }
        assert_eq!(base32_lower(&[0u8; 25]), "a".repeat(40));
        assert_eq!(base32_lower(&[0xffu8; 25]), "7".repeat(40));
        assert_eq!(base32_lower(&[0xffu8; 1]), "74");
    }

    #[test]
    fn hashed_ids_are_lowercase_hex_sha256() {
        assert_eq!(
            session_id_for("abc", TokenStorage::Hashed).as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            session_id_for("", TokenStorage::Hashed).as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let token = SessionToken::generate().unwrap();
        let id = session_id_for(token.as_str(), TokenStorage::default()).into_string();
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(id, token.as_str());
        assert_eq!(
            session_id_for(token.as_str(), TokenStorage::LuciaCompatible).as_str(),
            token.as_str()
        );
        let debug = format!(
            "{:?}",
            session_id_for(token.as_str(), TokenStorage::LuciaCompatible)
        );
        assert_eq!(debug, "SessionId(<redacted>)");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = SessionToken::generate().unwrap();
        let debug = format!("{token:?} {token:#?}");
        assert!(!debug.contains(token.as_str()));
        assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
        let err = RngError(getrandom::Error::UNSUPPORTED);
        assert!(err.to_string().contains("random number generator"));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn well_formed_tables() {
        let valid = "abcdefghijklmnopqrstuvwxyz234567abcdefgh";
        assert_eq!(valid.len(), 40);
        // (token, hashed, lucia-compatible)
        let cases: Vec<(String, bool, bool)> = vec![
            (valid.into(), true, true),
            (String::new(), false, false),
            (" ".into(), false, false),
            (".".into(), false, true),
            (valid[..39].into(), false, true),
            (format!("{valid}a"), false, true),
            (valid.to_ascii_uppercase(), false, true),
            (format!("{}\u{430}", &valid[..39]), false, false), // Cyrillic 'а', 41 bytes
            (format!("{}\u{430}", &valid[..38]), false, false), // Cyrillic 'а', 40 bytes
            (format!("{}\0", &valid[..39]), false, false),
            (format!("abc\0{}", &valid[..36]), false, false),
            ("a".repeat(4096), false, false),
            ("a".repeat(1 << 20), false, false),
            ("a".repeat(255), false, true),
            ("a".repeat(256), false, false),
            ("' OR 1=1--".into(), false, false), // contains spaces
            (format!("' OR 1=1--{}", &valid[..30]), false, false),
            ("abc;def".into(), false, false),
            ("abc,def".into(), false, false),
            ("abc\"def".into(), false, false),
            ("abc\\def".into(), false, false),
            ("abc\tdef".into(), false, false),
            ("abc\x7fdef".into(), false, false),
            ("custom-id_1.2~x".into(), false, true),
            ("'OR'1'='1'--".into(), false, true), // harmless: values are always bound
            ("a1b8".into(), false, true),
        ];
        for (token, hashed, compat) in &cases {
            let shown = token.chars().take(50).collect::<String>();
            assert_eq!(
                is_well_formed(token, TokenStorage::Hashed),
                *hashed,
                "hashed {shown:?}"
            );
            assert_eq!(
                is_well_formed(token, TokenStorage::LuciaCompatible),
                *compat,
                "compat {shown:?}"
            );
        }
        assert_eq!(TokenStorage::default(), TokenStorage::Hashed);
    }
}
