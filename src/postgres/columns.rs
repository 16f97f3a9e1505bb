//! The attribute columns (every extra column of the tables, as in Lucia's
//! adapter): looked up in the catalog before the adapter's first statement
//! that names them, once, and kept with those statements. A column
//! dropped, renamed or retyped later makes the next statement fail;
//! [`KnownColumns::again`] then looks the columns up again for the one
//! retry (a failed statement wrote nothing). A column added
//! later is read after a restart, or after such a failure.

use std::sync::{Arc, Mutex, RwLock};

use diesel::deserialize;
use diesel::sql_types::{Bool, Text};

use super::statements::{Column, Columns, MANAGED_SESSION_COLUMNS, Statements, Write};
use crate::error::{Error, ErrorClass, Result};
use crate::exec::{Conn, Param, RunResult, Sql, Statement};
use crate::names::{Ident, TableName, TableNames};

/// What one adapter knows of its tables' columns.
#[derive(Debug, Default)]
pub(crate) struct KnownColumns {
    known: RwLock<Option<Arc<Known>>>,
}

/// The reads that name the attribute columns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// [`Statements::get_session_and_user`].
    SessionAndUser,
    /// [`Statements::get_user_sessions`].
    UserSessions,
}

/// The columns, and the statements that name them.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) columns: Columns,
    get_session_and_user: Sql,
    get_user_sessions: Sql,
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
    /// The SQL of `read`, naming these columns.
    pub(crate) fn read(&self, read: Read) -> &Sql {
        match read {
            Read::SessionAndUser => &self.get_session_and_user,
            Read::UserSessions => &self.get_user_sessions,
        }
    }

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
    /// The columns, looked up on first use.
    pub(crate) async fn get(
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

    /// The one retry of a statement that names the attribute columns:
    /// when `failure` says a column it named is gone or has another type
    /// (or the statement named one the columns lack), the columns looked up
    /// again for one more run (a failed statement wrote nothing); any other
    /// failure as it is.
    pub(crate) async fn again(
        &self,
        conn: &mut Conn<'_>,
        statements: &Statements,
        names: &TableNames,
        stale: &Arc<Known>,
        failure: ErrorClass,
    ) -> Result<Arc<Known>> {
        if !failure.stale_columns {
            return Err(failure.error);
        }
        self.forget(stale);
        Ok(self.get(conn, statements, names).await?)
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

/// Reads the columns of both tables from the catalog.
async fn look_up(
    conn: &mut Conn<'_>,
    statements: &Statements,
    names: &TableNames,
) -> RunResult<Columns> {
    let (session_table, user_table) = (names.session().to_sql(), names.user().to_sql());
    let params = [Param::Text(&session_table), Param::Text(&user_table)];
    let stmt = Statement::new(&statements.table_columns, &params);
    let rows = conn.query(stmt).await?;
    let mut columns = Columns::default();
    let (mut session_found, mut user_found) = (false, false);
    for row in &rows {
        let decoded = (|| -> deserialize::Result<_> {
            Ok((
                row.get::<Bool, bool>(0)?,
                row.get::<Text, String>(1)?,
                row.get::<Text, String>(2)?,
                row.get::<Text, String>(3)?,
                row.get::<Text, String>(4)?,
                row.get::<Bool, bool>(5)?,
            ))
        })();
        let (in_session, name, type_schema, type_name, write, plain) =
            decoded.map_err(|e| ErrorClass::from_error(Error::decode(e)))?;
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
