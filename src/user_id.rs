//! User id types: TEXT, INTEGER, BIGINT and UUID.

use std::fmt;

use diesel::deserialize::FromSql;
use diesel::pg::Pg;
use diesel::query_builder::QueryId;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Integer, SingleValue, Text};

use crate::exec::Param;

mod sealed {
    pub trait Sealed {}
}

/// A type usable as the user id (`auth_user.id`, `user_session.user_id`).
///
/// Implemented for `String` (`TEXT`, Lucia's default), `i32` (`INTEGER`),
/// `i64` (`BIGINT`) and, with the `uuid` feature, `uuid::Uuid` (`UUID`).
pub trait UserId:
    sealed::Sealed
    + Clone
    + PartialEq
    + fmt::Debug
    + Send
    + Sync
    + 'static
    + ToSql<Self::SqlType, Pg>
    + FromSql<Self::SqlType, Pg>
{
    /// The diesel SQL type of the column.
    type SqlType: SingleValue + QueryId + Send + Sync + 'static;

    /// The column type used in generated DDL.
    const SQL_TYPE: &'static str;

    /// Whether PostgreSQL can hold this id at all (text cannot hold NUL):
    /// an id it cannot hold belongs to no user, and is never sent.
    #[doc(hidden)]
    fn storable(&self) -> bool {
        true
    }

    /// The id as a statement parameter.
    #[doc(hidden)]
    fn param(&self) -> Param<'_>;

    /// The id as PostgreSQL's text output of its column type writes it (as
    /// the validation cache's outbox names users).
    #[doc(hidden)]
    fn text(&self) -> String;
}

impl sealed::Sealed for String {}
impl UserId for String {
    type SqlType = Text;
    const SQL_TYPE: &'static str = "TEXT";
    fn storable(&self) -> bool {
        !self.contains('\0')
    }
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }

    fn text(&self) -> String {
        self.clone()
    }
}

impl sealed::Sealed for i32 {}
impl UserId for i32 {
    type SqlType = Integer;
    const SQL_TYPE: &'static str = "INTEGER";
    fn param(&self) -> Param<'_> {
        Param::Integer(*self)
    }

    fn text(&self) -> String {
        self.to_string()
    }
}

impl sealed::Sealed for i64 {}
impl UserId for i64 {
    type SqlType = BigInt;
    const SQL_TYPE: &'static str = "BIGINT";
    fn param(&self) -> Param<'_> {
        Param::BigInt(*self)
    }

    fn text(&self) -> String {
        self.to_string()
    }
}

#[cfg(feature = "uuid")]
impl sealed::Sealed for uuid::Uuid {}
#[cfg(feature = "uuid")]
impl UserId for uuid::Uuid {
    type SqlType = diesel::sql_types::Uuid;
    const SQL_TYPE: &'static str = "UUID";
    fn param(&self) -> Param<'_> {
        Param::Uuid(*self)
    }

    fn text(&self) -> String {
        self.to_string()
    }
}
