//! The server the suite runs on: the one `LUCIA_PG_BIN` (or the installed
//! binaries) names when the tests start their own cluster, so a run meant
//! for PostgreSQL 18 cannot pass on another version unnoticed.

use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::support::server_url;

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = Integer)]
    major: i32,
}

#[tokio::test]
async fn the_server_is_the_one_the_binaries_name() {
    let mut conn = AsyncPgConnection::establish(server_url()).await.unwrap();
    let version: Version =
        diesel::sql_query("SELECT current_setting('server_version_num')::int / 10000 AS major")
            .get_result(&mut conn)
            .await
            .unwrap();
    if std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        return;
    }
    let bin = testkit::find_bin_dir().expect("the cluster found binaries");
    let out = std::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let binaries: i32 = text
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    assert_eq!(version.major, binaries, "{text}");
}
