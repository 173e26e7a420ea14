#![allow(clippy::arithmetic_side_effects)] // test fixtures; the code under test is checked

use ed25519_dalek::SigningKey;
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::amount::Amount;
use crate::canonical::to_canonical_bytes;
use crate::entry::{Leg, Tags};
use crate::ids::EntryId;
use crate::intent::{Action, Intent};
use crate::journal::checkpoint::Checkpoint;
use crate::journal::export::{ExportHeader, ExportIntent, ExportUnit, FORMAT, VERSION};
use crate::unit::UnitKind;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn eur() -> UnitCode {
    UnitCode::new("PGI-EUR").unwrap()
}

fn pts() -> UnitCode {
    UnitCode::new("BZ-PTS").unwrap()
}

fn account(n: u8) -> AccountId {
    AccountId(Uuid::from_bytes([n; 16]))
}

const ISSUER: u8 = 1;
const HOLDER: u8 = 2;
const SHOP: u8 = 3;
const CLEARING: u8 = 5;
const FEE: u8 = 6;
const PTS_ISSUER: u8 = 11;
const PTS_HOLDER: u8 = 12;
const PTS_SINK: u8 = 13;

fn leg(n: u8, unit: UnitCode, delta: i64) -> Leg {
    Leg {
        account: account(n),
        unit,
        delta,
    }
}

fn sign(key: &SigningKey, action: Action) -> SignedIntent {
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after: 2_000_000_000,
        signer: PublicKey::of(key),
        action,
    };
    SignedIntent::sign(intent, key).unwrap()
}

fn entry_action(kind: EntryKind, legs: Vec<Leg>, memo: &str) -> Action {
    Action::Entry {
        kind,
        legs,
        memo: memo.into(),
        tags: Tags::default(),
    }
}

fn payment(from: u8, to: u8, minor: i64, memo: &str) -> Action {
    Action::Payment {
        from: account(from),
        to: account(to),
        unit: eur(),
        amount_minor: Amount::from_minor(minor).unwrap(),
        memo: memo.into(),
        request: None,
    }
}

/// An exported entry before it is chained: the entry's text and the stored intent.
#[derive(Clone)]
struct Item {
    entry: String,
    intent: ExportIntent,
}

fn stored(signed: &SignedIntent) -> ExportIntent {
    ExportIntent {
        body: signed.canonical().to_owned(),
        signature: *signed.signature(),
        signer: signed.intent().signer,
    }
}

fn text(entry: &JournalEntry) -> String {
    String::from_utf8(canonical_entry_bytes(entry)).unwrap()
}

/// What the service commits for a signed intent.
fn honest(signed: &SignedIntent, created_at: i64) -> Item {
    let entry = signed
        .clone()
        .verify_signature()
        .unwrap()
        .to_entry(EntryId::new(), created_at)
        .unwrap();
    Item {
        entry: text(&entry),
        intent: stored(signed),
    }
}

/// A small ledger in two units: issuance, a payment, a conversion, a redemption with a fee.
fn scenario() -> Vec<Item> {
    let (operator, holder, shop) = (key(1), key(2), key(3));
    let actions = [
        (
            &operator,
            entry_action(
                EntryKind::Issue,
                vec![leg(ISSUER, eur(), -10_000), leg(HOLDER, eur(), 10_000)],
                "monthly",
            ),
        ),
        (&holder, payment(HOLDER, SHOP, 1_250, "pan y leche")),
        (
            &operator,
            entry_action(
                EntryKind::Issue,
                vec![leg(PTS_ISSUER, pts(), -500), leg(PTS_HOLDER, pts(), 500)],
                "",
            ),
        ),
        (
            &operator,
            entry_action(
                EntryKind::Convert,
                vec![
                    leg(PTS_HOLDER, pts(), -200),
                    leg(PTS_SINK, pts(), 200),
                    leg(ISSUER, eur(), -100),
                    leg(HOLDER, eur(), 100),
                ],
                "points to vouchers",
            ),
        ),
        (
            &shop,
            entry_action(
                EntryKind::Redeem,
                vec![
                    leg(SHOP, eur(), -1_000),
                    leg(CLEARING, eur(), 950),
                    leg(FEE, eur(), 50),
                ],
                "",
            ),
        ),
    ];
    actions
        .into_iter()
        .enumerate()
        .map(|(i, (k, action))| honest(&sign(k, action), 1_795_305_600_000 + i as i64))
        .collect()
}

