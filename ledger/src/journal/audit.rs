//! The auditor's check of a journal export ([`super::export`]), pure and streaming: feed it
//! lines in order and it re-derives everything the file claims, trusting nothing but the
//! signatures' keys.
//!
//! For every entry line it checks, in this order (the first failure is the verdict):
//!
//! 1. the line is well formed: known members only, within [`export::MAX_LINE_BYTES`], the entry and
//!    the intent parse (strictly: unknown fields refused) and are byte for byte in canonical
//!    form, so what was hashed and signed is exactly what is read ([`Problem::Malformed`]);
//! 2. positions run 1, 2, 3… ([`Problem::PositionOutOfOrder`]); the links name exactly the
//!    entry's units ([`Problem::WrongLinks`]), each unit's sequence numbers run on without a
//!    gap ([`Problem::SequenceOutOfOrder`]) and every hash equals
//!    `SHA-256(previous hash ‖ entry)` recomputed from zero ([`Problem::ChainBreak`]);
//! 3. the stored signer is the one the intent names ([`Problem::SignerMismatch`]), the
//!    signature verifies strictly over `"coledger/v1\n"` + the intent ([`Problem::BadSignature`]),
//!    the entry's digest is SHA-256 of those signed bytes ([`Problem::DigestMismatch`]);
//! 4. the entry is exactly what the intent asks for: signer, intent id, signature, kind,
//!    postings (legs matched in order, as the service does), memo and tags
//!    ([`Problem::IntentMismatch`]); an intent whose legs do not sum to zero per unit is
//!    [`Problem::Unbalanced`];
//! 5. no intent is applied twice ([`Problem::DuplicateIntent`]); a refund names an earlier
//!    payment, mirrors it and with the earlier refunds stays within it ([`Problem::BadRefund`]);
//!    every unit is declared in the header ([`Problem::UnknownUnit`]); every account stays in
//!    one unit ([`Problem::AccountInTwoUnits`]).
//!
//! At the end, the entry count and each unit's last link must be what the header promised (a
//! truncated file fails: [`Problem::CountMismatch`], [`Problem::HeadMismatch`]) and per unit the
//! balances must sum to zero. Postings balance by construction (each moves one amount from one
//! account to another), so the sum is a safety net, not a test of the file.
//!
//! Given heads kept earlier ([`Audit::expect_heads`]) or the service's signed checkpoints
//! ([`Audit::expect_checkpoints`], see [`super::checkpoint`]), each must be a link of the
//! chain; a checkpoint's totals must also be the ones recomputed up to its link, so a
//! published figure the journal does not add up to is caught as surely as a rewritten entry.
//!
//! Not checkable from the file alone: whether a signer was the registered key of the accounts
//! it debited, and account limits, because the export carries no accounts. The intent's expiry
//! was judged when it arrived and is not judged again.
//!
//! [`check_line`] is the part of the work that needs no other line (parsing, the signature),
//! so a caller may run it on many threads; [`Audit::push`] then takes the results in order.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashSet};

use super::checkpoint::{Checkpoint, UnitTotals};
use super::export::{self, ExportHeader, ExportIntent, ExportUnit};
use super::{ChainHead, Digest, Journal, JournalLink, canonical_entry_bytes, chain_hash};
use crate::entry::{EntryError, EntryKind, JournalEntry};
use crate::ids::{AccountId, EntryId, IntentId};
use crate::intent::{IntentError, SignedIntent};
use crate::keys::PublicKey;
use crate::unit::UnitCode;

/// What is wrong, and on which line of the file (1-based; the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct AuditError {
    /// The line.
    pub line: u64,
    /// What is wrong with it.
    pub problem: Problem,
}

