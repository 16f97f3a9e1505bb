//! The example API's modules, below `main.rs` (which reads the settings
//! and starts the server). The tests include this module once.

pub mod accounts;
pub mod api;
