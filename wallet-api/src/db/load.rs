//! Start-up: rebuild the Book and the journal heads from storage and prove them sound.
//! Every entry is replayed in commit order, every journal hash recomputed, and at the end the
//! invariants are checked over all balances. With the deployment's checkpoint key, storage is
//! also held to the newest checkpoint signed with it; entries after that checkpoint are
//! checked against their signed intents by the auditor's rules, and entries before it against
//! their intents' digests (see [`LoadOptions`]). Any failure refuses the start.

use std::collections::BTreeMap;

use ledger::journal::audit;
use ledger::journal::checkpoint::SignedCheckpoint;
use ledger::journal::export::ExportIntent;
use ledger::journal::{ChainHead, Journal};
use ledger::{AccountStatus, Book, JournalEntry, PaymentRequestId, PublicKey, UnitCode};

use super::rows::PaidRequest;
use super::{ChainHeads, LoadError, LoadOptions, LoadSource, PostingLinks};
use crate::view::ViewState;

/// Entries read per query while loading; bounds memory whatever the journal's size.
const LOAD_PAGE_ENTRIES: i64 = 10_000;

/// A verified ledger.
pub struct Loaded {
    /// Balances and rules.
    pub book: Book,
    /// The head of each unit's chain.
    pub journal: Journal,
    /// The highest committed position (0 when empty).
    pub last_position: i64,
    /// The read model of the same state, for the committer to hand to the view.
    pub view: ViewState,
    /// Each account's latest position, which the writer links its next entry to.
    pub heads: ChainHeads,
    /// The most intents the Book remembered whole at once during the load: the load's
    /// memory peak follows it.
    pub peak_remembered: usize,
    /// Entries checked against their signed intents (those after the latest checkpoints).
    pub signatures_checked: u64,
}

