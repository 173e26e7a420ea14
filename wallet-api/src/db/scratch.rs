//! Throwaway PostgreSQL databases for tests and benchmarks: each gets a fresh database on the
//! server named by an admin URL, so runs never see each other's data.

use sqlx::{Connection as _, Executor as _, PgConnection};

use super::DbError;

/// The longest prefix kept in a scratch database's name (PostgreSQL allows 63 bytes).
const MAX_PREFIX: usize = 24;

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates an empty database named `<prefix>_<random>` and returns its URL.
pub async fn create_postgres_database(admin_url: &str, prefix: &str) -> Result<String, DbError> {
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_PREFIX)
        .collect::<String>()
        .to_ascii_lowercase();
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(admin_url).await?;
    // The name is built from [a-z0-9_] only, so quoting it is enough.
    admin
        .execute(format!("create database \"{name}\"").as_str())
        .await?;
    admin.close().await?;
    Ok(with_database(admin_url, &name))
}

/// Drops a database made by [`create_postgres_database`], disconnecting its users.
pub async fn drop_postgres_database(admin_url: &str, database_url: &str) -> Result<(), DbError> {
    let name = database_url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbError::BadUrl {
            url: super::redact(database_url),
            reason: "not a scratch database URL".into(),
        });
    }
    let mut admin = PgConnection::connect(admin_url).await?;
    admin
        .execute(format!("drop database if exists \"{name}\" with (force)").as_str())
        .await?;
    admin.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database(
                "postgres://u:p@localhost:5432/postgres?sslmode=disable",
                "x"
            ),
            "postgres://u:p@localhost:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://localhost", "x"),
            "postgres://localhost/x"
        );
        assert_eq!(
            with_database("postgres:///postgres?host=/tmp", "x"),
            "postgres:///x?host=/tmp"
        );
    }
}