fn units() -> Vec<ExportUnit> {
    vec![
        ExportUnit {
            code: pts(),
            kind: UnitKind::Points,
            name: "Puntos".into(),
            scale: 0,
        },
        ExportUnit {
            code: eur(),
            kind: UnitKind::Voucher,
            name: "Vale €".into(),
            scale: 2,
        },
    ]
}

/// Chains `items` (whatever their entries say, the links hash right: a forger's view) and
/// writes the export, one string per line.
fn export(items: &[Item]) -> Vec<String> {
    let mut journal = Journal::new();
    let mut body = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry: JournalEntry = serde_json::from_str(&item.entry).unwrap();
        let links = journal.append_canonical(&entry.units(), item.entry.as_bytes());
        export::write_entry(&mut body, i as u64 + 1, &item.entry, &item.intent, &links);
    }
    let mut heads: Vec<JournalLink> = journal
        .heads()
        .iter()
        .map(|(&unit, head)| JournalLink {
            unit,
            seq: head.seq,
            hash: head.hash,
        })
        .collect();
    heads.sort_by_key(|l| l.unit);
    let header = ExportHeader {
        count: items.len() as u64,
        exported_at: 1_795_400_000_000,
        format: FORMAT.into(),
        heads,
        units: units(),
        version: VERSION,
    };
    let mut out = Vec::new();
    export::write_header(&mut out, &header);
    out.extend_from_slice(&body);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn run(lines: &[String]) -> Result<AuditReport, AuditError> {
    audit(format!("{}\n", lines.join("\n")).as_bytes())
}

fn problem_at(lines: &[String]) -> (u64, Problem) {
    let error = run(lines).unwrap_err();
    (error.line, error.problem)
}

/// Rewrites line `line` (0-based index into the lines) through its JSON.
fn edit_line(lines: &mut [String], index: usize, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&lines[index]).unwrap();
    edit(&mut value);
    lines[index] = value.to_string();
}

/// Rewrites the entry inside a line, keeping it canonical (so only its content changes).
fn edit_entry(lines: &mut [String], index: usize, edit: impl FnOnce(&mut Value)) {
    edit_line(lines, index, |line| {
        let mut entry: Value = serde_json::from_str(line["entry"].as_str().unwrap()).unwrap();
        edit(&mut entry);
        let canonical = String::from_utf8(to_canonical_bytes(&entry).unwrap()).unwrap();
        line["entry"] = Value::String(canonical);
    });
}

fn bump_amount(entry: &mut Value) {
    let amount = entry["postings"][0]["amount"].as_i64().unwrap();
    entry["postings"][0]["amount"] = Value::from(amount + 1);
}

#[test]
fn an_honest_export_verifies_with_totals_per_unit() {
    let report = run(&export(&scenario())).unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(report.exported_at, 1_795_400_000_000);
    let [points, euros] = &report.units[..] else {
        panic!("{report:?}")
    };
    assert_eq!(euros.unit.code, eur());
    assert_eq!(euros.head.seq, 4);
    assert_eq!(euros.accounts, 5);
    let total = |unit: &UnitReport, kind| {
        unit.totals
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| (t.entries, t.amount_minor))
    };
    assert_eq!(total(euros, EntryKind::Issue), Some((1, 10_000)));
    assert_eq!(total(euros, EntryKind::Payment), Some((1, 1_250)));
    assert_eq!(total(euros, EntryKind::Convert), Some((1, 100)));
    assert_eq!(total(euros, EntryKind::Redeem), Some((1, 1_000)));
    assert_eq!(total(euros, EntryKind::Expire), None);
    assert_eq!(euros.balance_sum, 0);
    assert_eq!(euros.positive_balances, 8_850 + 250 + 950 + 50);
    assert_eq!(points.head.seq, 2);
    assert_eq!(points.accounts, 3);
    assert_eq!(total(points, EntryKind::Issue), Some((1, 500)));
    assert_eq!(total(points, EntryKind::Convert), Some((1, 200)));
    assert_eq!(points.positive_balances, 300 + 200);
}

#[test]
fn export_lines_are_canonical_json_and_read_back() {
    let items = scenario();
    let lines = export(&items);
    for line in &lines {
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            &String::from_utf8(to_canonical_bytes(&value).unwrap()).unwrap(),
            line
        );
    }
    let read = export::parse_entry(lines[2].as_bytes()).unwrap();
    assert_eq!(read.position, 2);
    assert_eq!(read.entry, items[1].entry);
    assert_eq!(read.intent, items[1].intent);
    assert_eq!(read.links.len(), 1);
    let header = export::parse_header(lines[0].as_bytes()).unwrap();
    assert_eq!(header.count, 5);
    assert_eq!(header.units, units());
}

