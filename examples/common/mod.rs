//! What the examples share, free of any web framework: accounts and their
//! queries (bounded by the pool's deadlines), Argon2 on threads of its own,
//! failed-login throttling, which session a sign-out ends, and the
//! database they start on.
//!
//! Each example includes this module next to its `server` module (with
//! `#[path]`), and so do the example's tests.

pub mod accounts;
pub mod database;
pub mod hashing;
pub mod password;
pub mod sign_out;
pub mod throttle;

use self::hashing::Hasher;
use self::throttle::LoginThrottle;

/// The bounds on password work: the hasher (cores and queue) and the
/// failed-login throttle.
#[derive(Debug)]
pub struct PasswordLimits {
    pub hasher: Hasher,
    pub throttle: LoginThrottle,
}

impl Default for PasswordLimits {
    /// One hashing thread per core with a queue of twice that; the
    /// throttle's default budgets.
    fn default() -> Self {
        Self {
            hasher: Hasher::for_this_machine(),
            throttle: LoginThrottle::default(),
        }
    }
}
