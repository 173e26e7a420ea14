//! `coledger export journal` and `coledger verify`: the journal for auditors, and the
//! auditor's check of it, which needs nothing but the file, or runs on a database in place by
//! streaming its export through the same check (DESIGN §5).

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use ledger::journal::audit::{Audit, AuditError, AuditReport, CheckedLine, UnitReport, check_line};
use ledger::journal::checkpoint::SignedCheckpoint;
use ledger::journal::export::MAX_LINE_BYTES;
use wallet_api::Clock as _;

use crate::config::{ExportJournalArgs, VerifyArgs};
use crate::output_file::OutputFile;
use wallet_api::db::export::JournalExportError;

/// Lines read and checked together; the checking of one chunk is spread over the threads.
const CHUNK_LINES: usize = 4096;

/// The largest checkpoints file read: a unit signing every ten minutes stores about 50,000
/// checkpoints (50 MB) a year, so this is decades of a few units.
const MAX_CHECKPOINT_FILE_BYTES: u64 = 4 << 30;

/// `coledger export journal`.
pub async fn export_journal(args: ExportJournalArgs) -> Result<()> {
    let url = &args.database.database_url;
    // Written whole or not at all: a failure (a mistyped URL) keeps an earlier export.
    if let Some(checkpoints) = &args.checkpoints_out
        && std::path::absolute(checkpoints).ok() == std::path::absolute(&args.out).ok()
    {
        bail!(
            "--checkpoints-out names the file --out writes ({}): give the checkpoints a file of their own",
            args.out.display()
        );
    }
    let mut out = OutputFile::create(&args.out)?;
    let mut checkpoints = args
        .checkpoints_out
        .as_deref()
        .map(OutputFile::create)
        .transpose()?;
    let exported_at = wallet_api::SystemClock.now_ms();
    let written = wallet_api::db::export::export_journal(
        url,
        exported_at,
        out.writer(),
        checkpoints
            .as_mut()
            .map(|file| file.writer() as &mut dyn std::io::Write),
    )
    .await
    .with_context(|| format!("exporting the journal of {}", wallet_api::db::redact(url)))?;
    out.finish()?;
    if let Some(file) = checkpoints {
        file.finish()?;
    }
    println!(
        "{} entries ({} chain links, {} units) written to {} (coledger-journal v1); check it with `coledger verify {}`",
        written.entries,
        written.links,
        written.units,
        args.out.display(),
        args.out.display()
    );
    if let Some(path) = &args.checkpoints_out {
        println!(
            "{} signed checkpoints from the same snapshot written to {}; hold the export to them with `coledger verify {} --checkpoints {}`",
            written.checkpoints,
            path.display(),
            args.out.display(),
            path.display()
        );
    }
    Ok(())
}

/// `coledger verify`.
pub async fn verify(args: VerifyArgs) -> Result<()> {
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let mut audit = Audit::new();
    for kept in &args.expect_heads {
        let heads = recorded_heads(kept)?;
        println!(
            "holding to {} head(s) kept in {}",
            heads.len(),
            kept.display()
        );
        if let Err((unit, seq)) = audit.expect_heads(&heads) {
            bail!(
                "{}: unit {unit} sequence {seq} has another hash than in a file named before: \
                 the kept heads disagree with each other",
                kept.display()
            );
        }
    }
    let mut all = Vec::new();
    for path in &args.checkpoints {
        let kept = kept_checkpoints(path)?;
        println!(
            "holding to {} signed checkpoint(s) kept in {}",
            kept.len(),
            path.display()
        );
        all.extend(kept);
    }
    if let Some(url) = &args.database_url {
        let stored = stored_checkpoints(url).await?;
        println!(
            "holding to {} signed checkpoint(s) stored in {}",
            stored.len(),
            wallet_api::db::redact(url)
        );
        all.extend(stored);
    }
    let checkpoints = hold_to_checkpoints(&mut audit, all, &args.checkpoint_key)?;
    match (&args.file, &args.database_url) {
        (Some(path), _) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            match audit_file(audit, BufReader::with_capacity(1 << 20, file), threads)
                .with_context(|| format!("reading {}", path.display()))?
            {
                Verdict::Held(report) => print_report(&path.display().to_string(), &report),
                Verdict::Line(error) | Verdict::End(error) => {
                    println!("verdict: FAILED at line {}", error.line);
                    bail!("{} line {}: {}", path.display(), error.line, error.problem);
                }
            }
        }
        (None, Some(url)) => {
            let report = audit_database(audit, url, threads).await?;
            print_report(&wallet_api::db::redact(url), &report);
        }
        (None, None) => bail!("name an export file, or a database with --database-url"),
    }
    if checkpoints > 0 {
        println!(
            "signed checkpoints: {checkpoints} held (each a link of the chain, with its totals)"
        );
    }
    Ok(())
}