#[test]
fn an_empty_ledger_exports_and_verifies() {
    let lines = export(&[]);
    let report = run(&lines).unwrap();
    assert_eq!(report.entries, 0);
    assert_eq!(report.units.len(), 2);
    assert!(report.units.iter().all(|u| u.totals.is_empty()));
}

#[test]
fn a_changed_amount_breaks_the_chain_at_its_line() {
    let mut lines = export(&scenario());
    edit_entry(&mut lines, 2, bump_amount);
    assert_eq!(
        problem_at(&lines),
        (
            3,
            Problem::ChainBreak {
                unit: eur(),
                seq: 2,
                position: 2
            }
        )
    );
}

#[test]
fn a_changed_memo_breaks_the_chain() {
    let mut lines = export(&scenario());
    edit_entry(&mut lines, 5, |e| e["memo"] = Value::from("cambiado"));
    assert_eq!(
        problem_at(&lines),
        (
            6,
            Problem::ChainBreak {
                unit: eur(),
                seq: 4,
                position: 5
            }
        )
    );
}

#[test]
fn a_changed_hash_breaks_the_chain() {
    let mut lines = export(&scenario());
    edit_line(&mut lines, 4, |l| {
        l["links"][1]["hash"] = Value::from("00".repeat(32));
    });
    assert_eq!(
        problem_at(&lines),
        (
            5,
            Problem::ChainBreak {
                unit: eur(),
                seq: 3,
                position: 4
            }
        )
    );
}

#[test]
fn a_changed_signature_is_a_bad_signature() {
    let items = scenario();
    let mut lines = export(&items);
    let other = sign(&key(2), payment(HOLDER, SHOP, 1, ""));
    edit_line(&mut lines, 2, |l| {
        l["intent"]["signature"] = Value::from(other.signature().to_base64url());
    });
    assert_eq!(
        problem_at(&lines),
        (
            3,
            Problem::BadSignature {
                signer: PublicKey::of(&key(2))
            }
        )
    );
}

#[test]
fn a_changed_intent_is_a_bad_signature() {
    let mut lines = export(&scenario());
    edit_line(&mut lines, 2, |l| {
        let body = l["intent"]["body"]
            .as_str()
            .unwrap()
            .replace("1250", "9250");
        l["intent"]["body"] = Value::from(body);
    });
    assert!(matches!(
        problem_at(&lines),
        (3, Problem::BadSignature { .. })
    ));
}

#[test]
fn one_stored_entry_is_checked_against_its_intent_alone() {
    let signed = sign(&key(2), payment(HOLDER, SHOP, 12_50, "bread"));
    let entry = signed
        .clone()
        .verify_signature()
        .unwrap()
        .to_entry(EntryId::new(), 1_000)
        .unwrap();
    let intent = stored(&signed);
    assert_eq!(check_signed_entry(7, &intent, &entry), Ok(()));

    // The entry moved another amount than was signed (and was rechained to match).
    let mut postings = entry.postings().to_vec();
    postings[0].amount = Amount::from_minor(99_00).unwrap();
    let altered = JournalEntry::new(
        entry.id(),
        entry.kind(),
        postings,
        entry.memo().to_owned(),
        entry.tags().clone(),
        *entry.authorisation(),
        entry.created_at(),
    )
    .unwrap();
    assert!(matches!(
        check_signed_entry(7, &intent, &altered),
        Err(Problem::IntentMismatch { position: 7, .. })
    ));

    // The stored intent was edited: its signature no longer verifies.
    let mut edited = intent.clone();
    edited.body = edited.body.replace("1250", "9250");
    assert!(matches!(
        check_signed_entry(7, &edited, &entry),
        Err(Problem::BadSignature { .. })
    ));

    // Not even an intent.
    edited.body = "{}".into();
    assert!(matches!(
        check_signed_entry(7, &edited, &entry),
        Err(Problem::Malformed(_))
    ));
}

#[test]
fn swapped_lines_are_out_of_order() {
    let mut lines = export(&scenario());
    lines.swap(2, 3);
    assert_eq!(
        problem_at(&lines),
        (
            3,
            Problem::PositionOutOfOrder {
                expected: 2,
                found: 3
            }
        )
    );
}

