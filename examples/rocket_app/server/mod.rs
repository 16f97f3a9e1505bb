//! The example app's modules, below `main.rs` (which reads the settings
//! and starts the server). The tests include this module once.

pub mod accounts;
pub mod agent;
pub mod app;
pub mod assets;
pub mod errors;
pub mod headers;
pub mod limits;
pub mod pages;
pub mod password;
pub mod sessions;
pub mod sign_in;
pub mod startup;
