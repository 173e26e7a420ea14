//! Programmes end to end at the library level, on SQLite and PostgreSQL: create a programme,
//! enrol households, pay a run (stopping half-way as a crash would, then resuming), spend at
//! an allowed merchant and be refused at another category, sweep expired units, redeem with
//! the fee, and reload from storage with every rule still enforced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

#[path = "../committer/support.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use ledger::{
    AccountId, Action, Amount, CategoryCode, EntryKind, Leg, ParticipantId, PublicKey,
    SpendingRule, Tags, Unit, UnitCode, UnitKind,
};
use support::*;
use wallet_api::cards::{CardPrefix, KdfParams, ServerSecret};
use wallet_api::db::service::Participant;
use wallet_api::programme::cards::CardPayment;
use wallet_api::programme::disburse::{RunKind, RunOptions};
use wallet_api::programme::settlement::parse_date;
use wallet_api::programme::{
    AmountRule, BankAccount, CardSettings, HouseholdInput, NewProgramme, ProgrammeError,
    ProgrammeRules, Programmes, Schedule,
};
use wallet_api::{CommitError, Committer, ManualClock};

const DAY_MS: i64 = 86_400_000;

fn rules() -> ProgrammeRules {
    ProgrammeRules {
        amount: AmountRule {
            base_minor: 300_00,
            per_dependent_minor: 75_00,
            cap_minor: Some(450_00),
        },
        allowed_categories: Some(vec![CategoryCode::parse("5411").unwrap()]),
        daily_cap_minor: Some(200_00),
        monthly_cap_minor: None,
        expiry_days: Some(30),
        redemption_fee_basis_points: Some(150),
    }
}