/// One way a journal export can fail to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a well-formed line: not JSON, unknown members, too long, an invalid or
    /// non-canonical entry or intent, a missing header.
    #[error("malformed line: {0}")]
    Malformed(String),
    /// An entry's position is not the next one.
    #[error(
        "entry position {found} where {expected} was expected: entries are missing or out of order"
    )]
    PositionOutOfOrder {
        /// The next position.
        expected: u64,
        /// The position stated.
        found: u64,
    },
    /// A link's sequence number is not the next in its unit's chain.
    #[error(
        "unit {unit}: sequence {found} where {expected} was expected: links are missing or out of order"
    )]
    SequenceOutOfOrder {
        /// The unit.
        unit: UnitCode,
        /// The next sequence number.
        expected: u64,
        /// The one stated.
        found: u64,
    },
    /// The links do not name exactly the units of the entry's postings.
    #[error("the links name units {found:?} but the entry's postings touch {expected:?}")]
    WrongLinks {
        /// The entry's units, in code order.
        expected: Vec<UnitCode>,
        /// The links' units.
        found: Vec<UnitCode>,
    },
    /// A stated hash is not `SHA-256(previous hash ‖ entry)`: this entry, or the chain before
    /// it, was altered.
    #[error(
        "chain break in unit {unit} at sequence {seq} (entry position {position}): the stated hash is not SHA-256(previous hash ‖ entry); the entry or the chain was altered"
    )]
    ChainBreak {
        /// The unit.
        unit: UnitCode,
        /// The link's sequence number.
        seq: u64,
        /// The entry's position.
        position: u64,
    },
    /// The signer stored beside the intent, the one the intent names and the one in the entry
    /// disagree.
    #[error("the intent names signer {named:?} but {found:?} is stored with it")]
    SignerMismatch {
        /// The key the signed intent names.
        named: PublicKey,
        /// The key stored beside it or in the entry.
        found: PublicKey,
    },
    /// The signature does not verify (strictly) over the stated intent.
    #[error("bad signature: it does not verify for signer {signer:?} over the stated intent")]
    BadSignature {
        /// The key the intent names.
        signer: PublicKey,
    },
    /// The entry's digest is not SHA-256 of the intent's signed bytes.
    #[error(
        "digest mismatch at entry position {position}: the entry's digest is not SHA-256 of the signed intent"
    )]
    DigestMismatch {
        /// The entry's position.
        position: u64,
    },
    /// The intent's legs do not sum to zero in a unit.
    #[error("unbalanced entry: the intent's legs in unit {unit} sum to {sum} minor units, not 0")]
    Unbalanced {
        /// The unit.
        unit: UnitCode,
        /// The sum.
        sum: i128,
    },
    /// The entry is not what the signed intent asks for.
    #[error("entry position {position} is not what its signed intent asks for: {detail}")]
    IntentMismatch {
        /// The entry's position.
        position: u64,
        /// What differs.
        detail: String,
    },
    /// An intent applied a second time.
    #[error("intent {intent_id} was already applied by an earlier entry")]
    DuplicateIntent {
        /// The intent.
        intent_id: IntentId,
    },
    /// A unit the header does not list.
    #[error("unit {unit} is not listed in the header")]
    UnknownUnit {
        /// The unit.
        unit: UnitCode,
    },
    /// A refund (an entry whose `tags.reverses` names a payment) that names no earlier
    /// single-posting payment, does not mirror it, or with the earlier refunds exceeds it.
    #[error("refund of payment {payment}: {detail}")]
    BadRefund {
        /// The payment it names.
        payment: EntryId,
        /// What is wrong.
        detail: &'static str,
    },
    /// An account that appears in postings of two units.
    #[error("account {account} appears in unit {first} and in unit {second}")]
    AccountInTwoUnits {
        /// The account.
        account: AccountId,
        /// The unit it was first seen in.
        first: UnitCode,
        /// The other unit.
        second: UnitCode,
    },
    /// The file holds another number of entries than its header says (cut short?).
    #[error("the header promises {stated} entries but the file holds {found}")]
    CountMismatch {
        /// The header's count.
        stated: u64,
        /// Entries read.
        found: u64,
    },
    /// A unit's chain ends elsewhere than the header says (cut short?): at another sequence
    /// number, or at the same one with another hash.
    #[error(
        "unit {unit}: the chain ends at sequence {computed_seq}, not where the header says (sequence {stated_seq} and its hash)"
    )]
    HeadMismatch {
        /// The unit.
        unit: UnitCode,
        /// The last sequence number the header states.
        stated_seq: u64,
        /// The last sequence number in the file.
        computed_seq: u64,
    },
    /// A head recorded earlier (`coledger verify --expect-heads`) is not a link of this
    /// chain: the chain was rewritten from that entry on or before it.
    #[error(
        "unit {unit}: sequence {seq} has another hash than the head recorded earlier: the chain was rewritten at or before it"
    )]
    RecordedHeadDiffers {
        /// The unit.
        unit: UnitCode,
        /// The recorded head's sequence number.
        seq: u64,
    },
    /// A head recorded earlier lies beyond the end of this chain: entries were cut off.
    #[error(
        "unit {unit}: a head recorded earlier is at sequence {seq}, but the chain ends at {end}: entries were cut off"
    )]
    RecordedHeadMissing {
        /// The unit.
        unit: UnitCode,
        /// The recorded head's sequence number.
        seq: u64,
        /// The last sequence number in the file.
        end: u64,
    },
    /// A signed checkpoint (`coledger verify --checkpoints`) disagrees with the chain at its
    /// sequence number: another hash (the chain was rewritten at or before it) or other
    /// totals (the published figures are not what the journal adds up to).
    #[error(
        "unit {unit}: the signed checkpoint at sequence {seq} disagrees with the journal there: {what}"
    )]
    CheckpointDiffers {
        /// The unit.
        unit: UnitCode,
        /// The checkpoint's sequence number.
        seq: u64,
        /// What differs: the hash, or the first total that does (signed, then recomputed).
        what: String,
    },
    /// A signed checkpoint lies beyond the end of this chain: entries were cut off (or the
    /// export is older than the checkpoint).
    #[error(
        "unit {unit}: a signed checkpoint is at sequence {seq}, but the chain ends at {end}: entries were cut off, or the export is older than the checkpoint"
    )]
    CheckpointMissing {
        /// The unit.
        unit: UnitCode,
        /// The checkpoint's sequence number.
        seq: u64,
        /// The last sequence number in the file.
        end: u64,
    },
    /// A signed checkpoint of a unit that has no entries in this export.
    #[error(
        "unit {unit}: a signed checkpoint is at sequence {seq}, but this export has no entries of that unit"
    )]
    CheckpointUnitAbsent {
        /// The unit.
        unit: UnitCode,
        /// The checkpoint's sequence number.
        seq: u64,
    },
    /// Balances that do not sum to zero (impossible for well-formed postings).
    #[error("unit {unit}: balances sum to {sum} minor units, not 0")]
    BalancesDoNotSumToZero {
        /// The unit.
        unit: UnitCode,
        /// The sum.
        sum: i128,
    },
}

