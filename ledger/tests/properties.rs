//! Property tests: random streams of valid and invalid entries never break the Book's
//! invariants, a refused entry changes nothing, and replaying what was applied into a fresh
//! Book reproduces the same balances and the same journal hashes. A Book that forgets old
//! intents and payments (as the service's does), asking storage about them, answers exactly
//! like one that remembers everything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ledger::journal::{Journal, JournalLink};
use ledger::{
    Account, AccountId, AccountKind, AccountStatus, Amount, Authorisation, Balance, Book,
    BookError, Digest, EntryId, EntryKind, IntentId, JournalEntry, Limits, Posting, PublicKey,
    Signature, Tags, Unit, UnitCode, UnitKind,
};
use proptest::prelude::*;
use std::collections::HashMap;

const HOLDERS: usize = 8;
const OPERATOR: PublicKey = PublicKey([200; 32]);

fn holder_key(i: usize) -> PublicKey {
    PublicKey([u8::try_from(i).unwrap(); 32])
}

#[derive(Clone, Debug)]
enum Op {
    Issue {
        to: usize,
        minor: i64,
    },
    Pay {
        from: usize,
        to: usize,
        minor: i64,
    },
    Split {
        from: usize,
        to: [usize; 2],
        minor: [i64; 2],
    },
    Hours {
        from: usize,
        to: usize,
        minor: i64,
    },
    ForgedPay {
        from: usize,
        to: usize,
        minor: i64,
    },
    Replay {
        back: usize,
    },
    Freeze {
        who: usize,
    },
    Unfreeze {
        who: usize,
    },
    /// The forgetful Book forgets everything applied so far.
    Forget,
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..HOLDERS;
    let minor = 1..20_000i64;
    prop_oneof![
        3 => (who.clone(), minor.clone()).prop_map(|(to, minor)| Op::Issue { to, minor }),
        6 => (who.clone(), who.clone(), minor.clone()).prop_map(|(from, to, minor)| Op::Pay { from, to, minor }),
        2 => (who.clone(), who.clone(), who.clone(), minor.clone(), minor.clone())
            .prop_map(|(from, a, b, x, y)| Op::Split { from, to: [a, b], minor: [x, y] }),
        2 => (who.clone(), who.clone(), 1..600i64).prop_map(|(from, to, minor)| Op::Hours { from, to, minor }),
        1 => (who.clone(), who.clone(), minor).prop_map(|(from, to, minor)| Op::ForgedPay { from, to, minor }),
        1 => (0..10usize).prop_map(|back| Op::Replay { back }),
        1 => who.clone().prop_map(|who| Op::Freeze { who }),
        1 => who.prop_map(|who| Op::Unfreeze { who }),
        1 => Just(Op::Forget),
    ]
}

/// What happened to the Book, in order, so a fresh Book can be brought to the same state.
enum Event {
    Applied(Box<JournalEntry>, Vec<JournalLink>),
    Status(AccountId, AccountStatus),
}

struct World {
    book: Book,
    eur: UnitCode,
    hour: UnitCode,
    issuer: AccountId,
    holders: Vec<AccountId>,
    members: Vec<AccountId>,
    accounts: Vec<Account>,
}

