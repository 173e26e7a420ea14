//! The Book's apply rate, pure and in memory, two ways:
//!
//! - **from empty**: a fresh Book takes the whole stream, so its maps of recent intents and
//!   payments grow from nothing, rehashing (and the kernel zeroing fresh pages) as they go;
//! - **steady**: the Book first takes two and a half windows of entries, forgetting as the
//!   committer does after every batch, so its generations are full-sized and reused (cleared,
//!   not freed) and forgotten ids are fingerprints; then the stream is timed. This is the Book
//!   of a service that has been running for a few minutes, which is every Book that matters.
//!
//! Both apply as the committer does: each run of `Book::WARM_AHEAD` entries is first read
//! ahead with `Book::warm`.
//!
//! The window is `remember_for` (60 s) of entries at the SQLite target's rate (100,000/s), so
//! the steady Book holds 6 to 12 million recent intents, as a service at that rate would.

use std::time::{Duration, Instant};

use ledger::journal::{Journal, canonical_entry_bytes};
use ledger::{
    Account, AccountId, AccountKind, Amount, Authorisation, Book, BookError, Digest, EntryId,
    EntryKind, IntentId, JournalEntry, Posting, PublicKey, Signature, Tags, TimestampMs, UnitCode,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{SEED, median};
use crate::config::BenchLedgerArgs;

/// Entries per committed batch: the committer forgets once per batch.
const BATCH: usize = 1_000;
/// How long the committer remembers intents whole (`CommitterConfig::remember_for`).
const REMEMBER_FOR_MS: TimestampMs = 60_000;
/// Entries generated at a time during the warm-up, so it never holds them all.
const WARM_UP_CHUNK: usize = 1_000_000;

/// A stream of single-posting payments between random accounts of one unit, with entry times
/// spaced so that `window` entries span [`REMEMBER_FOR_MS`].
struct Stream {
    rng: ChaCha20Rng,
    unit: UnitCode,
    accounts: Vec<(AccountId, PublicKey)>,
    window: usize,
    made: usize,
}

impl Stream {
    fn new(accounts: usize, window: usize) -> Self {
        let unit = UnitCode::new("BENCH").expect("valid code");
        Self {
            rng: ChaCha20Rng::seed_from_u64(SEED),
            unit,
            accounts: (0..accounts)
                .map(|i| (AccountId::new(), PublicKey([(i % 251) as u8; 32])))
                .collect(),
            window: window.max(1),
            made: 0,
        }
    }

    /// A Book with the unit and every account, unbounded, nothing applied.
    fn fresh_book(&self) -> Book {
        let mut book = Book::new();
        book.add_unit(
            ledger::Unit::new(self.unit, "Bench", 2, ledger::UnitKind::MutualCredit, None)
                .expect("valid unit"),
        )
        .expect("new unit");
        for &(id, key) in &self.accounts {
            let limits = ledger::Limits::new(None, None).expect("unbounded");
            book.open_account(Account {
                id,
                ..Account::new(self.unit, AccountKind::Holder, Some(key)).with_limits(limits)
            })
            .expect("new account");
        }
        book
    }

    /// The entry time of the `n`th entry made.
    fn time_of(&self, n: usize) -> TimestampMs {
        let ms = (n as u128 * REMEMBER_FOR_MS as u128) / self.window as u128;
        TimestampMs::try_from(ms).unwrap_or(TimestampMs::MAX)
    }

    fn take(&mut self, count: usize) -> Vec<JournalEntry> {
        let n = self.accounts.len();
        (0..count)
            .map(|_| {
                let from = self.rng.gen_range(0..n);
                let to = (from + self.rng.gen_range(1..n)) % n;
                let at = self.time_of(self.made);
                self.made += 1;
                let minor = self.rng.gen_range(1..=100);
                raw_payment(
                    self.accounts[from],
                    self.accounts[to].0,
                    self.unit,
                    minor,
                    at,
                )
            })
            .collect()
    }
}

/// What a steady run applied.
#[derive(Default)]
struct Applied {
    refused: usize,
    /// Intents whose id matched a forgotten one's fingerprint: the committer asks storage
    /// about each (a query), then applies it with `apply_checked_new`, as done here.
    maybe_forgotten: usize,
    /// The longest single call to forget between batches: time the writer is held.
    longest_forget: Duration,
}

/// Applies `entries` as the committer would: every entry, then forgetting what is older than
/// the window once per batch, gradually.
fn apply_forgetting(book: &mut Book, entries: &[JournalEntry]) -> Applied {
    let mut applied = Applied::default();
    for batch in entries.chunks(BATCH) {
        for run in batch.chunks(Book::WARM_AHEAD) {
            book.warm(run);
            for entry in run {
                let result = match book.apply(entry) {
                    Err(BookError::MaybeApplied(_)) => {
                        applied.maybe_forgotten += 1;
                        book.apply_checked_new(entry)
                    }
                    other => other,
                };
                applied.refused += usize::from(result.is_err());
            }
        }
        if let Some(last) = batch.last() {
            let started = Instant::now();
            book.forget_gradually(last.created_at().saturating_sub(REMEMBER_FOR_MS));
            applied.longest_forget = applied.longest_forget.max(started.elapsed());
        }
    }
    applied
}

pub(super) fn apply(args: &BenchLedgerArgs) {
    let window = args.book_window;
    let mut stream = Stream::new(args.accounts, window);
    let entries = stream.take(args.book_ops);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let mut book = stream.fresh_book();
        let started = Instant::now();
        let mut refused = 0usize;
        for run in entries.chunks(Book::WARM_AHEAD) {
            book.warm(run);
            for entry in run {
                refused += usize::from(book.apply(entry).is_err());
            }
        }
        rates.push(entries.len() as f64 / started.elapsed().as_secs_f64());
        assert_eq!(refused, 0, "bench payments are all valid");
        assert!(book.check_invariants().is_ok());
    }
    println!(
        "\nBook apply (single-posting payments, {} accounts, {} ops, median of 3)",
        args.accounts,
        entries.len(),
    );
    println!(
        "  from empty (maps grow as they go): {:.2} M/s",
        median(&mut rates) / 1e6
    );

    // Steady state: the stream goes on in time after the warm-up, on a Book of its own.
    let mut book = stream.fresh_book();
    let mut warm = window.saturating_mul(5) / 2;
    while warm > 0 {
        let chunk = stream.take(warm.min(WARM_UP_CHUNK));
        warm -= chunk.len();
        assert_eq!(apply_forgetting(&mut book, &chunk).refused, 0);
    }
    let mut rates = Vec::new();
    let mut maybe_forgotten = 0;
    let mut longest_forget = Duration::ZERO;
    for _ in 0..3 {
        let entries = stream.take(args.book_ops);
        let started = Instant::now();
        let applied = apply_forgetting(&mut book, &entries);
        rates.push(entries.len() as f64 / started.elapsed().as_secs_f64());
        assert_eq!(applied.refused, 0, "bench payments are all valid");
        maybe_forgotten += applied.maybe_forgotten;
        longest_forget = longest_forget.max(applied.longest_forget);
    }
    assert!(book.check_invariants().is_ok());
    let (whole, fingerprints) = book.remembered_intents();
    println!(
        "  steady (a 60-s window of {window} entries; at the end {whole} intents remembered whole, {fingerprints} as fingerprints): {:.2} M/s",
        median(&mut rates) / 1e6
    );
    println!(
        "  new intents that matched a forgotten one's fingerprint (a storage lookup each in the service): {:.3} %",
        maybe_forgotten as f64 * 100.0 / (3 * args.book_ops).max(1) as f64
    );
    println!(
        "  longest pause to forget between two batches of {BATCH}: {:.2} ms",
        longest_forget.as_secs_f64() * 1e3
    );
    hashing(&entries);
}