/// A line judged on its own by [`check_line`], for [`Audit::push`].
#[derive(Debug)]
pub struct CheckedLine {
    line: u64,
    body: Checked,
}

#[derive(Debug)]
enum Checked {
    Header(Box<ExportHeader>),
    Entry(Box<CheckedEntry>),
}

#[derive(Debug)]
struct CheckedEntry {
    position: u64,
    entry: JournalEntry,
    /// The entry's canonical JSON, as hashed.
    canonical: String,
    links: Vec<JournalLink>,
    /// The signature and intent checks, reported only after the chain checks of this line.
    verdict: Result<(), Problem>,
}

/// Parses line number `line` (1-based: line 1 is the header) and checks what needs no other
/// line: its shape, canonical forms, signature, digest and intent. A malformed line is an
/// error at once; the other findings wait in the result, so that [`Audit::push`] reports a
/// line's chain problems before its signature problems, whichever thread checked it.
pub fn check_line(line: u64, bytes: &[u8]) -> Result<CheckedLine, AuditError> {
    let malformed = |detail: String| AuditError {
        line,
        problem: Problem::Malformed(detail),
    };
    if line <= 1 {
        let header = export::parse_header(bytes).map_err(|e| malformed(format!("header: {e}")))?;
        return Ok(CheckedLine {
            line,
            body: Checked::Header(Box::new(header)),
        });
    }
    let exported = export::parse_entry(bytes).map_err(|e| malformed(e.to_string()))?;
    let entry: JournalEntry =
        serde_json::from_str(&exported.entry).map_err(|e| malformed(format!("entry: {e}")))?;
    if canonical_entry_bytes(&entry) != exported.entry.as_bytes() {
        return Err(malformed(
            "entry: not in canonical form (it is not exactly what was hashed)".into(),
        ));
    }
    let signed = SignedIntent::from_canonical(&exported.intent.body, exported.intent.signature)
        .map_err(|e| malformed(format!("intent: {e}")))?;
    let verdict = judge(exported.position, &exported.intent, signed, &entry);
    Ok(CheckedLine {
        line,
        body: Checked::Entry(Box::new(CheckedEntry {
            position: exported.position,
            entry,
            canonical: exported.entry,
            links: exported.links,
            verdict,
        })),
    })
}

