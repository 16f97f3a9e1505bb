//! Bad input: names, session ids, attributes and rows that must give a typed
//! error or an invalid result, never a panic, a stray row or lost data.

use chrono::{Duration, DurationRound, Utc};
use lucia_diesel::SessionId;
use lucia_diesel::{
    Adapter, Attributes, ConfigError, DatabaseSession, Error, PostgresAdapter, TableName,
    TableNames,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::adapter_suite::{Fixture, TestUserId, default_fixture, make_tables, pool};
use crate::support::TestDb;

fn session(id: &str, user_id: String, attributes: Attributes) -> DatabaseSession<String> {
    DatabaseSession {
        id: id.to_owned().into(),
        user_id,
        expires_at: (Utc::now() + Duration::hours(1))
            .duration_trunc(Duration::microseconds(1))
            .unwrap(),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes,
    }
}

fn attrs(value: serde_json::Value) -> Attributes {
    value.as_object().cloned().expect("an object")
}

#[test]
fn table_names_rejected_at_construction() {
    let long = "x".repeat(64);
    type Check = fn(&ConfigError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, ConfigError::EmptyIdentifier(_))),
        ("schema.", |e| matches!(e, ConfigError::EmptyIdentifier(_))),
        (".table", |e| matches!(e, ConfigError::EmptyIdentifier(_))),
        ("a\0b", |e| matches!(e, ConfigError::NulInIdentifier(_))),
        ("a.b.c", |e| matches!(e, ConfigError::TooManyDots(_))),
        (&long, |e| {
            matches!(e, ConfigError::IdentifierTooLong { len: 64, .. })
        }),
    ];
    for (name, check) in cases {
        let err = TableNames::new(name, "user_session").expect_err(name);
        assert!(check(&err), "{name:?}: {err:?}");
        let err = TableNames::new("auth_user", name).expect_err(name);
        assert!(check(&err), "{name:?}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn table_names_are_quoted_and_limited_by_bytes() {
    for (name, sql) in [
        (r#"we"ird name"#, r#""we""ird name""#),
        ("public.user_session", r#""public"."user_session""#),
        ("x; DROP TABLE y;--", r#""x; DROP TABLE y;--""#),
        ("Select", r#""Select""#),
    ] {
        assert_eq!(TableName::parse(name).unwrap().to_sql(), sql);
    }
    let dotted = TableName::qualified(Some("my.schema"), "a.b").unwrap();
    assert_eq!(dotted.to_sql(), r#""my.schema"."a.b""#);
    // 63 bytes, PostgreSQL's limit, counted in bytes, not characters.
    assert!(TableName::parse(&"x".repeat(63)).is_ok());
    assert!(TableName::parse(&"\u{e9}".repeat(32)).is_err());
    assert!(TableName::parse(&"\u{e9}".repeat(31)).is_ok());
    // Index names derived from a long name still fit.
    let long = TableNames::new("auth_user", &"\u{e9}".repeat(31)).unwrap();
    let ddl = lucia_diesel::migrations::create_tables_sql::<String>(&long).up;
    let index = ddl.lines().find(|l| l.starts_with("CREATE INDEX")).unwrap();
    let name = index.split('"').nth(1).unwrap();
    assert!(
        name.len() <= 63 && name.ends_with("_user_id_idx"),
        "{index}"
    );
}

/// Names that are valid but hostile work end to end, quoted.
#[tokio::test]
async fn hostile_but_valid_table_names_work_end_to_end() {
    for (user, session_table) in [
        ("user", "select"),
        ("AuthUser", "UserSession"),
        (r#"a"b"#, r#"x; DROP TABLE y;--"#),
        ("tab\tle", "sess ion"),
    ] {
        let db = TestDb::new().await;
        let names = TableNames::from_parts(
            TableName::qualified(Some(&db.schema), user).unwrap(),
            TableName::qualified(Some(&db.schema), session_table).unwrap(),
        );
        make_tables::<String>(&db, &names).await;
        let adapter = PostgresAdapter::new(pool(&db).await).with_table_names(names.clone());
        let f = Fixture { adapter, names, db };
        let uid = f.create_user("u").await;
        let s = session("s1", uid.clone(), attrs(json!({"country": "nl"})));
        f.adapter.set_session(&s).await.unwrap();
        let (got, user) = f
            .adapter
            .get_session_and_user(&SessionId::from("s1"))
            .await
            .unwrap()
            .expect("found");
        assert_eq!(got, s, "{user:?} / {session_table:?}");
        assert_eq!(user.id, uid);
        assert_eq!(f.adapter.delete_user_sessions(&uid).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn unusable_session_ids_are_not_found() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let real = session("real", uid.clone(), Attributes::new());
    f.adapter.set_session(&real).await.unwrap();
    let huge = "a".repeat(1 << 20);
    for id in [
        "",
        "a\0b",
        "\0",
        huge.as_str(),
        "real\0",
        "' OR 1=1 --",
        "real' --",
    ] {
        assert!(
            f.adapter
                .get_session_and_user(&SessionId::from(id))
                .await
                .unwrap()
                .is_none(),
            "{:.20}",
            id
        );
        assert!(
            !f.adapter
                .delete_session(&SessionId::from(id))
                .await
                .unwrap()
        );
        assert!(
            !f.adapter
                .update_session_expiration(&SessionId::from(id), Utc::now())
                .await
                .unwrap()
        );
    }
    for id in ["", "a\0b", huge.as_str()] {
        let err = f
            .adapter
            .set_session(&session(id, uid.clone(), Attributes::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSessionId), "{err:?}");
    }
    assert_eq!(f.session_rows().await, 1, "only the real session exists");
    assert!(
        f.adapter
            .get_session_and_user(&SessionId::from("real"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn unknown_user_is_a_typed_error_and_writes_nothing() {
    let f = default_fixture().await;
    let err = f
        .adapter
        .set_session(&session(
            "s",
            String::fresh(),
            attrs(json!({"country": "us"})),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownUser), "{err:?}");
    let err = f
        .adapter
        .set_session(&session("s", String::fresh(), Attributes::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownUser), "{err:?}");
    assert_eq!(f.session_rows().await, 0);
}

/// A text user id holding NUL (which PostgreSQL text cannot hold) belongs
/// to no user: an empty answer, or `UnknownUser`, never a database error.
#[tokio::test]
async fn user_ids_holding_nul_give_typed_answers() {
    let f = default_fixture().await;
    let nul = "user\0id".to_owned();
    assert!(f.adapter.get_user_sessions(&nul).await.unwrap().is_empty());
    assert_eq!(f.adapter.delete_user_sessions(&nul).await.unwrap(), 0);
    let err = f
        .adapter
        .set_session(&session("s", nul.clone(), Attributes::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownUser), "{err:?}");
    let m = lucia_diesel::SessionManager::new(PostgresAdapter::new(pool(&f.db).await));
    let err = m
        .create_session(nul.clone(), Attributes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownUser), "{err:?}");
    assert!(m.get_user_sessions(&nul).await.unwrap().is_empty());
    assert_eq!(m.invalidate_user_sessions(&nul).await.unwrap(), 0);
    assert_eq!(f.session_rows().await, 0);
}

#[tokio::test]
async fn duplicate_session_id_never_overwrites() {
    let f = default_fixture().await;
    let alice = f.create_user("alice").await;
    let mallory = f.create_user("mallory").await;
    let original = session("same-id", alice.clone(), attrs(json!({"country": "us"})));
    f.adapter.set_session(&original).await.unwrap();
    for attributes in [attrs(json!({"country": "xx"})), Attributes::new()] {
        let err = f
            .adapter
            .set_session(&session("same-id", mallory.clone(), attributes))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DuplicateSessionId), "{err:?}");
    }
    let (got, user) = f
        .adapter
        .get_session_and_user(&SessionId::from("same-id"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, original, "the existing row is untouched");
    assert_eq!(user.id, alice);
}

#[tokio::test]
async fn attribute_errors_are_typed_and_insert_nothing() {
    let f = default_fixture().await;
    f.db.exec(
        "ALTER TABLE user_session ADD COLUMN device VARCHAR(5) CHECK (device <> 'bad'); \
         ALTER TABLE user_session ADD COLUMN required_flag BOOLEAN; \
         CREATE TABLE org (id TEXT PRIMARY KEY); \
         ALTER TABLE user_session ADD COLUMN org_id TEXT REFERENCES org(id);",
    )
    .await;
    let uid = f.create_user("alice").await;
    let cases = [
        ("unknown column", json!({"no_such_column": 1})),
        ("too long for varchar(5)", json!({"device": "toolong"})),
        ("check violation", json!({"device": "bad"})),
        ("NUL in a value", json!({"country": "a\u{0}b"})),
        ("wrong type", json!({"required_flag": "not a bool"})),
        (
            "foreign key of an attribute",
            json!({"org_id": "no-such-org"}),
        ),
        ("managed column as attribute", json!({"user_id": "x"})),
        ("column name with NUL", json!({"a\u{0}b": 1})),
        ("column name over 63 bytes", json!({"x".repeat(64): 1})),
    ];
    for (what, value) in cases {
        let err = f
            .adapter
            .set_session(&session("s", uid.clone(), attrs(value)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidAttributes { .. }),
            "{what}: {err:?}"
        );
        assert!(!err.to_string().contains("\"s\""), "{what}: {err}");
    }
    // NOT NULL without a default, left out of the attributes.
    f.db.exec("ALTER TABLE user_session ADD COLUMN must TEXT NOT NULL DEFAULT 'd'; ALTER TABLE user_session ALTER COLUMN must DROP DEFAULT;")
        .await;
    let err = f
        .adapter
        .set_session(&session("s", uid.clone(), attrs(json!({"country": "us"}))))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidAttributes { .. }),
        "NOT NULL missing: {err:?}"
    );
    assert_eq!(f.session_rows().await, 0, "no failed insert left a row");
    // The connection pool is healthy afterwards.
    f.adapter
        .set_session(&session(
            "ok",
            uid,
            attrs(json!({"country": "us", "must": "m"})),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn left_out_columns_keep_their_defaults_and_quoted_columns_work() {
    let f = default_fixture().await;
    f.db.exec(r#"ALTER TABLE user_session ADD COLUMN "we""ird col" TEXT, ADD COLUMN ip TEXT DEFAULT '0.0.0.0', ADD COLUMN meta JSONB, ADD COLUMN created TIMESTAMPTZ DEFAULT now();"#)
        .await;
    let uid = f.create_user("alice").await;
    let s = session(
        "s",
        uid,
        attrs(json!({"we\"ird col": "yes", "meta": {"a": [1, 2]}})),
    );
    f.adapter.set_session(&s).await.unwrap();
    let (got, _) = f
        .adapter
        .get_session_and_user(&SessionId::from("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attributes.get("we\"ird col"), Some(&json!("yes")));
    assert_eq!(got.attributes.get("meta"), Some(&json!({"a": [1, 2]})));
    assert_eq!(
        got.attributes.get("ip"),
        Some(&json!("0.0.0.0")),
        "default kept"
    );
    assert!(
        got.attributes.get("created").is_some_and(|v| v.is_string()),
        "default kept"
    );
    assert_eq!(got.attributes.get("country"), Some(&json!(null)));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SessionAttrs {
    country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct UserAttrs {
    username: String,
}

#[tokio::test]
async fn typed_attributes_round_trip() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    let adapter = PostgresAdapter::new(pool(&f.db).await)
        .with_session_attributes::<SessionAttrs>()
        .with_user_attributes::<UserAttrs>();
    let s = DatabaseSession {
        id: "typed".into(),
        user_id: uid,
        expires_at: (Utc::now() + Duration::hours(1))
            .duration_trunc(Duration::microseconds(1))
            .unwrap(),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes: SessionAttrs {
            country: Some("de".into()),
        },
    };
    adapter.set_session(&s).await.unwrap();
    let (got, user) = adapter
        .get_session_and_user(&SessionId::from("typed"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.attributes, s.attributes);
    assert_eq!(user.attributes.username, "alice");
}

#[tokio::test]
async fn attributes_that_do_not_fit_the_type_are_decode_errors() {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Wrong {
        country: i64,
    }
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    f.adapter
        .set_session(&session("s", uid, attrs(json!({"country": "us"}))))
        .await
        .unwrap();
    let adapter = PostgresAdapter::new(pool(&f.db).await).with_session_attributes::<Wrong>();
    let err = adapter
        .get_session_and_user(&SessionId::from("s"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn hostile_rows_give_typed_errors_not_panics() {
    let f = default_fixture().await;
    let uid = f.create_user("alice").await;
    f.db.exec(&format!(
        "INSERT INTO user_session (id, user_id, expires_at) VALUES \
         ('inf', '{uid}', 'infinity'), ('ninf', '{uid}', '-infinity'), ('far', '{uid}', '294000-01-01')"
    ))
    .await;
    for id in ["inf", "ninf", "far"] {
        match f.adapter.get_session_and_user(&SessionId::from(id)).await {
            Err(Error::Decode { .. }) => {}
            other => panic!("{id}: expected a decode error, got {other:?}"),
        }
    }
    assert!(matches!(
        f.adapter.get_user_sessions(&uid).await,
        Err(Error::Decode { .. })
    ));
    // Cleanup still removes the hostile rows it can compare.
    assert_eq!(
        f.adapter.delete_expired_sessions(Utc::now()).await.unwrap(),
        1,
        "-infinity is expired"
    );
}

/// Attributes are inserted with a cast per column where the type allows
/// (and through `jsonb_populate_record` where it does not): the stored row
/// must be exactly what `jsonb_populate_record` makes of the same JSON.
#[tokio::test]
async fn attributes_of_every_kind_are_stored_as_jsonb_populate_record_would() {
    let db = migrated_db().await;
    db.exec(
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); \
         CREATE DOMAIN short_code AS text CHECK (length(VALUE) <= 4); \
         ALTER TABLE user_session ADD COLUMN n int, ADD COLUMN b bool, \
           ADD COLUMN t timestamptz, ADD COLUMN j jsonb, ADD COLUMN js json, \
           ADD COLUMN num numeric(6, 2), ADD COLUMN m mood, ADD COLUMN arr int[], \
           ADD COLUMN d short_code, ADD COLUMN v varchar(3), ADD COLUMN \"Mixed Case\" text; \
         INSERT INTO auth_user (id) VALUES ('u1');",
    )
    .await;
    let adapter = PostgresAdapter::new(pool(&db).await);
    let cases = [
        json!({"n": 5, "b": true, "t": "2026-01-02T03:04:05Z", "j": {"a": [1, "x"]},
               "js": [1, 2], "num": 1.239, "m": "sad", "d": "ok", "v": "abc",
               "Mixed Case": "M"}),
        json!({"n": "7", "j": null, "js": null, "t": null, "num": "3", "v": 12}),
        json!({"arr": [1, 2, 3], "n": 1}),
        json!({"j": "just a string", "b": "false", "d": {"k": 1}}),
    ];
    for (i, case) in cases.iter().enumerate() {
        let attributes: Attributes = serde_json::from_value(case.clone()).unwrap();
        let id = format!("typed-{i}");
        let session = DatabaseSession {
            id: id.clone().into(),
            user_id: "u1".to_owned(),
            expires_at: Utc::now() + Duration::days(1),
            created_at: crate::support::now(),
            last_seen_at: crate::support::now(),
            authenticated_at: crate::support::now(),
            attributes,
        };
        let written = adapter.set_session(&session).await;
        // The reference: the same JSON through jsonb_populate_record.
        let reference = format!(
            "SELECT to_jsonb(r) FROM jsonb_populate_record(NULL::user_session, '{json}') r",
            json = case.to_string().replace('\'', "''")
        );
        let mut conn = db.connect().await;
        let reference_ok = {
            use diesel_async::SimpleAsyncConnection as _;
            conn.batch_execute(&reference).await.is_ok()
        };
        if !reference_ok {
            assert!(
                written.is_err(),
                "case {i}: jsonb_populate_record refuses it"
            );
            continue;
        }
        written.unwrap_or_else(|e| panic!("case {i}: {e}"));
        let same = crate::support::scalar(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM user_session s, \
                 jsonb_populate_record(NULL::user_session, '{json}') r \
                 WHERE s.id = '{id}' AND \
                 (to_jsonb(s) - ARRAY['id', 'user_id', 'expires_at', 'created_at', 'last_seen_at', 'authenticated_at']) = \
                 (to_jsonb(r) - ARRAY['id', 'user_id', 'expires_at', 'created_at', 'last_seen_at', 'authenticated_at'])",
                json = case.to_string().replace('\'', "''")
            ),
        )
        .await;
        assert_eq!(
            same, 1,
            "case {i}: stored differently from jsonb_populate_record"
        );
    }
    // Rejected values are still typed errors with nothing written.
    for bad in [
        json!({"d": "too long"}),
        json!({"v": "abcd"}),
        json!({"m": "glad"}),
        json!({"n": "x"}),
    ] {
        let session = DatabaseSession {
            id: "typed-bad".to_owned().into(),
            user_id: "u1".to_owned(),
            expires_at: Utc::now() + Duration::days(1),
            created_at: crate::support::now(),
            last_seen_at: crate::support::now(),
            authenticated_at: crate::support::now(),
            attributes: serde_json::from_value(bad.clone()).unwrap(),
        };
        let err = adapter.set_session(&session).await.unwrap_err();
        assert!(
            matches!(err, lucia_diesel::Error::InvalidAttributes { .. }),
            "{bad}: {err:?}"
        );
    }
    assert!(
        adapter
            .get_session_and_user(&SessionId::from("typed-bad"))
            .await
            .unwrap()
            .is_none()
    );
}

/// A column whose type changes under a running adapter: the next insert
/// looks the types up again instead of failing until a restart.
#[tokio::test]
async fn a_column_type_changed_under_the_adapter_costs_no_error() {
    let db = migrated_db().await;
    db.exec(
        "ALTER TABLE user_session ADD COLUMN n text; INSERT INTO auth_user (id) VALUES ('u1');",
    )
    .await;
    let adapter = PostgresAdapter::new(pool(&db).await);
    let session = |id: &str| DatabaseSession {
        id: id.to_owned().into(),
        user_id: "u1".to_owned(),
        expires_at: Utc::now() + Duration::days(1),
        created_at: crate::support::now(),
        last_seen_at: crate::support::now(),
        authenticated_at: crate::support::now(),
        attributes: serde_json::from_value(json!({"n": 42})).unwrap(),
    };
    adapter.set_session(&session("a")).await.unwrap();
    db.exec("ALTER TABLE user_session ALTER COLUMN n TYPE int USING n::int")
        .await;
    adapter.set_session(&session("b")).await.unwrap();
    let (s, _) = adapter
        .get_session_and_user(&SessionId::from("b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.attributes.get("n"), Some(&json!(42)));
}

/// A test schema with the default tables, made by the embedded migrations.
async fn migrated_db() -> TestDb {
    let db = TestDb::new().await;
    lucia_diesel::migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    db
}

/// The server's own JSON of a query's one `text` column.
async fn server_json(db: &TestDb, sql: &str) -> serde_json::Value {
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let mut conn = db.connect().await;
    let row: T = diesel::sql_query(sql)
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    serde_json::from_str(&row.t).unwrap()
}

/// Attribute columns are selected by name, and those of common types
/// (text, integers, boolean, uuid, jsonb and domains over them) are decoded
/// by the client: every kind of column must read back exactly as
/// `to_jsonb(row)` gives it, through both kinds of pool, including NULLs,
/// extremes, escapes and values JSON has no literal for.
#[tokio::test]
async fn attributes_of_every_kind_read_back_as_to_jsonb_gives_them() {
    let db = migrated_db().await;
    db.exec(
        r#"CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE DOMAIN short_code AS text CHECK (length(VALUE) <= 4);
        CREATE DOMAIN small AS int;
        CREATE TYPE pair AS (a int, b text);
        ALTER TABLE user_session ADD COLUMN t text, ADD COLUMN v varchar(5), ADD COLUMN c char(3),
          ADD COLUMN nm name, ADD COLUMN i2 int2, ADD COLUMN i4 int, ADD COLUMN i8 bigint,
          ADD COLUMN b bool, ADD COLUMN u uuid, ADD COLUMN j jsonb, ADD COLUMN js json,
          ADD COLUMN f8 float8, ADD COLUMN f4 float4, ADD COLUMN num numeric,
          ADD COLUMN ts timestamptz, ADD COLUMN d date, ADD COLUMN m mood,
          ADD COLUMN sc short_code, ADD COLUMN sm small, ADD COLUMN arr int[],
          ADD COLUMN p pair, ADD COLUMN by bytea, ADD COLUMN iv interval,
          ADD COLUMN "Mixed ""Case" text, ADD COLUMN "it's" int;
        ALTER TABLE auth_user ADD COLUMN username text, ADD COLUMN age int, ADD COLUMN tags text[];
        INSERT INTO auth_user VALUES ('u1', 'ann', 30, '{a,b}'), ('u2', NULL, NULL, NULL);
        INSERT INTO user_session VALUES
          ('full', now() + interval '1 day', 'u1', now(), now(), now(), E'h\u00e9llo "q" \\ \t\n', 'abc', 'x', 'nm',
           -32768, -2147483648, 9223372036854775807, true, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
           '{"a": [1, "x", null], "b": {"c": 1.50}}', '{"k": 1, "k": 2}', 1e15, 0.1, 1.50,
           '2026-01-02 03:04:05.5+00', '2026-01-02', 'sad', 'ok', 7, '{1,NULL,3}', ROW(1, 'x'),
           '\x00ff', '1 day', 'M', 1),
          ('special', now() + interval '1 day', 'u1', now(), now(), now(), '', '', '', '', 0, 0, -9223372036854775808,
           false, '00000000-0000-0000-0000-000000000000', 'null', 'null', 'NaN', '-Infinity',
           'NaN', 'infinity', '-infinity', 'ok', '', -1, '{}', ROW(NULL, NULL), '', '0', '', 0),
          ('empty', now() + interval '1 day', 'u2', now(), now(), now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL);"#,
    )
    .await;
    let direct = PostgresAdapter::new(pool(&db).await);
    #[cfg(feature = "pooler")]
    let pooler = PostgresAdapter::new(
        lucia_diesel::PoolOptions::new()
            .with_max_size(2)
            .build_pooler(&db.url)
            .await
            .unwrap(),
    );
    for id in ["full", "special", "empty"] {
        let session_reference = server_json(
            &db,
            &format!(
                "SELECT (to_jsonb(s) - ARRAY['id', 'expires_at', 'user_id', 'created_at', 'last_seen_at', 'authenticated_at'])::text AS t \
                 FROM user_session s WHERE id = '{id}'"
            ),
        )
        .await;
        let user_reference = server_json(
            &db,
            &format!(
                "SELECT (to_jsonb(usr.*) - 'id')::text AS t FROM auth_user usr \
                 JOIN user_session s ON s.user_id = usr.id WHERE s.id = '{id}'"
            ),
        )
        .await;
        assert_eq!(session_reference.as_object().unwrap().len(), 25);
        let (s, u) = direct
            .get_session_and_user(&SessionId::from(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(json!(s.attributes), session_reference, "{id}: session");
        assert_eq!(json!(u.attributes), user_reference, "{id}: user");
        #[cfg(feature = "pooler")]
        {
            let (s, u) = pooler
                .get_session_and_user(&SessionId::from(id))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                json!(s.attributes),
                session_reference,
                "{id}: session, pooler"
            );
            assert_eq!(json!(u.attributes), user_reference, "{id}: user, pooler");
        }
        let listed = direct.get_user_sessions(&s.user_id).await.unwrap();
        let mine = listed.iter().find(|l| l.id.as_str() == id).unwrap();
        assert_eq!(json!(mine.attributes), session_reference, "{id}: listed");
    }
    // Spot checks that the comparison is not vacuous.
    let (s, u) = direct
        .get_session_and_user(&SessionId::from("full"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.attributes["t"], json!("h\u{e9}llo \"q\" \\ \t\n"));
    assert_eq!(s.attributes["i8"], json!(i64::MAX));
    assert_eq!(
        s.attributes["u"],
        json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    );
    assert_eq!(s.attributes["js"], json!({"k": 2}));
    assert_eq!(s.attributes["c"], json!("x  "));
    assert_eq!(s.attributes["sc"], json!("ok"));
    assert_eq!(s.attributes["Mixed \"Case"], json!("M"));
    assert_eq!(u.attributes["tags"], json!(["a", "b"]));

    // Typed attributes from the same columns: enums from text and from an
    // enum type, numbers from any integer width, JSON values, timestamps.
    #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mood {
        Ok,
        Sad,
    }
    #[derive(Debug, Clone, Deserialize, Serialize)]
    struct Typed {
        m: Mood,
        sc: Mood,
        i2: i32,
        i8: i64,
        f4: f64,
        b: bool,
        j: serde_json::Value,
        ts: chrono::DateTime<Utc>,
        arr: Vec<Option<i32>>,
        #[serde(rename = "Mixed \"Case")]
        mixed: Option<String>,
        missing: Option<String>,
    }
    #[derive(Debug, Clone, Deserialize)]
    struct TypedUser {
        username: Option<String>,
        age: Option<u8>,
    }
    let typed = PostgresAdapter::new(pool(&db).await)
        .with_session_attributes::<Typed>()
        .with_user_attributes::<TypedUser>();
    let (s, u) = typed
        .get_session_and_user(&SessionId::from("full"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.attributes.m, s.attributes.sc), (Mood::Sad, Mood::Ok));
    assert_eq!((s.attributes.i2, s.attributes.i8), (-32768, i64::MAX));
    assert!((s.attributes.f4 - 0.1).abs() < 1e-6 && s.attributes.b);
    assert_eq!(s.attributes.j["b"]["c"], json!(1.5));
    assert_eq!(s.attributes.ts.timestamp_subsec_millis(), 500);
    assert_eq!(s.attributes.arr, vec![Some(1), None, Some(3)]);
    assert_eq!(s.attributes.mixed.as_deref(), Some("M"));
    assert_eq!(s.attributes.missing, None);
    assert_eq!(
        (u.attributes.username.as_deref(), u.attributes.age),
        (Some("ann"), Some(30))
    );
    // A value that does not fit the type is a decode error, not a panic.
    db.exec("UPDATE auth_user SET age = 300 WHERE id = 'u1'")
        .await;
    let err = typed
        .get_session_and_user(&SessionId::from("full"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}