#[test]
fn a_missing_line_is_out_of_order_and_renumbering_breaks_the_chain() {
    let mut lines = export(&scenario());
    lines.remove(2);
    assert_eq!(
        problem_at(&lines),
        (
            3,
            Problem::PositionOutOfOrder {
                expected: 2,
                found: 3
            }
        )
    );
    // Positions renumbered: the unit's sequence shows the gap.
    for (index, line) in lines.iter_mut().enumerate().skip(2) {
        let mut value: Value = serde_json::from_str(line).unwrap();
        value["position"] = Value::from(index);
        *line = value.to_string();
    }
    assert_eq!(
        problem_at(&lines),
        (
            4,
            Problem::SequenceOutOfOrder {
                unit: eur(),
                expected: 2,
                found: 3
            }
        )
    );
    // Sequences renumbered too: the stated hashes no longer chain.
    edit_line(&mut lines, 3, |l| l["links"][1]["seq"] = Value::from(2));
    assert_eq!(
        problem_at(&lines),
        (
            4,
            Problem::ChainBreak {
                unit: eur(),
                seq: 2,
                position: 3
            }
        )
    );
}

#[test]
fn a_rewritten_chain_over_a_changed_entry_is_caught_by_the_intent() {
    let mut items = scenario();
    let mut entry: Value = serde_json::from_str(&items[1].entry).unwrap();
    bump_amount(&mut entry);
    items[1].entry = String::from_utf8(to_canonical_bytes(&entry).unwrap()).unwrap();
    assert_eq!(
        problem_at(&export(&items)),
        (
            3,
            Problem::IntentMismatch {
                position: 2,
                detail: "postings (accounts, units or amounts)".into()
            }
        )
    );
}

#[test]
fn a_wrong_digest_is_a_digest_mismatch() {
    let mut items = scenario();
    let mut entry: Value = serde_json::from_str(&items[0].entry).unwrap();
    entry["authorisation"]["digest"] = Value::from("ab".repeat(32));
    items[0].entry = String::from_utf8(to_canonical_bytes(&entry).unwrap()).unwrap();
    assert_eq!(
        problem_at(&export(&items)),
        (2, Problem::DigestMismatch { position: 1 })
    );
}

#[test]
fn a_signed_intent_with_unbalanced_legs_is_unbalanced() {
    let operator = key(1);
    let signed = sign(
        &operator,
        entry_action(
            EntryKind::Issue,
            vec![leg(ISSUER, eur(), -100), leg(HOLDER, eur(), 101)],
            "",
        ),
    );
    let verified_digest = crate::journal::Digest::of(&signed.signed_bytes());
    let entry = JournalEntry::new(
        EntryId::new(),
        EntryKind::Issue,
        vec![crate::entry::Posting {
            unit: eur(),
            debit: account(ISSUER),
            credit: account(HOLDER),
            amount: Amount::from_minor(100).unwrap(),
        }],
        String::new(),
        Tags::default(),
        crate::entry::Authorisation {
            intent_id: signed.intent().intent_id,
            signer: signed.intent().signer,
            digest: verified_digest,
            signature: *signed.signature(),
        },
        1,
    )
    .unwrap();
    let item = Item {
        entry: text(&entry),
        intent: stored(&signed),
    };
    assert_eq!(
        problem_at(&export(&[item])),
        (
            2,
            Problem::Unbalanced {
                unit: eur(),
                sum: 1
            }
        )
    );
}

#[test]
fn an_intent_applied_twice_is_a_duplicate() {
    let signed = sign(&key(2), payment(HOLDER, SHOP, 10, ""));
    let items = [honest(&signed, 1), honest(&signed, 2)];
    assert_eq!(
        problem_at(&export(&items)),
        (
            3,
            Problem::DuplicateIntent {
                intent_id: signed.intent().intent_id
            }
        )
    );
}

#[test]
fn a_stored_signer_other_than_the_named_one_is_refused() {
    let mut lines = export(&scenario());
    edit_line(&mut lines, 1, |l| {
        l["intent"]["signer"] = Value::from(PublicKey::of(&key(9)).to_base64url());
    });
    assert!(matches!(
        problem_at(&lines),
        (2, Problem::SignerMismatch { .. })
    ));
}

#[test]
fn links_must_name_the_entrys_units() {
    let mut lines = export(&scenario());
    edit_line(&mut lines, 4, |l| {
        l["links"].as_array_mut().unwrap().pop();
    });
    assert_eq!(
        problem_at(&lines),
        (
            5,
            Problem::WrongLinks {
                expected: vec![pts(), eur()],
                found: vec![pts()]
            }
        )
    );
}