/// Loads and verifies the ledger (see [`LoadOptions`]). Storage that lacks what this process
/// acknowledged (a lagging or stale server after a failover, a restored backup) is refused
/// rather than silently dropping entries whose submitters were told they were durable.
pub(super) async fn load(
    source: &mut impl LoadSource,
    options: &LoadOptions,
) -> Result<Loaded, LoadError> {
    let LoadOptions {
        now_ms,
        forget_before_ms,
        forget_every,
        ref acknowledged,
        checkpoint_key,
        verify_signatures,
    } = *options;
    let mut book = Book::new();
    let mut view = ViewState::default();
    for unit in source.units().await? {
        view.add_unit(unit.clone());
        book.add_unit(unit).map_err(|source| LoadError::Book {
            position: 0,
            source,
        })?;
    }
    // Replay against active accounts; today's statuses are restored afterwards, since an
    // account frozen today may well have paid last month.
    let accounts = source.accounts().await?;
    let mut statuses = Vec::new();
    for (mut account, owner) in accounts {
        view.add_account(account.clone(), owner);
        if account.status != AccountStatus::Active {
            statuses.push((account.id, account.status));
            account.status = AccountStatus::Active;
        }
        book.open_account(account)
            .map_err(|source| LoadError::Book {
                position: 0,
                source,
            })?;
    }

    // Programme rules before the replay, which counts holders' spending toward their caps.
    for (unit, policy) in source.policies().await? {
        book.set_policy(unit, policy)
            .map_err(|source| LoadError::Book {
                position: 0,
                source,
            })?;
    }
    for (account, category) in source.payees().await? {
        book.set_payee(account, Some(category))
            .map_err(|source| LoadError::Book {
                position: 0,
                source,
            })?;
    }
    // Cards replaced while empty have no entry that says so: the links come from the card
    // records, before the replay counts the households' spending on their current cards.
    for (old, new) in source.card_replacements().await? {
        book.link_replacement(old, new)
            .map_err(|source| LoadError::CardReplacement { old, new, source })?;
    }

    // Which entry (by position) paid which request still payable; positions only grow, so a
    // sorted list is consumed in step with the replay.
    let mut paid = source.paid_requests(now_ms).await?;
    paid.sort_unstable_by_key(|&(_, position, _)| std::cmp::Reverse(position));
    let links = source.links().await?;
    let stored_checkpoints = match checkpoint_key {
        Some(key) => stored_checkpoints(source, key).await?,
        None => StoredCheckpoints::default(),
    };
    let signed = &stored_checkpoints.anchors;
    // Entries from here on are checked against their signed intents: the first one with a
    // link past its unit's checkpoint (links come in position order).
    let check_from = verify_signatures
        .then(|| {
            links
                .iter()
                .find(|(_, link)| signed.get(&link.unit).is_none_or(|h| link.seq > h.seq))
                .map(|&(position, _)| position)
        })
        .flatten();
    let mut signatures_checked = 0u64;
    // The last position replayed: positions run 1, 2, 3…
    let mut replayed = 0i64;
    let mut next_link = 0usize;
    let mut journal = Journal::new();
    let mut heads = ChainHeads::default();
    let last_position = source.max_position().await?;
    let mut after = 0i64;
    let mut peak_remembered = 0usize;
    while after < last_position {
        let up_to = after.saturating_add(LOAD_PAGE_ENTRIES).min(last_position);
        let stored_links = source.posting_links(after, up_to).await?;
        let mut intents = source.intent_bodies(after, up_to).await?.into_iter();
        let mut to_check = Vec::new();
        let mut next_posting = 0usize;
        for (position, entry) in source.entries(after, up_to).await? {
            let entry = entry.map_err(|source| LoadError::Entry { position, source })?;
            book.replay(&entry)
                .map_err(|source| LoadError::Book { position, source })?;
            if let Some(&(at, _)) = links.get(next_link)
                && at < position
            {
                return Err(LoadError::OrphanRow {
                    table: "journal",
                    position: at,
                });
            }
            if let Some(&(at, _)) = stored_links.get(next_posting)
                && at < position
            {
                return Err(LoadError::OrphanRow {
                    table: "posting",
                    position: at,
                });
            }
            // Positions run on without a gap (as the auditor requires): an entry row whose
            // postings were removed would otherwise be passed over unseen.
            let expected_position = replayed.saturating_add(1);
            if position != expected_position {
                return Err(LoadError::MissingEntry {
                    position: expected_position,
                });
            }
            replayed = position;
            let start = next_link;
            while next_link < links.len() && links[next_link].0 == position {
                next_link = next_link.saturating_add(1);
            }
            let own: Vec<_> = links[start..next_link].iter().map(|(_, l)| *l).collect();
            journal
                .verify_append(&entry, &own)
                .map_err(|source| LoadError::Chain { position, source })?;
            holds(acknowledged, &own, |unit, seq| {
                LoadError::DivergedFromAcknowledged { unit, seq }
            })?;
            holds(signed, &own, |unit, seq| LoadError::CheckpointDiverged {
                unit,
                seq,
            })?;
            let mut remembered = book.remembered_intents().0;
            if let Some(before) = forget_before_ms
                && remembered >= forget_every
            {
                book.forget_before(before);
                remembered = book.remembered_intents().0;
            }
            peak_remembered = peak_remembered.max(remembered);
            let request = take_request_paid_at(&mut paid, position);
            view.record(position, &entry, request);
            // The links statements walk are checked like the hash chain: a row without them
            // (written by a process that predates migration 0006) or with altered ones would
            // make statements skip entries silently.
            let expected = heads.append(position, entry.postings());
            let end = next_posting.saturating_add(expected.len());
            let stored: Vec<PostingLinks> = stored_links
                .get(next_posting..end)
                .unwrap_or_default()
                .iter()
                .filter(|(at, _)| *at == position)
                .map(|(_, links)| *links)
                .collect();
            if stored != expected {
                return Err(LoadError::PostingLinks {
                    position,
                    stored,
                    expected,
                });
            }
            next_posting = end;
            // The intent stored with the entry: read from the same rows, so one per entry.
            let body = match intents.next() {
                Some((at, body)) if at == position => body,
                _ => return Err(LoadError::MissingEntry { position }),
            };
            if check_from.is_some_and(|from| position >= from) {
                to_check.push((position, entry, body));
            } else if ledger::intent::signed_digest(&body) != entry.authorisation().digest {
                // Vouched for by a checkpoint, but the intent beside it is not hashed into the
                // chain: it must still be the one whose digest the entry carries.
                return Err(LoadError::Unsigned {
                    position,
                    problem: audit::Problem::DigestMismatch {
                        position: u64::try_from(position).unwrap_or_default(),
                    },
                });
            }
        }
        signatures_checked = signatures_checked.saturating_add(to_check.len() as u64);
        check_signatures(to_check).await?;
        if let Some(&(at, _)) = stored_links.get(next_posting) {
            return Err(LoadError::OrphanRow {
                table: "posting",
                position: at,
            });
        }
        after = up_to;
    }
    if replayed < last_position {
        return Err(LoadError::MissingEntry {
            position: replayed.saturating_add(1),
        });
    }
    // Pages read only positions 1..=last_position; a posting row outside them names no entry.
    if let Some((lowest, highest)) = source.posting_positions().await? {
        for position in [lowest, highest] {
            if !(1..=last_position).contains(&position) {
                return Err(LoadError::OrphanRow {
                    table: "posting",
                    position,
                });
            }
        }
    }
    if next_link != links.len() {
        return Err(LoadError::LinkCount {
            links: links.len(),
            expected: next_link,
        });
    }
    for (id, status) in statuses {
        book.set_status(id, status)
            .map_err(|source| LoadError::Book {
                position: 0,
                source,
            })?;
    }
    for (&unit, head) in acknowledged {
        let stored = journal.head(unit).seq;
        if stored < head.seq {
            return Err(LoadError::LostAcknowledged {
                unit,
                acknowledged: head.seq,
                stored,
            });
        }
    }
    for (&unit, &checkpointed) in &stored_checkpoints.newest {
        let stored = journal.head(unit).seq;
        if stored < checkpointed {
            return Err(LoadError::CheckpointBeyondJournal {
                unit,
                checkpointed,
                stored,
            });
        }
    }
    book.check_invariants()?;
    for (account, balance) in book.accounts() {
        view.set_balance(account.id, balance);
    }
    // Only requests still payable were read: the view answers for those, storage for the
    // rest (and the writer, which starts from this view, refuses those as expired).
    view.forget_paid_past(now_ms);
    view.set_chain_heads(journal.heads().iter().map(|(&unit, &head)| (unit, head)));
    Ok(Loaded {
        book,
        journal,
        last_position,
        view,
        heads,
        peak_remembered,
        signatures_checked,
    })
}