/// Checks a stored entry against the intent stored with it, as [`check_line`] does for an
/// export line (steps 3 and 4 above): the intent parses in canonical form, its signature
/// verifies strictly, and the entry is exactly what it asks for. For a service that checks
/// its own storage at start-up with the auditor's rules.
pub fn check_signed_entry(
    position: u64,
    intent: &ExportIntent,
    entry: &JournalEntry,
) -> Result<(), Problem> {
    let signed = SignedIntent::from_canonical(&intent.body, intent.signature)
        .map_err(|e| Problem::Malformed(format!("intent: {e}")))?;
    judge(position, intent, signed, entry)
}

/// The signature, digest and intent checks of one entry.
fn judge(
    position: u64,
    stored: &ExportIntent,
    signed: SignedIntent,
    entry: &JournalEntry,
) -> Result<(), Problem> {
    let named = signed.intent().signer;
    if stored.signer != named {
        return Err(Problem::SignerMismatch {
            named,
            found: stored.signer,
        });
    }
    let intent_id = signed.intent().intent_id;
    let verified = signed
        .verify_signature()
        .map_err(|_| Problem::BadSignature { signer: named })?;
    let auth = entry.authorisation();
    if auth.digest != verified.digest() {
        return Err(Problem::DigestMismatch { position });
    }
    if auth.signer != named {
        return Err(Problem::SignerMismatch {
            named,
            found: auth.signer,
        });
    }
    let mismatch = |detail: &str| Problem::IntentMismatch {
        position,
        detail: detail.to_owned(),
    };
    if auth.intent_id != intent_id {
        return Err(mismatch("the entry names another intent id"));
    }
    if auth.signature != stored.signature {
        return Err(mismatch("the entry carries another signature"));
    }
    let asked = verified
        .to_entry(entry.id(), entry.created_at())
        .map_err(|e| match e {
            IntentError::Entry(EntryError::Unbalanced { unit, sum }) => {
                Problem::Unbalanced { unit, sum }
            }
            other => mismatch(&format!("the intent asks for no valid entry ({other})")),
        })?;
    if asked.kind() != entry.kind() {
        return Err(mismatch("kind"));
    }
    if asked.postings() != entry.postings() {
        return Err(mismatch("postings (accounts, units or amounts)"));
    }
    if asked.memo() != entry.memo() {
        return Err(mismatch("memo"));
    }
    if asked.tags() != entry.tags() {
        return Err(mismatch("tags"));
    }
    Ok(())
}

/// Totals of one entry kind in one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindTotal {
    /// The kind.
    pub kind: EntryKind,
    /// Entries of this kind touching the unit.
    pub entries: u64,
    /// The sum of their postings' amounts in the unit, in minor units.
    pub amount_minor: i128,
}