/// Exports the journal of the database at `url` from one snapshot straight into the audit
/// through a pipe, so nothing of it is written to disk and memory stays flat.
async fn audit_database(audit: Audit, url: &str, threads: usize) -> Result<AuditReport> {
    let redacted = wallet_api::db::redact(url);
    let (reader, writer) = std::io::pipe().context("making a pipe for the export")?;
    let auditor = std::thread::spawn(move || {
        audit_file(audit, BufReader::with_capacity(1 << 20, reader), threads)
    });
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
    let exported_at = wallet_api::SystemClock.now_ms();
    let mut exported =
        wallet_api::db::export::export_journal(url, exported_at, &mut writer, None).await;
    if exported.is_ok()
        && let Err(e) = std::io::Write::flush(&mut writer)
    {
        exported = Err(JournalExportError::Io(e));
    }
    // The end of the stream for the auditor.
    drop(writer);
    let verdict = auditor
        .join()
        .map_err(|_| anyhow::anyhow!("the auditor's thread failed"))?;
    let exported = match exported {
        // The auditor stops reading at the first bad line, so the export then fails to write
        // to the pipe: the verdict is the news.
        Err(JournalExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => None,
        // The database holds what no export can state: the service would refuse it too.
        Err(JournalExportError::Inconsistent { position, reason }) => {
            println!("verdict: FAILED at entry position {position}");
            bail!(
                "{redacted}: the stored journal is inconsistent at entry position {position}: {reason}"
            );
        }
        Err(e) => return Err(e).with_context(|| format!("exporting the journal of {redacted}")),
        Ok(exported) => Some(exported),
    };
    match verdict.context("reading the export stream")? {
        Verdict::Held(report) if exported.is_some() => Ok(report),
        Verdict::Held(_) => bail!("exporting the journal of {redacted}: the export stopped early"),
        Verdict::End(error) => {
            println!("verdict: FAILED at the end of the export");
            bail!("{redacted}: at the end of its export: {}", error.problem);
        }
        Verdict::Line(error) if error.line > 1 => {
            println!("verdict: FAILED at entry position {}", error.line - 1);
            bail!(
                "{redacted}: entry position {} (line {} of its export): {}",
                error.line - 1,
                error.line,
                error.problem
            );
        }
        Verdict::Line(error) => {
            println!("verdict: FAILED at the export's header");
            bail!("{redacted}: the export's header: {}", error.problem);
        }
    }
}

/// Every checkpoint stored in the database at `url`, each signature verified, read from a
/// read-only snapshot taken before the journal's (so each names a link the journal export
/// holds: the journal only grows).
async fn stored_checkpoints(url: &str) -> Result<Vec<SignedCheckpoint>> {
    let redacted = wallet_api::db::redact(url);
    let mut json = Vec::new();
    wallet_api::db::export::export_checkpoints(url, &mut json)
        .await
        .with_context(|| format!("reading the checkpoints stored in {redacted}"))?;
    parse_checkpoints(json.as_slice(), &redacted)
}

/// Checks the key of every checkpoint in `all` and has the audit hold the export to them;
/// returns how many.
fn hold_to_checkpoints(
    audit: &mut Audit,
    all: Vec<SignedCheckpoint>,
    pinned: &[ledger::PublicKey],
) -> Result<usize> {
    if all.is_empty() {
        if !pinned.is_empty() {
            println!("no signed checkpoints to hold to: --checkpoint-key has nothing to check");
        }
        return Ok(0);
    }
    match pinned {
        [] => {
            let key = all[0].key;
            if all.iter().any(|c| c.key != key) {
                bail!(
                    "the checkpoints are signed by more than one key; name the service's with --checkpoint-key"
                );
            }
            println!(
                "checkpoint key: {} (from the checkpoints; compare it with the service's, or pass --checkpoint-key)",
                key.to_base64url()
            );
        }
        pinned => {
            if let Some(other) = all.iter().find(|c| !pinned.contains(&c.key)) {
                bail!(
                    "unit {} sequence {}: the checkpoint is signed by {}, not by a key given with --checkpoint-key",
                    other.checkpoint.unit,
                    other.checkpoint.head.seq,
                    other.key.to_base64url()
                );
            }
            for key in pinned {
                println!("checkpoint key: {} (given)", key.to_base64url());
            }
        }
    }
    let checkpoints: Vec<_> = all.iter().map(|c| c.checkpoint).collect();
    if let Err((unit, seq)) = audit.expect_checkpoints(&checkpoints) {
        bail!(
            "unit {unit} sequence {seq}: two signed checkpoints of it disagree (or one of an empty \
             chain states entries): the service signed conflicting statements"
        );
    }
    Ok(all.len())
}

/// The signed checkpoints in `path` (the `checkpoints` of a saved `GET
/// /v1/journal/checkpoints`, or the `items` of a saved page of one unit's), each signature
/// verified.
fn kept_checkpoints(path: &Path) -> Result<Vec<SignedCheckpoint>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > MAX_CHECKPOINT_FILE_BYTES {
        bail!(
            "{}: larger than {} GiB, so not a file of checkpoints",
            path.display(),
            MAX_CHECKPOINT_FILE_BYTES >> 30
        );
    }
    let reader = BufReader::new(file.take(MAX_CHECKPOINT_FILE_BYTES));
    parse_checkpoints(reader, &path.display().to_string())
}