/// Refuses an entry whose link takes the place of a known head (acknowledged, or signed in
/// a checkpoint) with another hash, with the error `diverged` makes.
fn holds(
    known: &BTreeMap<UnitCode, ChainHead>,
    links: &[ledger::JournalLink],
    diverged: impl Fn(UnitCode, u64) -> LoadError,
) -> Result<(), LoadError> {
    for link in links {
        if let Some(head) = known.get(&link.unit)
            && head.seq == link.seq
            && head.hash != link.hash
        {
            return Err(diverged(link.unit, link.seq));
        }
    }
    Ok(())
}

/// What the stored checkpoints say, once each read has verified its signature.
#[derive(Default)]
struct StoredCheckpoints {
    /// Per unit, the newest checkpoint signed with this deployment's key: the head the
    /// journal must hold.
    anchors: BTreeMap<UnitCode, ChainHead>,
    /// Per unit, the highest sequence number any stored checkpoint states: the journal must
    /// reach it, whoever signed it (the service stores none the journal does not hold).
    newest: BTreeMap<UnitCode, u64>,
}

/// Checkpoints read per query while looking for one signed with this deployment's key.
const CHECKPOINTS_PER_READ: i64 = 100;

/// How many of a unit's newest checkpoints are looked at for one signed with this
/// deployment's key: after a new secret, the old key's until the first start signs anew.
const CHECKPOINTS_SEARCHED: usize = 1_000;