/// What the audit found for one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitReport {
    /// The unit, as the header lists it.
    pub unit: ExportUnit,
    /// Where its chain ends (sequence 0 if it has no entries).
    pub head: ChainHead,
    /// Accounts that appear in its postings.
    pub accounts: u64,
    /// Per entry kind that occurs, in [`EntryKind::ALL`] order.
    pub totals: Vec<KindTotal>,
    /// The sum of all balances: always 0 in a report (else the audit fails).
    pub balance_sum: i128,
    /// The sum of the positive balances: what holders, merchants and system accounts hold
    /// (issuers' negative balances mirror it).
    pub positive_balances: i128,
}

/// The verdict on a whole export that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// When the export was taken (ms since the epoch).
    pub exported_at: i64,
    /// Entries verified.
    pub entries: u64,
    /// Every unit of the header, in code order.
    pub units: Vec<UnitReport>,
}

#[derive(Debug)]
struct UnitState {
    unit: ExportUnit,
    /// Counted as the service counts them for its checkpoints.
    totals: UnitTotals,
    accounts: u64,
}

/// The in-order part of an audit: feed it every line's [`CheckedLine`], then [`Audit::finish`].
#[derive(Debug, Default)]
pub struct Audit {
    header: Option<ExportHeader>,
    units: BTreeMap<UnitCode, UnitState>,
    journal: Journal,
    lines: u64,
    entries: u64,
    intents: HashSet<IntentId>,
    balances: HashMap<AccountId, (UnitCode, i128)>,
    /// Every single-posting payment: a fingerprint of (payee, payer, unit) and what is left
    /// to refund. 32 bytes each rather than the whole posting, so ten million fit in memory.
    /// The fingerprint is 64 bits of a SHA-256: a refund that does not mirror its payment
    /// matches it only by finding a collision for that one payment (about 2^64 tries).
    payments: HashMap<EntryId, (u64, i64)>,
    /// Heads recorded from an earlier export or `GET /v1/journal/heads`, not yet met: each
    /// must be a link of this chain, so a chain rewritten or cut short since is caught.
    recorded: HashMap<(UnitCode, u64), Digest>,
    /// Signed checkpoints not yet met: at its sequence number each must match the chain's
    /// hash and the totals recomputed so far.
    checkpoints: HashMap<(UnitCode, u64), Checkpoint>,
}

impl Audit {
    /// A new audit, before the header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Heads recorded earlier, each of which must turn out to be a link of the chain. Two
    /// records of one link with different hashes cannot both hold: that link is the error.
    pub fn expect_heads(&mut self, heads: &[JournalLink]) -> Result<(), (UnitCode, u64)> {
        for link in heads {
            let kept = *self
                .recorded
                .entry((link.unit, link.seq))
                .or_insert(link.hash);
            if kept != link.hash {
                return Err((link.unit, link.seq));
            }
        }
        Ok(())
    }

    /// Signed checkpoints (their signatures checked by the caller), each of which must turn
    /// out to be a link of the chain with the totals recomputed there. Two checkpoints of one
    /// link that disagree cannot both hold: that link is the error. A checkpoint of an empty
    /// chain (sequence 0) holds if it says so: no hash, no totals.
    pub fn expect_checkpoints(
        &mut self,
        checkpoints: &[Checkpoint],
    ) -> Result<(), (UnitCode, u64)> {
        for checkpoint in checkpoints {
            let link = (checkpoint.unit, checkpoint.head.seq);
            if checkpoint.head.seq == 0 {
                if checkpoint.head != ChainHead::default()
                    || checkpoint.totals != UnitTotals::default()
                {
                    return Err(link);
                }
                continue;
            }
            let kept = self.checkpoints.entry(link).or_insert(*checkpoint);
            if kept.head != checkpoint.head || kept.totals != checkpoint.totals {
                return Err(link);
            }
        }
        Ok(())
    }

    /// Checks and adds the next line: [`check_line`] then [`Audit::push`].
    pub fn line(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        let checked = check_line(self.lines.saturating_add(1), bytes)?;
        self.push(checked)
    }