/// The submitter's and the writer's per-entry work: canonical JSON and the hash chain.
fn hashing(entries: &[JournalEntry]) {
    let sample = &entries[..entries.len().min(500_000)];
    let started = Instant::now();
    let canonical: Vec<Vec<u8>> = sample.iter().map(canonical_entry_bytes).collect();
    let serialise_rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    let mut journal = Journal::new();
    let started = Instant::now();
    for (entry, bytes) in sample.iter().zip(&canonical) {
        journal.append_canonical(&[entry.postings()[0].unit], bytes);
    }
    let hash_rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "entry canonical JSON (on submitter tasks): {:.2} M/s; journal SHA-256 chaining (on the writer): {:.2} M/s",
        serialise_rate / 1e6,
        hash_rate / 1e6
    );
}

/// A payment entry with a stand-in authorisation: the Book checks the signer against the
/// account's key but does not verify signatures (the committer only sees verified intents).
fn raw_payment(
    from: (AccountId, PublicKey),
    to: AccountId,
    unit: UnitCode,
    minor: i64,
    at: TimestampMs,
) -> JournalEntry {
    let authorisation = Authorisation {
        intent_id: IntentId::new(),
        signer: from.1,
        digest: Digest([0; 32]),
        signature: Signature([0; 64]),
    };
    let posting = Posting {
        unit,
        debit: from.0,
        credit: to,
        amount: Amount::from_minor(minor).unwrap_or(Amount::ZERO),
    };
    JournalEntry::new(
        EntryId::new(),
        EntryKind::Payment,
        vec![posting],
        String::new(),
        Tags::default(),
        authorisation,
        at,
    )
    .expect("bench payments are valid")
}