#[test]
fn units_must_be_declared_and_accounts_stay_in_one_unit() {
    let mut lines = export(&scenario());
    edit_line(&mut lines, 0, |h| {
        h["units"].as_array_mut().unwrap().remove(0);
    });
    assert_eq!(
        problem_at(&lines),
        (4, Problem::UnknownUnit { unit: pts() })
    );

    let signed = sign(
        &key(1),
        entry_action(
            EntryKind::Convert,
            vec![
                leg(HOLDER, eur(), -5),
                leg(SHOP, eur(), 5),
                leg(HOLDER, pts(), 3),
                leg(PTS_ISSUER, pts(), -3),
            ],
            "",
        ),
    );
    let error = problem_at(&export(&[honest(&signed, 1)]));
    assert!(
        matches!(error, (2, Problem::AccountInTwoUnits { account: a, .. }) if a == account(HOLDER)),
        "{error:?}"
    );
}

fn refund(payment: &Item, from: u8, to: u8, minor: i64) -> Item {
    let paid: JournalEntry = serde_json::from_str(&payment.entry).unwrap();
    let signed = sign(
        &key(3),
        Action::Refund {
            payment: paid.id(),
            from: account(from),
            to: account(to),
            unit: eur(),
            amount_minor: Amount::from_minor(minor).unwrap(),
            memo: "devolución".into(),
        },
    );
    honest(&signed, 2)
}

#[test]
fn refunds_must_mirror_an_earlier_payment_and_stay_within_it() {
    let paid = honest(&sign(&key(2), payment(HOLDER, SHOP, 1_000, "")), 1);
    let items = [
        paid.clone(),
        refund(&paid, SHOP, HOLDER, 400),
        refund(&paid, SHOP, HOLDER, 600),
    ];
    let report = run(&export(&items)).unwrap();
    let reversals = report.units[1]
        .totals
        .iter()
        .find(|t| t.kind == EntryKind::Reversal)
        .unwrap();
    assert_eq!((reversals.entries, reversals.amount_minor), (2, 1_000));

    let over = [
        paid.clone(),
        refund(&paid, SHOP, HOLDER, 400),
        refund(&paid, SHOP, HOLDER, 601),
    ];
    let payment_id = serde_json::from_str::<JournalEntry>(&paid.entry)
        .unwrap()
        .id();
    let bad = |detail| Problem::BadRefund {
        payment: payment_id,
        detail,
    };
    assert_eq!(
        problem_at(&export(&over)),
        (4, bad("with the earlier refunds it exceeds the payment"))
    );
    let elsewhere = [paid.clone(), refund(&paid, SHOP, FEE, 1)];
    assert_eq!(
        problem_at(&export(&elsewhere)),
        (
            3,
            bad("it does not move money from the payee back to the payer in the payment's unit")
        )
    );
    let before = [refund(&paid, SHOP, HOLDER, 1), paid];
    assert_eq!(
        problem_at(&export(&before)),
        (2, bad("no earlier payment of one posting has that id"))
    );
}

#[test]
fn a_truncated_file_fails_on_the_count_or_the_heads() {
    let mut lines = export(&scenario());
    lines.pop();
    assert_eq!(
        problem_at(&lines),
        (
            6,
            Problem::CountMismatch {
                stated: 5,
                found: 4
            }
        )
    );
    edit_line(&mut lines, 0, |h| h["count"] = Value::from(4));
    assert!(matches!(
        problem_at(&lines),
        (6, Problem::HeadMismatch { unit, .. }) if unit == eur()
    ));
}

/// The heads in an export's header, as an auditor keeps them.
fn heads_of(lines: &[String]) -> Vec<JournalLink> {
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    serde_json::from_value(header["heads"].clone()).unwrap()
}

/// Audits `lines` holding it to heads recorded earlier.
fn run_expecting(lines: &[String], recorded: &[JournalLink]) -> Result<AuditReport, AuditError> {
    let mut audit = Audit::new();
    audit.expect_heads(recorded).unwrap();
    for line in lines {
        audit.line(line.as_bytes())?;
    }
    audit.finish()
}

