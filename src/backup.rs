//! `coledger backup` and `coledger restore`.
//!
//! SQLite: `VACUUM INTO` writes a transaction-consistent copy while the service keeps
//! running (readers and the writer are not blocked), and restore copies it into place.
//! PostgreSQL: the standard tools do it better than we could (`pg_dump` custom format,
//! `pg_restore` into an empty database); these commands run them. Either way the result is
//! then opened and fully verified (every entry replayed, hash chain and invariants checked)
//! before the command reports success. A PostgreSQL dump is a file only `pg_restore` reads,
//! so `backup` restores it into a scratch database on the same server to verify it, and
//! drops that database again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wallet_api::db::scratch;
use wallet_api::{Committer, CommitterConfig, Database, SystemClock};

use crate::config::{BackupArgs, RestoreArgs};

/// What a verified ledger holds.
struct Summary {
    entries: usize,
    accounts: usize,
}

/// Opens `url`, loads and verifies the whole ledger, and stops again.
async fn verify(url: &str) -> Result<Summary> {
    let db = Database::connect(url).await?;
    db.migrate().await?;
    let (committer, mut task) = Committer::start(
        db.clone(),
        CommitterConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .with_context(|| format!("{} does not verify", wallet_api::db::redact(url)))?;
    let (entries, accounts) = committer
        .inspect(|book| (book.applied_count(), book.account_count()))
        .await?;
    drop(committer);
    task.join().await.map_err(anyhow::Error::msg)?;
    db.close().await;
    Ok(Summary { entries, accounts })
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    Some(PathBuf::from(path))
}

/// The PostgreSQL client tool `name`, from PATH or the server's bin directory.
fn pg_tool(name: &str) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = dirs
            .flatten()
            .map(|d| d.path().join("bin").join(name))
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{name} not found: install the PostgreSQL client tools (see docs/operations.md)"
            )
        })
}

async fn run_tool(tool: &Path, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            tool.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

pub async fn backup(args: BackupArgs) -> Result<()> {
    let url = &args.database.database_url;
    if args.to.exists() {
        bail!("{} exists; backups never overwrite", args.to.display());
    }
    let target = args.to.to_str().context("the backup path is not UTF-8")?;
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        bail!(
            "{} is not a database URL: give sqlite://path/file.db or postgres://…",
            wallet_api::db::redact(url)
        );
    }
    if url.starts_with("sqlite:") {
        let db = Database::connect_existing(url).await?;
        // VACUUM INTO takes the path as an SQL string literal.
        let quoted = target.replace('\'', "''");
        db.execute_maintenance(&format!("vacuum into '{quoted}'"))
            .await?;
        db.close().await;
        let verified = verify(&format!("sqlite://{target}")).await;
        // The verification opened it as a ledger; drop its lease file, whatever the outcome.
        let _ = std::fs::remove_file(format!("{target}.writer-lease"));
        let summary = verified.with_context(|| {
            format!("{target} was written but is not a verified backup; it is kept for inspection")
        })?;
        println!(
            "backed up to {target}: {} entries, {} accounts, verified",
            summary.entries, summary.accounts
        );
    } else {
        let pg_dump = pg_tool("pg_dump")?;
        run_tool(
            &pg_dump,
            &[
                "--format=custom",
                "--no-owner",
                "--file",
                target,
                &wallet_api::db::libpq_url(url),
            ],
        )
        .await
        .inspect_err(|_| {
            // What a failed dump wrote is no backup, and would block the retry ("exists").
            let _ = std::fs::remove_file(target);
        })?;
        let summary = verify_dump(url, target).await.with_context(|| {
            format!("{target} was written but is not a verified backup; it is kept for inspection")
        })?;
        println!(
            "backed up to {target} with pg_dump (custom format): {} entries, {} accounts, \
             verified; restore it with `coledger restore`",
            summary.entries, summary.accounts
        );
    }
    Ok(())
}

/// Restores the dump `file` into a scratch database on the server of `url`, verifies it
/// there and drops the scratch database again, whatever the outcome.
async fn verify_dump(url: &str, file: &str) -> Result<Summary> {
    let scratch = scratch::create_postgres_database(url, "coledger_backup_check")
        .await
        .context(
            "creating a scratch database to verify the dump in failed (the role needs \
             CREATEDB; without it, check the file with `coledger restore` into an empty database)",
        )?;
    let checked = match pg_restore_into(&scratch, file).await {
        Ok(()) => verify(&scratch).await,
        Err(e) => Err(e),
    };
    let dropped = scratch::drop_postgres_database(url, &scratch).await;
    let summary = checked?;
    dropped.with_context(|| {
        format!(
            "dropping the scratch database {} the dump was verified in",
            wallet_api::db::redact(&scratch)
        )
    })?;
    Ok(summary)
}

/// `pg_restore` of the dump `file` into the (empty) database at `url`, in one transaction:
/// a dump that fails half way (cut short, or refused by the server) leaves the database as
/// empty as it was, so the restore can simply be retried.
async fn pg_restore_into(url: &str, file: &str) -> Result<()> {
    let pg_restore = pg_tool("pg_restore")?;
    run_tool(
        &pg_restore,
        &[
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            &wallet_api::db::libpq_url(url),
            file,
        ],
    )
    .await
}

pub async fn restore(args: RestoreArgs) -> Result<()> {
    let url = &args.database.database_url;
    let from = args.from.to_str().context("the backup path is not UTF-8")?;
    if !args.from.is_file() {
        bail!("no backup file {from}");
    }
    if url.starts_with("sqlite:") {
        let target = sqlite_path(url).context("cannot read the SQLite path from the URL")?;
        if target.exists() {
            bail!(
                "{} exists; restore into a new path (then point the service at it)",
                target.display()
            );
        }
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let restored = match std::fs::copy(&args.from, &target) {
            Ok(_) => verify(url).await,
            Err(e) => Err(e).with_context(|| format!("copying {from} to {}", target.display())),
        };
        let summary = match restored {
            Ok(summary) => summary,
            Err(e) => {
                // A copy that is not a verified ledger must not be started on, and would block
                // the retry ("exists"); the backup file itself is untouched.
                for suffix in ["", "-wal", "-shm", ".writer-lease"] {
                    let mut path = target.clone().into_os_string();
                    path.push(suffix);
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.context(format!(
                    "{from} does not restore to a verified ledger; the copy at {} was removed",
                    target.display()
                )));
            }
        };
        print_restored(from, &summary);
        return Ok(());
    } else {
        let db = Database::connect(url).await?;
        let empty = db.is_empty().await?;
        db.close().await;
        if !empty {
            bail!(
                "{} is not empty; restore into an empty database",
                wallet_api::db::redact(url)
            );
        }
        pg_restore_into(url, from).await.with_context(|| {
            format!(
                "{from} did not restore; {} is left empty (the restore is one transaction)",
                wallet_api::db::redact(url)
            )
        })?;
    }
    let summary = verify(url).await?;
    print_restored(from, &summary);
    Ok(())
}

fn print_restored(from: &str, summary: &Summary) {
    println!(
        "restored {from}: {} entries, {} accounts, hash chain and invariants verified; restore \
         the server secret kept with it too (for SQLite, the .secret file beside the database)",
        summary.entries, summary.accounts
    );
}
