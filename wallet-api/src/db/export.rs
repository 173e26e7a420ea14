//! The journal export for auditors (`coledger-journal` v1, written by
//! [`ledger::journal::export`]): every committed entry with its signed intent and stored
//! links, in commit order.
//!
//! It reads through its own read-only connection inside one transaction (SQLite: a read
//! transaction, which sees one WAL snapshot; PostgreSQL: `repeatable read, read only`), so
//! the file is one consistent state of the ledger whether or not the service is running, and
//! nothing is ever written. Memory stays bounded whatever the journal's size: entries are read
//! a page at a time, and each unit's links through a cursor over the `journal` primary key,
//! merged into commit order.

use std::collections::VecDeque;
use std::io::Write;
use std::str::FromStr as _;

use ledger::journal::export::{self as format, ExportHeader, ExportIntent, ExportUnit};
use ledger::journal::{Digest, JournalLink, canonical_entry_bytes};
use ledger::{JournalEntry, UnitCode, UnitKind};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::{DbError, redact, rows};

/// Entries read per page.
const PAGE_ENTRIES: i64 = 10_000;
/// Links read per query of one unit's cursor.
const PAGE_LINKS: i64 = 10_000;

/// What the export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalExport {
    /// Entries written.
    pub entries: u64,
    /// Units in the header.
    pub units: usize,
    /// Journal links written.
    pub links: u64,
    /// Signed checkpoints written, if they were asked for.
    pub checkpoints: u64,
}

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing the output failed.
    #[error("writing the journal export: {0}")]
    Io(#[from] std::io::Error),
    /// The stored journal cannot be written as an export (the service would refuse to start
    /// on it too).
    #[error("the stored journal is inconsistent at entry position {position}: {reason}")]
    Inconsistent {
        /// Where.
        position: i64,
        /// What is wrong.
        reason: String,
    },
}

/// One read-only connection, inside its snapshot transaction.
enum Snapshot {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs the same query code on whichever connection the snapshot has.
macro_rules! on_conn {
    ($snapshot:expr, |$conn:ident| $body:expr) => {
        match $snapshot {
            Snapshot::Sqlite($conn) => $body,
            Snapshot::Postgres($conn) => $body,
        }
    };
}

const COUNT_SQL: &str = "select count(*) from entry";
const UNITS_SQL: &str = "select code, name, scale, kind from unit";
const HEAD_SQL: &str = "select seq, hash from journal where unit = $1 order by seq desc limit 1";
const LINK_COUNT_SQL: &str = "select count(*) from journal";
/// One unit's links after a sequence number, through the `(unit, seq)` primary key.
const LINKS_SQL: &str = "select seq, entry_position, hash from journal \
     where unit = $1 and seq > $2 order by seq limit $3";

impl Snapshot {
    async fn open(url: &str) -> Result<Self, DbError> {
        let bad = |reason: String| DbError::BadUrl {
            url: redact(url),
            reason,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .read_only(true)
                .create_if_missing(false)
                .busy_timeout(super::SQLITE_BUSY_TIMEOUT);
            super::require_sqlite_file(url, &options)?;
            let mut conn = SqliteConnection::connect_with(&options).await?;
            // Deferred: the snapshot is taken by the first read and kept until the end.
            sqlx::query("begin").execute(&mut conn).await?;
            Ok(Snapshot::Sqlite(conn))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .application_name("coledger-export");
            let mut conn = PgConnection::connect_with(&options).await?;
            sqlx::query("begin transaction isolation level repeatable read, read only")
                .execute(&mut conn)
                .await?;
            Ok(Snapshot::Postgres(conn))
        } else {
            Err(bad(
                "expected sqlite://path/to/file.db or postgres://user@host/db".into(),
            ))
        }
    }

    async fn count(&mut self, sql: &str) -> Result<i64, DbError> {
        Ok(on_conn!(self, |conn| sqlx::query_scalar(sql)
            .fetch_one(&mut *conn)
            .await)?)
    }

