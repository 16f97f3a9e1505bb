//! `PostgresAdapter::verify_schema`: the startup check finds schema drift
//! (missing or renamed tables, dropped columns, wrong types, a missing key,
//! revoked grants) and says exactly what is wrong; at run time the same
//! drift gives typed errors, never a panic.

use lucia_diesel::{
    Adapter, Attributes, Error, PoolOptions, PostgresAdapter, SchemaProblem, SessionManager,
    TableName, TableNames, migrations,
};

use crate::support::{TestDb, admin};
use diesel_async::SimpleAsyncConnection as _;

async fn migrated() -> TestDb {
    let db = TestDb::new().await;
    migrations::run_pending_migrations(db.connect().await)
        .await
        .expect("migrate");
    db
}

async fn adapter(url: &str) -> PostgresAdapter<lucia_diesel::PgPool> {
    PostgresAdapter::new(
        PoolOptions::new()
            .with_max_size(1)
            .build(url)
            .await
            .expect("pool"),
    )
}

/// The problems `verify_schema` reports (panics when it passes or fails otherwise).
fn problems(result: lucia_diesel::Result<()>) -> Vec<SchemaProblem> {
    match result {
        Err(Error::Schema(e)) => {
            let text = e.to_string();
            assert!(!e.problems().is_empty());
            for p in e.problems() {
                assert!(text.contains(&p.to_string()), "{text}");
            }
            e.problems().to_vec()
        }
        other => panic!("expected Error::Schema, got {other:?}"),
    }
}

const SESSION: &str = r#""user_session""#;
const USER: &str = r#""auth_user""#;

#[tokio::test]
async fn default_tables_pass() {
    let db = migrated().await;
    adapter(&db.url).await.verify_schema().await.unwrap();
}

