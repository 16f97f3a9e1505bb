//! Without the `pooler` feature a pooler connection cannot exist: these
//! types have no values, so the runner's arms for them are never reached
//! and its code reads the same with and without the feature.

use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;

use super::{RunResult, Statement};

/// A pooler connection, which cannot be made without the feature.
pub(crate) enum PoolerConnection {}

/// A pooler connection's row, which cannot be made without the feature.
pub(crate) enum PoolerRow {}

impl PoolerConnection {
    pub(crate) async fn run(&mut self, _: &Statement<'_>) -> RunResult<(Vec<PoolerRow>, u64)> {
        match *self {}
    }

    pub(crate) fn retire(&mut self, _: bool) {
        match *self {}
    }
}

pub(crate) fn get<ST, T: FromSql<ST, Pg>>(row: &PoolerRow, _: usize) -> deserialize::Result<T> {
    match *row {}
}

pub(crate) fn value(row: &PoolerRow, _: usize) -> deserialize::Result<Option<(u32, &[u8])>> {
    match *row {}
}