/// The Sevilla voucher unit, added.
async fn sevilla_unit(committer: &Committer) -> UnitCode {
    let unit = UnitCode::new("SEV-EUR").unwrap();
    committer
        .add_unit(Unit::new(unit, "Sevilla voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap())
        .await
        .unwrap();
    unit
}

/// A monthly programme of 10,000.00 in `unit` over `areas`, in Spanish and Arabic.
fn small_sevilla(unit: UnitCode, areas: &[&str]) -> NewProgramme {
    NewProgramme {
        name: "Ingreso mínimo Sevilla".into(),
        unit,
        budget_minor: 10_000_00,
        schedule: Schedule::Monthly { day: 5 },
        areas: areas.iter().map(|&a| a.into()).collect(),
        languages: vec!["es".into(), "ar".into()],
        rules: rules(),
        fee_account: None,
        debtor: None,
    }
}

/// A one-off programme of 1.00 in `unit`, for the cases that must be refused.
fn one_off(name: &str, unit: UnitCode) -> NewProgramme {
    NewProgramme {
        name: name.into(),
        unit,
        budget_minor: 1_00,
        schedule: Schedule::OneOff,
        areas: vec!["Triana".into()],
        languages: vec!["es".into()],
        rules: rules(),
        fee_account: None,
        debtor: None,
    }
}

fn household(i: usize) -> HouseholdInput {
    HouseholdInput {
        reference: format!("SEV-{i:05}"),
        name: format!("Household {i}"),
        dependents: (i % 4) as u32,
        area: if i.is_multiple_of(2) {
            "Macarena"
        } else {
            "Triana"
        }
        .into(),
        phone: None,
        language: if i.is_multiple_of(3) { "ar" } else { "es" }.into(),
    }
}

async fn merchant(db: &wallet_api::Database, name: &str, category: &str) -> ParticipantId {
    merchant_with_iban(db, name, category, None, None).await
}

async fn merchant_with_iban(
    db: &wallet_api::Database,
    name: &str,
    category: &str,
    iban: Option<&str>,
    account_holder: Option<&str>,
) -> ParticipantId {
    let id = ParticipantId::new();
    db.insert_participant(&Participant {
        id,
        kind: "organisation".into(),
        name: name.into(),
        roles: vec!["merchant".into()],
        category_code: Some(category.into()),
        address: None,
        opening_hours: None,
        listed: true,
        created_at: NOW_MS,
        area: Some("Triana".into()),
        social_enterprise: false,
        iban: iban.map(str::to_owned),
        bic: None,
        account_holder: account_holder.map(str::to_owned),
    })
    .await
    .unwrap();
    id
}

fn programmes_with(
    db: &wallet_api::Database,
    committer: &Committer,
    clock: &Arc<ManualClock>,
) -> Programmes {
    let mut secret = [5u8; 32];
    secret[0] = 1;
    Programmes::new(
        db.clone(),
        committer.clone(),
        clock.clone(),
        ServerSecret::from_bytes(secret).unwrap(),
        CardSettings {
            prefix: CardPrefix::parse("990001").unwrap(),
            kdf: KdfParams::for_tests(),
            lock_after: 3,
        },
    )
}

/// Any key: the stale submission is refused before its signer matters.
fn grocer_key_for_stale() -> ed25519_dalek::SigningKey {
    key(99)
}

fn payment(from: AccountId, to: AccountId, unit: UnitCode, minor: i64) -> Action {
    Action::Payment {
        from,
        to,
        unit,
        amount_minor: Amount::from_minor(minor).unwrap(),
        memo: String::new(),
        request: None,
    }
}

fn spending_rule(result: Result<wallet_api::Committed, CommitError>) -> SpendingRule {
    match result {
        Err(CommitError::Rejected(ledger::BookError::SpendingRefused { rule, .. })) => rule,
        other => panic!("expected a spending-rule refusal, got {other:?}"),
    }
}

/// Checks a credit-transfer file the service made with a validator we did not write: the
/// ISO 20022 pain.001.001.09 XSD through lxml (`tests/python/validate_pain001.py`, which the
/// root `tests/sepa_xsd.rs` shows can fail). Skips loudly without the Python packages.
fn valid_against_the_xsd(xml: &str) {
    let python = |args: &[&str]| std::process::Command::new("python3").args(args).output();
    if !python(&["-c", "import lxml, sepaxml"]).is_ok_and(|o| o.status.success()) {
        skip(
            "SKIPPED: python3 with lxml and sepaxml is missing, so the service's SEPA file was not validated (pip install -r tests/python/requirements.txt)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pain001.xml");
    std::fs::write(&file, xml).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/validate_pain001.py"
    );
    let checked = python(&[script, file.to_str().unwrap()]).unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Exit code 2: the validator could not run (no schema found, say), which says nothing
    // about the file.
    assert_ne!(
        checked.status.code(),
        Some(2),
        "the XSD check could not run: {said}"
    );
    assert!(
        checked.status.success(),
        "the XSD refuses the service's file: {said}\n{xml}"
    );
}

#[tokio::test]
async fn a_programme_runs_from_enrolment_to_redemption() {
    for test_db in TestDb::all().await {
        let db = test_db.open().await;
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let unit = UnitCode::new("SEV-EUR").unwrap();
        committer
            .add_unit(
                Unit::new(unit, "Sevilla voucher", 2, UnitKind::Voucher, Some("EUR")).unwrap(),
            )
            .await
            .unwrap();
        let programmes = programmes_with(&db, &committer, &clock);
        // A unit that already has an issuer account (someone holds its key) cannot take a
        // programme: that issuer would issue past the budget.
        let rogue_unit = UnitCode::new("ROGUE").unwrap();
        committer
            .add_unit(Unit::new(rogue_unit, "Rogue", 2, UnitKind::Voucher, Some("EUR")).unwrap())
            .await
            .unwrap();
        committer
            .open_accounts(vec![wallet_api::db::NewAccount {
                account: ledger::Account::new(
                    rogue_unit,
                    ledger::AccountKind::Issuer,
                    Some(PublicKey::of(&key(99))),
                ),
                owner: None,
            }])
            .await
            .unwrap();
        let rogue = programmes.create(one_off("Rogue", rogue_unit)).await;
        assert!(
            matches!(rogue, Err(ProgrammeError::Conflict(ref m)) if m.contains("already has an issuer")),
            "{}: {rogue:?}",
            test_db.label
        );
        let (programme, _) = programmes
            .create(NewProgramme {
                name: "Ingreso mínimo Sevilla".into(),
                unit,
                budget_minor: 200_000_00,
                schedule: Schedule::Monthly { day: 5 },
                areas: vec!["Macarena".into(), "Triana".into()],
                languages: vec!["es".into(), "ar".into()],
                rules: rules(),
                fee_account: None,
                debtor: Some(BankAccount {
                    name: "Ayuntamiento de Sevilla".into(),
                    iban: "ES91 2100 0418 4502 0005 1332".into(),
                    bic: Some("CAIXESBBXXX".into()),
                }),
            })
            .await
            .unwrap();
        // A second programme on the same unit is refused: the unit carries one rule set.
        let again = programmes.create(one_off("Other", unit)).await;
        assert!(
            matches!(again, Err(ProgrammeError::Conflict(_))),
            "{}",
            test_db.label
        );

        // Enrol 300 households; importing the same rows again changes nothing.
        let rows: Vec<_> = (0..300).map(household).collect();
        let outcome = programmes.enrol(programme.id, rows.clone()).await.unwrap();
        assert_eq!(outcome.created, 300);
        let outcome = programmes.enrol(programme.id, rows.clone()).await.unwrap();
        assert_eq!(
            (outcome.created, outcome.updated, outcome.unchanged),
            (0, 0, 300)
        );
        let mut changed = rows.clone();
        changed[8].dependents = 3;
        let outcome = programmes.enrol(programme.id, changed).await.unwrap();
        assert_eq!(
            (outcome.created, outcome.updated, outcome.unchanged),
            (0, 1, 299)
        );
        // A reference differing only in case is the same household, not a second one.
        let mut shouted = vec![household(8)];
        shouted[0].reference = shouted[0].reference.to_lowercase();
        shouted[0].dependents = 3;
        let outcome = programmes.enrol(programme.id, shouted).await.unwrap();
        assert_eq!((outcome.created, outcome.unchanged), (0, 1));

        // Dry run: every household paid, listed as having no card yet.
        let plan = programmes
            .plan_run(programme.id, "2026-12", &RunKind::Monthly)
            .await
            .unwrap();
        assert_eq!(plan.households, 300);
        assert_eq!(plan.entries, 3);
        assert_eq!(plan.exceptions.len(), 300);
        assert!(plan.exceptions.iter().all(|e| e.paid));
        let expected_total: i64 = (0..300)
            .map(|i| if i == 8 { 3 } else { i % 4 })
            .map(|d| (300_00 + 75_00 * d as i64).min(450_00))
            .sum();
        assert_eq!(plan.total_minor, expected_total);

        // Execute, "crashing" after one entry; then resume: nobody is paid twice.
        let quiet = |_| {};
        let first = programmes
            .execute_run(
                programme.id,
                "2026-12",
                &RunKind::Monthly,
                RunOptions {
                    stop_after_entries: Some(1),
                },
                &quiet,
            )
            .await
            .unwrap();
        assert!(!first.complete);
        assert_eq!(first.committed_entries, 1);
        // Before the resume, a household of the last chunk loses its new card: the plan names
        // the account now frozen, and the resumed chunk pays the replacement's account.
        let last = db
            .households(programme.id)
            .await
            .unwrap()
            .into_iter()
            .max_by_key(|h| h.id)
            .unwrap();
        let lost = programmes.issue_card(last.id, Some("2580")).await.unwrap();
        let replaced = programmes
            .replace_card(lost.card.number, None)
            .await
            .unwrap();
        let resumed = programmes
            .execute_run(
                programme.id,
                "2026-12",
                &RunKind::Monthly,
                RunOptions::default(),
                &quiet,
            )
            .await
            .unwrap();
        assert!(resumed.complete, "{resumed:?}");
        assert_eq!(
            (resumed.committed_entries, resumed.already_committed_entries),
            (2, 1)
        );
        let repeated = programmes
            .execute_run(
                programme.id,
                "2026-12",
                &RunKind::Monthly,
                RunOptions::default(),
                &quiet,
            )
            .await
            .unwrap();
        assert_eq!(
            (
                repeated.committed_entries,
                repeated.already_committed_entries
            ),
            (0, 3)
        );
        let households = db.households(programme.id).await.unwrap();
        let paid: i64 = households
            .iter()
            .map(|h| {
                committer
                    .view()
                    .read()
                    .account(h.account)
                    .unwrap()
                    .balance
                    .0
            })
            .sum();
        assert_eq!(paid, expected_total, "{}", test_db.label);
        let on_new_card = committer
            .view()
            .read()
            .account(replaced.card.account)
            .unwrap()
            .balance
            .0;
        assert!(
            on_new_card > 0,
            "{}: the replaced card's household went unpaid",
            test_db.label
        );

        // An emergency run for one area pays only there.
        let emergency = RunKind::Emergency {
            area: Some("Triana".into()),
        };
        let plan = programmes
            .plan_run(programme.id, "storm-2026-12", &emergency)
            .await
            .unwrap();
        assert_eq!(plan.households, 150);

        // Merchants: a grocer (5411, allowed) and a casino (7995, not).
        let grocer = merchant_with_iban(
            &db,
            "Ultramarinos Triana",
            "5411",
            Some("PT50000201231234567890154"),
            Some("Ultramarinos Triana S.L."),
        )
        .await;
        let casino = merchant(&db, "Casino", "7995").await;
        for m in [grocer, casino] {
            programmes.apply_merchant(m, &[programme.id]).await.unwrap();
        }
        let grocer_account = programmes
            .decide_merchant(programme.id, grocer, true)
            .await
            .unwrap()
            .account
            .unwrap();
        let casino_account = programmes
            .decide_merchant(programme.id, casino, true)
            .await
            .unwrap()
            .account
            .unwrap();

        // A household with a wallet key pays the grocer, is refused at the casino and over
        // the daily cap.
        let alice = &households[0];
        let alice_key = key(11);
        committer
            .set_authority(alice.account, PublicKey::of(&alice_key))
            .await
            .unwrap();
        committer
            .submit(&sign(
                &alice_key,
                payment(alice.account, grocer_account, unit, 150_00),
            ))
            .await
            .unwrap();
        let refused = committer
            .submit(&sign(
                &alice_key,
                payment(alice.account, casino_account, unit, 10_00),
            ))
            .await;
        assert_eq!(spending_rule(refused), SpendingRule::MerchantCategory);
        let refused = committer
            .submit(&sign(
                &alice_key,
                payment(alice.account, grocer_account, unit, 50_01),
            ))
            .await;
        assert_eq!(spending_rule(refused), SpendingRule::DailyCap);

        // Cards: Carmen pays the grocer with her card and PIN; three wrong PINs lock it.
        let carmen = &households[2];
        let issued = programmes
            .issue_card(carmen.id, Some("2580"))
            .await
            .unwrap();
        assert!(issued.generated_pin.is_none());
        let number = issued.card.number;
        assert!(matches!(
            programmes.issue_card(carmen.id, None).await,
            Err(ProgrammeError::Conflict(_))
        ));
        let pay = |minor: i64| CardPayment {
            intent_id: ledger::IntentId::new(),
            to: grocer_account,
            amount: Amount::from_minor(minor).unwrap(),
            memo: "bread".into(),
            request: None,
            request_expires_at: None,
        };
        let bread = programmes
            .pay_by_card(number, "2580", pay(12_50))
            .await
            .unwrap()
            .entry_id;
        let refused = programmes
            .pay_by_card(
                number,
                "2580",
                CardPayment {
                    to: casino_account,
                    ..pay(1_00)
                },
            )
            .await;
        assert!(
            matches!(
                &refused,
                Err(ProgrammeError::Commit(CommitError::Rejected(
                    ledger::BookError::SpendingRefused {
                        rule: SpendingRule::MerchantCategory,
                        ..
                    }
                )))
            ),
            "{refused:?}"
        );
        for left in [2, 1] {
            match programmes.pay_by_card(number, "1111", pay(1_00)).await {
                Err(ProgrammeError::WrongPin { attempts_left }) => assert_eq!(attempts_left, left),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            programmes.pay_by_card(number, "1111", pay(1_00)).await,
            Err(ProgrammeError::CardLocked(_))
        ));
        // Locked: even the right PIN is refused until an operator unlocks it.
        assert!(matches!(
            programmes.pay_by_card(number, "2580", pay(1_00)).await,
            Err(ProgrammeError::CardLocked(_))
        ));
        programmes.unlock_card(number).await.unwrap();
        programmes.change_pin(number, "2580", "7391").await.unwrap();
        programmes
            .pay_by_card(number, "7391", pay(2_50))
            .await
            .unwrap();
        // Lost: the replacement carries the balance in a recorded entry; the old card is dead.
        let before = committer
            .view()
            .read()
            .account(carmen.account)
            .unwrap()
            .balance
            .0;
        let replacement = programmes.replace_card(number, None).await.unwrap();
        let new_pin = replacement.generated_pin.clone().unwrap();
        let new_account = replacement.card.account;
        assert_eq!(
            committer
                .view()
                .read()
                .account(new_account)
                .unwrap()
                .balance
                .0,
            before
        );
        assert_eq!(
            committer
                .view()
                .read()
                .account(carmen.account)
                .unwrap()
                .balance
                .0,
            0
        );
        assert!(matches!(
            programmes.pay_by_card(number, "7391", pay(1_00)).await,
            Err(ProgrammeError::CardReplaced(_))
        ));
        programmes
            .pay_by_card(replacement.card.number, &new_pin, pay(1_00))
            .await
            .unwrap();
        // Repeating the replacement changes nothing.
        let again = programmes.replace_card(number, None).await.unwrap();
        assert_eq!(again.card.number, replacement.card.number);
        assert_eq!(
            committer
                .view()
                .read()
                .account(new_account)
                .unwrap()
                .balance
                .0,
            before - 1_00
        );

        // The grocer refunds bread bought with the lost card. The refund mirrors the sale, so
        // it credits the old card's (frozen) account, and is passed on at once to the card
        // the household holds now (as the API does after every refund, and a start does for
        // any left over); the old card keeps nothing and still cannot pay.
        let grocer_key = key(12);
        committer
            .set_authority(grocer_account, PublicKey::of(&grocer_key))
            .await
            .unwrap();
        let refund = sign(
            &grocer_key,
            Action::Refund {
                payment: bread,
                from: grocer_account,
                to: carmen.account,
                unit,
                amount_minor: Amount::from_minor(5_00).unwrap(),
                memo: "stale bread".into(),
            },
        );
        committer.submit(&refund).await.unwrap();
        programmes
            .forward_to_current_card(carmen.account)
            .await
            .unwrap();
        let balance_of = |account| committer.view().read().account(account).unwrap().balance.0;
        assert_eq!(balance_of(carmen.account), 0, "{}", test_db.label);
        assert_eq!(balance_of(new_account), before - 1_00 + 5_00);
        // Passing on again (a retry, or the sweep at start) moves nothing twice.
        programmes
            .forward_to_current_card(carmen.account)
            .await
            .unwrap();
        assert_eq!(programmes.forward_all_to_current_cards().await.unwrap(), 0);
        assert_eq!(balance_of(new_account), before - 1_00 + 5_00);
        assert!(matches!(
            programmes.pay_by_card(number, "7391", pay(1_00)).await,
            Err(ProgrammeError::CardReplaced(_))
        ));

        // Parallel PIN guesses cannot try more PINs than the limit: the card locks.
        let dora = &households[3];
        let dora_card = programmes
            .issue_card(dora.id, Some("1357"))
            .await
            .unwrap()
            .card
            .number;
        let guesses = (0..10).map(|_| programmes.pay_by_card(dora_card, "8642", pay(1_00)));
        let outcomes = futures_util::future::join_all(guesses).await;
        let wrong = outcomes
            .iter()
            .filter(|o| matches!(o, Err(ProgrammeError::WrongPin { .. })))
            .count();
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                Err(ProgrammeError::WrongPin { .. } | ProgrammeError::CardLocked(_))
            )),
            "{outcomes:?}"
        );
        assert!(wrong <= 2, "{wrong} wrong PINs answered before the lock");
        let state = programmes.card(&dora_card).await.unwrap();
        assert_eq!(state.status, "locked");
        assert!(state.failed_attempts <= 3, "{state:?}");
        assert!(matches!(
            programmes.pay_by_card(dora_card, "1357", pay(1_00)).await,
            Err(ProgrammeError::CardLocked(_))
        ));
        // A retried payment (its answer lost) gets the original answer, even with the card
        // locked now and without a PIN check.
        let once = CardPayment {
            intent_id: ledger::IntentId::new(),
            ..pay(3_00)
        };
        programmes.unlock_card(dora_card).await.unwrap();
        let first = programmes
            .pay_by_card(dora_card, "1357", once.clone())
            .await
            .unwrap();
        for _ in 0..3 {
            let _ = programmes.pay_by_card(dora_card, "0000", pay(1_00)).await;
        }
        let again = programmes
            .pay_by_card(dora_card, "1357", once)
            .await
            .unwrap();
        assert_eq!((again.entry_id, again.duplicate), (first.entry_id, true));

        // An entry computed from balances that moved since does not apply.
        let stale = committer
            .submit_expecting(
                &sign(
                    &grocer_key_for_stale(),
                    payment(grocer_account, casino_account, unit, 1),
                ),
                vec![(alice.account, -1)],
            )
            .await;
        assert!(
            matches!(stale, Err(CommitError::BalancesMoved(ref m)) if m == &vec![alice.account]),
            "{stale:?}"
        );

        // Redemption: the grocer gives 100.00 back, 1.50 of it to the fee account.
        let grocer_key = key(12);
        committer
            .set_authority(grocer_account, PublicKey::of(&grocer_key))
            .await
            .unwrap();
        let redeem = |net: i64, fee: i64| {
            sign(
                &grocer_key,
                Action::Entry {
                    kind: EntryKind::Redeem,
                    legs: vec![
                        Leg {
                            account: grocer_account,
                            unit,
                            delta: -(net + fee),
                        },
                        Leg {
                            account: programme.accounts.clearing,
                            unit,
                            delta: net,
                        },
                        Leg {
                            account: programme.accounts.fees,
                            unit,
                            delta: fee,
                        },
                    ],
                    memo: "weekly redemption".into(),
                    tags: Tags::default(),
                },
            )
        };
        assert_eq!(
            spending_rule(committer.submit(&redeem(99_00, 1_00)).await),
            SpendingRule::RedemptionFee
        );
        committer.submit(&redeem(98_50, 1_50)).await.unwrap();
        let day = |text: &str| parse_date("day", text).unwrap();
        let report = programmes
            .settlement_csv(programme.id, day("2026-11-01"), day("2026-11-30"))
            .await
            .unwrap();
        assert!(
            report
                .contains("Ultramarinos Triana,2026-11-01/2026-11-30,1,100.00,1.50,98.50,SEV-EUR"),
            "{report}"
        );
        // The bank file of a period, to be executed on 2 December; a refusal says why.
        let file = async |from: &str, to: &str| {
            programmes
                .credit_transfer_file(programme.id, day(from), day(to), day("2026-12-02"))
                .await
        };
        let refused = |result: Result<Option<String>, ProgrammeError>, says: &str| {
            assert!(
                matches!(&result, Err(ProgrammeError::Conflict(m)) if m.contains(says)),
                "{says}: {result:?}"
            );
        };
        // November is not over: no bank file for it yet (it would pay part of the month, and
        // the rest could never be paid).
        refused(file("2026-11-01", "2026-11-30").await, "has not ended");
        // 1 December, 00:00 UTC: it has ended, but a redemption made at 23:59:59 may still be
        // committing; a quarter of an hour later it cannot be.
        clock.advance(9 * DAY_MS);
        refused(
            file("2026-11-01", "2026-11-30").await,
            "may still be committing",
        );
        clock.advance(15 * 60 * 1000);
        // The first file cannot start after the programme's first day: the days before it
        // would never be paid.
        refused(
            file("2026-11-23", "2026-11-30").await,
            "on or before 2026-11-22",
        );
        // A bank in a SEPA country outside the EEA must be named by its BIC.
        let swiss = Some("CH9300762011623852957");
        let holder = Some("Ultramarinos Triana S.L.");
        db.set_bank_details(grocer, swiss, None, holder)
            .await
            .unwrap();
        refused(
            file("2026-11-01", "2026-11-30").await,
            "needs the payee bank's BIC as well as the IBAN; register it (PUT \
             /v1/participants/{id}/bank-account) for: Ultramarinos Triana",
        );
        let portuguese = Some("PT50000201231234567890154");
        db.set_bank_details(grocer, portuguese, None, holder)
            .await
            .unwrap();
        let xml = file("2026-11-01", "2026-11-30").await.unwrap().unwrap();
        assert!(
            xml.contains("<InstdAmt Ccy=\"EUR\">98.50</InstdAmt>"),
            "{xml}"
        );
        assert!(xml.contains("PT50000201231234567890154"), "{xml}");
        valid_against_the_xsd(&xml);
        // The bank is given the name the account is held in, not the shop's display name.
        assert!(xml.contains("<Nm>Ultramarinos Triana S.L.</Nm>"), "{xml}");
        // The same period again is the same file; an overlapping one would pay twice.
        let again = file("2026-11-01", "2026-11-30").await.unwrap().unwrap();
        assert!(again.contains("<InstdAmt Ccy=\"EUR\">98.50</InstdAmt>"));
        let element = |xml: &str, tag: &str| {
            let open = format!("<{tag}>");
            let from = xml.find(&open).unwrap() + open.len();
            xml[from..from + xml[from..].find('<').unwrap()].to_owned()
        };
        for tag in ["MsgId", "EndToEndId"] {
            let id = element(&xml, tag);
            assert_eq!(id, element(&again, tag), "{tag}: the bank sees one file");
            assert!(id.len() <= 35, "{tag} {id}");
        }
        assert!(element(&xml, "MsgId").ends_with("2026110120261130"));
        refused(file("2026-11-15", "2026-11-30").await, "overlaps");
        // Nor a gap after it: December's file starts on 1 December (said before that it has
        // not ended yet).
        refused(
            file("2026-12-02", "2026-12-31").await,
            "starts on 2026-12-01",
        );
        // A file made by mistake and never sent can be voided, the latest only; its days can
        // then go in another file (here the same period again, recorded anew).
        let void = async |from: &str, to: &str| {
            programmes
                .void_credit_transfer_file(programme.id, day(from), day(to))
                .await
        };
        assert!(matches!(
            void("2026-11-15", "2026-11-30").await,
            Err(ProgrammeError::NotFound(_))
        ));
        void("2026-11-01", "2026-11-30").await.unwrap();
        assert!(matches!(
            void("2026-11-01", "2026-11-30").await,
            Err(ProgrammeError::NotFound(_))
        ));
        refused(file("2026-11-23", "2026-11-30").await, "on or before");
        let remade = file("2026-11-01", "2026-11-30").await.unwrap().unwrap();
        assert_eq!(element(&remade, "MsgId"), element(&xml, "MsgId"));
        refused(file("2026-11-15", "2026-11-30").await, "overlaps");
        // Voided again and paid in two files: the first, before the redemption, owes nobody
        // anything, so there is no file but the days are settled and the second follows on.
        void("2026-11-01", "2026-11-30").await.unwrap();
        assert_eq!(file("2026-11-01", "2026-11-21").await.unwrap(), None);
        refused(
            file("2026-11-23", "2026-11-30").await,
            "paid up to 2026-11-21",
        );
        let second = file("2026-11-22", "2026-11-30").await.unwrap().unwrap();
        assert!(second.contains("98.50"), "{second}");
        // Only the latest file can be voided: an earlier one would leave a gap.
        assert!(matches!(
            void("2026-11-01", "2026-11-21").await,
            Err(ProgrammeError::Conflict(m)) if m.contains("void that one first")
        ));
        // Outside the period, nothing.
        let empty = programmes
            .settlement(programme.id, day("2026-10-01"), day("2026-10-31"))
            .await
            .unwrap();
        assert!(empty.is_empty());

        // Expiry: 30 days after the run, Alice's unspent units go back to the budget.
        let alice_left = 300_00 - 150_00;
        let soon = programmes
            .upcoming_expiries(programme.id, alice.account)
            .await
            .unwrap();
        assert_eq!(soon.len(), 1);
        assert_eq!(soon[0].amount_minor, alice_left);
        let budget_before = committer
            .view()
            .read()
            .account(programme.accounts.budget)
            .unwrap()
            .balance
            .0;
        // 29 days after the run (9 of them passed above).
        clock.advance(20 * DAY_MS);
        assert_eq!(
            programmes
                .sweep_expired(programme.id)
                .await
                .unwrap()
                .households,
            0
        );
        clock.advance(2 * DAY_MS);
        let sweep = programmes.sweep_expired(programme.id).await.unwrap();
        assert_eq!(sweep.households, 300, "{sweep:?}");
        // Carmen's replacement card kept her lots' dates: it expired with everyone's.
        assert_eq!(
            committer
                .view()
                .read()
                .account(new_account)
                .unwrap()
                .balance
                .0,
            0
        );
        assert!(sweep.failed.is_empty(), "{sweep:?}");
        assert_eq!(
            committer
                .view()
                .read()
                .account(alice.account)
                .unwrap()
                .balance
                .0,
            0
        );
        let budget_after = committer
            .view()
            .read()
            .account(programme.accounts.budget)
            .unwrap()
            .balance
            .0;
        assert_eq!(
            budget_after - budget_before,
            // Carmen's card payments, less the bread refunded to her.
            expected_total - 150_00 - (12_50 + 2_50 + 1_00 - 5_00) - 3_00
        );
        // Re-running December a month later (past a week's validity) still answers cleanly.
        let late = programmes
            .execute_run(
                programme.id,
                "2026-12",
                &RunKind::Monthly,
                RunOptions::default(),
                &quiet,
            )
            .await
            .unwrap();
        assert_eq!(
            (late.committed_entries, late.already_committed_entries),
            (0, 3)
        );
        assert!(late.complete);
        // An emergency run cannot reuse a monthly run's name.
        assert!(matches!(
            programmes
                .plan_run(programme.id, "2026-12", &RunKind::Emergency { area: None })
                .await,
            Err(ProgrammeError::Invalid { .. })
        ));
        // A second sweep finds nothing left to expire.
        assert_eq!(
            programmes
                .sweep_expired(programme.id)
                .await
                .unwrap()
                .households,
            0
        );

        // Reload from storage: rules and registered merchants are enforced after a restart.
        drop(programmes);
        stop(committer, task).await;
        let (committer, task) = start_on(&db, &clock).await;
        let programmes = programmes_with(&db, &committer, &clock);
        let bob = &households[1];
        let plan = programmes
            .execute_run(
                programme.id,
                "2026-11",
                &RunKind::Monthly,
                RunOptions::default(),
                &quiet,
            )
            .await
            .unwrap();
        assert!(plan.complete);
        let bob_key = key(13);
        committer
            .set_authority(bob.account, PublicKey::of(&bob_key))
            .await
            .unwrap();
        let refused = committer
            .submit(&sign_at(
                &bob_key,
                payment(bob.account, casino_account, unit, 10_00),
                clock.now(),
            ))
            .await;
        assert_eq!(
            spending_rule(refused),
            SpendingRule::MerchantCategory,
            "{}",
            test_db.label
        );
        // A holder cannot dodge the rules by paying another household directly.
        let refused = committer
            .submit(&sign_at(
                &bob_key,
                payment(bob.account, alice.account, unit, 10_00),
                clock.now(),
            ))
            .await;
        assert_eq!(
            spending_rule(refused),
            SpendingRule::RegisteredMerchantsOnly
        );
        let sale = committer
            .submit(&sign_at(
                &bob_key,
                payment(bob.account, grocer_account, unit, 10_00),
                clock.now(),
            ))
            .await
            .unwrap()
            .entry_id;

        // The grocer refunds a household: no spending rule refuses it (the merchant pays, not
        // the household), and a refund on the day of the sale frees that day's cap again.
        let pay_bob = |minor| {
            sign_at(
                &bob_key,
                payment(bob.account, grocer_account, unit, minor),
                clock.now(),
            )
        };
        committer.submit(&pay_bob(190_00)).await.unwrap();
        assert_eq!(
            spending_rule(committer.submit(&pay_bob(1)).await),
            SpendingRule::DailyCap
        );
        let refund = |minor| {
            sign_at(
                &grocer_key,
                Action::Refund {
                    payment: sale,
                    from: grocer_account,
                    to: bob.account,
                    unit,
                    amount_minor: Amount::from_minor(minor).unwrap(),
                    memo: "returned".into(),
                },
                clock.now(),
            )
        };
        committer.submit(&refund(10_00)).await.unwrap();
        committer.submit(&pay_bob(10_00)).await.unwrap();
        // After a restart the refund is still counted: against the sale and in the cap.
        drop(programmes);
        stop(committer, task).await;
        let (committer, task) = start_on(&db, &clock).await;
        assert_eq!(
            spending_rule(committer.submit(&pay_bob(1)).await),
            SpendingRule::DailyCap,
            "{}",
            test_db.label
        );
        assert!(matches!(
            committer.submit(&refund(1)).await,
            Err(CommitError::Rejected(
                ledger::BookError::RefundExceedsPayment { refundable: 0, .. }
            ))
        ));
        stop(committer, task).await;
    }
}

