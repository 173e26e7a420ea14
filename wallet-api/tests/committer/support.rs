//! Shared set-up: a fresh database per test (an SQLite file, or a new database on the
//! PostgreSQL server named by COLEDGER_TEST_POSTGRES_URL) and a small funded scheme.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ledger::{
    Account, AccountId, AccountKind, Action, Amount, EntryId, EntryKind, Intent, IntentId, Leg,
    Limits, PublicKey, SignedIntent, Tags, Unit, UnitCode, UnitKind, VerifiedIntent,
};
use wallet_api::db::scratch;
use wallet_api::{Committer, CommitterConfig, CommitterTask, Database, ManualClock};

/// 2026-11-22T00:00:00Z.
pub const NOW_MS: i64 = 1_795_305_600_000;

/// Says loudly that a check did not run; under CI (`CI=true`) a skip is a failure.
pub fn skip(message: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message}; CI=true forbids skipping"
    );
    eprintln!("\n!!!!!!!! {message} !!!!!!!!\n");
}

/// The PostgreSQL admin URL, or None after a loud message. Under CI a skip is a failure.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("COLEDGER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(
                "COLEDGER_TEST_POSTGRES_URL is not set: PostgreSQL tests SKIPPED (scripts/test starts a throwaway server)",
            );
            None
        }
    }
}

