//! Digital cards: issue one per household, pay with it at a terminal by typing the PIN,
//! lock after wrong PINs, unlock, change the PIN, replace a lost card.
//!
//! A card is a custodial ed25519 key, the authority of the household's account, stored only
//! sealed under the PIN and the server secret ([`crate::cards::vault`]). Paying opens it for
//! one signature; a wrong PIN is counted in the database in the same statement that locks the
//! card at the limit, so parallel guesses cannot exceed it. Replacing a lost card opens a new
//! account for the new card and moves the balance there in a recorded `card_replacement`
//! entry signed by the programme; the old account is frozen.

use ed25519_dalek::SigningKey;
use ledger::{
    Account, AccountId, AccountKind, AccountStatus, Action, Amount, BookError, EntryKind,
    HouseholdId, Intent, IntentId, Leg, PaymentRequestId, PublicKey, SignedIntent, Tags,
};
use rand::Rng as _;
use rand::rngs::OsRng;

use super::service::{ProgrammeEntry, ProgrammeError, Programmes, invalid};

/// Most replacements followed from one card to the household's newest.
const MAX_REPLACEMENT_CHAIN: usize = 1_000;
use crate::cards::vault::{self, KdfParams, Pin, SealedKey};
use crate::cards::{CardNumber, CardPrefix};
use crate::committer::{CommitError, Committed};
use crate::db::NewAccount;
use crate::db::programmes::StoredCard;

/// How long a card payment's intent stays valid: it is signed and submitted at once.
const CARD_INTENT_VALIDITY_S: i64 = 300;

/// Card settings of a deployment.
#[derive(Clone, Copy, Debug)]
pub struct CardSettings {
    /// The first six digits of every card number.
    pub prefix: CardPrefix,
    /// argon2id cost of sealing a card key under its PIN.
    pub kdf: KdfParams,
    /// Wrong PINs in a row that lock a card.
    pub lock_after: u32,
}

/// A card as the API shows it (never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSummary {
    /// The number.
    pub number: CardNumber,
    /// The household.
    pub household: HouseholdId,
    /// The account it pays from.
    pub account: AccountId,
    /// `active`, `locked` or `replaced`.
    pub status: String,
    /// Wrong PINs since the last right one.
    pub failed_attempts: u32,
    /// When issued (ms).
    pub issued_at: i64,
    /// The card that replaced it.
    pub replaced_by: Option<String>,
}

/// A newly issued card, with its PIN when the service chose it (shown once, for the PIN
/// letter; never stored). Its `Debug` leaves the PIN out.
pub struct IssuedCard {
    /// The card.
    pub card: CardSummary,
    /// The PIN the service chose, if the operator did not set one.
    pub generated_pin: Option<String>,
}

impl std::fmt::Debug for IssuedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCard")
            .field("card", &self.card)
            .field("generated_pin", &self.generated_pin.as_ref().map(|_| ".."))
            .finish()
    }
}

/// A card payment at a terminal.
#[derive(Clone, Debug)]
pub struct CardPayment {
    /// The idempotency key chosen by the terminal: a retry pays once.
    pub intent_id: IntentId,
    /// The merchant's account.
    pub to: AccountId,
    /// Amount, minor units.
    pub amount: Amount,
    /// Statement text.
    pub memo: String,
    /// The payment request it settles, if any.
    pub request: Option<PaymentRequestId>,
    /// That request's deadline (ms) as the caller's check read it: the writer refuses the
    /// payment if it reaches it later.
    pub request_expires_at: Option<i64>,
}

fn summary(card: &StoredCard) -> Result<CardSummary, ProgrammeError> {
    Ok(CardSummary {
        number: CardNumber::parse(&card.number)
            .map_err(|e| ProgrammeError::Internal(format!("stored card number: {e}")))?,
        household: card.household,
        account: card.account,
        status: card.status.clone(),
        failed_attempts: card.failed_attempts,
        issued_at: card.issued_at,
        replaced_by: card.replaced_by.clone(),
    })
}

/// Locked and replaced cards do not pay.
fn refuse_unusable(card: &StoredCard, number: CardNumber) -> Result<(), ProgrammeError> {
    match card.status.as_str() {
        "locked" => Err(ProgrammeError::CardLocked(number.to_string())),
        "replaced" => Err(ProgrammeError::CardReplaced(number.to_string())),
        _ => Ok(()),
    }
}

