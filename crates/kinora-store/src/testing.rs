//! Throwaway databases for tests: a SQLite file in a temporary directory, or a fresh database
//! on the PostgreSQL server named by `KINORA_TEST_DATABASE_URL`.

use std::io::Write;
use std::sync::Arc;

use kinora_core::time::Clock;

use crate::{Store, StoreOptions};

/// The environment variable naming a PostgreSQL server tests may create databases on.
pub const POSTGRES_URL_VAR: &str = "KINORA_TEST_DATABASE_URL";

/// A migrated store and what keeps it alive.
pub struct TestDatabase {
    pub store: Arc<dyn Store>,
    /// The URL a second process or store can open the same database with.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Says a test was skipped in a way the test harness does not capture.
pub fn report_skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

pub async fn sqlite(clock: Arc<dyn Clock>) -> TestDatabase {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let url = format!("sqlite://{}", dir.path().join("kinora.db").display());
    let store = open(&url, clock).await;
    TestDatabase {
        store,
        url,
        _dir: Some(dir),
    }
}

/// A new, empty, migrated database on the test PostgreSQL server; `None` (and a SKIPPED line)
/// when no server is configured.
pub async fn postgres(test: &str, clock: Arc<dyn Clock>) -> Option<TestDatabase> {
    let Ok(server_url) = std::env::var(POSTGRES_URL_VAR) else {
        report_skip(
            test,
            &format!("set {POSTGRES_URL_VAR} to run it on PostgreSQL"),
        );
        return None;
    };
    let url = fresh_postgres_database(&server_url).await;
    let store = open(&url, clock).await;
    Some(TestDatabase {
        store,
        url,
        _dir: None,
    })
}

/// Creates an empty database on the server and returns its URL.
pub async fn fresh_postgres_database(server_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("kinora_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_VAR}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create test database: {e}"));
    let _ = admin.close().await;
    match server_url.rsplit_once('/') {
        Some((base, _))
            if base.contains("://")
                && base
                    .rsplit_once('/')
                    .is_some_and(|(_, host)| !host.is_empty()) =>
        {
            format!("{base}/{name}")
        }
        _ => format!("{}/{name}", server_url.trim_end_matches('/')),
    }
}

async fn open(url: &str, clock: Arc<dyn Clock>) -> Arc<dyn Store> {
    let store = crate::connect(&StoreOptions::new(url), clock)
        .await
        .unwrap_or_else(|e| panic!("open test store: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate test store: {e}"));
    store
}