#[test]
fn heads_recorded_earlier_catch_a_chain_cut_short_or_rewritten_whole() {
    let full = scenario();
    // An auditor kept the heads of an export after three entries, and of one after five.
    let early = heads_of(&export(&full[..3]));
    let late = heads_of(&export(&full));
    // The ledger grew honestly: both still hold.
    let now = export(&full);
    assert_eq!(run_expecting(&now, &early).unwrap().entries, 5);
    assert_eq!(run_expecting(&now, &late).unwrap().entries, 5);
    // Cut back to four entries, with a header to match: on its own it verifies.
    let cut = export(&full[..4]);
    assert!(run(&cut).is_ok());
    assert!(
        run_expecting(&cut, &early).is_ok(),
        "entries before the cut"
    );
    let missing = run_expecting(&cut, &late).unwrap_err();
    assert!(
        matches!(missing.problem, Problem::RecordedHeadMissing { unit, seq: 4, end: 3 } if unit == eur()),
        "{missing:?}"
    );
    // The payment replaced by another, honestly signed, and every link after it rehashed:
    // on its own it verifies.
    let mut rewritten = full.clone();
    rewritten[1] = honest(
        &sign(&key(2), payment(HOLDER, SHOP, 9_999, "not what was paid")),
        1_795_305_600_001,
    );
    let rewritten = export(&rewritten);
    assert!(run(&rewritten).is_ok());
    let differs = run_expecting(&rewritten, &late).unwrap_err();
    assert!(
        matches!(differs.problem, Problem::RecordedHeadDiffers { unit, seq: 4 } if unit == eur()),
        "{differs:?}"
    );
    // Kept heads that disagree with each other are refused before anything is read.
    let mut audit = Audit::new();
    audit.expect_heads(&late).unwrap();
    assert_eq!(audit.expect_heads(&heads_of(&rewritten)), Err((eur(), 4)));
}

#[test]
fn malformed_lines_are_refused_with_their_line_number() {
    let lines = export(&scenario());
    let malformed = |lines: &[String]| matches!(problem_at(lines).1, Problem::Malformed(_));
    assert_eq!(run(&[]).unwrap_err().line, 1);
    assert!(malformed(&[]));
    // An unknown member, in the line or in the entry.
    let mut extra = lines.clone();
    edit_line(&mut extra, 3, |l| l["note"] = Value::from("x"));
    assert!(malformed(&extra) && problem_at(&extra).0 == 4);
    let mut extra = lines.clone();
    edit_entry(&mut extra, 3, |e| e["note"] = Value::from("x"));
    assert!(malformed(&extra) && problem_at(&extra).0 == 4);
    // An entry that is not exactly the canonical text (here: a space) was not what was hashed.
    let mut spaced = lines.clone();
    edit_line(&mut spaced, 2, |l| {
        let entry = l["entry"].as_str().unwrap().replacen(':', ": ", 1);
        l["entry"] = Value::from(entry);
    });
    assert!(malformed(&spaced) && problem_at(&spaced).0 == 3);
    // A non-canonical intent body.
    let mut spaced = lines.clone();
    edit_line(&mut spaced, 2, |l| {
        let body = format!(" {}", l["intent"]["body"].as_str().unwrap());
        l["intent"]["body"] = Value::from(body);
    });
    assert!(malformed(&spaced) && problem_at(&spaced).0 == 3);
    // Another format, not JSON, too long, a blank line.
    let mut other = lines.clone();
    edit_line(&mut other, 0, |h| h["version"] = Value::from(2));
    assert!(malformed(&other) && problem_at(&other).0 == 1);
    let mut garbage = lines.clone();
    garbage[5] = "{\"entry\":".into();
    assert!(malformed(&garbage) && problem_at(&garbage).0 == 6);
    let mut long = lines.clone();
    long[1] = format!("{}{}", long[1], " ".repeat(export::MAX_LINE_BYTES));
    assert!(malformed(&long) && problem_at(&long).0 == 2);
    let mut blank = lines;
    blank.insert(3, String::new());
    assert!(malformed(&blank) && problem_at(&blank).0 == 4);
}

#[test]
fn errors_read_as_sentences_with_the_line() {
    let mut lines = export(&scenario());
    edit_entry(&mut lines, 2, bump_amount);
    assert_eq!(
        run(&lines).unwrap_err().to_string(),
        "line 3: chain break in unit PGI-EUR at sequence 2 (entry position 2): the stated hash is \
         not SHA-256(previous hash ‖ entry); the entry or the chain was altered"
    );
}

mod tampering {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Tamper {
        Amount,
        Memo,
        Hash,
        Signature,
        IntentBody,
        SwapWithNext,
    }