/// Creates `new`, enrols `households`, pays December's run and approves a grocer (5411) named
/// `grocer`: the programme and the grocer's account.
async fn paid_with_a_grocer(
    db: &wallet_api::Database,
    programmes: &Programmes,
    new: NewProgramme,
    households: Vec<HouseholdInput>,
    grocer: &str,
) -> (wallet_api::programme::Programme, AccountId) {
    let (programme, _) = programmes.create(new).await.unwrap();
    programmes.enrol(programme.id, households).await.unwrap();
    programmes
        .execute_run(
            programme.id,
            "2026-12",
            &RunKind::Monthly,
            RunOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
    let grocer = merchant(db, grocer, "5411").await;
    programmes
        .apply_merchant(grocer, &[programme.id])
        .await
        .unwrap();
    let grocer_account = programmes
        .decide_merchant(programme.id, grocer, true)
        .await
        .unwrap()
        .account
        .unwrap();
    (programme, grocer_account)
}

/// At start, every replaced card with money on it is looked at, and the count reported is of
/// the cards whose money moved: not of those skipped because the household's account is the
/// card's own, or because the card's account is no longer frozen.
#[tokio::test]
async fn passing_refunds_on_at_start_counts_only_the_cards_it_moved() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let unit = sevilla_unit(&committer).await;
        let programmes = programmes_with(&db, &committer, &clock);
        let (programme, grocer_account) = paid_with_a_grocer(
            &db,
            &programmes,
            small_sevilla(unit, &["Macarena", "Triana"]),
            (0..3).map(household).collect(),
            "Ultramarinos Triana",
        )
        .await;
        let grocer_key = key(12);
        committer
            .set_authority(grocer_account, PublicKey::of(&grocer_key))
            .await
            .unwrap();

        // Each household pays with its card, loses it, and the grocer refunds 1.00 of the sale
        // to the lost card, which is not passed on yet (as if the service stopped then).
        let households = db.households(programme.id).await.unwrap();
        for (i, h) in households.iter().enumerate() {
            let number = programmes
                .issue_card(h.id, Some("2580"))
                .await
                .unwrap()
                .card
                .number;
            let payment = CardPayment {
                intent_id: ledger::IntentId::new(),
                to: grocer_account,
                amount: Amount::from_minor(5_00).unwrap(),
                memo: "bread".into(),
                request: None,
                request_expires_at: None,
            };
            let sale = programmes
                .pay_by_card(number, "2580", payment)
                .await
                .unwrap()
                .entry_id;
            programmes.replace_card(number, None).await.unwrap();
            match i {
                // An operator unfroze the lost card's account.
                1 => committer
                    .set_status(h.account, ledger::AccountStatus::Active)
                    .await
                    .unwrap(),
                // The household's account is the lost card's again.
                2 => db.set_household_account(h.id, h.account).await.unwrap(),
                _ => {}
            }
            let refund = Action::Refund {
                payment: sale,
                from: grocer_account,
                to: h.account,
                unit,
                amount_minor: Amount::from_minor(1_00).unwrap(),
                memo: "stale bread".into(),
            };
            committer.submit(&sign(&grocer_key, refund)).await.unwrap();
        }
        assert_eq!(
            programmes.forward_all_to_current_cards().await.unwrap(),
            1,
            "{label}"
        );
        let balance_of = |account| committer.view().read().account(account).unwrap().balance.0;
        let left: Vec<i64> = households.iter().map(|h| balance_of(h.account)).collect();
        assert_eq!(left, [0, 1_00, 1_00], "{label}");
        assert_eq!(
            programmes.forward_all_to_current_cards().await.unwrap(),
            0,
            "{label}"
        );
        drop(programmes);
        stop(committer, task).await;
    }
}

