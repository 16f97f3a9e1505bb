//! Accounts: usernames and Argon2 password hashes (`password.rs`), with
//! Diesel's DSL.
//!
//! Every query runs through [`ConnectionSource::run`], which bounds it like
//! the crate's own operations: the checkout waits at most the pool's
//! checkout timeout, and the queries at most its statement timeout plus a
//! margin. A database that stops answering costs a sign-in a transient
//! error ([`AccountError::Store`], a 503) within that bound, never a hang.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lucia_diesel::{ConnectionSource as _, PgPool};

use super::hashing::{Busy, Hasher};
use super::password::{hash, verify};

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

diesel::table! {
    user_session (id) {
        id -> Text,
        user_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(auth_user, user_password);
diesel::joinable!(user_password -> auth_user (user_id));

/// What can go wrong with an account.
#[derive(Debug)]
pub enum AccountError {
    /// The username is already taken.
    Taken,
    /// The password hasher is at capacity: try again in a moment.
    Busy,
    /// The database failed (unavailable, timed out, ...).
    Store(lucia_diesel::Error),
}

impl From<Busy> for AccountError {
    fn from(_: Busy) -> Self {
        Self::Busy
    }
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
        return Err("Usernames are 3 to 32 characters long.");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("Usernames use only letters, digits, '_' and '-'.");
    }
    Ok(name)
}

/// Checks a new password: 8 to 256 characters.
pub fn check_password(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..=7 => Err("Passwords are at least 8 characters long."),
        8..=256 => Ok(()),
        _ => Err("Passwords are at most 256 characters long."),
    }
}

/// Whether a password given to sign in can be checked at all: an empty or
/// huge one is wrong without any work.
pub fn plausible_password(password: &str) -> bool {
    !password.is_empty() && password.len() <= 1024
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
    let hash = hasher.run(move || hash(&password)).await?;
    let id = new_user_id();
    let (uid, name) = (id.clone(), username.to_owned());
    pool.run(async move |conn| -> Result<(), AccountError> {
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
            Ok(()) => Ok(()),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Err(AccountError::Taken),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    Ok(id)
}

/// The user id for a username and password, if they match.
pub async fn log_in(
    pool: &PgPool,
    hasher: &Hasher,
    username: &str,
    password: String,
) -> Result<Option<String>, AccountError> {
    // Queue for the hasher first: a refused login costs no query.
    let ticket = hasher.ticket()?;
    let name = username.to_owned();
    let found = pool
        .run(
            async move |conn| -> Result<Option<(String, String)>, AccountError> {
                Ok(auth_user::table
                    .inner_join(user_password::table)
                    .filter(auth_user::username.eq(&name))
                    .select((auth_user::id, user_password::hash))
                    .first(conn)
                    .await
                    .optional()?)
            },
        )
        .await?;
    let (id, stored) = found.unzip();
    let matches = ticket
        .run(move || verify(&password, stored.as_deref()))
        .await;
    Ok(if matches { id } else { None })
}

/// Checks `current` and replaces the password with `new`; `false` when
/// `current` is wrong. (The Rocket example's password page; the JSON API
/// has none.)
#[allow(dead_code)]
pub async fn change_password(
    pool: &PgPool,
    hasher: &Hasher,
    user_id: &str,
    current: String,
    new: String,
) -> Result<bool, AccountError> {
    let ticket = hasher.ticket()?;
    let stored = stored_hash(pool, user_id).await?;
    // Check and hash in one turn of the hasher.
    let replaced = ticket
        .run(move || verify(&current, stored.as_deref()).then(|| hash(&new)))
        .await;
    let Some(hash) = replaced else {
        return Ok(false);
    };
    let id = user_id.to_owned();
    pool.run(async move |conn| -> Result<usize, AccountError> {
        Ok(diesel::update(user_password::table.find(&id))
            .set(user_password::hash.eq(&hash))
            .execute(conn)
            .await?)
    })
    .await?;
    Ok(true)
}

/// Whether `password` is the user's: the check before a re-authentication
/// (a sensitive action asks for the password again).
pub async fn check_password_of(
    pool: &PgPool,
    hasher: &Hasher,
    user_id: &str,
    password: String,
) -> Result<bool, AccountError> {
    let ticket = hasher.ticket()?;
    let stored = stored_hash(pool, user_id).await?;
    Ok(ticket
        .run(move || verify(&password, stored.as_deref()))
        .await)
}

/// Deletes an account in one transaction: its sessions, then the user
/// (the password goes with it, `ON DELETE CASCADE`). Sign the user out
/// through the session manager first, so its cache forgets them at once;
/// this also ends any session signed in meanwhile. `false` when there was
/// no such user.
pub async fn delete_account(pool: &PgPool, user_id: &str) -> Result<bool, AccountError> {
    let id = user_id.to_owned();
    pool.run(async move |conn| -> Result<bool, AccountError> {
        let deleted = conn
            .transaction::<_, diesel::result::Error, _>(async move |conn| {
                diesel::delete(user_session::table.filter(user_session::user_id.eq(&id)))
                    .execute(conn)
                    .await?;
                diesel::delete(auth_user::table.find(&id))
                    .execute(conn)
                    .await
            })
            .await?;
        Ok(deleted > 0)
    })
    .await
}

/// The user's password hash, if the user has one.
async fn stored_hash(pool: &PgPool, user_id: &str) -> Result<Option<String>, AccountError> {
    let id = user_id.to_owned();
    pool.run(async move |conn| -> Result<Option<String>, AccountError> {
        Ok(user_password::table
            .find(&id)
            .select(user_password::hash)
            .first(conn)
            .await
            .optional()?)
    })
    .await
}