    /// Adds the next line, already checked by [`check_line`] with the next line number.
    pub fn push(&mut self, checked: CheckedLine) -> Result<(), AuditError> {
        let line = checked.line;
        assert_eq!(
            line,
            self.lines.saturating_add(1),
            "lines pushed out of order"
        );
        self.lines = line;
        let fail = |problem| AuditError { line, problem };
        match checked.body {
            Checked::Header(header) => self.start(*header).map_err(fail),
            Checked::Entry(checked) => self.add(*checked).map_err(fail),
        }
    }

    fn start(&mut self, header: ExportHeader) -> Result<(), Problem> {
        for unit in &header.units {
            let state = UnitState {
                unit: unit.clone(),
                totals: UnitTotals::default(),
                accounts: 0,
            };
            if self.units.insert(unit.code, state).is_some() {
                return Err(Problem::Malformed(format!(
                    "header: unit {} is listed twice",
                    unit.code
                )));
            }
        }
        self.header = Some(header);
        Ok(())
    }

    fn add(&mut self, checked: CheckedEntry) -> Result<(), Problem> {
        let expected = self.entries.saturating_add(1);
        if checked.position != expected {
            return Err(Problem::PositionOutOfOrder {
                expected,
                found: checked.position,
            });
        }
        self.link(&checked)?;
        checked.verdict?;
        let entry = checked.entry;
        if !self.intents.insert(entry.authorisation().intent_id) {
            return Err(Problem::DuplicateIntent {
                intent_id: entry.authorisation().intent_id,
            });
        }
        self.refund(&entry)?;
        self.count(&entry)?;
        if !self.checkpoints.is_empty() {
            self.check_checkpoints(&checked.links)?;
        }
        self.entries = expected;
        Ok(())
    }

    /// Compares the checkpoints at the entry's links, now that it is counted.
    fn check_checkpoints(&mut self, links: &[JournalLink]) -> Result<(), Problem> {
        for link in links {
            let Some(checkpoint) = self.checkpoints.remove(&(link.unit, link.seq)) else {
                continue;
            };
            let differs = |what| Problem::CheckpointDiffers {
                unit: link.unit,
                seq: link.seq,
                what,
            };
            if checkpoint.head.hash != link.hash {
                return Err(differs(
                    "another hash: the chain was rewritten at or before it".into(),
                ));
            }
            let totals = self
                .units
                .get(&link.unit)
                .map(|state| state.totals)
                .unwrap_or_default();
            if let Some(what) = first_difference(&checkpoint.totals, &totals) {
                return Err(differs(what));
            }
        }
        Ok(())
    }

    /// Remembers a payment, or checks a refund against its payment as the Book does: it must
    /// move money from the payee back to the payer, in its unit, within what is left.
    fn refund(&mut self, entry: &JournalEntry) -> Result<(), Problem> {
        let [posting] = entry.postings() else {
            return Ok(());
        };
        match (entry.kind(), entry.tags().reverses) {
            (EntryKind::Payment, None) => {
                let print = fingerprint(posting.credit, posting.debit, posting.unit);
                self.payments
                    .insert(entry.id(), (print, posting.amount.minor()));
            }
            (_, Some(payment)) => {
                let bad = |detail| Problem::BadRefund { payment, detail };
                let (print, left) = self
                    .payments
                    .get_mut(&payment)
                    .ok_or(bad("no earlier payment of one posting has that id"))?;
                if *print != fingerprint(posting.debit, posting.credit, posting.unit) {
                    return Err(bad(
                        "it does not move money from the payee back to the payer in the payment's unit",
                    ));
                }
                let requested = posting.amount.minor();
                if requested > *left {
                    return Err(bad("with the earlier refunds it exceeds the payment"));
                }
                *left = left.saturating_sub(requested);
            }
            _ => {}
        }
        Ok(())
    }

