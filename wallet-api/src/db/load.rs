//! Start-up: rebuild the Book and the journal heads from storage and prove them sound.
//! Every entry is replayed in commit order, every journal hash recomputed, and at the end the
//! invariants are checked over all balances. Any failure refuses the start.

use ledger::journal::Journal;
use ledger::{AccountStatus, Book};

use super::{LoadError, LoadSource};

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
}

pub(super) async fn load(source: &mut impl LoadSource) -> Result<Loaded, LoadError> {
    let mut book = Book::new();
    for unit in source.units().await? {
        book.add_unit(unit).map_err(|source| LoadError::Book {
            position: 0,
            source,
        })?;
    }
    // Replay against active accounts; today's statuses are restored afterwards, since an
    // account frozen today may well have paid last month.
    let accounts = source.accounts().await?;
    let mut statuses = Vec::new();
    for mut account in accounts {
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

    let links = source.links().await?;
    let mut next_link = 0usize;
    let mut journal = Journal::new();
    let last_position = source.max_position().await?;
    let mut after = 0i64;
    while after < last_position {
        let up_to = after.saturating_add(LOAD_PAGE_ENTRIES).min(last_position);
        for (position, entry) in source.entries(after, up_to).await? {
            let entry = entry.map_err(|source| LoadError::Entry { position, source })?;
            book.replay(&entry)
                .map_err(|source| LoadError::Book { position, source })?;
            let start = next_link;
            while next_link < links.len() && links[next_link].0 == position {
                next_link = next_link.saturating_add(1);
            }
            let own: Vec<_> = links[start..next_link].iter().map(|(_, l)| *l).collect();
            journal
                .verify_append(&entry, &own)
                .map_err(|source| LoadError::Chain { position, source })?;
        }
        after = up_to;
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
    book.check_invariants()?;
    Ok(Loaded {
        book,
        journal,
        last_position,
    })
}
