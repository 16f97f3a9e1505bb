//! User id types: TEXT, INTEGER, BIGINT and UUID.

use std::fmt;

use diesel::QueryResult;
use diesel::deserialize::FromSql;
use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::query_builder::QueryId;
use diesel::serialize::ToSql;
use diesel::sql_types::SingleValue;

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

    #[doc(hidden)]
    fn push_bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

macro_rules! user_id {
    ($t:ty, $st:ty, $name:literal) => {
        impl sealed::Sealed for $t {}
        impl UserId for $t {
            type SqlType = $st;
            const SQL_TYPE: &'static str = $name;
            fn push_bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                out.push_bind_param::<$st, $t>(self)
            }
        }
    };
}

user_id!(String, diesel::sql_types::Text, "TEXT");
user_id!(i32, diesel::sql_types::Integer, "INTEGER");
user_id!(i64, diesel::sql_types::BigInt, "BIGINT");
#[cfg(feature = "uuid")]
user_id!(uuid::Uuid, diesel::sql_types::Uuid, "UUID");
