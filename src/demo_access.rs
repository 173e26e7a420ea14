//! What a person needs to try the pages on `serve --demo`: the shop terminal's link and
//! merchant token, a phone wallet's activation link, and a card with its PIN. Printed at
//! every start, because tokens and activation codes are shown only once; a start revokes the
//! demo tokens of the starts before it.
//!
//! The demo shop is the demo programme's grocer, with a second account in the demo's euro
//! voucher so both kinds of sale work from one terminal: a phone wallet paying in `DEMO-EUR`
//! and a programme card paying in `DEMO-PGI`.

use anyhow::{Context, Result};
use ledger::{Account, AccountId, AccountKind, ParticipantId, UnitCode};
use uuid::Uuid;
use wallet_api::Committer;
use wallet_api::db::Database;
use wallet_api::programme::Programmes;

use crate::scheme::{Scheme, now_ms, now_s};

/// The demo programme's grocer (fixed, so every start finds it again).
pub const DEMO_SHOP: ParticipantId =
    ParticipantId(Uuid::from_u128(0x0190_0000_0000_7000_8000_5350_4f50_0001));
/// The grocer's account in the demo euro voucher.
const DEMO_SHOP_EUR: AccountId =
    AccountId(Uuid::from_u128(0x0190_0000_0000_7000_8000_5350_4f50_0002));
/// The account a phone wallet activates.
const DEMO_WALLET: AccountId =
    AccountId(Uuid::from_u128(0x0190_0000_0000_7000_8000_5741_4c4c_0001));
/// What the demo wallet starts with, in cents.
const WALLET_FUNDS_MINOR: i64 = 80_00;

/// Opens the demo shop's euro account and the wallet's (funded) if missing, then prints how
/// to reach the terminal, the wallet and a card.
pub async fn print(
    db: &Database,
    committer: &Committer,
    programmes: Option<&Programmes>,
    base_url: &str,
) -> Result<()> {
    if db.participant(DEMO_SHOP).await?.is_none() {
        // A demo database from before the pages existed: nothing to point at.
        return Ok(());
    }
    let scheme = Scheme::generate(
        crate::demo::UNIT,
        crate::demo::HOUSEHOLDS,
        crate::demo::MERCHANTS,
        crate::demo::DEFAULT_SEED,
    )?;
    let unit = UnitCode::new(crate::demo::UNIT)?;
    let view = committer.view().clone();
    if view.read().account(DEMO_SHOP_EUR).is_none() {
        let shop = Account {
            id: DEMO_SHOP_EUR,
            ..Account::new(unit, AccountKind::Merchant, None)
        };
        committer
            .open_owned_account(shop, Some(DEMO_SHOP))
            .await
            .context("opening the demo shop's euro account")?;
    }
    if view.read().account(DEMO_WALLET).is_none() {
        let wallet = Account {
            id: DEMO_WALLET,
            ..Account::new(unit, AccountKind::Holder, None)
        };
        committer
            .open_account(wallet)
            .await
            .context("opening the demo wallet's account")?;
        for intent in scheme.issuance(&[DEMO_WALLET], WALLET_FUNDS_MINOR, "welcome", now_s())? {
            committer
                .submit(&intent)
                .await
                .context("funding the demo wallet")?;
        }
    }
    let token = crate::token::reissue(
        db,
        wallet_api::auth::Role::Merchant,
        Some(DEMO_SHOP),
        "demo terminal",
    )
    .await?;
    let issued = wallet_api::activation::issue(
        db,
        now_ms(),
        DEMO_WALLET,
        wallet_api::activation::DEFAULT_VALIDITY_MS,
    )
    .await
    .context("issuing the demo wallet's activation code")?;
    let code = issued.code.grouped();
    println!("demo shop terminal: {base_url}/terminal  (sign in with merchant token {token})");
    println!("demo phone wallet:  {base_url}/wallet#activate={DEMO_WALLET}:{code}");
    if let Some(card) = demo_card(programmes).await? {
        println!(
            "demo card:          {card}  PIN {}  (choose the DEMO-PGI account on the terminal)",
            crate::demo::DEMO_PIN
        );
    }
    Ok(())
}

/// The number of the demo programme's first household's card.
async fn demo_card(programmes: Option<&Programmes>) -> Result<Option<String>> {
    let Some(programmes) = programmes else {
        return Ok(None);
    };
    let db = programmes.db();
    for programme in db.programmes().await? {
        for household in db.households(programme.id).await? {
            if let Some(card) = db.cards_of(household.id).await?.into_iter().next() {
                return Ok(Some(card.number));
            }
        }
    }
    Ok(None)
}
