//! The server secret: 32 random bytes that seal card keys (with each card's PIN) and from
//! which programme keys are derived. Without it, programmes and cards are off.
//!
//! Given `--secret-file`, the file must exist. Otherwise an SQLite database keeps its secret
//! beside it (`ledger.db.secret`), created on first use with owner-only permissions, so the
//! embedded default works out of the box; a PostgreSQL deployment must name the file (it is
//! shared by every service process and must be backed up apart from the database).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wallet_api::cards::{CardPrefix, KdfParams, ServerSecret};
use wallet_api::programme::CardSettings;

use crate::config::ProgrammeArgs;

/// Where an SQLite database's secret lives by default.
fn beside_sqlite(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.secret")))
}

/// Creates `path` (never overwriting) readable by its owner only, holding `line`, synced.
pub fn create_private_file(path: &Path, line: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{line}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn create(path: &Path) -> Result<ServerSecret> {
    let secret = ServerSecret::generate(&mut rand::rngs::OsRng);
    create_private_file(path, &secret.to_hex())?;
    tracing::warn!(
        path = %path.display(),
        "created a new server secret; back it up apart from the database: without it, cards cannot be opened"
    );
    Ok(secret)
}

/// The secret for `database_url`, or `None` (programmes off) for PostgreSQL without a file.
pub fn load(database_url: &str, args: &ProgrammeArgs) -> Result<Option<ServerSecret>> {
    if let Some(path) = &args.secret_file {
        return ServerSecret::from_file(path)
            .map(Some)
            .with_context(|| format!("reading the server secret {}", path.display()));
    }
    let Some(path) = beside_sqlite(database_url) else {
        return Ok(None);
    };
    if path.exists() {
        return ServerSecret::from_file(&path)
            .map(Some)
            .with_context(|| format!("reading the server secret {}", path.display()));
    }
    create(&path).map(Some)
}

/// Like [`load`], but a missing secret is an error naming the fix.
pub fn require(database_url: &str, args: &ProgrammeArgs) -> Result<ServerSecret> {
    match load(database_url, args)? {
        Some(secret) => Ok(secret),
        None => bail!(
            "no server secret: pass --secret-file (or COLEDGER_SECRET_FILE) with the file the \
             service uses"
        ),
    }
}

/// Card settings from the arguments.
pub fn card_settings(args: &ProgrammeArgs) -> Result<CardSettings> {
    let prefix = CardPrefix::parse(&args.card_prefix)
        .with_context(|| format!("--card-prefix {:?}", args.card_prefix))?;
    let kdf = if args.insecure_fast_pin_hashing {
        KdfParams::for_tests()
    } else {
        KdfParams::default()
    };
    if args.pin_attempts == 0 {
        bail!("--pin-attempts must be at least 1");
    }
    Ok(CardSettings {
        prefix,
        kdf,
        lock_after: args.pin_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_secrets_live_beside_the_database() {
        assert_eq!(
            beside_sqlite("sqlite://data/coledger.db?mode=rwc"),
            Some(PathBuf::from("data/coledger.db.secret"))
        );
        assert_eq!(
            beside_sqlite("sqlite:/tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db.secret"))
        );
        assert_eq!(beside_sqlite("sqlite::memory:"), None);
        assert_eq!(beside_sqlite("postgres://u@h/db"), None);
    }
}