/// A card replaced while empty moves no money, so no entry says which card replaced it; the
/// household's spending today still counts on the new card, before and after a restart, and
/// the next day the new card spends afresh.
#[tokio::test]
async fn a_card_replaced_while_empty_keeps_the_households_daily_cap() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let unit = sevilla_unit(&committer).await;
        let programmes = programmes_with(&db, &committer, &clock);
        // Household 0 has no dependents: it is paid 300.00, all of which it may spend today.
        let mut new_programme = small_sevilla(unit, &["Macarena"]);
        new_programme.rules.daily_cap_minor = Some(300_00);
        let (programme, grocer_account) = paid_with_a_grocer(
            &db,
            &programmes,
            new_programme,
            vec![household(0)],
            "Ultramarinos Macarena",
        )
        .await;
        let household = db.households(programme.id).await.unwrap()[0].id;
        let lost = programmes
            .issue_card(household, Some("2580"))
            .await
            .unwrap()
            .card;
        let pay = |minor| CardPayment {
            intent_id: ledger::IntentId::new(),
            to: grocer_account,
            amount: Amount::from_minor(minor).unwrap(),
            memo: "groceries".into(),
            request: None,
            request_expires_at: None,
        };
        programmes
            .pay_by_card(lost.number, "2580", pay(300_00))
            .await
            .unwrap();
        let balance_of = |committer: &Committer, account| {
            committer.view().read().account(account).unwrap().balance.0
        };
        assert_eq!(balance_of(&committer, lost.account), 0, "{label}");
        let new = programmes
            .replace_card(lost.number, Some("1357"))
            .await
            .unwrap()
            .card;
        // Emergency aid reaches the new card the same day.
        programmes
            .execute_run(
                programme.id,
                "storm-2026-12",
                &RunKind::Emergency { area: None },
                RunOptions::default(),
                &|_| {},
            )
            .await
            .unwrap();
        assert!(balance_of(&committer, new.account) > 0, "{label}");
        let daily_cap_binds = async |programmes: &Programmes| match programmes
            .pay_by_card(new.number, "1357", pay(1))
            .await
        {
            Err(ProgrammeError::Commit(refused)) => {
                assert_eq!(
                    spending_rule(Err(refused)),
                    SpendingRule::DailyCap,
                    "{label}"
                );
            }
            other => panic!("{label}: expected the daily cap, got {other:?}"),
        };
        daily_cap_binds(&programmes).await;

        // After a restart the link comes from the card records: still capped.
        drop(programmes);
        stop(committer, task).await;
        let (committer, task) = start_on(&db, &clock).await;
        let programmes = programmes_with(&db, &committer, &clock);
        daily_cap_binds(&programmes).await;
        clock.advance(DAY_MS);
        programmes
            .pay_by_card(new.number, "1357", pay(10_00))
            .await
            .unwrap();
        drop(programmes);
        stop(committer, task).await;

        // A card record that names an account the ledger does not know refuses the start.
        let stranger = AccountId::new();
        let update = "update card set account = $1 where number = $2";
        match &db {
            wallet_api::Database::Sqlite { pool, .. } => {
                let query = sqlx::query(update)
                    .bind(stranger.0)
                    .bind(new.number.as_str());
                query.execute(pool).await.unwrap();
            }
            wallet_api::Database::Postgres { pool, .. } => {
                let query = sqlx::query(update)
                    .bind(stranger.0)
                    .bind(new.number.as_str());
                query.execute(pool).await.unwrap();
            }
        }
        let config = wallet_api::CommitterConfig::default();
        match Committer::start(db.clone(), config, clock.clone()).await {
            Err(wallet_api::db::LoadError::CardReplacement { old, new: to, .. }) => {
                assert_eq!((old, to), (lost.account, stranger), "{label}");
            }
            Err(other) => panic!("{label}: expected a card-record refusal, got {other}"),
            Ok(_) => panic!("{label}: a card record naming no account loaded"),
        }
    }
}

