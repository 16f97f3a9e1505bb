//! The example app's modules, below `main.rs` (which reads the settings
//! and starts the server). The tests include this module once, next to
//! `examples/common` (accounts, password hashing, throttling, the
//! database), which both examples share.

pub mod account;
pub mod agent;
pub mod app;
pub mod assets;
pub mod errors;
pub mod headers;
pub mod pages;
pub mod sessions;
pub mod sign_in;
pub mod startup;

use super::common;