#[tokio::test]
async fn custom_names_and_user_id_types_pass() {
    let mut db = TestDb::new().await;
    let schema = db.extra_schema("ldv").await;
    let names = TableNames::from_parts(
        TableName::qualified(Some(&schema), "Users").unwrap(),
        TableName::qualified(Some(&schema), r#"the "sessions""#).unwrap(),
    );
    let mut conn = db.connect().await;
    migrations::create_tables::<i64>(&mut conn, &names)
        .await
        .unwrap();
    let a = adapter(&db.url)
        .await
        .with_table_names(names.clone())
        .with_user_id::<i64>();
    a.verify_schema().await.unwrap();
    // The same tables with the wrong Rust user id type.
    let p = problems(
        adapter(&db.url)
            .await
            .with_table_names(names.clone())
            .verify_schema()
            .await,
    );
    let users = names.user().to_sql();
    let sessions = names.session().to_sql();
    assert_eq!(
        p,
        vec![
            SchemaProblem::WrongColumnType {
                table: users,
                column: "id",
                found: "bigint".into(),
                expected: "text or varchar, to match the String user id type",
            },
            SchemaProblem::WrongColumnType {
                table: sessions,
                column: "user_id",
                found: "bigint".into(),
                expected: "text or varchar, to match the String user id type",
            },
        ]
    );
    // uuid ids (created by DDL for uuid) pass with the uuid type.
    let names = TableNames::new(&format!("{schema}.u2"), &format!("{schema}.s2")).unwrap();
    migrations::create_tables::<uuid::Uuid>(&mut conn, &names)
        .await
        .unwrap();
    adapter(&db.url)
        .await
        .with_table_names(names)
        .with_user_id::<uuid::Uuid>()
        .verify_schema()
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_tables_and_schemas() {
    let db = TestDb::new().await;
    let p = problems(adapter(&db.url).await.verify_schema().await);
    assert_eq!(
        p,
        vec![
            SchemaProblem::TableNotFound { table: USER.into() },
            SchemaProblem::TableNotFound {
                table: SESSION.into()
            },
        ]
    );
    let names = TableNames::new("no_such_schema.auth_user", "no_such_schema.user_session").unwrap();
    let p = problems(
        adapter(&db.url)
            .await
            .with_table_names(names)
            .verify_schema()
            .await,
    );
    let schema = SchemaProblem::SchemaNotFound {
        schema: r#""no_such_schema""#.into(),
    };
    assert_eq!(p, vec![schema.clone(), schema]);
}

#[tokio::test]
async fn renamed_table_is_found_before_traffic_and_typed_after() {
    let db = migrated().await;
    db.exec("INSERT INTO auth_user (id) VALUES ('alice')").await;
    let m = SessionManager::new(adapter(&db.url).await);
    let created = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
    db.exec("ALTER TABLE user_session RENAME TO user_session_old")
        .await;
    let p = problems(m.adapter().verify_schema().await);
    assert_eq!(
        p,
        vec![SchemaProblem::TableNotFound {
            table: SESSION.into()
        }]
    );
    assert!(p[0].to_string().contains("run the migrations"), "{}", p[0]);
    // At run time: typed errors, never a valid session.
    let err = m
        .validate_session(created.token.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().contains("does not exist")),
        "{err:?}"
    );
    assert!(
        m.create_session("alice".into(), Attributes::new())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dropped_and_nullable_columns() {
    let db = migrated().await;
    db.exec(
        "ALTER TABLE user_session DROP COLUMN expires_at; \
         ALTER TABLE user_session ALTER COLUMN user_id DROP NOT NULL",
    )
    .await;
    let p = problems(adapter(&db.url).await.verify_schema().await);
    assert_eq!(
        p,
        vec![
            SchemaProblem::MissingColumn {
                table: SESSION.into(),
                column: "expires_at"
            },
            SchemaProblem::NullableColumn {
                table: SESSION.into(),
                column: "user_id"
            },
        ]
    );
}

#[tokio::test]
async fn wrong_column_types() {
    let db = migrated().await;
    db.exec(
        "ALTER TABLE user_session ALTER COLUMN expires_at TYPE timestamp; \
         ALTER TABLE user_session ALTER COLUMN id TYPE varchar(40)",
    )
    .await;
    let p = problems(adapter(&db.url).await.verify_schema().await);
    assert_eq!(
        p,
        vec![
            SchemaProblem::WrongColumnType {
                table: SESSION.into(),
                column: "id",
                found: "character varying(40)".into(),
                expected: "text (or varchar of at least 64 characters)",
            },
            SchemaProblem::WrongColumnType {
                table: SESSION.into(),
                column: "expires_at",
                found: "timestamp without time zone".into(),
                expected: "timestamptz (timestamp with time zone)",
            },
        ]
    );
    // A domain over text is text; varchar(64) holds a hashed id.
    db.exec(
        "ALTER TABLE user_session ALTER COLUMN expires_at TYPE timestamptz; \
         ALTER TABLE user_session ALTER COLUMN id TYPE varchar(64); \
         CREATE DOMAIN uid AS text; ALTER TABLE user_session ALTER COLUMN user_id TYPE uid",
    )
    .await;
    adapter(&db.url).await.verify_schema().await.unwrap();
}

#[tokio::test]
async fn missing_primary_key_and_unusable_unique_indexes() {
    let db = migrated().await;
    db.exec("INSERT INTO auth_user (id) VALUES ('alice')").await;
    db.exec("ALTER TABLE user_session DROP CONSTRAINT user_session_pkey")
        .await;
    let no_key = vec![SchemaProblem::NoUniqueIndex {
        table: SESSION.into(),
        column: "id",
    }];
    let a = adapter(&db.url).await;
    assert_eq!(problems(a.verify_schema().await), no_key);
    // At run time the insert fails typed, and writes nothing.
    let m = SessionManager::new(adapter(&db.url).await);
    let err = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().contains("ON CONFLICT")),
        "{err:?}"
    );
    // None of these can serve ON CONFLICT (id).
    for index in [
        "CREATE UNIQUE INDEX partial_id ON user_session (id) WHERE expires_at > '2000-01-01'",
        "CREATE UNIQUE INDEX two_columns ON user_session (id, user_id)",
        "CREATE UNIQUE INDEX expression ON user_session (lower(id))",
    ] {
        db.exec(index).await;
        assert_eq!(problems(a.verify_schema().await), no_key, "{index}");
    }
    // A deferrable unique constraint is inferred by ON CONFLICT (id), and
    // rejected: it breaks inserts even next to a plain unique index.
    db.exec("ALTER TABLE user_session ADD CONSTRAINT deferred UNIQUE (id) DEFERRABLE")
        .await;
    db.exec("CREATE UNIQUE INDEX plain_unique ON user_session (id)")
        .await;
    let deferrable = vec![SchemaProblem::DeferrableUnique {
        table: SESSION.into(),
        column: "id",
    }];
    assert_eq!(problems(a.verify_schema().await), deferrable);
    let err = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().contains("deferrable")),
        "{err:?}"
    );
    db.exec("ALTER TABLE user_session DROP CONSTRAINT deferred")
        .await;
    a.verify_schema().await.unwrap();
    m.create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_view_is_not_a_table() {
    let db = migrated().await;
    db.exec(
        "ALTER TABLE user_session RENAME TO real_session; \
         CREATE VIEW user_session AS SELECT * FROM real_session",
    )
    .await;
    assert_eq!(
        problems(adapter(&db.url).await.verify_schema().await),
        vec![SchemaProblem::NotATable {
            table: SESSION.into(),
            kind: "view".into()
        }]
    );
}

