//! The embedded migrations create exactly Lucia's schema, are idempotent, and
//! agree with `diesel migration run` on what has been applied.

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use lucia_diesel::{TableNames, migrations};

use crate::support::{TestDb, admin, server_url};

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// The schema's columns (with their nullability), indexes and
/// constraints. PostgreSQL 18 also catalogues each `NOT NULL` as a
/// constraint (`contype = 'n'`); the columns already say it, so those are
/// left out and both versions describe the same schema alike.
async fn describe(db: &TestDb) -> Vec<String> {
    let sql = format!(
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable AS line \
         FROM information_schema.columns WHERE table_schema = '{s}' \
         UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = '{s}' \
         UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) \
           FROM pg_constraint WHERE connamespace = '{s}'::regnamespace AND contype <> 'n' \
         ORDER BY 1",
        s = db.schema
    );
    let mut conn = db.connect().await;
    diesel::sql_query(sql)
        .load::<Line>(&mut conn)
        .await
        .expect("describe schema")
        .into_iter()
        .map(|l| l.line.replace(&format!("{}.", db.schema), ""))
        .collect()
}

const SEED_SCHEMA: &[&str] = &[
    "__diesel_schema_migrations.run_on timestamp without time zone NO",
    "__diesel_schema_migrations.version character varying NO",
    "auth_user.id text NO",
    "constraint __diesel_schema_migrations PRIMARY KEY (version)",
    "constraint auth_user PRIMARY KEY (id)",
    "constraint user_session FOREIGN KEY (user_id) REFERENCES auth_user(id)",
    "constraint user_session PRIMARY KEY (id)",
    "index CREATE INDEX user_session_expires_at_idx ON user_session USING btree (expires_at)",
    "index CREATE INDEX user_session_user_id_idx ON user_session USING btree (user_id)",
    "index CREATE UNIQUE INDEX __diesel_schema_migrations_pkey ON __diesel_schema_migrations USING btree (version)",
    "index CREATE UNIQUE INDEX auth_user_pkey ON auth_user USING btree (id)",
    "index CREATE UNIQUE INDEX user_session_pkey ON user_session USING btree (id)",
    "user_session.authenticated_at timestamp with time zone NO",
    "user_session.created_at timestamp with time zone NO",
    "user_session.expires_at timestamp with time zone NO",
    "user_session.id text NO",
    "user_session.last_seen_at timestamp with time zone NO",
    "user_session.user_id text NO",
];

/// The versions of the crate's migrations, in order.
const VERSIONS: [&str; 3] = ["20261126000000", "20261201000000", "20261203100000"];

#[tokio::test]
async fn embedded_migrations_create_exactly_the_seed_schema_once() {
    let db = TestDb::new().await;
    let applied = migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    assert_eq!(applied, VERSIONS.map(str::to_owned).to_vec());
    let mut got = describe(&db).await;
    got.sort();
    assert_eq!(got, SEED_SCHEMA);
    let again = migrations::run_pending_migrations_at(&db.url)
        .await
        .unwrap();
    assert!(again.is_empty(), "a second run applies nothing: {again:?}");
    assert_eq!(describe(&db).await.len(), SEED_SCHEMA.len());
}

#[tokio::test]
async fn concurrent_startups_apply_each_migration_once() {
    let db = TestDb::new().await;
    let runs = (0..4).map(|_| migrations::run_pending_migrations_at(&db.url));
    let results = futures_util::future::join_all(runs).await;
    let applied: usize = results.into_iter().map(|r| r.unwrap().len()).sum();
    assert_eq!(applied, VERSIONS.len());
}

/// The Diesel CLI's `migration run` is the file-based harness on the
/// `migrations/` directory; run it (the real CLI when installed), then the
/// embedded runner must find nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn diesel_cli_and_embedded_runner_agree() {
    let db = TestDb::new().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    // A config of its own: the project's diesel.toml would make the CLI
    // rewrite src/schema.rs from this test's schema.
    let config = std::env::temp_dir().join(format!(
        "ld-diesel-{}-{}.toml",
        std::process::id(),
        db.schema
    ));
    std::fs::write(&config, format!("[migrations_directory]\ndir = {dir:?}\n")).unwrap();
    let cli = diesel_cli(&[
        "migration",
        "run",
        "--config-file",
        config.to_str().unwrap(),
        "--migration-dir",
        dir,
        "--database-url",
        &db.url,
    ]);
    let _ = std::fs::remove_file(&config);
    if let Some(out) = cli {
        assert!(
            out.status.success(),
            "diesel migration run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            use diesel::Connection as _;
            let mut conn = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
                diesel_async::AsyncPgConnection,
            >::establish(&url)
            .unwrap();
            let files = FileBasedMigrations::from_path(dir).unwrap();
            conn.run_pending_migrations(files).unwrap();
        })
        .await
        .unwrap();
    }
    let applied = migrations::run_pending_migrations(db.connect().await)
        .await
        .unwrap();
    assert!(applied.is_empty(), "embedded runner re-applied {applied:?}");
    let mut got = describe(&db).await;
    got.sort();
    assert_eq!(got, SEED_SCHEMA);
}

fn diesel_cli(args: &[&str]) -> Option<std::process::Output> {
    std::process::Command::new("diesel")
        .args(args)
        .output()
        .ok()
}

/// `diesel print-schema` on the migrated database reproduces `src/schema.rs`
/// (when the Diesel CLI is installed; .ci/run installs it).
#[tokio::test]
async fn print_schema_matches_src_schema_rs() {
    if diesel_cli(&["--version"]).is_none() {
        eprintln!("diesel CLI not installed: print-schema comparison not run");
        return;
    }
    let name = format!("ld_print_{}", std::process::id());
    let mut admin = admin().await;
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = server_url();
    let url = match base.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{name}"),
        None => panic!("DATABASE_URL must be a URL"),
    };
    migrations::run_pending_migrations_at(&url).await.unwrap();
    let config = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&config, "").unwrap();
    let out = diesel_cli(&[
        "print-schema",
        "--config-file",
        config.to_str().unwrap(),
        "--database-url",
        &url,
    ])
    .unwrap();
    let _ = std::fs::remove_file(&config);
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema.rs")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[tokio::test]
async fn written_custom_migration_runs_with_the_file_harness() {
    let mut db = TestDb::new().await;
    let schema = db.extra_schema("ldm").await;
    let names = TableNames::new(&format!("{schema}.users"), &format!("{schema}.sessions")).unwrap();
    let dir = std::env::temp_dir().join(format!("ld-mig-{}-{}", std::process::id(), db.schema));
    let written = migrations::write_migration::<uuid::Uuid>(&names, &dir).unwrap();
    assert!(written.join("up.sql").exists() && written.join("down.sql").exists());
    let url = db.url.clone();
    let dir2 = dir.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection as _;
        let mut conn = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
            diesel_async::AsyncPgConnection,
        >::establish(&url)
        .unwrap();
        let files = FileBasedMigrations::from_path(&dir2).unwrap();
        assert_eq!(conn.run_pending_migrations(files).unwrap().len(), 1);
        let files = FileBasedMigrations::from_path(&dir2).unwrap();
        conn.revert_last_migration(files).unwrap();
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
