//! Argon2 password hashes (PHC strings, the `argon2` crate's default
//! parameters: Argon2id, 19 MiB, 2 passes), computed in memory each
//! hashing thread allocates once and keeps.
//!
//! Why not `PasswordHasher::hash_password`: it allocates 19 MiB per call,
//! and the system allocator keeps large freed blocks in per-thread arenas
//! that multiply under load. Measured on the example with two hashing
//! threads, five rounds of 200 concurrent logins left 370 MB resident in
//! seven arenas; with the memory kept per thread, it stays at one block
//! set per thread. The strings are the same, so hashes written either way
//! verify either way (tested).
//!
//! Call these only on the [`Hasher`](super::hashing::Hasher)'s threads.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};

thread_local! {
    /// This thread's Argon2 memory, grown to the largest parameters seen.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The most memory a stored hash may ask for: four times the default.
const MAX_BLOCKS: usize = 4 * Params::DEFAULT_M_COST as usize;

/// Runs Argon2 with `argon2`'s parameters in this thread's kept memory.
fn compute(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], len: usize) -> Option<Output> {
    MEMORY.with_borrow_mut(|memory| {
        let blocks = argon2.params().block_count();
        if blocks > MAX_BLOCKS {
            return None;
        }
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .ok()
    })
}

/// An Argon2id hash of `password` with a new random salt, as a PHC string.
pub fn hash(password: &str) -> String {
    let argon2 = Argon2::default();
    let salt = new_salt();
    let mut buf = [0u8; 16];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut buf)
        .expect("a salt this function encoded decodes");
    let output = compute(
        &argon2,
        password.as_bytes(),
        salt_bytes,
        Params::DEFAULT_OUTPUT_LEN,
    )
    .expect("Argon2 with default parameters hashes any password");
    PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params()).expect("default parameters format"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

/// Whether `password` matches the PHC string `stored`. Without an account
/// (`None`) it checks against a throwaway hash anyway, so that the answer
/// takes as long as for a real account.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not a password"));
    matches(password, stored.unwrap_or(dummy)) && stored.is_some()
}

fn matches(password: &str, stored: &str) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(phc.algorithm), Params::try_from(&phc))
    else {
        return false;
    };
    let version = match phc.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut buf) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    // `Output`'s comparison takes the same time wherever the bytes differ.
    compute(&argon2, password.as_bytes(), salt_bytes, expected.len())
        .is_some_and(|computed| computed == expected)
}

/// A 16-byte salt from the OS random source.
fn new_salt() -> SaltString {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt length")
}