    async fn units(&mut self) -> Result<Vec<ExportUnit>, DbError> {
        let rows: Vec<(String, String, i16, String)> =
            on_conn!(self, |conn| sqlx::query_as(UNITS_SQL)
                .fetch_all(&mut *conn)
                .await)?;
        let mut units = rows
            .into_iter()
            .map(|(code, name, scale, kind)| {
                let corrupt = |reason: String| DbError::CorruptRow {
                    table: "unit",
                    reason,
                };
                Ok(ExportUnit {
                    code: UnitCode::new(&code).map_err(|e| corrupt(e.to_string()))?,
                    kind: UnitKind::parse(&kind)
                        .ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
                    name,
                    scale: u8::try_from(scale).map_err(|_| corrupt(format!("scale {scale}")))?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        // Sorted here, not in SQL, so the order is the ledger's whatever the collation.
        units.sort_by_key(|u| u.code);
        Ok(units)
    }

    async fn head(&mut self, unit: UnitCode) -> Result<Option<JournalLink>, DbError> {
        let row: Option<(i64, Vec<u8>)> = on_conn!(self, |conn| sqlx::query_as(HEAD_SQL)
            .bind(unit.as_str())
            .fetch_optional(&mut *conn)
            .await)?;
        row.map(|(seq, hash)| link(unit, seq, &hash)).transpose()
    }

    async fn links_after(
        &mut self,
        unit: UnitCode,
        after: u64,
    ) -> Result<Vec<(i64, JournalLink)>, DbError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, Vec<u8>)> = on_conn!(self, |conn| sqlx::query_as(LINKS_SQL)
            .bind(unit.as_str())
            .bind(after)
            .bind(PAGE_LINKS)
            .fetch_all(&mut *conn)
            .await)?;
        rows.into_iter()
            .map(|(seq, position, hash)| Ok((position, link(unit, seq, &hash)?)))
            .collect()
    }

    /// Entries (validated, as the loader reads them) and intents with `after < position <= up_to`.
    async fn page(
        &mut self,
        after: i64,
        up_to: i64,
    ) -> Result<(super::StoredEntries, Vec<(i64, String)>), DbError> {
        let joined = on_conn!(self, |conn| sqlx::query_as(rows::ENTRIES_SQL)
            .bind(after)
            .bind(up_to)
            .fetch_all(&mut *conn)
            .await)?;
        let intents = on_conn!(self, |conn| sqlx::query_as(rows::INTENT_BODIES_SQL)
            .bind(after)
            .bind(up_to)
            .fetch_all(&mut *conn)
            .await)?;
        Ok((rows::entries(joined)?, intents))
    }

    /// Whether the database has the checkpoints table (migration 0011): an export opens it
    /// read only and never migrates it.
    async fn has_checkpoints(&mut self) -> Result<bool, DbError> {
        Ok(match self {
            Snapshot::Sqlite(conn) => {
                sqlx::query_scalar::<_, i64>(
                    "select count(*) from sqlite_master \
                     where type = 'table' and name = 'journal_checkpoint'",
                )
                .fetch_one(&mut *conn)
                .await?
                    > 0
            }
            // Resolved as the export's own queries resolve the name: along the search path.
            Snapshot::Postgres(conn) => {
                sqlx::query_scalar::<_, bool>(
                    "select to_regclass('journal_checkpoint') is not null",
                )
                .fetch_one(&mut *conn)
                .await?
            }
        })
    }

    /// Writes every signed checkpoint of the snapshot as `{"checkpoints":[…]}` (the form
    /// `coledger verify --checkpoints` reads), by unit code then sequence; returns how many.
    /// Being in the snapshot, each names a link the journal export holds.
    async fn write_checkpoints(&mut self, out: &mut dyn Write) -> Result<u64, JournalExportError> {
        let rows: Vec<(String, i64, String)> = if self.has_checkpoints().await? {
            on_conn!(self, |conn| sqlx::query_as(
                "select unit, seq, body from journal_checkpoint"
            )
            .fetch_all(&mut *conn)
            .await)
            .map_err(DbError::from)?
        } else {
            Vec::new()
        };
        let corrupt = |reason: String| DbError::CorruptRow {
            table: "journal_checkpoint",
            reason,
        };
        let mut rows: Vec<(UnitCode, i64, String)> = rows
            .into_iter()
            .map(|(unit, seq, body)| {
                let unit = UnitCode::new(&unit).map_err(|e| corrupt(e.to_string()))?;
                // Copied as stored, so it must be one JSON value, or the file is not JSON.
                serde_json::from_str::<serde::de::IgnoredAny>(&body).map_err(|e| {
                    corrupt(format!("unit {unit} sequence {seq}: body is not JSON: {e}"))
                })?;
                Ok((unit, seq, body))
            })
            .collect::<Result<_, DbError>>()?;
        // In Rust: PostgreSQL orders text by its collation, not by the codes' bytes.
        rows.sort_by_key(|row| (row.0, row.1));
        out.write_all(b"{\"checkpoints\":[")?;
        for (n, (_, _, body)) in rows.iter().enumerate() {
            if n > 0 {
                out.write_all(b",\n")?;
            }
            // Stored as the service served it: one JSON object.
            out.write_all(body.as_bytes())?;
        }
        out.write_all(b"]}\n")?;
        Ok(rows.len() as u64)
    }

    async fn end(mut self) -> Result<(), DbError> {
        on_conn!(&mut self, |conn| sqlx::query("commit")
            .execute(&mut *conn)
            .await
            .map(|_| ()))?;
        on_conn!(self, |conn| conn.close().await)?;
        Ok(())
    }
}

fn link(unit: UnitCode, seq: i64, hash: &[u8]) -> Result<JournalLink, DbError> {
    let corrupt = |reason: String| DbError::CorruptRow {
        table: "journal",
        reason,
    };
    Ok(JournalLink {
        unit,
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("seq {seq}")))?,
        hash: Digest(
            hash.try_into()
                .map_err(|_| corrupt(format!("hash has {} bytes", hash.len())))?,
        ),
    })
}

/// One unit's links, read ahead a page at a time, in sequence (hence commit) order.
struct Cursor {
    unit: UnitCode,
    after: u64,
    ahead: VecDeque<(i64, JournalLink)>,
    done: bool,
}

impl Cursor {
    /// The links of this unit that belong to the entry at `position`.
    async fn take(
        &mut self,
        snapshot: &mut Snapshot,
        position: i64,
        out: &mut Vec<JournalLink>,
    ) -> Result<(), JournalExportError> {
        loop {
            if self.ahead.is_empty() && !self.done {
                let page = snapshot.links_after(self.unit, self.after).await?;
                self.done = page.len() < usize::try_from(PAGE_LINKS).unwrap_or(usize::MAX);
                self.ahead.extend(page);
            }
            match self.ahead.front() {
                Some(&(at, link)) if at == position => {
                    self.after = link.seq;
                    self.ahead.pop_front();
                    out.push(link);
                }
                Some(&(at, link)) if at < position => {
                    return Err(JournalExportError::Inconsistent {
                        position: at,
                        reason: format!(
                            "journal link {} #{} belongs to no entry",
                            link.unit, link.seq
                        ),
                    });
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Writes every signed checkpoint stored in the database at `url` to `out`, as
/// `{"checkpoints":[…]}` (what `coledger verify --checkpoints` reads), from a read-only
/// snapshot of its own; returns how many. A database from before the checkpoints table has
/// none. Taken before a journal export, each names a link the export holds (the journal only
/// grows).
pub async fn export_checkpoints(url: &str, out: &mut dyn Write) -> Result<u64, JournalExportError> {
    let mut snapshot = Snapshot::open(url).await?;
    let written = snapshot.write_checkpoints(out).await?;
    snapshot.end().await?;
    Ok(written)
}

/// Writes the journal of the database at `url` to `out` as a `coledger-journal` v1 export,
/// stamped `exported_at` (ms since the epoch).
pub async fn export_journal(
    url: &str,
    exported_at: i64,
    out: &mut impl Write,
    checkpoints: Option<&mut dyn Write>,
) -> Result<JournalExport, JournalExportError> {
    let mut snapshot = Snapshot::open(url).await?;
    let header = read_header(&mut snapshot, exported_at).await?;
    let mut line = Vec::with_capacity(4096);
    format::write_header(&mut line, &header);
    out.write_all(&line)?;
    let mut cursors: Vec<Cursor> = header
        .units
        .iter()
        .map(|u| Cursor {
            unit: u.code,
            after: 0,
            ahead: VecDeque::new(),
            done: false,
        })
        .collect();
    let last = snapshot.count(rows::MAX_POSITION_SQL).await?;
    let mut written = JournalExport {
        units: header.units.len(),
        ..JournalExport::default()
    };
    let mut after = 0i64;
    while after < last {
        let up_to = after.saturating_add(PAGE_ENTRIES).min(last);
        let page = Page {
            after,
            up_to,
            line: &mut line,
            written: &mut written,
        };
        page.write(&mut snapshot, &mut cursors, out).await?;
        after = up_to;
    }
    let stored_links = snapshot.count(LINK_COUNT_SQL).await?;
    if u64::try_from(stored_links).ok() != Some(written.links) {
        let reason = format!(
            "the journal table holds {stored_links} links but the entries have {}",
            written.links
        );
        return Err(inconsistent(last, reason));
    }
    if let Some(checkpoints) = checkpoints {
        written.checkpoints = snapshot.write_checkpoints(checkpoints).await?;
    }
    snapshot.end().await?;
    Ok(written)
}

/// The header: the entry count, every unit and where each chain ends, all from the snapshot.
async fn read_header(snapshot: &mut Snapshot, exported_at: i64) -> Result<ExportHeader, DbError> {
    let count = snapshot.count(COUNT_SQL).await?;
    let units = snapshot.units().await?;
    let mut heads = Vec::new();
    for unit in &units {
        heads.extend(snapshot.head(unit.code).await?);
    }
    Ok(ExportHeader {
        count: u64::try_from(count).unwrap_or_default(),
        exported_at,
        format: format::FORMAT.into(),
        heads,
        units,
        version: format::VERSION,
    })
}

/// One page of entries being written.
struct Page<'a> {
    after: i64,
    up_to: i64,
    line: &'a mut Vec<u8>,
    written: &'a mut JournalExport,
}

impl Page<'_> {
    async fn write(
        self,
        snapshot: &mut Snapshot,
        cursors: &mut [Cursor],
        out: &mut impl Write,
    ) -> Result<(), JournalExportError> {
        let (entries, intents) = snapshot.page(self.after, self.up_to).await?;
        let mut entries = entries.into_iter().peekable();
        for (position, body) in intents {
            let entry = match entries.next_if(|(at, _)| *at == position) {
                Some((_, Ok(entry))) => entry,
                Some((_, Err(e))) => {
                    return Err(inconsistent(position, format!("invalid entry: {e}")));
                }
                None => return Err(inconsistent(position, "the entry has no postings".into())),
            };
            let mut links = Vec::new();
            for cursor in cursors.iter_mut() {
                cursor.take(snapshot, position, &mut links).await?;
            }
            self.line.clear();
            write_line(self.line, position, &entry, body, &links);
            out.write_all(self.line)?;
            self.written.entries = self.written.entries.saturating_add(1);
            self.written.links = self.written.links.saturating_add(links.len() as u64);
        }
        Ok(())
    }
}

fn inconsistent(position: i64, reason: String) -> JournalExportError {
    JournalExportError::Inconsistent { position, reason }
}

fn write_line(
    line: &mut Vec<u8>,
    position: i64,
    entry: &JournalEntry,
    body: String,
    links: &[JournalLink],
) {
    let canonical = canonical_entry_bytes(entry);
    // The canonical writer emits only whole UTF-8 sequences.
    let canonical = String::from_utf8_lossy(&canonical);
    let auth = entry.authorisation();
    let intent = ExportIntent {
        body,
        signature: auth.signature,
        signer: auth.signer,
    };
    let position = u64::try_from(position).unwrap_or_default();
    format::write_entry(line, position, &canonical, &intent, links);
}
