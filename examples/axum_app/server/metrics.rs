//! `GET /metrics` (with the crate's feature `metrics`): the session
//! store's metrics in the Prometheus text format, for a Prometheus server
//! to scrape. The exporter is `metrics-exporter-prometheus` without its
//! default features (no HTTP listener of its own, no push gateway): it
//! records, and this route renders what it holds.
//!
//! The metrics hold no token, session id or user id, but they tell how
//! busy the service is: in production, serve them on a port or path only
//! the scraper reaches.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use super::api::AppState;

/// How often the recorder's histograms are folded (the exporter leaves
/// that to the application when it runs no listener).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The Prometheus recorder's handle, once installed; `/metrics` answers
/// 404 without one.
#[derive(Clone)]
pub struct Metrics(Option<PrometheusHandle>);

impl Metrics {
    /// No recorder (yet): `/metrics` answers 404.
    pub fn none() -> Self {
        Self(None)
    }

    /// Installs the Prometheus recorder for the whole process (a second
    /// install fails), gives lucia-diesel's metrics their help texts, and
    /// starts the recorder's upkeep. Call it within the tokio runtime,
    /// before building the session manager.
    pub fn install() -> Result<Self, BuildError> {
        let handle = PrometheusBuilder::new().install_recorder()?;
        lucia_diesel::metrics::describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                upkeep.run_upkeep();
            }
        });
        Ok(Self(Some(handle)))
    }

    /// Where the metrics are served, for the start-up banner.
    pub fn banner(&self) -> Option<&'static str> {
        self.0
            .as_ref()
            .map(|_| "metrics: GET /metrics (Prometheus text format)")
    }
}

/// The `/metrics` route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> Response {
    match &state.metrics.0 {
        Some(handle) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
