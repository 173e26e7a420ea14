//! `coledger demo`: a month in a small town's voucher scheme, through the real committer.

use anyhow::{Context, Result, bail};
use ledger::{AccountKind, Balance, Book, Unit, UnitCode, UnitKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wallet_api::programme::disburse::{RunKind, RunOptions, monthly_period_of};
use wallet_api::programme::{AmountRule, NewProgramme, ProgrammeRules, Programmes, Schedule};
use wallet_api::{CommitError, Committer};

use crate::config::DemoArgs;
use crate::scheme::{Scheme, now_s};

/// The demo's seed unless told otherwise.
pub const DEFAULT_SEED: u64 = 2026;
pub(crate) const UNIT: &str = "DEMO-EUR";
pub(crate) const HOUSEHOLDS: usize = 1_000;
pub(crate) const MERCHANTS: usize = 20;
const DAYS: u32 = 30;
/// The monthly benefit per household, in cents.
const BENEFIT_MINOR: i64 = 150_00;
/// Payments in flight at once, like many terminals at once.
const CONCURRENCY: usize = 64;

pub async fn run(args: DemoArgs) -> Result<()> {
    let (db, committer, mut task) = crate::open_ledger(&args.database.database_url).await?;
    if is_demo(&committer).await? {
        println!("The demo scheme is already in this database; its state:");
    } else if committer.inspect(|b| b.units().next().is_some()).await? {
        // A month of made-up households and payments cannot be taken out of a journal.
        bail!(
            "{} already holds a ledger that is not the demo's; the demo loads only into an \
             empty database: give another --database-url",
            wallet_api::db::redact(&args.database.database_url)
        );
    } else {
        seed(&committer, args.seed).await?;
    }
    print_summary(&committer).await?;
    drop(committer);
    task.join().await.map_err(anyhow::Error::msg)?;
    db.close().await;
    println!(
        "\nTo sell and pay in a browser: `coledger serve --demo` prints a shop terminal link with \
         its token, a phone wallet's activation link and a card with its PIN (README, \
         \"Trying the pages\")."
    );
    Ok(())
}

/// Whether this database holds the demo scheme (its unit), so `--demo` may add to it.
pub async fn is_demo(committer: &Committer) -> Result<bool> {
    let code = UnitCode::new(UNIT)?;
    Ok(committer.inspect(move |b| b.unit(code).is_some()).await?)
}

/// Loads the demo unless the database has units already (used by `serve --demo`).
pub async fn seed_if_empty(committer: &Committer, seed_value: u64) -> Result<()> {
    if committer.inspect(|b| b.units().next().is_none()).await? {
        tracing::info!("empty database: loading the demo scheme");
        seed(committer, seed_value).await?;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    committed: usize,
    refused: usize,
}

async fn seed(committer: &Committer, seed_value: u64) -> Result<()> {
    let scheme = Scheme::generate(UNIT, HOUSEHOLDS, MERCHANTS, seed_value)?;
    scheme.register(committer).await?;
    let now = now_s();
    let households: Vec<_> = scheme.holders.iter().map(|h| h.account).collect();
    let mut tally = Tally::default();
    submit_all(
        committer,
        scheme.issuance(&households, BENEFIT_MINOR, "monthly benefit", now)?,
        &mut tally,
    )
    .await?;

    let mut rng = ChaCha20Rng::seed_from_u64(seed_value);
    // What each household has left and each merchant has taken, as the town sees it.
    let mut purse = vec![BENEFIT_MINOR; HOUSEHOLDS];
    let mut takings = [0i64; MERCHANTS];
    for day in 1..=DAYS {
        let mut intents = Vec::new();
        for (h, holder) in scheme.holders.iter().enumerate() {
            // Most households shop a few times a week; a few shops are much busier.
            for _ in 0..rng.gen_range(0..=1u8) {
                let amount = rng.gen_range(2_00..=25_00i64);
                if amount > purse[h] {
                    continue;
                }
                let shop = popular_shop(&mut rng);
                purse[h] -= amount;
                takings[shop] += amount;
                let memo = format!("day {day} shopping");
                intents.push(scheme.payment(
                    holder,
                    scheme.merchants[shop].account,
                    amount,
                    &memo,
                    now,
                )?);
            }
        }
        if day % 7 == 0 {
            // Weekly, shops pay a local supplier a third of what they took.
            for (m, merchant) in scheme.merchants.iter().enumerate() {
                let amount = takings[m] / 3;
                let supplier = (m + 1 + rng.gen_range(0..MERCHANTS - 1)) % MERCHANTS;
                if amount > 0 {
                    takings[m] -= amount;
                    takings[supplier] += amount;
                    intents.push(scheme.payment(
                        merchant,
                        scheme.merchants[supplier].account,
                        amount,
                        "weekly supplier invoice",
                        now,
                    )?);
                }
            }
        }
        submit_all(committer, intents, &mut tally).await?;
    }
    println!(
        "Demo month done: {} entries committed, {} refused (a shop paying its supplier before the sales it counted on had committed).",
        tally.committed, tally.refused
    );
    Ok(())
}

fn popular_shop(rng: &mut ChaCha20Rng) -> usize {
    // Squaring a uniform draw favours low indexes: a rough long tail of busy shops.
    let x: f64 = rng.r#gen();
    ((x * x) * MERCHANTS as f64) as usize % MERCHANTS
}

async fn submit_all(
    committer: &Committer,
    intents: Vec<ledger::VerifiedIntent>,
    tally: &mut Tally,
) -> Result<()> {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(intents));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (queue, committer) = (queue.clone(), committer.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some(intent) = next else { break };
                    match committer.submit(&intent).await {
                        Ok(_) => tally.committed += 1,
                        Err(CommitError::Rejected(_) | CommitError::Invalid(_)) => {
                            tally.refused += 1
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(tally)
            })
        })
        .collect();
    for worker in workers {
        let part = worker.await?.context("submitting a demo payment")?;
        tally.committed += part.committed;
        tally.refused += part.refused;
    }
    Ok(())
}