/// A shop's refund gives back the money with the date it was disbursed: buying and refunding
/// on the last day of its validity does not make it new again, so it expires on time.
#[tokio::test]
async fn refunded_money_expires_when_the_money_it_gives_back_would_have() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let unit = sevilla_unit(&committer).await;
        let programmes = programmes_with(&db, &committer, &clock);
        // Household 0 is paid 300.00 now, valid for 30 days.
        let (programme, grocer_account) = paid_with_a_grocer(
            &db,
            &programmes,
            small_sevilla(unit, &["Macarena"]),
            vec![household(0)],
            "Ultramarinos Macarena",
        )
        .await;
        let grocer_key = key(12);
        committer
            .set_authority(grocer_account, PublicKey::of(&grocer_key))
            .await
            .unwrap();
        let household = db.households(programme.id).await.unwrap()[0].account;
        let household_key = key(13);
        committer
            .set_authority(household, PublicKey::of(&household_key))
            .await
            .unwrap();
        // On the 29th day it buys 150.00 and the shop refunds 100.00 of it.
        clock.advance(29 * DAY_MS);
        let sale = committer
            .submit(&sign_at(
                &household_key,
                payment(household, grocer_account, unit, 150_00),
                clock.now(),
            ))
            .await
            .unwrap()
            .entry_id;
        let refund = Action::Refund {
            payment: sale,
            from: grocer_account,
            to: household,
            unit,
            amount_minor: Amount::from_minor(100_00).unwrap(),
            memo: "returned".into(),
        };
        committer
            .submit(&sign_at(&grocer_key, refund, clock.now()))
            .await
            .unwrap();
        // On the 31st day everything it holds was disbursed more than 30 days ago.
        clock.advance(2 * DAY_MS);
        let sweep = programmes.sweep_expired(programme.id).await.unwrap();
        assert_eq!(
            (sweep.households, sweep.total_minor),
            (1, 250_00),
            "{label}: {sweep:?}"
        );
        let left = committer
            .view()
            .read()
            .account(household)
            .unwrap()
            .balance
            .0;
        assert_eq!(left, 0, "{label}");
        drop(programmes);
        stop(committer, task).await;
    }
}