/// A fresh, empty database.
pub struct TestDb {
    pub url: String,
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        Self {
            url,
            label: "sqlite",
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<Self> {
        let admin = postgres_admin_url()?;
        let url = scratch::create_postgres_database(&admin, "coledger_test")
            .await
            .unwrap();
        Some(Self {
            url,
            label: "postgres",
            _dir: None,
        })
    }

    /// SQLite always, PostgreSQL when available.
    pub async fn all() -> Vec<Self> {
        let mut all = vec![Self::sqlite()];
        all.extend(Self::postgres().await);
        all
    }

    pub async fn open(&self) -> Database {
        let db = Database::connect(&self.url).await.unwrap();
        db.migrate().await.unwrap();
        db
    }
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn sign(key: &SigningKey, action: Action) -> VerifiedIntent {
    sign_with_id(key, action, IntentId::new())
}

pub fn sign_with_id(key: &SigningKey, action: Action, intent_id: IntentId) -> VerifiedIntent {
    let intent = Intent {
        intent_id,
        not_after: NOW_MS / 1000 + 3600,
        signer: PublicKey::of(key),
        action,
    };
    SignedIntent::sign(intent, key)
        .unwrap()
        .verify(NOW_MS)
        .unwrap()
}

/// A voucher scheme: an issuer, Alice and Bob (households), and a shop with a ceiling.
pub struct Scheme {
    pub unit: UnitCode,
    pub operator: SigningKey,
    pub alice_key: SigningKey,
    pub bob_key: SigningKey,
    pub issuer: AccountId,
    pub alice: AccountId,
    pub bob: AccountId,
    pub shop: AccountId,
}

/// The shop may hold at most this much.
pub const SHOP_CEILING: i64 = 1_000_00;

impl Scheme {
    pub fn new() -> Self {
        Self {
            unit: UnitCode::new("PGI-EUR").unwrap(),
            operator: key(9),
            alice_key: key(1),
            bob_key: key(2),
            issuer: AccountId::new(),
            alice: AccountId::new(),
            bob: AccountId::new(),
            shop: AccountId::new(),
        }
    }

    pub async fn register(&self, committer: &Committer) {
        let unit = Unit::new(
            self.unit,
            "Minimum income voucher",
            2,
            UnitKind::Voucher,
            Some("EUR"),
        )
        .unwrap();
        committer.add_unit(unit).await.unwrap();
        let accounts = [
            (self.issuer, AccountKind::Issuer, &self.operator, None),
            (self.alice, AccountKind::Holder, &self.alice_key, None),
            (self.bob, AccountKind::Holder, &self.bob_key, None),
            (
                self.shop,
                AccountKind::Merchant,
                &key(3),
                Some(Limits::new(Some(0), Some(SHOP_CEILING)).unwrap()),
            ),
        ];
        for (id, kind, owner, limits) in accounts {
            let mut account = Account {
                id,
                ..Account::new(self.unit, kind, Some(PublicKey::of(owner)))
            };
            if let Some(limits) = limits {
                account = account.with_limits(limits);
            }
            committer.open_account(account).await.unwrap();
        }
    }

    pub fn issue(&self, to: AccountId, minor: i64) -> VerifiedIntent {
        let legs = vec![
            Leg {
                account: self.issuer,
                unit: self.unit,
                delta: -minor,
            },
            Leg {
                account: to,
                unit: self.unit,
                delta: minor,
            },
        ];
        sign(
            &self.operator,
            Action::Entry {
                kind: EntryKind::Issue,
                legs,
                memo: "benefit".into(),
                tags: Tags::default(),
            },
        )
    }

    /// Issues `minor` to `to` through `committer` and waits until it is committed.
    pub async fn fund(&self, committer: &Committer, to: AccountId, minor: i64) {
        committer.submit(&self.issue(to, minor)).await.unwrap();
    }

    pub fn pay(
        &self,
        payer: &SigningKey,
        from: AccountId,
        to: AccountId,
        minor: i64,
    ) -> VerifiedIntent {
        sign(payer, self.payment(from, to, minor))
    }

    /// One entry in which `from` pays 20 to the shop and 10 to `other`: two credits, one debit.
    pub fn split(&self, from: AccountId, other: AccountId) -> Action {
        let leg = |account, delta| Leg {
            account,
            unit: self.unit,
            delta,
        };
        Action::Entry {
            kind: EntryKind::Fee,
            legs: vec![leg(from, -30), leg(self.shop, 20), leg(other, 10)],
            memo: "split".into(),
            tags: Tags::default(),
        }
    }

    /// The shop gives `minor` of `payment` back to Alice.
    pub fn refund(&self, payment: EntryId, minor: i64) -> VerifiedIntent {
        sign(
            &key(3),
            Action::Refund {
                payment,
                from: self.shop,
                to: self.alice,
                unit: self.unit,
                amount_minor: Amount::from_minor(minor).unwrap(),
                memo: String::new(),
            },
        )
    }

    pub fn payment(&self, from: AccountId, to: AccountId, minor: i64) -> Action {
        Action::Payment {
            from,
            to,
            unit: self.unit,
            amount_minor: Amount::from_minor(minor).unwrap(),
            memo: String::new(),
            request: None,
        }
    }
}

/// A fresh database of `test_db` with the test scheme registered by a started committer.
pub async fn started(test_db: &TestDb) -> (Database, Scheme, Committer, CommitterTask) {
    let db = test_db.open().await;
    let scheme = Scheme::new();
    let (committer, task) = start(&db).await;
    scheme.register(&committer).await;
    (db, scheme, committer, task)
}

pub async fn start(db: &Database) -> (Committer, CommitterTask) {
    start_with(db, CommitterConfig::default()).await
}

/// A committer with the default configuration on `clock`, which the test moves.
pub async fn start_on(db: &Database, clock: &Arc<ManualClock>) -> (Committer, CommitterTask) {
    Committer::start(db.clone(), CommitterConfig::default(), clock.clone())
        .await
        .unwrap()
}

pub async fn start_with(db: &Database, config: CommitterConfig) -> (Committer, CommitterTask) {
    Committer::start(db.clone(), config, Arc::new(ManualClock::new(NOW_MS)))
        .await
        .unwrap()
}

pub async fn stop(committer: Committer, mut task: CommitterTask) {
    drop(committer);
    task.join().await.unwrap();
}

pub async fn balance(committer: &Committer, account: AccountId) -> i64 {
    committer
        .inspect(move |b| b.balance(account).unwrap().minor())
        .await
        .unwrap()
}