fn world() -> World {
    let eur = UnitCode::new("PGI-EUR").unwrap();
    let hour = UnitCode::new("HOUR").unwrap();
    let mut book = Book::new();
    book.add_unit(Unit::new(eur, "Voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap())
        .unwrap();
    book.add_unit(Unit::new(hour, "Hour", 2, UnitKind::MutualCredit, None).unwrap())
        .unwrap();
    let mut accounts = vec![Account::new(eur, AccountKind::Issuer, Some(OPERATOR))];
    for i in 0..HOLDERS {
        // Every third holder has a low ceiling, so credits can fail too.
        let upper = if i % 3 == 0 { Some(30_000) } else { None };
        accounts.push(
            Account::new(eur, AccountKind::Holder, Some(holder_key(i)))
                .with_limits(Limits::new(Some(0), upper).unwrap()),
        );
    }
    for i in 0..HOLDERS {
        accounts.push(
            Account::new(hour, AccountKind::Holder, Some(holder_key(i)))
                .with_limits(Limits::new(Some(-1_000), Some(1_000)).unwrap()),
        );
    }
    for account in &accounts {
        book.open_account(account.clone()).unwrap();
    }
    World {
        book,
        eur,
        hour,
        issuer: accounts[0].id,
        holders: accounts[1..=HOLDERS].iter().map(|a| a.id).collect(),
        members: accounts[HOLDERS + 1..].iter().map(|a| a.id).collect(),
        accounts,
    }
}

fn entry(
    kind: EntryKind,
    signer: PublicKey,
    postings: Vec<(UnitCode, AccountId, AccountId, i64)>,
) -> Option<JournalEntry> {
    let postings = postings
        .into_iter()
        .map(|(unit, debit, credit, minor)| Posting {
            unit,
            debit,
            credit,
            amount: Amount::from_minor(minor).unwrap(),
        })
        .collect();
    let intent_id = IntentId::new();
    let auth = Authorisation {
        intent_id,
        signer,
        digest: Digest::of(intent_id.as_bytes()),
        signature: Signature([0; 64]),
    };
    // Self-transfers are refused at construction; the strategy produces some on purpose.
    JournalEntry::new(
        EntryId::new(),
        kind,
        postings,
        String::new(),
        Tags::default(),
        auth,
        7,
    )
    .ok()
}

/// What storage holds: every applied entry, by intent id and by entry id.
#[derive(Default)]
struct Storage {
    by_intent: HashMap<IntentId, JournalEntry>,
    by_id: HashMap<EntryId, JournalEntry>,
}

impl Storage {
    fn insert(&mut self, entry: &JournalEntry) {
        self.by_intent
            .insert(entry.authorisation().intent_id, entry.clone());
        self.by_id.insert(entry.id(), entry.clone());
    }
}

/// Applies `entry` the way the service does with a Book that forgets: a refund first brings
/// its payment back from storage, and an intent the Book may have forgotten is looked up in
/// storage before it is applied.
fn apply_forgetful(
    book: &mut Book,
    storage: &Storage,
    entry: &JournalEntry,
) -> Result<(), BookError> {
    if let Some(original) = entry.tags().reverses.and_then(|id| storage.by_id.get(&id)) {
        book.restore_payment(
            original.id(),
            original.kind(),
            original.created_at(),
            original.postings(),
        );
    }
    match book.apply(entry) {
        Err(BookError::MaybeApplied(id)) => match storage.by_intent.get(&id) {
            Some(stored) if stored.authorisation().digest == entry.authorisation().digest => {
                Err(BookError::Duplicate {
                    intent_id: id,
                    entry_id: stored.id(),
                })
            }
            Some(_) => Err(BookError::IntentConflict(id)),
            None => book.apply_checked_new(entry),
        },
        other => other,
    }
}

/// A second Book like `world`'s, before anything was applied.
fn twin(world: &World) -> Book {
    let mut book = Book::new();
    for unit in world.book.units() {
        book.add_unit(unit.clone()).unwrap();
    }
    for account in &world.accounts {
        book.open_account(account.clone()).unwrap();
    }
    book
}

fn balances(world: &World) -> Vec<Balance> {
    world.book.accounts().map(|(_, b)| b).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_keep_invariants_and_replay_identically(ops in prop::collection::vec(op(), 1..200)) {
        let mut w = world();
        let mut forgetful = twin(&w);
        let mut storage = Storage::default();
        let mut journal = Journal::new();
        let mut events: Vec<Event> = Vec::new();
        let mut applied: Vec<JournalEntry> = Vec::new();
        for op in ops {
            let (eur, hour) = (w.eur, w.hour);
            let candidate = match op {
                Op::Issue { to, minor } => entry(EntryKind::Issue, OPERATOR, vec![(eur, w.issuer, w.holders[to], minor)]),
                Op::Pay { from, to, minor } => entry(EntryKind::Payment, holder_key(from), vec![(eur, w.holders[from], w.holders[to], minor)]),
                Op::Split { from, to, minor } => entry(EntryKind::Payment, holder_key(from), vec![
                    (eur, w.holders[from], w.holders[to[0]], minor[0]),
                    (eur, w.holders[from], w.holders[to[1]], minor[1]),
                ]),
                Op::Hours { from, to, minor } => entry(EntryKind::TimeExchange, holder_key(from), vec![(hour, w.members[from], w.members[to], minor)]),
                Op::ForgedPay { from, to, minor } => entry(EntryKind::Payment, holder_key((from + 1) % HOLDERS), vec![(eur, w.holders[from], w.holders[to], minor)]),
                Op::Replay { back } => applied.iter().rev().nth(back).cloned(),
                Op::Freeze { who } | Op::Unfreeze { who } => {
                    let status = if matches!(op, Op::Freeze { .. }) { AccountStatus::Frozen } else { AccountStatus::Active };
                    w.book.set_status(w.holders[who], status).unwrap();
                    forgetful.set_status(w.holders[who], status).unwrap();
                    events.push(Event::Status(w.holders[who], status));
                    None
                }
                Op::Forget => {
                    forgetful.forget_before(i64::MAX);
                    None
                }
            };
            let Some(candidate) = candidate else { continue };
            let before = balances(&w);
            let result = w.book.apply(&candidate);
            prop_assert_eq!(&apply_forgetful(&mut forgetful, &storage, &candidate), &result);
            match result {
                Ok(()) => {
                    storage.insert(&candidate);
                    let links = journal.append(&candidate);
                    applied.push(candidate.clone());
                    events.push(Event::Applied(Box::new(candidate), links));
                }
                Err(_) => prop_assert_eq!(balances(&w), before, "a refused entry must change nothing"),
            }
            prop_assert_eq!(w.book.check_invariants(), Ok(()));
        }

        // Replay into a fresh Book with the same accounts.
        let mut fresh = Book::new();
        for unit in w.book.units() {
            fresh.add_unit(unit.clone()).unwrap();
        }
        for account in &w.accounts {
            fresh.open_account(account.clone()).unwrap();
        }
        let mut replayed = Journal::new();
        for event in &events {
            match event {
                Event::Applied(entry, links) => {
                    prop_assert_eq!(fresh.apply(entry), Ok(()));
                    prop_assert_eq!(replayed.verify_append(entry, links), Ok(()));
                }
                Event::Status(id, status) => fresh.set_status(*id, *status).unwrap(),
            }
        }
        let fresh_balances: Vec<Balance> = fresh.accounts().map(|(_, b)| b).collect();
        prop_assert_eq!(&fresh_balances, &balances(&w));
        let forgetful_balances: Vec<Balance> = forgetful.accounts().map(|(_, b)| b).collect();
        prop_assert_eq!(&forgetful_balances, &fresh_balances);
        prop_assert_eq!(forgetful.applied_count(), w.book.applied_count());

        // Loading from storage replays without today's statuses and re-proves the invariants.
        let mut loaded = Book::new();
        for unit in w.book.units() {
            loaded.add_unit(unit.clone()).unwrap();
        }
        for account in &w.accounts {
            loaded.open_account(account.clone()).unwrap();
        }
        for event in &events {
            if let Event::Applied(entry, _) = event {
                prop_assert_eq!(loaded.replay(entry), Ok(()));
            }
        }
        prop_assert_eq!(loaded.check_invariants(), Ok(()));
        let loaded_balances: Vec<Balance> = loaded.accounts().map(|(_, b)| b).collect();
        prop_assert_eq!(loaded_balances, fresh_balances);
        prop_assert_eq!(replayed.heads(), journal.heads());
    }
}

#[derive(Clone, Debug)]
enum RefundOp {
    Issue {
        to: usize,
        minor: i64,
    },
    Pay {
        from: usize,
        to: usize,
        minor: i64,
    },
    /// Refund part of the `which`-th payment so far (modulo their number). `twist` 0 refunds
    /// `minor`, 1 exactly what is left, 2 one more than is left; 3 names the wrong payee, 4 the
    /// wrong payer, 5 signs with the payer's key.
    Refund {
        which: usize,
        minor: i64,
        twist: u8,
    },
    /// The forgetful Book forgets everything applied so far.
    Forget,
}

fn refund_op() -> impl Strategy<Value = RefundOp> {
    let who = 0..HOLDERS;
    prop_oneof![
        2 => (who.clone(), 1..20_000i64).prop_map(|(to, minor)| RefundOp::Issue { to, minor }),
        4 => (who.clone(), who, 1..5_000i64).prop_map(|(from, to, minor)| RefundOp::Pay { from, to, minor }),
        6 => (any::<usize>(), 1..3_000i64, 0..6u8).prop_map(|(which, minor, twist)| RefundOp::Refund { which, minor, twist }),
        1 => Just(RefundOp::Forget),
    ]
}

/// A refund of `payment` as the `refund` action makes it: a reversal linked by its tags.
fn refund_entry(
    payment: EntryId,
    signer: PublicKey,
    unit: UnitCode,
    from: AccountId,
    to: AccountId,
    minor: i64,
) -> Option<JournalEntry> {
    let plain = entry(EntryKind::Reversal, signer, vec![(unit, from, to, minor)])?;
    let tags = Tags {
        reverses: Some(payment),
        ..Tags::default()
    };
    JournalEntry::new(
        EntryId::new(),
        EntryKind::Reversal,
        plain.postings().to_vec(),
        String::new(),
        tags,
        *plain.authorisation(),
        7,
    )
    .ok()
}

/// A committed payment as the test sees it: who paid whom, how much, how much came back.
struct Sale {
    id: EntryId,
    payer: usize,
    payee: usize,
    amount: i64,
    refunded: i64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_partial_refunds_never_exceed_their_payment_and_replay_identically(
        ops in prop::collection::vec(refund_op(), 1..200)
    ) {
        let mut w = world();
        let eur = w.eur;
        let mut forgetful = twin(&w);
        let mut storage = Storage::default();
        let mut sales: Vec<Sale> = Vec::new();
        let mut applied: Vec<JournalEntry> = Vec::new();
        for op in ops {
            let (candidate, sale) = match op {
                RefundOp::Forget => {
                    forgetful.forget_before(i64::MAX);
                    continue;
                }
                RefundOp::Issue { to, minor } => {
                    (entry(EntryKind::Issue, OPERATOR, vec![(eur, w.issuer, w.holders[to], minor)]), None)
                }
                RefundOp::Pay { from, to, minor } => {
                    let pay = entry(EntryKind::Payment, holder_key(from), vec![(eur, w.holders[from], w.holders[to], minor)]);
                    (pay, None)
                }
                RefundOp::Refund { which, minor, twist } => {
                    if sales.is_empty() {
                        continue;
                    }
                    let index = which % sales.len();
                    let sale = &sales[index];
                    let left = sale.amount - sale.refunded;
                    let minor = match twist {
                        1 => left,
                        2 => left + 1,
                        _ => minor,
                    };
                    let (mut payee, mut payer, mut signer) = (sale.payee, sale.payer, holder_key(sale.payee));
                    match twist {
                        3 => payee = (payee + 1) % HOLDERS,
                        4 => payer = (payer + 1) % HOLDERS,
                        5 => signer = holder_key(sale.payer),
                        _ => {}
                    }
                    if twist == 3 {
                        signer = holder_key(payee);
                    }
                    let e = refund_entry(sale.id, signer, eur, w.holders[payee], w.holders[payer], minor);
                    (e, Some((index, twist, minor)))
                }
            };
            let Some(candidate) = candidate else { continue };
            let before = balances(&w);
            let result = w.book.apply(&candidate);
            prop_assert_eq!(&apply_forgetful(&mut forgetful, &storage, &candidate), &result);
            if result.is_ok() {
                storage.insert(&candidate);
            }
            match (&result, sale) {
                (Ok(()), None) if candidate.kind() == EntryKind::Payment => {
                    let p = candidate.postings()[0];
                    let index = |id| w.holders.iter().position(|&h| h == id).unwrap();
                    sales.push(Sale { id: candidate.id(), payer: index(p.debit), payee: index(p.credit), amount: p.amount.minor(), refunded: 0 });
                }
                (Ok(()), Some((index, twist, minor))) => {
                    prop_assert!(twist <= 2, "a twisted refund was accepted: {twist}");
                    sales[index].refunded += minor;
                }
                (Err(e), Some((index, twist, minor))) => {
                    prop_assert_eq!(balances(&w), before.clone(), "a refused refund must change nothing");
                    let left = sales[index].amount - sales[index].refunded;
                    match twist {
                        3 | 4 => prop_assert!(matches!(e, BookError::RefundMismatch { .. }), "{e:?}"),
                        5 => prop_assert!(matches!(e, BookError::NotAuthorised(_)), "{e:?}"),
                        _ if minor > left => prop_assert_eq!(e, &BookError::RefundExceedsPayment { payment: sales[index].id, refundable: left, requested: minor }),
                        // An honest refund within the payment fails only for want of funds or room.
                        _ => prop_assert!(matches!(e, BookError::InsufficientFunds { .. } | BookError::LimitExceeded { .. }), "{e:?}"),
                    }
                }
                _ => {}
            }
            if result.is_ok() {
                applied.push(candidate);
            } else {
                prop_assert_eq!(balances(&w), before);
            }
            for sale in &sales {
                prop_assert!(sale.refunded <= sale.amount);
                prop_assert_eq!(w.book.refundable(sale.id).map(Amount::minor), Some(sale.amount - sale.refunded));
                if forgetful.knows_payment(sale.id) {
                    prop_assert_eq!(forgetful.refundable(sale.id), w.book.refundable(sale.id));
                }
            }
            prop_assert_eq!(forgetful.accounts().map(|(_, b)| b).collect::<Vec<_>>(), balances(&w));
            prop_assert_eq!(w.book.check_invariants(), Ok(()));
        }

        // Loading from storage (replay) and re-applying both rebuild what is left to refund.
        let fresh = || {
            let mut book = Book::new();
            for unit in w.book.units() {
                book.add_unit(unit.clone()).unwrap();
            }
            for account in &w.accounts {
                book.open_account(account.clone()).unwrap();
            }
            book
        };
        let (mut loaded, mut reapplied) = (fresh(), fresh());
        for e in &applied {
            prop_assert_eq!(loaded.replay(e), Ok(()));
            prop_assert_eq!(reapplied.apply(e), Ok(()));
        }
        for book in [&loaded, &reapplied] {
            prop_assert_eq!(book.check_invariants(), Ok(()));
            prop_assert_eq!(book.accounts().map(|(_, b)| b).collect::<Vec<_>>(), balances(&w));
            for sale in &sales {
                prop_assert_eq!(book.refundable(sale.id), w.book.refundable(sale.id));
            }
        }
    }
}