    /// The chain checks: links name the entry's units, run on, and hash right.
    fn link(&mut self, checked: &CheckedEntry) -> Result<(), Problem> {
        let expected = checked.entry.units();
        let found: Vec<UnitCode> = checked.links.iter().map(|l| l.unit).collect();
        if expected != found {
            return Err(Problem::WrongLinks { expected, found });
        }
        for link in &checked.links {
            let next = self.journal.head(link.unit).seq.saturating_add(1);
            if link.seq != next {
                return Err(Problem::SequenceOutOfOrder {
                    unit: link.unit,
                    expected: next,
                    found: link.seq,
                });
            }
            let computed = chain_hash(
                &self.journal.head(link.unit).hash,
                checked.canonical.as_bytes(),
            );
            if computed != link.hash {
                return Err(Problem::ChainBreak {
                    unit: link.unit,
                    seq: link.seq,
                    position: checked.position,
                });
            }
            if !self.recorded.is_empty()
                && let Some(recorded) = self.recorded.remove(&(link.unit, link.seq))
                && recorded != link.hash
            {
                return Err(Problem::RecordedHeadDiffers {
                    unit: link.unit,
                    seq: link.seq,
                });
            }
        }
        self.journal
            .append_canonical(&expected, checked.canonical.as_bytes());
        Ok(())
    }

    /// Adds an entry's postings to the balances and its unit totals.
    fn count(&mut self, entry: &JournalEntry) -> Result<(), Problem> {
        let kind = entry.kind();
        for unit in entry.units() {
            let state = self
                .units
                .get_mut(&unit)
                .ok_or(Problem::UnknownUnit { unit })?;
            state.totals.count_entry(kind);
        }
        for posting in entry.postings() {
            let amount = posting.amount.minor();
            let state = self
                .units
                .get_mut(&posting.unit)
                .ok_or(Problem::UnknownUnit { unit: posting.unit })?;
            state.totals.count_posting(kind, amount);
            for (account, delta) in [
                (posting.debit, i128::from(amount).saturating_neg()),
                (posting.credit, i128::from(amount)),
            ] {
                let slot = self.balances.entry(account).or_insert_with(|| {
                    state.accounts = state.accounts.saturating_add(1);
                    (posting.unit, 0)
                });
                if slot.0 != posting.unit {
                    return Err(Problem::AccountInTwoUnits {
                        account,
                        first: slot.0,
                        second: posting.unit,
                    });
                }
                // |amount| < 2^53 and there are fewer than 2^64 postings: i128 cannot overflow.
                let before = slot.1;
                slot.1 = slot.1.saturating_add(delta);
                state.totals.balance_moved(before, slot.1);
            }
        }
        Ok(())
    }

    /// Ends the audit: the file must hold what its header promised.
    pub fn finish(mut self) -> Result<AuditReport, AuditError> {
        let end = self.lines.saturating_add(1);
        let Some(header) = self.header.take() else {
            return Err(AuditError {
                line: 1,
                problem: Problem::Malformed("the file is empty: no header".into()),
            });
        };
        if header.count != self.entries {
            let problem = Problem::CountMismatch {
                stated: header.count,
                found: self.entries,
            };
            return Err(AuditError { line: end, problem });
        }
        self.check_heads(&header.heads, end)?;
        // A recorded head never met is past the end of its unit's chain.
        if let Some((&(unit, seq), _)) = self.recorded.iter().min_by_key(|(key, _)| **key) {
            let problem = Problem::RecordedHeadMissing {
                unit,
                seq,
                end: self.journal.head(unit).seq,
            };
            return Err(AuditError { line: end, problem });
        }
        if let Some((&(unit, seq), _)) = self.checkpoints.iter().min_by_key(|(key, _)| **key) {
            let last = self.journal.head(unit).seq;
            let problem = if last == 0 {
                Problem::CheckpointUnitAbsent { unit, seq }
            } else {
                Problem::CheckpointMissing {
                    unit,
                    seq,
                    end: last,
                }
            };
            return Err(AuditError { line: end, problem });
        }
        let entries = self.entries;
        let units = self
            .into_reports()
            .map_err(|problem| AuditError { line: end, problem })?;
        Ok(AuditReport {
            exported_at: header.exported_at,
            entries,
            units,
        })
    }

