//! Accounts: usernames and Argon2 password hashes (Diesel's DSL), and the
//! [`Hasher`] that keeps Argon2 from taking over the machine.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lucia_diesel::{ConnectionSource, PgPool};
use tokio::sync::Semaphore;

diesel::table! {
    auth_user (id) {
        id -> Text,
        username -> Text,
    }
}

diesel::table! {
    user_password (user_id) {
        user_id -> Text,
        hash -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(auth_user, user_password);
diesel::joinable!(user_password -> auth_user (user_id));

/// What can go wrong with an account.
#[derive(Debug)]
pub enum AccountError {
    /// The username is already taken.
    Taken,
    /// Too many password hashes running and waiting: try again shortly.
    Busy,
    /// The database failed (unavailable, timed out, ...).
    Store(lucia_diesel::Error),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<lucia_diesel::Error> for AccountError {
    fn from(e: lucia_diesel::Error) -> Self {
        Self::Store(e)
    }
}

/// Checks a username: 3 to 32 of `a-z`, `0-9`, `_`, `-` (after lower-casing).
pub fn normalize_username(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim().to_ascii_lowercase();
    if !(3..=32).contains(&name.len()) {
        return Err("usernames are 3 to 32 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("usernames use only letters, digits, '_' and '-'");
    }
    Ok(name)
}

/// Checks a new password: 8 to 256 characters.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..=7 => Err("passwords are at least 8 characters long"),
        8..=256 => Ok(()),
        _ => Err("passwords are at most 256 characters long"),
    }
}

/// Runs Argon2 on the blocking pool with bounded concurrency: at most
/// `parallel` hashes at once (one per core) and `queue` more waiting for a
/// turn; a request beyond that is refused at once ([`AccountError::Busy`],
/// a 429), so a flood of logins costs neither unbounded memory nor the
/// signed-in users' requests.
pub struct Hasher {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// Verified against when the username is unknown, so that the answer
    /// takes as long as for a real account.
    dummy: String,
}

impl Hasher {
    pub fn new(parallel: usize, queue: usize) -> Self {
        let dummy = Argon2::default()
            .hash_password(b"not a password", &new_salt())
            .expect("Argon2 with default parameters hashes any password")
            .to_string();
        Self {
            running: Arc::new(Semaphore::new(parallel)),
            admitted: Arc::new(Semaphore::new(parallel + queue)),
            dummy,
        }
    }

    /// `work` on the blocking pool, when a turn comes; `Busy` when the
    /// queue is full. The permits go with the work, so a caller that goes
    /// away never lets more than `parallel` hashes run.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountError> {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| AccountError::Busy)?;
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| AccountError::Busy)?;
        let result = tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            work()
        })
        .await;
        Ok(result.expect("Argon2 does not panic"))
    }

    async fn hash(&self, password: String) -> Result<String, AccountError> {
        self.run(move || {
            Argon2::default()
                .hash_password(password.as_bytes(), &new_salt())
                .expect("Argon2 with default parameters hashes any password")
                .to_string()
        })
        .await
    }

    /// Whether `password` matches `stored`; `false` without a stored hash
    /// (after the same work).
    async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, AccountError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.clone());
        let matches = self
            .run(move || {
                PasswordHash::new(&hash).is_ok_and(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
            })
            .await?;
        Ok(matches && known)
    }
}

/// A 16-byte salt from the OS random source.
fn new_salt() -> SaltString {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt length")
}

fn new_user_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates an account and returns its user id.
pub async fn sign_up(
    pool: &PgPool,
    hasher: &Hasher,
    username: &str,
    password: String,
) -> Result<String, AccountError> {
    let hash = hasher.hash(password).await?;
    let id = new_user_id();
    let mut conn = pool.connection().await?;
    let (uid, name) = (id.clone(), username.to_owned());
    let inserted = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            diesel::insert_into(auth_user::table)
                .values((auth_user::id.eq(&uid), auth_user::username.eq(&name)))
                .execute(conn)
                .await?;
            diesel::insert_into(user_password::table)
                .values((
                    user_password::user_id.eq(&uid),
                    user_password::hash.eq(&hash),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await;
    match inserted {
        Ok(()) => Ok(id),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AccountError::Taken),
        Err(e) => Err(e.into()),
    }
}

/// The user id for a username and password, if they match.
pub async fn log_in(
    pool: &PgPool,
    hasher: &Hasher,
    username: &str,
    password: String,
) -> Result<Option<String>, AccountError> {
    let mut conn = pool.connection().await?;
    let found: Option<(String, String)> = auth_user::table
        .inner_join(user_password::table)
        .filter(auth_user::username.eq(username))
        .select((auth_user::id, user_password::hash))
        .first(&mut conn)
        .await
        .optional()?;
    drop(conn);
    let (id, stored) = found.unzip();
    Ok(if hasher.verify(password, stored).await? {
        id
    } else {
        None
    })
}