/// The PIN an operator set, checked against the PIN rules, or a generated one (returned
/// as text too, once, for the PIN letter).
fn choose_pin(chosen: Option<&str>) -> Result<(Pin, Option<String>), ProgrammeError> {
    match chosen {
        Some(text) => Ok((
            Pin::parse(text).map_err(|e| invalid("pin", e.to_string()))?,
            None,
        )),
        None => {
            let (pin, text) = random_pin();
            Ok((pin, Some(text)))
        }
    }
}

/// A random PIN that passes the PIN rules (6 digits).
fn random_pin() -> (Pin, String) {
    loop {
        let text = format!("{:06}", OsRng.gen_range(0..1_000_000u32));
        if let Ok(pin) = Pin::parse(&text) {
            return (pin, text);
        }
    }
}

impl Programmes {
    /// Parses a card number typed at a terminal and checks it is one of ours.
    pub fn card_number(&self, text: &str) -> Result<CardNumber, ProgrammeError> {
        let number = CardNumber::parse(text).map_err(|e| invalid("card_number", e.to_string()))?;
        if !number.has_prefix(&self.cards.prefix) {
            return Err(invalid(
                "card_number",
                format!("{number} is not a card of this scheme; check for a typo"),
            ));
        }
        Ok(number)
    }

    async fn stored_card(&self, number: &CardNumber) -> Result<StoredCard, ProgrammeError> {
        self.db
            .card(number.as_str())
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("card {number}")))
    }

    /// A card's state.
    pub async fn card(&self, number: &CardNumber) -> Result<CardSummary, ProgrammeError> {
        summary(&self.stored_card(number).await?)
    }

    /// The cards of a household, newest first.
    pub async fn cards_of(
        &self,
        household: HouseholdId,
    ) -> Result<Vec<CardSummary>, ProgrammeError> {
        self.db
            .cards_of(household)
            .await?
            .iter()
            .map(summary)
            .collect()
    }

    /// Issues a household's card, with `pin` or a generated one.
    pub async fn issue_card(
        &self,
        household_id: HouseholdId,
        pin: Option<&str>,
    ) -> Result<IssuedCard, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let household = self
            .db
            .household(household_id)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("household {household_id}")))?;
        if self
            .db
            .cards_of(household_id)
            .await?
            .iter()
            .any(|c| c.status != "replaced")
        {
            return Err(ProgrammeError::Conflict(format!(
                "household {} already has a card; replace it if it is lost",
                household.reference
            )));
        }
        let (pin, generated_pin) = choose_pin(pin)?;
        let card = self.new_card(household_id, household.account, pin).await?;
        // The key first: a crash before the card row leaves an unused key, and issuing again
        // sets a new one.
        self.committer
            .set_authority(household.account, card.1)
            .await?;
        self.db.insert_card(&card.0).await?;
        Ok(IssuedCard {
            card: summary(&card.0)?,
            generated_pin,
        })
    }

    /// A fresh card for `account`: number, key, sealed key (not yet stored).
    async fn new_card(
        &self,
        household: HouseholdId,
        account: AccountId,
        pin: Pin,
    ) -> Result<(StoredCard, PublicKey), ProgrammeError> {
        let number = CardNumber::generate(&self.cards.prefix, &mut OsRng);
        let key = SigningKey::generate(&mut OsRng);
        let public = PublicKey::of(&key);
        let sealed = self.seal(key, pin, number, self.cards.kdf).await?;
        Ok((
            StoredCard {
                number: number.as_str().to_owned(),
                household,
                account,
                sealed_key: sealed.to_bytes(),
                failed_attempts: 0,
                status: "active".into(),
                issued_at: self.now_ms(),
                replaced_by: None,
            },
            public,
        ))
    }

    async fn seal(
        &self,
        key: SigningKey,
        pin: Pin,
        number: CardNumber,
        params: KdfParams,
    ) -> Result<SealedKey, ProgrammeError> {
        let secret = self.secret_handle();
        let _permit = self.pin_checks.acquire().await;
        tokio::task::spawn_blocking(move || {
            vault::seal(&key, &pin, &secret, &number, params, &mut OsRng)
        })
        .await
        .map_err(|e| ProgrammeError::Internal(format!("sealing task failed: {e}")))?
        .map_err(|e| ProgrammeError::Internal(format!("sealing a card key: {e}")))
    }

    /// Opens a card's key with a typed PIN. The attempt is counted before the PIN is
    /// checked and uncounted only if it was right, so parallel guesses cannot exceed the
    /// limit; the attempt that reaches it locks the card.
    async fn unlock_key(
        &self,
        card: &StoredCard,
        number: CardNumber,
        pin_text: &str,
    ) -> Result<SigningKey, ProgrammeError> {
        refuse_unusable(card, number)?;
        let pin = Pin::parse_attempt(pin_text).map_err(|e| invalid("pin", e.to_string()))?;
        let sealed = SealedKey::from_bytes(&card.sealed_key)
            .map_err(|e| ProgrammeError::Internal(format!("card {number}: {e}")))?;
        let limit = self.cards.lock_after;
        let Some(count) = self.db.reserve_pin_attempt(number.as_str(), limit).await? else {
            // Locked or replaced meanwhile, or the limit is used up by attempts in flight.
            let now = self.stored_card(&number).await?;
            refuse_unusable(&now, number)?;
            self.db.lock_card(number.as_str()).await?;
            return Err(ProgrammeError::CardLocked(number.to_string()));
        };
        let secret = self.secret_handle();
        let opened = {
            let _permit = self.pin_checks.acquire().await;
            tokio::task::spawn_blocking(move || vault::open(&sealed, &pin, &secret, &number))
                .await
                .map_err(|e| ProgrammeError::Internal(format!("PIN check failed: {e}")))?
        };
        match opened {
            Ok(key) => {
                self.db.card_right_pin(number.as_str()).await?;
                Ok(key)
            }
            Err(vault::VaultError::WrongPin) => {
                tracing::info!(card = %number, attempts = count, "wrong PIN");
                if count >= limit {
                    self.db.lock_card(number.as_str()).await?;
                    Err(ProgrammeError::CardLocked(number.to_string()))
                } else {
                    Err(ProgrammeError::WrongPin {
                        attempts_left: limit.saturating_sub(count),
                    })
                }
            }
            Err(e) => Err(ProgrammeError::Internal(format!("card {number}: {e}"))),
        }
    }

    /// Pays from a card: the holder typed the PIN at the merchant's terminal.
    pub async fn pay_by_card(
        &self,
        number: CardNumber,
        pin: &str,
        payment: CardPayment,
    ) -> Result<Committed, ProgrammeError> {
        let card = self.stored_card(&number).await?;
        // A retry of a payment that went through (its answer was lost) gets that answer,
        // without a second PIN check: its bytes differ (a later `not_after`), so the ledger
        // would call it a conflict, and a terminal might then charge again. The id must name
        // the same payment (card, payee, amount), or the terminal would be told "paid" for a
        // sale nobody paid.
        if let Some(position) = self.db.intent_position(payment.intent_id).await? {
            let committed = self.db.entries_at(&[position]).await?;
            if let Some(entry) = committed.first() {
                let same = matches!(
                    entry.postings.as_slice(),
                    [p] if p.debit == card.account && p.credit == payment.to && p.amount == payment.amount
                );
                if !same {
                    return Err(CommitError::Rejected(BookError::IntentConflict(
                        payment.intent_id,
                    ))
                    .into());
                }
                return Ok(Committed {
                    entry_id: entry.id,
                    duplicate: true,
                });
            }
        }
        let key = self.unlock_key(&card, number, pin).await?;
        let unit = {
            let view = self.committer.view().read();
            view.account(card.account)
                .map(|a| a.account.unit)
                .ok_or_else(|| ProgrammeError::NotFound(format!("account {}", card.account)))?
        };
        let now = self.now_ms();
        let intent = Intent {
            intent_id: payment.intent_id,
            not_after: now.div_euclid(1000).saturating_add(CARD_INTENT_VALIDITY_S),
            signer: PublicKey::of(&key),
            action: Action::Payment {
                from: card.account,
                to: payment.to,
                unit,
                amount_minor: payment.amount,
                memo: payment.memo,
                request: payment.request,
            },
        };
        let verified = SignedIntent::sign(intent, &key)
            .and_then(|signed| signed.verify(now))
            .map_err(crate::committer::CommitError::from)?;
        Ok(self
            .committer
            .submit_with_deadline(&verified, payment.request_expires_at)
            .await?)
    }

    /// An operator unlocks a card locked by wrong PINs.
    pub async fn unlock_card(&self, number: CardNumber) -> Result<CardSummary, ProgrammeError> {
        let card = self.stored_card(&number).await?;
        if card.status == "replaced" {
            return Err(ProgrammeError::CardReplaced(number.to_string()));
        }
        self.db
            .set_card_state(number.as_str(), "active", None)
            .await?;
        self.card(&number).await
    }

    /// The holder changes the PIN, proving the old one (a wrong old PIN counts).
    pub async fn change_pin(
        &self,
        number: CardNumber,
        old_pin: &str,
        new_pin: &str,
    ) -> Result<(), ProgrammeError> {
        let new_pin = Pin::parse(new_pin).map_err(|e| invalid("new_pin", e.to_string()))?;
        let card = self.stored_card(&number).await?;
        let key = self.unlock_key(&card, number, old_pin).await?;
        let sealed = self.seal(key, new_pin, number, self.cards.kdf).await?;
        self.db
            .set_card_key(number.as_str(), &sealed.to_bytes())
            .await?;
        Ok(())
    }

    /// The card at the end of the chain of replacements that starts with `replacement`.
    async fn newest_after(&self, replacement: &str) -> Result<StoredCard, ProgrammeError> {
        let parse = |text: &str| {
            CardNumber::parse(text)
                .map_err(|e| ProgrammeError::Internal(format!("stored card number: {e}")))
        };
        let mut card = self.stored_card(&parse(replacement)?).await?;
        // Each replacement makes a new card, so the chain has no loop; the bound only keeps
        // corrupt data from spinning here.
        for _ in 0..MAX_REPLACEMENT_CHAIN {
            match card.replaced_by.as_deref() {
                None => return Ok(card),
                Some(next) => card = self.stored_card(&parse(next)?).await?,
            }
        }
        Err(ProgrammeError::Internal(format!(
            "card {replacement} starts a chain of over {MAX_REPLACEMENT_CHAIN} replacements"
        )))
    }

    /// Replaces a lost card: a new card and account, the balance moved in a recorded entry,
    /// the old account frozen. Safe to repeat if it failed half-way.
    pub async fn replace_card(
        &self,
        number: CardNumber,
        new_pin: Option<&str>,
    ) -> Result<IssuedCard, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let old = self.stored_card(&number).await?;
        let household = self
            .db
            .household(old.household)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("household {}", old.household)))?;
        let programme = self.get(household.programme).await?;
        let replacement = match old.replaced_by.as_deref() {
            // Already replaced: finish the move if it did not happen, to the household's
            // newest card: the one that replaced this may have been replaced since (a retry of
            // an old replacement), and its account is frozen.
            Some(done) => {
                let card = summary(&self.newest_after(done).await?)?;
                // The household follows its new card even if a crash came between the steps.
                self.db
                    .set_household_account(old.household, card.account)
                    .await?;
                self.link_cards(old.account, card.account).await?;
                IssuedCard {
                    card,
                    generated_pin: None,
                }
            }
            None => {
                let (pin, generated_pin) = choose_pin(new_pin)?;
                let account = Account::new(programme.unit, AccountKind::Holder, None);
                let account_id = account.id;
                let (card, key) = self.new_card(old.household, account_id, pin).await?;
                self.committer
                    .open_accounts(vec![NewAccount {
                        account: Account {
                            authority: Some(key),
                            ..account
                        },
                        owner: None,
                    }])
                    .await?;
                // One transaction: the new card, the old one marked replaced by it, the
                // household pointed at the new account; a crash leaves all or none.
                self.db
                    .record_replacement(number.as_str(), &card, old.household)
                    .await?;
                self.link_cards(old.account, account_id).await?;
                IssuedCard {
                    card: summary(&card)?,
                    generated_pin,
                }
            }
        };
        let balance = self
            .committer
            .view()
            .read()
            .account(old.account)
            .map_or(0, |a| a.balance.0);
        if balance > 0 {
            let intent_id = super::derived_intent_id(
                "card-replacement",
                &[number.as_str().as_bytes(), &balance.to_be_bytes()],
            );
            self.move_to_card(
                programme.id,
                programme.unit,
                intent_id,
                (number.as_str(), old.account),
                (replacement.card.number.as_str(), replacement.card.account),
                balance,
            )
            .await?;
        }
        let frozen = self
            .committer
            .view()
            .read()
            .account(old.account)
            .is_some_and(|a| a.account.status == AccountStatus::Frozen);
        if !frozen {
            self.committer
                .set_status(old.account, AccountStatus::Frozen)
                .await?;
        }
        Ok(replacement)
    }

    /// Tells the Book that the card on `new` replaced the card on `old`, so the household's
    /// spending caps go on where they were even when no balance moves (an empty card). The
    /// card records hold the link for the next start; telling it twice changes nothing.
    async fn link_cards(&self, old: AccountId, new: AccountId) -> Result<(), ProgrammeError> {
        self.committer
            .configure(move |book| book.link_replacement(old, new))
            .await?;
        Ok(())
    }

    /// Moves `amount` from a replaced card's account to another card's, in a
    /// `card_replacement` entry signed by the programme; `duplicate` if it had been before.
    async fn move_to_card(
        &self,
        programme: ledger::ProgrammeId,
        unit: ledger::UnitCode,
        intent_id: IntentId,
        (old_number, old_account): (&str, AccountId),
        (new_number, new_account): (&str, AccountId),
        amount: i64,
    ) -> Result<Committed, ProgrammeError> {
        let intent = self.sign_entry(
            programme,
            ProgrammeEntry {
                intent_id,
                valid_from_ms: self.now_ms(),
                kind: EntryKind::CardReplacement,
                legs: vec![
                    Leg {
                        account: old_account,
                        unit,
                        delta: amount.saturating_neg(),
                    },
                    Leg {
                        account: new_account,
                        unit,
                        delta: amount,
                    },
                ],
                memo: format!("card {old_number} replaced by {new_number}"),
                tags: Tags {
                    programme: Some(programme.to_string()),
                    budget_line: None,
                    category: None,
                    reverses: None,
                },
            },
        )?;
        Ok(self.committer.submit(&intent).await?)
    }

    /// Passes on what reached a replaced card's account since it was replaced (a shop's
    /// refund of a sale paid with the lost card: the refund must go back to the account that
    /// paid) to the household's current card. Does nothing for any other account, or when
    /// there is nothing on it. Safe to repeat: the entry's id is derived from the account's
    /// latest entry, so a retry after a crash is the same intent.
    pub async fn forward_to_current_card(&self, account: AccountId) -> Result<(), ProgrammeError> {
        // A replaced card's account is frozen; checking that first keeps the lookup off
        // every other refund's path.
        if self.forwardable(account).is_none() {
            return Ok(());
        }
        let _one_at_a_time = self.exclusive.lock().await;
        let Some(old) = self.db.replaced_card_of(account).await? else {
            return Ok(());
        };
        self.forward_card(&old).await?;
        Ok(())
    }

    /// [`Programmes::forward_to_current_card`] for every replaced card: at start, for a
    /// refund that was committed just before a crash and not yet passed on. Returns how many
    /// cards' money it passed on.
    pub async fn forward_all_to_current_cards(&self) -> Result<usize, ProgrammeError> {
        let mut forwarded = 0;
        for card in self.db.replaced_cards().await? {
            let _one_at_a_time = self.exclusive.lock().await;
            forwarded += usize::from(self.forward_card(&card).await?);
        }
        Ok(forwarded)
    }

    /// The balance and latest entry (position) of `account` if it is frozen, as a replaced
    /// card's is, and holds something to pass on.
    fn forwardable(&self, account: AccountId) -> Option<(i64, i64)> {
        let view = self.committer.view().read();
        let held = view.account(account)?;
        (held.account.status == AccountStatus::Frozen && held.balance.0 > 0)
            .then(|| (held.balance.0, held.last_entry.unwrap_or(0)))
    }

    /// Moves what is on the replaced card `old` to its household's current card. Returns
    /// whether this call moved it: false when there is nothing to move, when the household
    /// still points at `old`'s account (a replacement cut short: repeating it moves the
    /// balance), or when the move had been committed already. The caller holds `exclusive`.
    async fn forward_card(&self, old: &StoredCard) -> Result<bool, ProgrammeError> {
        // Read under the lock: a forward that held it before may have moved the balance.
        let Some((balance, last_entry)) = self.forwardable(old.account) else {
            return Ok(false);
        };
        let household = self
            .db
            .household(old.household)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("household {}", old.household)))?;
        if household.account == old.account {
            return Ok(false);
        }
        let programme = self.get(household.programme).await?;
        let current = self
            .db
            .cards_of(old.household)
            .await?
            .into_iter()
            .find(|c| c.account == household.account)
            .map_or_else(|| household.account.to_string(), |c| c.number);
        let intent_id = super::derived_intent_id(
            "card-forward",
            &[old.account.as_bytes(), &last_entry.to_be_bytes()],
        );
        let committed = self
            .move_to_card(
                programme.id,
                programme.unit,
                intent_id,
                (old.number.as_str(), old.account),
                (current.as_str(), household.account),
                balance,
            )
            .await?;
        Ok(!committed.duplicate)
    }
}
