//! `tracing` plumbing shared by the adapter and the session manager.
//!
//! Every operation runs in a span of its own; when no subscriber wants the
//! span it is disabled, and then neither the span nor its fields cost an
//! allocation. Spans never carry a token or a session id (in
//! Lucia-compatible storage the id *is* the token): only user ids, counts
//! and outcomes.

use std::future::Future;

use futures_util::FutureExt as _;
use tracing::{Instrument as _, Span};

use crate::error::Result;

/// Runs `op` inside `span` and, if it fails, records the error (whose text
/// never holds a token) as a `debug` event in that span.
///
/// `op` may record fields on `span` by borrowing it, never through
/// [`Span::current`], which would write into whatever outer span is current
/// when `span` itself is disabled.
///
/// Not an `async fn`: one would keep `op` twice in its state (the argument
/// and the instrumented copy), and every caller up the chain copies a
/// future that size on each call.
pub(crate) fn traced<T>(
    span: &Span,
    op: impl Future<Output = Result<T>>,
) -> impl Future<Output = Result<T>> {
    let parent = span.clone();
    op.instrument(span.clone()).map(move |result| {
        if let Err(error) = &result {
            tracing::debug!(parent: &parent, error = %error, "operation failed");
        }
        result
    })
}
