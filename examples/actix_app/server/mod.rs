//! The example API's modules, below `main.rs` (which reads the settings
//! and starts the server). The tests include this module once, next to
//! `examples/common` (accounts, password hashing, throttling, the
//! database), which every example shares.

pub mod account;
pub mod api;
pub mod sign_in;

use super::common;