    /// An issuance, then payments of the given amounts and memos.
    fn ledger(payments: &[(i64, String)]) -> Vec<Item> {
        let mut items = vec![honest(
            &sign(
                &key(1),
                entry_action(
                    EntryKind::Issue,
                    vec![
                        leg(ISSUER, eur(), -1_000_000),
                        leg(HOLDER, eur(), 1_000_000),
                    ],
                    "",
                ),
            ),
            0,
        )];
        for (i, (amount, memo)) in payments.iter().enumerate() {
            let signed = sign(&key(2), payment(HOLDER, SHOP, *amount, memo));
            items.push(honest(&signed, i as i64 + 1));
        }
        items
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever line is tampered with, and however, the audit fails on that line with
        /// the error that names what was done.
        #[test]
        fn any_tampered_line_is_caught_with_the_right_error(
            payments in proptest::collection::vec((1i64..10_000, "[a-z ñ\"\\\\]{0,12}"), 1..10),
            at in any::<proptest::sample::Index>(),
            tamper in proptest::sample::select(vec![
                Tamper::Amount, Tamper::Memo, Tamper::Hash, Tamper::Signature,
                Tamper::IntentBody, Tamper::SwapWithNext,
            ]),
        ) {
            let items = ledger(&payments);
            let honest_lines = export(&items);
            prop_assert!(run(&honest_lines).is_ok());
            let mut lines = honest_lines;
            // Line index 1..=n (0 is the header); a swap needs a line after it.
            let n = items.len();
            let index = match tamper {
                Tamper::SwapWithNext => 1 + at.index(n - 1),
                _ => 1 + at.index(n),
            };
            let line = index as u64 + 1;
            let position = index as u64;
            match tamper {
                Tamper::Amount => edit_entry(&mut lines, index, bump_amount),
                Tamper::Memo => edit_entry(&mut lines, index, |e| {
                    let memo = format!("{}x", e["memo"].as_str().unwrap());
                    e["memo"] = Value::from(memo);
                }),
                Tamper::Hash => edit_line(&mut lines, index, |l| {
                    let mut hash = l["links"][0]["hash"].as_str().unwrap().to_owned();
                    let flipped = if hash.starts_with('0') { "1" } else { "0" };
                    hash.replace_range(0..1, flipped);
                    l["links"][0]["hash"] = Value::from(hash);
                }),
                Tamper::Signature => edit_line(&mut lines, index, |l| {
                    let other = sign(&key(2), payment(HOLDER, SHOP, 1, "other"));
                    l["intent"]["signature"] = Value::from(other.signature().to_base64url());
                }),
                Tamper::IntentBody => edit_line(&mut lines, index, |l| {
                    let mut intent: Value =
                        serde_json::from_str(l["intent"]["body"].as_str().unwrap()).unwrap();
                    intent["not_after"] = Value::from(2_000_000_001);
                    let body = String::from_utf8(to_canonical_bytes(&intent).unwrap()).unwrap();
                    l["intent"]["body"] = Value::from(body);
                }),
                Tamper::SwapWithNext => lines.swap(index, index + 1),
            }
            let error = run(&lines).unwrap_err();
            prop_assert_eq!(error.line, line, "{:?}", error);
            let right = match (tamper, &error.problem) {
                (Tamper::Amount | Tamper::Memo | Tamper::Hash, Problem::ChainBreak { position: p, seq: 1.., .. }) => *p == position,
                (Tamper::Signature | Tamper::IntentBody, Problem::BadSignature { .. }) => true,
                (Tamper::SwapWithNext, Problem::PositionOutOfOrder { expected, found }) => {
                    *expected == position && *found == position + 1
                }
                _ => false,
            };
            prop_assert!(right, "{:?} gave {:?}", tamper, error);
        }
    }
}

/// The euro chain's checkpoint after its first `seq` links, with the totals counted by hand:
/// the issue of 100.00, then the payment of 12.50.
fn euro_checkpoint(lines: &[String], seq: u64) -> Checkpoint {
    let mut totals = crate::journal::checkpoint::UnitTotals::default();
    totals.count_entry(EntryKind::Issue);
    totals.count_posting(EntryKind::Issue, 10_000);
    totals.balance_moved(0, 10_000);
    if seq >= 2 {
        totals.count_entry(EntryKind::Payment);
        totals.count_posting(EntryKind::Payment, 1_250);
        totals.balance_moved(10_000, 8_750);
        totals.balance_moved(0, 1_250);
    }
    // The link's hash, from the export's line of the entry (line 2 is the issue, line 3 the
    // payment: the euro chain's first two links).
    let line: Value = serde_json::from_str(&lines[seq as usize]).unwrap();
    let hash = Digest::from_hex(line["links"][0]["hash"].as_str().unwrap()).unwrap();
    Checkpoint {
        unit: eur(),
        head: ChainHead { seq, hash },
        at_ms: 1_795_305_700_000,
        totals,
    }
}

