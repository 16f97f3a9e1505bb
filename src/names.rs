//! Table and column names: validated once, quoted in exactly one place.
//!
//! PostgreSQL identifiers are quoted by wrapping them in `"` and doubling any
//! `"` inside. A quoted name is case-sensitive and may be a reserved word or
//! contain spaces, so names are used exactly as given: `TableNames::new`
//! with `"Auth_User"` refers to a table created as `"Auth_User"`, not to one
//! created unquoted as `Auth_User` (which PostgreSQL folds to `auth_user`).

use std::fmt;

use crate::error::ConfigError;

/// PostgreSQL's `NAMEDATALEN - 1`: longer identifiers are silently truncated.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// One validated identifier part (a table, schema or column name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Ident(Box<str>);

impl Ident {
    /// Checks one name part: not empty, no NUL, at most 63 bytes.
    pub(crate) fn new(part: &str, whole: &str) -> Result<Self, ConfigError> {
        if part.is_empty() {
            return Err(ConfigError::EmptyIdentifier(whole.to_owned()));
        }
        if part.contains('\0') {
            return Err(ConfigError::NulInIdentifier(whole.to_owned()));
        }
        if part.len() > MAX_IDENTIFIER_BYTES {
            return Err(ConfigError::IdentifierTooLong {
                name: whole.to_owned(),
                len: part.len(),
            });
        }
        Ok(Self(part.into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends the quoted form: `"` + name with `"` doubled + `"`.
    pub(crate) fn write_quoted(&self, out: &mut String) {
        out.push('"');
        for c in self.0.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }
}

/// A table name, optionally qualified by a schema: `user_session` or
/// `auth.user_session`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<Ident>,
    table: Ident,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    ///
    /// # Errors
    /// [`ConfigError`] when a part is empty, holds a NUL, is longer than 63
    /// bytes, or the name has more than one dot. To name a table whose name
    /// itself contains a dot, use [`TableName::qualified`].
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        let mut parts = name.split('.');
        let first = parts.next().unwrap_or_default();
        match (parts.next(), parts.next()) {
            (None, _) => Ok(Self {
                schema: None,
                table: Ident::new(first, name)?,
            }),
            (Some(second), None) => Ok(Self {
                schema: Some(Ident::new(first, name)?),
                table: Ident::new(second, name)?,
            }),
            (Some(_), Some(_)) => Err(ConfigError::TooManyDots(name.to_owned())),
        }
    }

    /// A name from separate parts, with no dot parsing: `schema` may be
    /// `None` (resolved through `search_path`), and either part may contain
    /// dots or any other character but NUL.
    ///
    /// # Errors
    /// [`ConfigError`] when a part is empty, holds a NUL or is longer than 63 bytes.
    pub fn qualified(schema: Option<&str>, table: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            schema: schema.map(|s| Ident::new(s, s)).transpose()?,
            table: Ident::new(table, table)?,
        })
    }

    /// The schema part, if the name is qualified.
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(Ident::as_str)
    }

    /// The table part.
    #[must_use]
    pub fn table(&self) -> &str {
        self.table.as_str()
    }

    /// The name as SQL: each part quoted, `"schema"."table"`.
    #[must_use]
    pub fn to_sql(&self) -> String {
        let mut s = String::new();
        self.write_sql(&mut s);
        s
    }

    pub(crate) fn write_sql(&self, out: &mut String) {
        if let Some(schema) = &self.schema {
            schema.write_quoted(out);
            out.push('.');
        }
        self.table.write_quoted(out);
    }

    /// The quoted schema, if the name is qualified.
    pub(crate) fn schema_sql(&self) -> Option<String> {
        let mut out = String::new();
        self.schema.as_ref()?.write_quoted(&mut out);
        Some(out)
    }

    /// A name derived from this one for an index or constraint, quoted:
    /// `<table>_<suffix>`, cut to fit 63 bytes on a character boundary.
    pub(crate) fn derived_ident_sql(&self, suffix: &str) -> String {
        let mut out = String::new();
        self.sibling(suffix).table.write_quoted(&mut out);
        out
    }

    /// A relation or function named after this table, in its schema:
    /// `<schema>.<table>_<suffix>`, the table part cut to fit 63 bytes on a
    /// character boundary.
    pub(crate) fn sibling(&self, suffix: &str) -> TableName {
        let table = self.table.as_str();
        let mut cut = table.len().min(MAX_IDENTIFIER_BYTES - suffix.len() - 1);
        while !table.is_char_boundary(cut) {
            cut -= 1;
        }
        TableName {
            schema: self.schema.clone(),
            table: Ident(format!("{}_{suffix}", &table[..cut]).into()),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({})", self.to_sql())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sql())
    }
}

/// The names of the user table and the session table.
///
/// The defaults are Lucia's: `auth_user` and `user_session`, resolved through
/// the connection's `search_path`.
///
/// # Examples
/// ```
/// use lucia_diesel::TableNames;
///
/// let names = TableNames::new("auth.users", "auth.sessions")?;
/// assert_eq!(names.session().to_sql(), r#""auth"."sessions""#);
///
/// assert!(TableNames::new("a.b.c", "sessions").is_err());
/// # Ok::<(), lucia_diesel::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableNames {
    user: TableName,
    session: TableName,
}

impl TableNames {
    /// Parses both names (`table` or `schema.table` each).
    ///
    /// # Errors
    /// [`ConfigError`] when either name is invalid; see [`TableName::parse`].
    pub fn new(user: &str, session: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            user: TableName::parse(user)?,
            session: TableName::parse(session)?,
        })
    }

    /// Both names from already-built [`TableName`]s.
    #[must_use]
    pub fn from_parts(user: TableName, session: TableName) -> Self {
        Self { user, session }
    }

    /// The user table.
    #[must_use]
    pub fn user(&self) -> &TableName {
        &self.user
    }

    /// The session table.
    #[must_use]
    pub fn session(&self) -> &TableName {
        &self.session
    }

    /// The validation cache's outbox of invalidations, beside the session
    /// table: `<session>_invalidations`.
    pub(crate) fn outbox(&self) -> TableName {
        self.session.sibling("invalidations")
    }

    /// The outbox's trim horizon (one row): `<session>_invalidations_horizon`.
    pub(crate) fn outbox_horizon(&self) -> TableName {
        self.session.sibling("invalidations_horizon")
    }
}

impl Default for TableNames {
    fn default() -> Self {
        Self {
            user: TableName {
                schema: None,
                table: Ident("auth_user".into()),
            },
            session: TableName {
                schema: None,
                table: Ident("user_session".into()),
            },
        }
    }
}
