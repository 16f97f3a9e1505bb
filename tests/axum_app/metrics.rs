//! The example's `GET /metrics` (feature `metrics`): the Prometheus text
//! format, whose validations counter goes up with a signed-in request.
//!
//! The recorder is installed for the whole test process, once: other
//! tests' validations may add to the counter meanwhile, so this test asks
//! that it went up, not by how much. (The crate's own metrics tests, in
//! `tests/metrics.rs`, read exact values from recorders of their own.)

use std::sync::OnceLock;

use axum::http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::end_to_end::{Server, bearer};
use super::server::metrics::Metrics;
use super::*;

/// The process's Prometheus recorder, installed by the first caller.
fn metrics() -> Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS
        .get_or_init(|| Metrics::install().expect("the only global recorder"))
        .clone()
}

/// `GET /metrics`: its content type and text.
async fn scrape(server: &Server) -> (String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<axum::body::Bytes>>();
    let uri = format!("{}/metrics", server.base);
    let res = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `name{labels}` in a Prometheus text page (0
/// when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().unwrap())
        .next()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format() {
    // The recorder first: the manager registers its counters when built.
    let metrics = metrics();
    let mut app = App::new().await;
    app.state.metrics = metrics;
    assert!(app.state.metrics.banner().is_some());
    let server = Server::with_app(app).await;
    let (_, token) = server.enter("/api/signup", "metrics", &[]).await;

    let valid = r#"lucia_diesel_validations_total{outcome="valid"}"#;
    let (content_type, before) = scrape(&server).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let me = server
        .call(
            Method::GET,
            "/api/me",
            &[("authorization", &bearer(&token))],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let (_, after) = scrape(&server).await;

    assert!(
        sample(&after, valid) >= sample(&before, valid) + 1.0,
        "before:\n{before}\nafter:\n{after}"
    );
    for line in [
        "# TYPE lucia_diesel_validations_total counter",
        "# HELP lucia_diesel_validations_total Session validations by outcome.",
        "# TYPE lucia_diesel_sessions_created_total counter",
        "# TYPE lucia_diesel_statement_duration_seconds summary",
    ] {
        assert!(after.lines().any(|l| l == line), "{line}:\n{after}");
    }
    assert!(sample(&after, "lucia_diesel_sessions_created_total") >= 1.0);
    let session_id = me.body["session"]["id"].as_str().unwrap();
    for secret in [
        token.as_str(),
        session_id,
        me.body["user"]["id"].as_str().unwrap(),
    ] {
        assert!(!after.contains(secret), "{secret} in:\n{after}");
    }
}