/// `url` with its user replaced by `role` (password `pw`).
fn url_as(url: &str, role: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}:pw@{host}")
}

/// A login role for one test, dropped (with its grants) at the end.
struct Role {
    name: String,
}

impl Role {
    async fn new(db: &TestDb) -> Self {
        let name = format!("{}_role", db.schema);
        admin()
            .await
            .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD 'pw'"))
            .await
            .unwrap();
        Self { name }
    }

    async fn drop(self) {
        admin()
            .await
            .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn revoked_grants() {
    let db = migrated().await;
    let role = Role::new(&db).await;
    let r = &role.name;
    let url = url_as(&db.url, r);

    // No privileges at all: the schema itself is out of reach.
    let qualified = TableNames::new(
        &format!("{}.auth_user", db.schema),
        &format!("{}.user_session", db.schema),
    )
    .unwrap();
    let p = problems(
        adapter(&url)
            .await
            .with_table_names(qualified)
            .verify_schema()
            .await,
    );
    let schema = SchemaProblem::SchemaNotUsable {
        schema: format!("\"{}\"", db.schema),
    };
    assert_eq!(p, vec![schema.clone(), schema]);
    // Unqualified names in a schema the role cannot use are simply not found.
    let p = problems(adapter(&url).await.verify_schema().await);
    assert!(
        matches!(
            &p[..],
            [
                SchemaProblem::TableNotFound { .. },
                SchemaProblem::TableNotFound { .. }
            ]
        ),
        "{p:?}"
    );

    // Everything but DELETE on sessions, and no SELECT on one user column.
    db.exec(&format!(
        "ALTER TABLE auth_user ADD COLUMN secret TEXT; \
         GRANT USAGE ON SCHEMA {s} TO {r}; \
         GRANT SELECT (id) ON auth_user TO {r}; \
         GRANT SELECT, INSERT, UPDATE ON user_session TO {r}",
        s = db.schema
    ))
    .await;
    assert_eq!(
        problems(adapter(&url).await.verify_schema().await),
        vec![
            SchemaProblem::MissingPrivilege {
                table: USER.into(),
                privilege: "SELECT"
            },
            SchemaProblem::MissingPrivilege {
                table: SESSION.into(),
                privilege: "DELETE"
            },
        ]
    );
    // UPDATE of expires_at and last_seen_at (validation), id and
    // authenticated_at (rotation) alone is enough; INSERT is needed on
    // every managed column.
    db.exec(&format!(
        "GRANT SELECT ON auth_user TO {r}; GRANT DELETE ON user_session TO {r}; \
         REVOKE UPDATE, INSERT ON user_session FROM {r}; \
         GRANT UPDATE (expires_at, last_seen_at, id), INSERT (id, expires_at) ON user_session TO {r}"
    ))
    .await;
    assert_eq!(
        problems(adapter(&url).await.verify_schema().await),
        vec![
            SchemaProblem::MissingPrivilege {
                table: SESSION.into(),
                privilege: "INSERT"
            },
            SchemaProblem::MissingPrivilege {
                table: SESSION.into(),
                privilege: "UPDATE"
            }
        ]
    );
    db.exec(&format!(
        "GRANT INSERT (user_id, created_at, last_seen_at, authenticated_at) ON user_session TO {r}; \
         GRANT UPDATE (authenticated_at) ON user_session TO {r}"
    ))
    .await;
    let a = adapter(&url).await;
    a.verify_schema().await.unwrap();
    // And the role can then really run every operation.
    db.exec("INSERT INTO auth_user (id) VALUES ('alice')").await;
    let m = SessionManager::new(a);
    let created = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
    assert!(
        m.validate_session(created.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    let rotated = m.reauthenticate(&created.session).await.unwrap().unwrap();
    assert!(
        m.validate_session(rotated.token.as_str())
            .await
            .unwrap()
            .is_some()
    );
    m.adapter()
        .update_session_expiration(&rotated.session.id, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(m.delete_expired_sessions().await.unwrap(), 1);

    // Revoked while running: typed errors, never a valid session.
    let created = m
        .create_session("alice".into(), Attributes::new())
        .await
        .unwrap();
    db.exec(&format!("REVOKE SELECT ON user_session FROM {r}"))
        .await;
    let err = m
        .validate_session(created.token.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Database(d) if d.message().starts_with("permission denied")),
        "{err:?}"
    );
    drop(m);
    role.drop().await;
}
