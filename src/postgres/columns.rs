//! The attribute columns: looked up in the catalog once per adapter, kept
//! with the statements that name them, and looked up again when a
//! statement finds them out of date.
//!
//! Lucia's adapter reads every extra column of the tables as an attribute.
//! The adapter's reads and inserts name those columns (see
//! [`super::statements`]), so it needs them before its first such
//! statement: one catalog query per adapter. A column dropped, renamed or
//! retyped later makes the next statement fail; [`KnownColumns::load`] then
//! looks the columns up again and runs the statement once more (a failed
//! statement wrote nothing). A column added later is read after a restart,
//! or after such a failure.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use diesel::deserialize;
use diesel::sql_types::{Bool, Text};

use super::names::{Ident, TableName, TableNames};
use super::run::{Bind, Binds, Conn, Row, RunResult, Statement};
use super::statements::{Column, Columns, MANAGED_SESSION_COLUMNS, Sql, Statements, Write};
use crate::error::Result;

/// What one adapter knows of its tables' columns.
#[derive(Debug, Default)]
pub(crate) struct KnownColumns {
    known: RwLock<Option<Arc<Known>>>,
}

/// The columns, and the reads that name them.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) columns: Columns,
    /// See [`Statements::get_session_and_user`].
    pub(crate) get_session_and_user: Sql,
    /// See [`Statements::get_user_sessions`].
    pub(crate) get_user_sessions: Sql,
}

impl Known {
    /// The session table's attribute columns named in `names`, in that
    /// order; `None` when one is not a column of the table.
    pub(crate) fn session_columns<'a>(
        &'a self,
        names: impl Iterator<Item = &'a str>,
    ) -> Option<Vec<&'a Column>> {
        names
            .map(|name| {
                self.columns
                    .session
                    .iter()
                    .find(|c| c.name.as_str() == name)
            })
            .collect()
    }
}

impl KnownColumns {
    /// Runs a query that names the attribute columns: `statement` gives
    /// its SQL and binds for the columns (looked up first if they are not
    /// known), `decode` reads each row. When the statement fails because a
    /// column it names is gone or has another type (or `statement` says a
    /// column is missing), the columns are looked up again and the
    /// statement runs once more: a failed statement wrote nothing.
    pub(crate) async fn load<B: Binds, T: Send>(
        &self,
        conn: &mut Conn<'_>,
        statements: &Statements,
        names: &TableNames,
        statement: impl for<'k> Fn(&'k Known) -> RunResult<(Cow<'k, Sql>, B)> + Sync,
        decode: impl Fn(&Row<'_>, &Columns) -> deserialize::Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let known = self.get(conn, statements, names).await?;
        match attempt(conn, &known, &statement, &decode).await {
            // Boxed, as the lookup: a rare path whose state would
            // otherwise enlarge every operation's future.
            Err(class) if class.stale_columns => {
                Box::pin(async {
                    self.forget(&known);
                    let known = self.get(conn, statements, names).await?;
                    Ok(attempt(conn, &known, &statement, &decode).await?)
                })
                .await
            }
            result => Ok(result?),
        }
    }

    /// The columns, looked up on first use.
    async fn get(
        &self,
        conn: &mut Conn<'_>,
        statements: &Statements,
        names: &TableNames,
    ) -> RunResult<Arc<Known>> {
        if let Some(known) = self.known.read().ok().and_then(|k| k.clone()) {
            return Ok(known);
        }
        // Boxed: the lookup runs once per adapter, and inline its state
        // would enlarge (and be copied with) every operation's future.
        let columns = Box::pin(look_up(conn, statements, names)).await?;
        let complete = columns.complete;
        let known = Arc::new(Known {
            get_session_and_user: statements.get_session_and_user(&columns),
            get_user_sessions: statements.get_user_sessions(&columns),
            columns,
        });
        // Not kept while a table is missing: the migrations may not have
        // run yet, and the next call looks again.
        if complete && let Ok(mut slot) = self.known.write() {
            *slot = Some(Arc::clone(&known));
        }
        Ok(known)
    }

    /// Forgets the columns if they are still `stale` (another call may have
    /// looked them up again meanwhile).
    fn forget(&self, stale: &Arc<Known>) {
        if let Ok(mut slot) = self.known.write()
            && slot.as_ref().is_some_and(|k| Arc::ptr_eq(k, stale))
        {
            *slot = None;
        }
    }
}

/// One run of [`KnownColumns::load`]'s statement.
async fn attempt<B: Binds, T: Send>(
    conn: &mut Conn<'_>,
    known: &Known,
    statement: &(impl for<'k> Fn(&'k Known) -> RunResult<(Cow<'k, Sql>, B)> + Sync),
    decode: &(impl Fn(&Row<'_>, &Columns) -> deserialize::Result<T> + Sync),
) -> RunResult<Vec<T>> {
    let (sql, binds) = statement(known)?;
    conn.load(Statement::new(&sql, binds), |row| {
        decode(row, &known.columns)
    })
    .await
}

/// Reads the columns of both tables from the catalog.
async fn look_up(
    conn: &mut Conn<'_>,
    statements: &Statements,
    names: &TableNames,
) -> RunResult<Columns> {
    let (session_table, user_table) = (names.session().to_sql(), names.user().to_sql());
    let stmt = Statement::new(
        &statements.table_columns,
        (
            Bind::<Text, str>::new(&session_table),
            Bind::<Text, str>::new(&user_table),
        ),
    );
    let rows = conn
        .load(stmt, |row| {
            Ok((
                row.get::<Bool, bool>(0)?,
                row.get::<Text, String>(1)?,
                row.get::<Text, String>(2)?,
                row.get::<Text, String>(3)?,
                row.get::<Text, String>(4)?,
                row.get::<Bool, bool>(5)?,
            ))
        })
        .await?;
    let mut columns = Columns::default();
    let (mut session_found, mut user_found) = (false, false);
    for (in_session, name, type_schema, type_name, write, plain) in rows {
        // Catalog names always fit an identifier (at most 63 bytes, no NUL).
        let (Ok(ident), Ok(type_name)) = (
            Ident::new(&name, &name),
            TableName::qualified(Some(&type_schema), &type_name),
        ) else {
            continue;
        };
        let column = Column {
            name: ident,
            plain,
            write: match write.as_str() {
                "json" => Write::Json(type_name),
                "record" => Write::Record,
                _ => Write::Cast(type_name),
            },
        };
        if in_session {
            session_found = true;
            if !MANAGED_SESSION_COLUMNS.contains(&name.as_str()) {
                columns.session.push(column);
            }
        } else {
            user_found = true;
            if name != "id" {
                columns.user.push(column);
            }
        }
    }
    columns.complete = session_found && user_found;
    if !columns.complete {
        // The statements then name no attribute column, and PostgreSQL
        // reports the missing table itself.
        columns.session.clear();
        columns.user.clear();
    }
    Ok(columns)
}