/// The signed checkpoints of a saved answer of `GET /v1/journal/checkpoints` (or the `items`
/// of one unit's page) read from `reader`, each signature verified; `source` names it in
/// errors.
fn parse_checkpoints(reader: impl std::io::Read, source: &str) -> Result<Vec<SignedCheckpoint>> {
    #[derive(serde::Deserialize)]
    struct Kept {
        #[serde(alias = "items")]
        checkpoints: Vec<serde_json::Value>,
    }
    let kept: Kept = serde_json::from_reader(reader).map_err(|e| {
        anyhow::anyhow!(
            "{source}: not a saved answer of GET /v1/journal/checkpoints (a JSON object with \
             \"checkpoints\", or \"items\" for one unit's): {e}"
        )
    })?;
    kept.checkpoints
        .iter()
        .enumerate()
        .map(|(n, value)| {
            let signed = SignedCheckpoint::from_json(value)
                .and_then(|signed| signed.verify().map(|()| signed))
                .with_context(|| format!("{source}: checkpoint {}", n + 1))?;
            Ok(signed)
        })
        .collect()
}

/// The heads kept in `path`: the `heads` of the first JSON object in it (an export's header
/// line, or `GET /v1/journal/heads`'s answer, pretty-printed or not).
fn recorded_heads(path: &std::path::Path) -> Result<Vec<ledger::JournalLink>> {
    #[derive(serde::Deserialize)]
    struct Kept {
        heads: Vec<ledger::JournalLink>,
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // An export's header is its first line, however long the file: read a bounded start.
    let mut start = Vec::new();
    file.take(1 << 24)
        .read_to_end(&mut start)
        .with_context(|| format!("reading {}", path.display()))?;
    let first = serde_json::Deserializer::from_slice(&start)
        .into_iter::<Kept>()
        .next();
    match first {
        Some(Ok(kept)) => Ok(kept.heads),
        _ => bail!(
            "{}: does not begin with a JSON object with \"heads\" (an export, or a saved GET \
             /v1/journal/heads)",
            path.display()
        ),
    }
}

/// How a stream of export lines was judged.
enum Verdict {
    /// Every line held, and the end too.
    Held(AuditReport),
    /// A line failed.
    Line(AuditError),
    /// The lines held, but the stream ended short of what its header or the checkpoints
    /// promised (or of a header at all).
    End(AuditError),
}

/// Streams the file through `audit`: the error is reading.
fn audit_file(
    mut audit: Audit,
    mut reader: impl BufRead,
    threads: usize,
) -> std::io::Result<Verdict> {
    let mut next_line = 1u64;
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK_LINES);
    loop {
        chunk.clear();
        while chunk.len() < CHUNK_LINES {
            match read_line(&mut reader)? {
                Some(line) => chunk.push(line),
                None => break,
            }
        }
        if chunk.is_empty() {
            return Ok(audit.finish().map_or_else(Verdict::End, Verdict::Held));
        }
        for checked in check_chunk(&chunk, next_line, threads) {
            if let Err(error) = checked.and_then(|c| audit.push(c)) {
                return Ok(Verdict::Line(error));
            }
        }
        next_line = next_line.saturating_add(chunk.len() as u64);
    }
}

