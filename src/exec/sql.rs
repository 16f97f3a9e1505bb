//! SQL text and how it is assembled: [`Sql`] is a statement split at its
//! bind parameters, [`SqlBuilder`] the only way to make one, from text
//! written in this crate, quoted identifiers and bind markers. Nothing
//! read from input or the catalog reaches SQL except as a quoted
//! identifier.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::names::{Ident, TableName};

/// SQL split at its bind parameters: `n` binds sit between `n + 1` parts.
/// The text is fixed for the adapter, so diesel-async keeps the prepared
/// statement in its cache (keyed by the text). Cloning shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sql {
    parts: Arc<[Box<str>]>,
    /// The whole statement with `$1`.. markers.
    text: Arc<str>,
}

impl Sql {
    pub(crate) fn parts(&self) -> &[Box<str>] {
        &self.parts
    }

    /// The whole statement, with `$1`.. markers.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// Builds a [`Sql`]: text written in this crate, quoted identifiers and
/// bind markers.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    parts: Vec<Box<str>>,
    current: String,
}

impl SqlBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends SQL text written in this crate (never input, never catalog text).
    pub(crate) fn sql(mut self, text: &str) -> Self {
        self.current.push_str(text);
        self
    }

    pub(crate) fn table(mut self, name: &TableName) -> Self {
        name.write_sql(&mut self.current);
        self
    }

    pub(crate) fn ident(mut self, ident: &Ident) -> Self {
        ident.write_quoted(&mut self.current);
        self
    }

    /// Marks a bind parameter.
    pub(crate) fn bind(mut self) -> Self {
        self.parts.push(std::mem::take(&mut self.current).into());
        self
    }

    /// Appends a constant statement written in this crate whose bind
    /// markers are `$1`, `$2`, .. in order, each used once.
    pub(crate) fn template(mut self, text: &str) -> Self {
        let mut rest = text;
        for n in 1.. {
            let marker = format!("${n}");
            let Some(at) = rest.find(&marker) else { break };
            self = self.sql(&rest[..at]).bind();
            rest = &rest[at + marker.len()..];
        }
        self.sql(rest)
    }

    pub(crate) fn build(mut self) -> Sql {
        self.parts.push(self.current.into());
        let mut text = String::new();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                let _ = write!(text, "${i}");
            }
            text.push_str(part);
        }
        Sql {
            parts: self.parts.into(),
            text: text.into(),
        }
    }
}