struct Summary {
    lines: Vec<String>,
}

fn summarise(book: &Book) -> Summary {
    let mut lines = Vec::new();
    for unit in book.units() {
        let scale = unit.scale();
        let mut by_kind: Vec<(AccountKind, i64, usize)> = Vec::new();
        let mut merchants: Vec<Balance> = Vec::new();
        for (account, balance) in book.accounts().filter(|(a, _)| a.unit == unit.code()) {
            match by_kind.iter_mut().find(|(k, _, _)| *k == account.kind) {
                Some((_, total, count)) => {
                    *total += balance.minor();
                    *count += 1;
                }
                None => by_kind.push((account.kind, balance.minor(), 1)),
            }
            if account.kind == AccountKind::Merchant {
                merchants.push(balance);
            }
        }
        lines.push(format!("{} ({}):", unit.code(), unit.name()));
        for (kind, total, count) in by_kind {
            lines.push(format!(
                "  {:<10} {:>6} accounts  {:>14}",
                kind.as_str(),
                count,
                Balance(total).format(scale)
            ));
        }
        merchants.sort_unstable_by(|a, b| b.cmp(a));
        let top: Vec<String> = merchants.iter().take(5).map(|b| b.format(scale)).collect();
        lines.push(format!("  busiest merchants hold: {}", top.join(", ")));
    }
    lines.push(format!("entries in the journal: {}", book.applied_count()));
    Summary { lines }
}

async fn print_summary(committer: &Committer) -> Result<()> {
    let summary = committer.inspect(summarise).await?;
    for line in summary.lines {
        println!("{line}");
    }
    Ok(())
}

/// The demo programme's unit.
const PROGRAMME_UNIT: &str = "DEMO-PGI";
/// The PIN of every demo card (printed by `serve --demo`; never use a shared PIN for real).
pub const DEMO_PIN: &str = "2580";

/// Adds a demo minimum-income programme unless one exists: 40 households enrolled from CSV,
/// two approved shops (a grocer and a pharmacy), a card per household with the PIN
/// [`DEMO_PIN`], and this month's run paid.
pub async fn seed_programme_if_none(programmes: &Programmes) -> Result<()> {
    if !programmes.db().programmes().await?.is_empty() {
        return Ok(());
    }
    let unit = UnitCode::new(PROGRAMME_UNIT)?;
    let committer = programmes.committer();
    if committer.view().read().unit(unit).is_none() {
        committer
            .add_unit(Unit::new(
                unit,
                "Demo minimum-income voucher",
                2,
                UnitKind::Voucher,
                Some("EUR"),
            )?)
            .await?;
    }
    let areas: Vec<String> = ["Centro", "Norte"].map(str::to_owned).to_vec();
    let languages: Vec<String> = ["es", "ar", "el"].map(str::to_owned).to_vec();
    let (programme, _) = programmes
        .create(NewProgramme {
            name: "Demo minimum income".into(),
            unit,
            budget_minor: 100_000_00,
            schedule: Schedule::Monthly { day: 5 },
            areas: areas.clone(),
            languages: languages.clone(),
            rules: ProgrammeRules {
                amount: AmountRule {
                    base_minor: 300_00,
                    per_dependent_minor: 75_00,
                    cap_minor: Some(600_00),
                },
                allowed_categories: Some(vec![
                    ledger::CategoryCode::parse("5411")?,
                    ledger::CategoryCode::parse("5912")?,
                ]),
                daily_cap_minor: Some(150_00),
                monthly_cap_minor: None,
                expiry_days: Some(90),
                redemption_fee_basis_points: Some(150),
            },
            fee_account: None,
            debtor: None,
        })
        .await?;
    let rules = wallet_api::enrolment::EnrolmentRules {
        areas,
        languages,
        default_language: "es".into(),
        max_dependents: 30,
    };
    let csv = wallet_api::enrolment::synthetic_enrolment_csv(40, 7, &rules);
    crate::programme_cli::enrol_file(programmes, programme.id, &csv, true).await?;
    let shops = [
        (crate::demo_access::DEMO_SHOP, "Ultramarinos Centro", "5411"),
        (ledger::ParticipantId::new(), "Farmacia Norte", "5912"),
    ];
    for (id, name, category) in shops {
        programmes
            .db()
            .insert_participant(&wallet_api::db::service::Participant {
                id,
                kind: "organisation".into(),
                name: name.into(),
                roles: vec!["merchant".into()],
                category_code: Some(category.into()),
                address: None,
                opening_hours: None,
                listed: true,
                created_at: programme.created_at,
                area: Some("Centro".into()),
                social_enterprise: category == "5411",
                iban: None,
                bic: None,
                account_holder: None,
            })
            .await?;
        programmes.apply_merchant(id, &[programme.id]).await?;
        programmes.decide_merchant(programme.id, id, true).await?;
    }
    for household in programmes.db().households(programme.id).await? {
        programmes.issue_card(household.id, Some(DEMO_PIN)).await?;
    }
    let period = monthly_period_of(now_s().saturating_mul(1000));
    programmes
        .execute_run(
            programme.id,
            &period,
            &RunKind::Monthly,
            RunOptions::default(),
            &|_| {},
        )
        .await?;
    println!(
        "demo programme {} loaded: 40 households with cards (PIN {DEMO_PIN}), {period} paid",
        programme.id
    );
    Ok(())
}
