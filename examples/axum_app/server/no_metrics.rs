//! Without the crate's feature `metrics`: no `/metrics` route, and
//! nothing to install (see `metrics.rs` for the route with the feature).

use axum::Router;

use super::api::AppState;

/// No recorder.
#[derive(Clone)]
pub struct Metrics;

#[allow(dead_code)] // Used by `main.rs`; the tests include this module too.
impl Metrics {
    /// No recorder.
    pub fn none() -> Self {
        Self
    }

    /// Nothing to install.
    pub fn install() -> Result<Self, std::convert::Infallible> {
        Ok(Self)
    }

    /// Nothing served.
    pub fn banner(&self) -> Option<&'static str> {
        None
    }
}

/// No routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