/// The next line without its newline; one longer than the limit is cut just past it (the
/// audit then refuses it), so a hostile file cannot make us buffer it whole.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = (MAX_LINE_BYTES as u64).saturating_add(2);
    let read = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(line))
}

/// Checks the lines of a chunk (numbered from `first`) on `threads` threads, in order.
fn check_chunk(
    chunk: &[Vec<u8>],
    first: u64,
    threads: usize,
) -> Vec<Result<CheckedLine, AuditError>> {
    let per_thread = chunk.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunk
            .chunks(per_thread)
            .enumerate()
            .map(|(i, part)| {
                let start = first.saturating_add((i * per_thread) as u64);
                scope.spawn(move || {
                    part.iter()
                        .zip(start..)
                        .map(|(bytes, line)| check_line(line, bytes))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn print_report(source: &str, report: &AuditReport) {
    let (date, time) = utc(report.exported_at);
    println!("{source}: coledger-journal v1, exported {date} {time} UTC");
    println!("entries: {}", report.entries);
    println!("units: {}", report.units.len());
    for unit in &report.units {
        print_unit(unit);
    }
    println!("signatures: {} verified (strict ed25519)", report.entries);
    println!("chain intact: yes");
    println!("verdict: OK");
}

fn print_unit(unit: &UnitReport) {
    let scale = unit.unit.scale;
    println!(
        "{} ({}, {} decimals): {} chain links, {} accounts, head {}",
        unit.unit.code,
        unit.unit.kind.as_str(),
        scale,
        unit.head.seq,
        unit.accounts,
        if unit.head.seq == 0 {
            "(empty)".to_owned()
        } else {
            unit.head.hash.to_hex()
        }
    );
    for total in &unit.totals {
        println!(
            "  {:<16} {:>9} entries {:>22}",
            total.kind.as_str(),
            total.entries,
            amount(total.amount_minor, scale)
        );
    }
    println!(
        "  balances sum to {}; positive balances total {}",
        amount(unit.balance_sum, scale),
        amount(unit.positive_balances, scale)
    );
}

/// Minor units as decimal text with `scale` decimals (i128: totals can exceed any i64).
fn amount(minor: i128, scale: u8) -> String {
    let digits = minor.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    let sign = if minor < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS` of a time in ms since the epoch.
fn utc(ms: i64) -> (String, String) {
    let seconds = ms.div_euclid(1000);
    let (year, month, day) = ledger::policy::civil_from_days(seconds.div_euclid(86_400));
    let second = seconds.rem_euclid(86_400);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            second / 3600,
            second % 3600 / 60,
            second % 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_with_their_decimals() {
        assert_eq!(amount(125_050, 2), "1250.50");
        assert_eq!(amount(5, 2), "0.05");
        assert_eq!(amount(-5, 2), "-0.05");
        assert_eq!(amount(7, 0), "7");
        assert_eq!(amount(0, 3), "0.000");
    }

    #[test]
    fn export_times_print_in_utc() {
        assert_eq!(
            utc(1_795_305_600_000),
            ("2026-11-22".to_owned(), "00:00:00".to_owned())
        );
    }

    #[test]
    fn over_long_lines_are_cut_not_buffered_whole() {
        let mut text = vec![b'x'; MAX_LINE_BYTES * 3];
        text.push(b'\n');
        let mut reader = std::io::Cursor::new(text);
        let line = read_line(&mut reader).unwrap().unwrap();
        assert_eq!(line.len(), MAX_LINE_BYTES + 2);
    }
}