/// The research export names an area only where at least five exported households live:
/// two households of a small district get events with no area, and so do the six of the next
/// smallest (else "no area" would mean the small one); ten of a large one keep theirs.
#[tokio::test]
async fn the_research_export_names_no_area_of_fewer_than_five_households() {
    for test_db in TestDb::all().await {
        let label = test_db.label;
        let db = test_db.open().await;
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let (committer, task) = start_on(&db, &clock).await;
        let unit = sevilla_unit(&committer).await;
        let programmes = programmes_with(&db, &committer, &clock);
        let (programme, _) = programmes
            .create(small_sevilla(unit, &["Macarena", "Triana", "Alamillo"]))
            .await
            .unwrap();
        let rows: Vec<HouseholdInput> = (0..18)
            .map(|i| HouseholdInput {
                area: match i {
                    0..2 => "Alamillo",
                    2..8 => "Triana",
                    _ => "Macarena",
                }
                .into(),
                language: "es".into(),
                ..household(i)
            })
            .collect();
        programmes.enrol(programme.id, rows).await.unwrap();
        let quiet = |_| {};
        let run = programmes
            .execute_run(
                programme.id,
                "2026-12",
                &RunKind::Monthly,
                RunOptions::default(),
                &quiet,
            )
            .await
            .unwrap();
        assert!(run.complete, "{label}: {run:?}");
        let mut secret = [5u8; 32];
        secret[0] = 1;
        let mut out = Vec::new();
        let report = wallet_api::research::export(
            &db,
            &ServerSecret::from_bytes(secret).unwrap(),
            wallet_api::research::ExportOptions { grain_s: 60 },
            &mut out,
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(report.small_areas, 2, "{label}");
        let deposits: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(",deposit,issuance,"))
            .collect();
        assert_eq!(deposits.len(), 18, "{label}: {text}");
        assert_eq!(
            deposits.iter().filter(|l| l.ends_with(",Macarena")).count(),
            10,
            "{label}"
        );
        assert!(
            !text.contains("Alamillo") && !text.contains("Triana"),
            "{label}: {text}"
        );
        assert_eq!(
            deposits.iter().filter(|l| l.ends_with(',')).count(),
            8,
            "{label}: the two smallest districts' households have no area"
        );
        drop(programmes);
        stop(committer, task).await;
    }
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for ManualClock {
    fn now(&self) -> i64 {
        wallet_api::Clock::now_ms(self)
    }
}

fn sign_at(key: &ed25519_dalek::SigningKey, action: Action, now_ms: i64) -> ledger::VerifiedIntent {
    let intent = ledger::Intent {
        intent_id: ledger::IntentId::new(),
        not_after: now_ms / 1000 + 3600,
        signer: PublicKey::of(key),
        action,
    };
    ledger::SignedIntent::sign(intent, key)
        .unwrap()
        .verify(now_ms)
        .unwrap()
}
