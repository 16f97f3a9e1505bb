//! The attribute columns (every extra column of the tables, as in Lucia's
//! adapter): looked up in the catalog before the adapter's first statement
//! that names them, once, and kept with those statements. A column
//! dropped, renamed or retyped later makes the next statement fail;
//! [`KnownColumns::load`] then looks the columns up again and runs the
//! statement once more (a failed statement wrote nothing). A column added
//! later is read after a restart, or after such a failure.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, RwLock};

use diesel::deserialize;
use diesel::sql_types::{Bool, Text};

use super::names::{Ident, TableName, TableNames};
use super::run::{Conn, Param, Row, RunResult, Statement};
use super::statements::{Column, Columns, MANAGED_SESSION_COLUMNS, Sql, Statements, Write};
use crate::error::Result;

/// What one adapter knows of its tables' columns.
#[derive(Debug, Default)]
pub(crate) struct KnownColumns {
    known: RwLock<Option<Arc<Known>>>,
}

/// The columns, and the statements that name them.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) columns: Columns,
    /// See [`Statements::get_session_and_user`].
    pub(crate) get_session_and_user: Sql,
    /// See [`Statements::get_user_sessions`].
    pub(crate) get_user_sessions: Sql,
    /// Inserts already rendered, by their attribute columns' names (at most
    /// [`MAX_INSERTS`]): an application writes few column sets, typically
    /// one per attribute type.
    inserts: Mutex<Vec<Rendered>>,
}

/// An insert's attribute column names and its SQL.
type Rendered = (Box<[Box<str>]>, Sql);

/// How many column sets' inserts [`Known`] keeps rendered.
const MAX_INSERTS: usize = 16;

impl Known {
    /// The insert for a session with the attribute columns `names`, in that
    /// order (see [`Statements::insert_session`]), and those columns; `None`
    /// when one is not a column of the session table.
    pub(crate) fn insert(
        &self,
        statements: &Statements,
        names: &[&str],
    ) -> Option<(Vec<&Column>, Sql)> {
        let session = &self.columns.session;
        let columns = names
            .iter()
            .map(|name| session.iter().find(|c| c.name.as_str() == *name))
            .collect::<Option<Vec<_>>>()?;
        let rendered = |(kept, _): &&Rendered| kept.iter().map(|k| &**k).eq(names.iter().copied());
        if let Ok(inserts) = self.inserts.lock()
            && let Some((_, sql)) = inserts.iter().find(rendered)
        {
            return Some((columns, sql.clone()));
        }
        let sql = statements.insert_session(&columns);
        if let Ok(mut inserts) = self.inserts.lock()
            && inserts.len() < MAX_INSERTS
        {
            inserts.push((names.iter().map(|&n| n.into()).collect(), sql.clone()));
        }
        Some((columns, sql))
    }
}

impl KnownColumns {
    /// Runs a query that names the attribute columns: `statement` gives
    /// its SQL and binds for the columns (looked up first if they are not
    /// known), `decode` reads each row. When the statement fails because a
    /// column it names is gone or has another type (or `statement` says a
    /// column is missing), the columns are looked up again and the
    /// statement runs once more: a failed statement wrote nothing.
    pub(crate) async fn load<'p, T: Send>(
        &self,
        conn: &mut Conn<'_>,
        statements: &Statements,
        names: &TableNames,
        statement: impl Fn(&Known) -> RunResult<Named<'p>> + Sync,
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
            inserts: Mutex::new(Vec::new()),
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

/// A statement that names the attribute columns: its SQL (kept with the
/// columns) and its parameters.
pub(crate) type Named<'p> = (Sql, Cow<'p, [Param<'p>]>);

/// One run of [`KnownColumns::load`]'s statement.
async fn attempt<'p, T: Send>(
    conn: &mut Conn<'_>,
    known: &Known,
    statement: &(impl Fn(&Known) -> RunResult<Named<'p>> + Sync),
    decode: &(impl Fn(&Row<'_>, &Columns) -> deserialize::Result<T> + Sync),
) -> RunResult<Vec<T>> {
    let (sql, params) = statement(known)?;
    let stmt = Statement::new(&sql, &params);
    conn.load(stmt, |row| decode(row, &known.columns)).await
}

/// Reads the columns of both tables from the catalog.
async fn look_up(
    conn: &mut Conn<'_>,
    statements: &Statements,
    names: &TableNames,
) -> RunResult<Columns> {
    let (session_table, user_table) = (names.session().to_sql(), names.user().to_sql());
    let params = [Param::Text(&session_table), Param::Text(&user_table)];
    let stmt = Statement::new(&statements.table_columns, &params);
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