fn run_with_checkpoints(
    lines: &[String],
    checkpoints: &[Checkpoint],
) -> Result<AuditReport, AuditError> {
    let mut audit = Audit::new();
    audit.expect_checkpoints(checkpoints).unwrap();
    for line in lines {
        audit.line(line.as_bytes())?;
    }
    audit.finish()
}

#[test]
fn signed_checkpoints_must_match_the_chain_and_the_totals_at_their_link() {
    let items = scenario();
    let lines = export(&items);
    let honest = [euro_checkpoint(&lines, 1), euro_checkpoint(&lines, 2)];
    assert_eq!(run_with_checkpoints(&lines, &honest).unwrap().entries, 5);
    // A checkpoint of an empty chain holds if it is empty.
    let empty = Checkpoint {
        unit: pts(),
        head: ChainHead::default(),
        at_ms: 0,
        totals: crate::journal::checkpoint::UnitTotals::default(),
    };
    assert!(run_with_checkpoints(&lines, &[empty]).is_ok());

    // Published totals that the journal does not add up to.
    let mut inflated = euro_checkpoint(&lines, 2);
    inflated.totals.count_posting(EntryKind::Issue, 1);
    let error = run_with_checkpoints(&lines, &[inflated]).unwrap_err();
    assert_eq!(error.line, 3, "the payment's line: {error}");
    assert!(
        matches!(error.problem, Problem::CheckpointDiffers { seq: 2, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(
            "issue totals: 1 entries and 10001 minor units signed, 1 and 10000 in the journal"
        ),
        "{error}"
    );
    let mut richer = euro_checkpoint(&lines, 1);
    richer.totals.balance_moved(0, 5);
    let error = run_with_checkpoints(&lines, &[richer]).unwrap_err();
    assert!(
        matches!(error.problem, Problem::CheckpointDiffers { seq: 1, .. })
            && error
                .to_string()
                .contains("positive balances: 10005 minor units signed"),
        "{error}"
    );
    // Another hash at the link: the chain was rewritten.
    let mut rewritten = euro_checkpoint(&lines, 2);
    rewritten.head.hash = Digest([1; 32]);
    let error = run_with_checkpoints(&lines, &[rewritten]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("another hash: the chain was rewritten"),
        "{error}"
    );
    // A checkpoint of a unit the export does not hold.
    let points = Checkpoint {
        unit: pts(),
        ..euro_checkpoint(&lines, 1)
    };
    let error = run_with_checkpoints(&export(&items[..2]), &[points]).unwrap_err();
    assert!(
        matches!(error.problem, Problem::CheckpointUnitAbsent { seq: 1, .. }),
        "{error}"
    );
    // A checkpoint beyond the end: the export was cut (or is older).
    let cut = export(&items[..1]);
    let error = run_with_checkpoints(&cut, &honest).unwrap_err();
    assert_eq!(error.line, 3);
    assert!(
        matches!(
            error.problem,
            Problem::CheckpointMissing { seq: 2, end: 1, .. }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("entries were cut off"),
        "{error}"
    );
    // Two checkpoints of one link that disagree are refused before anything is read.
    let mut audit = Audit::new();
    let other = Checkpoint {
        at_ms: 1,
        ..euro_checkpoint(&lines, 2)
    };
    audit
        .expect_checkpoints(&[euro_checkpoint(&lines, 2), other])
        .unwrap();
    assert_eq!(
        audit.expect_checkpoints(&[euro_checkpoint(&lines, 2), inflated_of(&lines)]),
        Err((eur(), 2))
    );
    let mut not_empty = empty;
    not_empty.totals.count_entry(EntryKind::Issue);
    assert_eq!(
        Audit::new().expect_checkpoints(&[not_empty]),
        Err((pts(), 0))
    );
}

fn inflated_of(lines: &[String]) -> Checkpoint {
    let mut inflated = euro_checkpoint(lines, 2);
    inflated.totals.count_posting(EntryKind::Payment, 1);
    inflated
}