/// Reads, per unit, the stored checkpoints from the newest down to the first one signed with
/// `key` (at most [`CHECKPOINTS_SEARCHED`]), each of which must verify. One signed with
/// another key (a new server secret, or a row someone added) vouches for nothing: it is
/// passed over, so no row can stand in front of the service's own checkpoint.
async fn stored_checkpoints(
    source: &mut impl LoadSource,
    key: PublicKey,
) -> Result<StoredCheckpoints, LoadError> {
    let mut stored = StoredCheckpoints::default();
    for unit in source.checkpoint_units().await? {
        let untrusted = |reason: String| LoadError::CheckpointUntrusted {
            unit: unit.clone(),
            reason,
        };
        let mut below = i64::MAX;
        let mut passed_over = 0usize;
        'search: while passed_over < CHECKPOINTS_SEARCHED {
            let page = source
                .checkpoints_below(&unit, below, CHECKPOINTS_PER_READ)
                .await?;
            if page.is_empty() {
                break;
            }
            for (seq, body) in page {
                below = seq;
                let value: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|e| untrusted(format!("sequence {seq} is not JSON ({e})")))?;
                let signed =
                    SignedCheckpoint::from_json(&value).map_err(|e| untrusted(e.to_string()))?;
                let checkpoint = signed.checkpoint;
                if checkpoint.unit.as_str() != unit
                    || i64::try_from(checkpoint.head.seq).ok() != Some(seq)
                {
                    return Err(untrusted(format!(
                        "the row of sequence {seq} holds a checkpoint of {} sequence {}",
                        checkpoint.unit, checkpoint.head.seq
                    )));
                }
                signed.verify().map_err(|e| untrusted(e.to_string()))?;
                stored
                    .newest
                    .entry(checkpoint.unit)
                    .or_insert(checkpoint.head.seq);
                if signed.key == key {
                    stored.anchors.insert(checkpoint.unit, checkpoint.head);
                    break 'search;
                }
                passed_over = passed_over.saturating_add(1);
                if passed_over >= CHECKPOINTS_SEARCHED {
                    break 'search;
                }
            }
        }
        if passed_over > 0 {
            // A new server secret (a rotation, or a restore without the old one), or rows
            // someone added: they vouch for nothing this process can trust.
            tracing::warn!(
                unit,
                passed_over,
                this_key = %key.to_base64url(),
                anchored = stored.anchors.keys().any(|u| u.as_str() == unit),
                "checkpoints of the unit signed with another key than this server secret's \
                 were passed over (a new secret?); entries after the newest one signed with \
                 this key (every entry, if none) are checked signature by signature"
            );
        }
    }
    Ok(stored)
}

/// Checks each entry against the intent stored with it (the auditor's check, see
/// [`audit::check_signed_entry`]) on every core and off the async threads: a signature
/// takes tens of microseconds. Refuses with the first entry (by position) that fails.
async fn check_signatures(entries: Vec<(i64, JournalEntry, String)>) -> Result<(), LoadError> {
    let Some(&(first, _, _)) = entries.first() else {
        return Ok(());
    };
    let stopped = |position: i64| LoadError::SignatureCheckStopped { position };
    let failed = tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let part = entries.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = entries
                .chunks(part)
                .map(|part| (part[0].0, scope.spawn(move || first_unsigned(part))))
                .collect();
            parts
                .into_iter()
                .filter_map(|(first, handle)| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Some((first, stopped(first))))
                })
                .min_by_key(|&(position, _)| position)
        })
    })
    .await
    .map_err(|_| stopped(first))?;
    failed.map_or(Ok(()), |(_, error)| Err(error))
}

/// The first of `entries` that is not what its stored intent signed.
fn first_unsigned(entries: &[(i64, JournalEntry, String)]) -> Option<(i64, LoadError)> {
    entries.iter().find_map(|(position, entry, body)| {
        let auth = entry.authorisation();
        let intent = ExportIntent {
            body: body.clone(),
            signature: auth.signature,
            signer: auth.signer,
        };
        let at = u64::try_from(*position).unwrap_or(0);
        audit::check_signed_entry(at, &intent, entry)
            .err()
            .map(|problem| {
                (
                    *position,
                    LoadError::Unsigned {
                        position: *position,
                        problem,
                    },
                )
            })
    })
}

/// The request paid by the entry at `position`, with how long to keep it, from a list
/// sorted by descending position.
fn take_request_paid_at(
    paid: &mut Vec<PaidRequest>,
    position: i64,
) -> Option<(PaymentRequestId, Option<i64>)> {
    match paid.last() {
        Some(&(request, at, deadline)) if at == position => {
            paid.pop();
            Some((request, deadline))
        }
        _ => None,
    }
}
