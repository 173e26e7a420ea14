//! A synthetic scheme with deterministic keys and ids, shared by `demo`, `bench` and the
//! crash tests: one voucher unit, an issuer, holders and merchants, each with its own key.

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use ledger::entry::MAX_POSTINGS;
use ledger::{
    Account, AccountId, AccountKind, Action, Amount, EntryKind, Intent, IntentId, Leg, PublicKey,
    SignedIntent, Tags, Unit, UnitCode, UnitKind, VerifiedIntent,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use uuid::Uuid;
use wallet_api::Committer;

/// How long synthetic intents stay valid: far enough ahead for any run.
const VALIDITY_S: i64 = 7 * 24 * 3600;

/// A participant: an account and the key that controls it.
pub struct Member {
    /// The account.
    pub account: AccountId,
    /// Its key.
    pub key: SigningKey,
}

/// The scheme.
pub struct Scheme {
    /// The voucher unit.
    pub unit: Unit,
    /// The operator's key, which controls the issuer account.
    pub operator: SigningKey,
    /// The issuer account.
    pub issuer: AccountId,
    /// Households.
    pub holders: Vec<Member>,
    /// Shops.
    pub merchants: Vec<Member>,
}

fn member(rng: &mut ChaCha20Rng) -> Member {
    Member {
        account: AccountId(Uuid::from_bytes(rng.r#gen())),
        key: SigningKey::from_bytes(&rng.r#gen()),
    }
}

impl Scheme {
    /// The same scheme for the same seed, every time.
    pub fn generate(code: &str, holders: usize, merchants: usize, seed: u64) -> Result<Self> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let unit = Unit::new(
            UnitCode::new(code)?,
            "Demo euro voucher",
            2,
            UnitKind::Voucher,
            Some("EUR"),
        )?;
        Ok(Self {
            unit,
            operator: SigningKey::from_bytes(&rng.r#gen()),
            issuer: AccountId(Uuid::from_bytes(rng.r#gen())),
            holders: (0..holders).map(|_| member(&mut rng)).collect(),
            merchants: (0..merchants).map(|_| member(&mut rng)).collect(),
        })
    }

    /// The unit's code.
    pub fn code(&self) -> UnitCode {
        self.unit.code()
    }

    /// Registers the unit and opens every account.
    pub async fn register(&self, committer: &Committer) -> Result<()> {
        committer
            .add_unit(self.unit.clone())
            .await
            .context("adding the unit")?;
        let mut accounts = vec![Account {
            id: self.issuer,
            ..Account::new(
                self.code(),
                AccountKind::Issuer,
                Some(PublicKey::of(&self.operator)),
            )
        }];
        for (members, kind) in [
            (&self.holders, AccountKind::Holder),
            (&self.merchants, AccountKind::Merchant),
        ] {
            accounts.extend(members.iter().map(|m| Account {
                id: m.account,
                ..Account::new(self.code(), kind, Some(PublicKey::of(&m.key)))
            }));
        }
        // Opening is queued all at once so the committer writes the accounts in few batches.
        let opened = accounts.into_iter().map(|a| {
            let committer = committer.clone();
            tokio::spawn(async move { committer.open_account(a).await })
        });
        for handle in opened.collect::<Vec<_>>() {
            handle.await?.context("opening an account")?;
        }
        Ok(())
    }

    /// Issue intents crediting `minor` to each account in `to`, as few entries as possible.
    pub fn issuance(
        &self,
        to: &[AccountId],
        minor: i64,
        memo: &str,
        now_s: i64,
    ) -> Result<Vec<VerifiedIntent>> {
        to.chunks(MAX_POSTINGS.saturating_sub(1))
            .map(|chunk| {
                let total = minor
                    .checked_mul(i64::try_from(chunk.len())?)
                    .context("issuance total overflows")?;
                let mut legs = vec![Leg {
                    account: self.issuer,
                    unit: self.code(),
                    delta: -total,
                }];
                legs.extend(chunk.iter().map(|&account| Leg {
                    account,
                    unit: self.code(),
                    delta: minor,
                }));
                let action = Action::Entry {
                    kind: EntryKind::Issue,
                    legs,
                    memo: memo.to_owned(),
                    tags: Tags {
                        programme: Some("demo".into()),
                        ..Tags::default()
                    },
                };
                sign(&self.operator, action, now_s)
            })
            .collect()
    }

    /// A payment intent from `payer` to `to`.
    pub fn payment(
        &self,
        payer: &Member,
        to: AccountId,
        minor: i64,
        memo: &str,
        now_s: i64,
    ) -> Result<VerifiedIntent> {
        let action = Action::Payment {
            from: payer.account,
            to,
            unit: self.code(),
            amount_minor: Amount::from_minor(minor)?,
            memo: memo.to_owned(),
            request: None,
        };
        sign(&payer.key, action, now_s)
    }
}

/// Signs and verifies an intent (the committer accepts only verified intents).
pub fn sign(key: &SigningKey, action: Action, now_s: i64) -> Result<VerifiedIntent> {
    let intent = Intent {
        intent_id: IntentId::new(),
        not_after: now_s.saturating_add(VALIDITY_S),
        signer: PublicKey::of(key),
        action,
    };
    let signed = SignedIntent::sign(intent, key)?;
    Ok(signed.verify(now_s.saturating_mul(1000))?)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    use wallet_api::Clock as _;
    wallet_api::SystemClock.now_ms() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    use wallet_api::Clock as _;
    wallet_api::SystemClock.now_ms()
}