    /// Every chain ends where the header says (a problem with the header itself is line 1's).
    fn check_heads(&self, heads: &[JournalLink], end: u64) -> Result<(), AuditError> {
        let header_problem = |problem| AuditError { line: 1, problem };
        let mut units: BTreeMap<UnitCode, (ChainHead, ChainHead)> = BTreeMap::new();
        for link in heads {
            let stated = ChainHead {
                seq: link.seq,
                hash: link.hash,
            };
            if units
                .insert(link.unit, (stated, ChainHead::default()))
                .is_some()
            {
                let detail = format!("header: unit {} has two heads", link.unit);
                return Err(header_problem(Problem::Malformed(detail)));
            }
        }
        for (&unit, &head) in self.journal.heads() {
            units.entry(unit).or_default().1 = head;
        }
        for (unit, (stated, computed)) in units {
            if stated != computed {
                let problem = Problem::HeadMismatch {
                    unit,
                    stated_seq: stated.seq,
                    computed_seq: computed.seq,
                };
                return Err(AuditError { line: end, problem });
            }
            if !self.units.contains_key(&unit) {
                return Err(header_problem(Problem::UnknownUnit { unit }));
            }
        }
        Ok(())
    }

    /// Per unit: totals by kind, accounts, and balances that must sum to zero.
    fn into_reports(self) -> Result<Vec<UnitReport>, Problem> {
        let mut sums: BTreeMap<UnitCode, i128> = BTreeMap::new();
        for &(unit, balance) in self.balances.values() {
            let sum = sums.entry(unit).or_default();
            *sum = sum.saturating_add(balance);
        }
        let mut reports = Vec::with_capacity(self.units.len());
        for (code, state) in self.units {
            let balance_sum = sums.get(&code).copied().unwrap_or_default();
            if balance_sum != 0 {
                return Err(Problem::BalancesDoNotSumToZero {
                    unit: code,
                    sum: balance_sum,
                });
            }
            let totals = state
                .totals
                .kinds()
                .map(|(kind, entries, amount_minor)| KindTotal {
                    kind,
                    entries,
                    amount_minor,
                })
                .collect();
            reports.push(UnitReport {
                unit: state.unit,
                head: self.journal.head(code),
                accounts: state.accounts,
                totals,
                balance_sum,
                positive_balances: state.totals.positive_balances(),
            });
        }
        Ok(reports)
    }
}

/// The first total in which a signed checkpoint and the journal differ, in words; `None` if
/// they agree.
fn first_difference(signed: &UnitTotals, journal: &UnitTotals) -> Option<String> {
    for kind in EntryKind::ALL {
        let (a, b) = (signed.of_kind(kind), journal.of_kind(kind));
        if a != b {
            return Some(format!(
                "{} totals: {} entries and {} minor units signed, {} and {} in the journal",
                kind.as_str(),
                a.0,
                a.1,
                b.0,
                b.1
            ));
        }
    }
    let (a, b) = (signed.positive_balances(), journal.positive_balances());
    (a != b).then(|| format!("positive balances: {a} minor units signed, {b} in the journal"))
}

/// The first 8 bytes of SHA-256(payee ‖ payer ‖ unit): which way a payment went.
fn fingerprint(payee: AccountId, payer: AccountId, unit: UnitCode) -> u64 {
    let mut bytes = Vec::with_capacity(48);
    bytes.extend_from_slice(payee.as_bytes());
    bytes.extend_from_slice(payer.as_bytes());
    bytes.extend_from_slice(unit.as_str().as_bytes());
    let digest = super::Digest::of(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.0[..8]);
    u64::from_le_bytes(first)
}

/// Audits a whole export held in memory (tests, fuzzing; the CLI streams): lines split on
/// `\n`, the final newline optional.
pub fn audit(bytes: &[u8]) -> Result<AuditReport, AuditError> {
    let mut audit = Audit::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if !body.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            audit.line(line)?;
        }
    }
    audit.finish()
}

#[cfg(test)]
mod tests;
