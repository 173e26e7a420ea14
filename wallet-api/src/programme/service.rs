//! The programme operations the API and the CLI share: create a programme, change its rules,
//! enrol households, accept merchants. Each checks its input, writes the programme tables,
//! then tells the committer (accounts to open, rules to enforce), in an order that a crash
//! between two steps leaves repairable by running the same operation again.

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ledger::{
    Account, AccountId, AccountKind, Action, CategoryCode, EntryKind, HouseholdId, Intent,
    IntentId, Leg, Limits, ParticipantId, ProgrammeId, PublicKey, SignedIntent, Tags, UnitCode,
    UnitKind, VerifiedIntent,
};

use super::cards::CardSettings;
use super::{
    BankAccount, Programme, ProgrammeAccounts, ProgrammeRules, RuleVersion, RulesError, Schedule,
    administrator_key,
};
use crate::cards::ServerSecret;
use crate::clock::Clock;
use crate::committer::{CommitError, Committer};
use crate::db::programmes::{EnrolledHousehold, ProgrammeMerchant};
use crate::db::{Database, DbError, NewAccount};

/// How long a programme's signed intents stay valid after the moment they describe (a run's
/// planning, a sweep's cut-off). It is part of the signed bytes, so it is derived from that
/// moment, not from the clock: re-signing the same work gives the same intent, which the
/// ledger answers as a duplicate. A year, so a run interrupted by a long outage can still be
/// finished; replaying one of these intents is harmless, since its id is derived from the
/// work it does and it applies once.
pub const PROGRAMME_INTENT_VALIDITY_S: i64 = 366 * 24 * 3600;

/// Why a programme operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProgrammeError {
    /// No such thing.
    #[error("{0} not found")]
    NotFound(String),
    /// Bad input; names the field.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The request contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// The budget cannot pay the run.
    #[error("the budget has {available_minor} minor units left; the run needs {needed_minor}")]
    BudgetShort {
        /// What the run needs.
        needed_minor: i64,
        /// What the budget has left.
        available_minor: i64,
    },
    /// A wrong PIN; the card locks when no attempts are left.
    #[error("wrong PIN; {attempts_left} attempts left before the card locks")]
    WrongPin {
        /// Attempts left.
        attempts_left: u32,
    },
    /// The card is locked after too many wrong PINs; an operator can unlock it.
    #[error("card {0} is locked after too many wrong PINs; an operator can unlock it")]
    CardLocked(String),
    /// The card was replaced (reported lost); the new card pays.
    #[error("card {0} has been replaced and no longer pays")]
    CardReplaced(String),
    /// Something failed on our side (a task, corrupt stored data); logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] DbError),
    /// The ledger refused or could not commit.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl From<RulesError> for ProgrammeError {
    fn from(error: RulesError) -> Self {
        match error {
            RulesError::Field { field, reason } => invalid(field, reason),
            RulesError::Policy(e) => invalid("rules", e.to_string()),
        }
    }
}

/// A bad-input error naming the field.
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ProgrammeError {
    ProgrammeError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A new programme, as asked for.
#[derive(Clone, Debug)]
pub struct NewProgramme {
    /// Name.
    pub name: String,
    /// The voucher unit it pays in (no other programme may use it).
    pub unit: UnitCode,
    /// The budget, minor units.
    pub budget_minor: i64,
    /// When it pays.
    pub schedule: Schedule,
    /// Areas households may live in.
    pub areas: Vec<String>,
    /// Languages; the first is the default.
    pub languages: Vec<String>,
    /// The first rules, in force from creation.
    pub rules: ProgrammeRules,
    /// An existing account of the unit that receives redemption fees; a new system account
    /// when absent.
    pub fee_account: Option<AccountId>,
    /// The municipality's bank account that pays redemptions (for the SEPA file).
    pub debtor: Option<BankAccount>,
}

/// A household as read from an enrolment file, before it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HouseholdInput {
    /// The municipality's reference.
    pub reference: String,
    /// Name.
    pub name: String,
    /// Dependents.
    pub dependents: u32,
    /// Area (one of the programme's).
    pub area: String,
    /// Phone, normalised.
    pub phone: Option<String>,
    /// Language.
    pub language: String,
}

impl From<crate::enrolment::Household> for HouseholdInput {
    fn from(h: crate::enrolment::Household) -> Self {
        Self {
            reference: h.household_ref,
            name: h.name,
            dependents: h.dependents,
            area: h.area,
            phone: h.phone,
            language: h.language,
        }
    }
}

/// What an enrolment changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrolmentOutcome {
    /// Households added.
    pub created: usize,
    /// Households whose details changed.
    pub updated: usize,
    /// Households already enrolled exactly so.
    pub unchanged: usize,
}

/// The programme operations, with what they need.
#[derive(Clone)]
pub struct Programmes {
    pub(super) db: Database,
    pub(super) committer: Committer,
    pub(super) clock: Arc<dyn Clock>,
    secret: Arc<ServerSecret>,
    pub(super) cards: CardSettings,
    /// Bounds the argon2 work of PIN checks running at once (each takes ~20 MiB, ~20 ms).
    pub(super) pin_checks: Arc<tokio::sync::Semaphore>,
    /// One multi-step programme operation at a time per process (runs, sweeps, enrolment,
    /// cards, approvals): each reads state, then writes in several steps, and two at once
    /// could both act on the same reading (pay twice, issue two cards). Only the process
    /// holding the writer lease has a `Programmes`, so one process is all there is.
    pub(super) exclusive: Arc<tokio::sync::Mutex<()>>,
    /// Held while a programme is created, and by `POST /v1/accounts` while it checks that a
    /// unit has no programme and opens its account there
    /// ([`Programmes::hold_programme_units`]), so neither slips between the other's check and
    /// its write. Apart from `exclusive`, which a run holds for minutes.
    creating: Arc<tokio::sync::Mutex<()>>,
}

impl Programmes {
    /// Operations over `db` and `committer`, signing with keys derived from `secret`.
    pub fn new(
        db: Database,
        committer: Committer,
        clock: Arc<dyn Clock>,
        secret: ServerSecret,
        cards: CardSettings,
    ) -> Self {
        let parallel_pin_checks = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        Self {
            db,
            committer,
            clock,
            secret: Arc::new(secret),
            cards,
            pin_checks: Arc::new(tokio::sync::Semaphore::new(parallel_pin_checks)),
            exclusive: Arc::new(tokio::sync::Mutex::new(())),
            creating: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Keeps programmes from being created until it is dropped: for opening an account
    /// outside the programmes, whose check that its unit has no programme must still hold
    /// when the account is opened.
    pub async fn hold_programme_units(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.creating).lock_owned().await
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The committer.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(super) fn administrator(&self, programme: ProgrammeId) -> SigningKey {
        administrator_key(&self.secret, programme)
    }

    /// Checks that the server secret is the one this database's programmes were made with:
    /// each programme's administrator key derives from it. Another secret (a new one made
    /// because the file was not restored with the database, or the wrong `--secret-file`)
    /// would sign runs and sweeps that the budget accounts refuse, open no card, and change
    /// the research pseudonyms.
    pub async fn check_secret(&self) -> Result<(), ProgrammeError> {
        for programme in self.db.programmes().await? {
            if PublicKey::of(&self.administrator(programme.id)) != programme.administrator {
                return Err(ProgrammeError::Conflict(format!(
                    "the server secret is not the one this database's programmes were made \
                     with (programme {}, {}): restore the secret backed up with the database \
                     (for SQLite, the .secret file beside it; remove one made since) or pass \
                     the right --secret-file",
                    programme.id, programme.name
                )));
            }
        }
        Ok(())
    }

    pub(super) fn secret_handle(&self) -> Arc<ServerSecret> {
        self.secret.clone()
    }

    /// A programme, or `NotFound`.
    pub async fn get(&self, id: ProgrammeId) -> Result<Programme, ProgrammeError> {
        self.db
            .programme(id)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("programme {id}")))
    }

    /// Creates a programme: its accounts, its first rules, and the unit's policy.
    pub async fn create(
        &self,
        new: NewProgramme,
    ) -> Result<(Programme, RuleVersion), ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let _no_account_opened_meanwhile = self.creating.lock().await;
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(invalid(
                "name",
                "must be 1 to 200 characters, with no control characters",
            ));
        }
        if new.budget_minor <= 0 {
            return Err(invalid("budget", "must be positive"));
        }
        let areas = clean_list("areas", &new.areas)?;
        let languages = clean_list("languages", &new.languages)?;
        new.rules.validate()?;
        let debtor = new.debtor.map(validate_bank_account).transpose()?;
        let unit_kind = self
            .committer
            .view()
            .read()
            .unit(new.unit)
            .map(ledger::Unit::kind);
        match unit_kind {
            None => return Err(invalid("unit", format!("unknown unit {}", new.unit))),
            Some(UnitKind::Voucher) => {}
            Some(other) => {
                return Err(invalid(
                    "unit",
                    format!(
                        "programmes pay in voucher units; {} is {}",
                        new.unit,
                        other.as_str()
                    ),
                ));
            }
        }
        if let Some(other) = self
            .db
            .programmes()
            .await?
            .into_iter()
            .find(|p| p.unit == new.unit)
        {
            return Err(ProgrammeError::Conflict(format!(
                "unit {} already belongs to programme {} ({}); a unit carries one programme's \
                 spending rules",
                new.unit, other.id, other.name
            )));
        }
        // The programme's budget must be the unit's only issuer: an issuer account opened in
        // the unit before the programme (whose key someone holds) would issue past the budget.
        let issuers: Vec<AccountId> = self
            .committer
            .view()
            .read()
            .accounts()
            .filter(|a| a.account.unit == new.unit && a.account.kind == AccountKind::Issuer)
            .map(|a| a.account.id)
            .collect();
        if !issuers.is_empty() {
            return Err(ProgrammeError::Conflict(format!(
                "unit {} already has an issuer account ({}): a programme's budget must be its \
                 unit's only issuer; create the programme in a new unit",
                new.unit,
                issuers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(fees) = new.fee_account {
            let view = self.committer.view().read();
            match view.account(fees) {
                Some(a) if a.account.unit == new.unit => {}
                Some(_) => return Err(invalid("fee_account", "holds another unit")),
                None => return Err(invalid("fee_account", format!("unknown account {fees}"))),
            }
        }

        let id = ProgrammeId::new();
        let administrator = PublicKey::of(&self.administrator(id));
        let budget_limits = Limits::new(Some(new.budget_minor.saturating_neg()), None)
            .map_err(|e| invalid("budget", e.to_string()))?;
        let budget = Account::new(new.unit, AccountKind::Issuer, Some(administrator))
            .with_limits(budget_limits);
        let clearing = Account::new(new.unit, AccountKind::System, None);
        let mut to_open = vec![budget.clone(), clearing.clone()];
        let fees = match new.fee_account {
            Some(fees) => fees,
            None => {
                let account = Account::new(new.unit, AccountKind::System, None);
                let id = account.id;
                to_open.push(account);
                id
            }
        };
        let now = self.now_ms();
        let programme = Programme {
            id,
            name,
            unit: new.unit,
            accounts: ProgrammeAccounts {
                budget: budget.id,
                clearing: clearing.id,
                fees,
            },
            administrator,
            schedule: new.schedule,
            areas,
            languages,
            debtor,
            created_at: now,
        };
        let first = RuleVersion {
            version: 1,
            effective_from: now,
            rules: new.rules,
            created_at: now,
        };
        let policy = programme.policy(std::slice::from_ref(&first))?;
        self.committer
            .open_accounts(
                to_open
                    .into_iter()
                    .map(|account| NewAccount {
                        account,
                        owner: None,
                    })
                    .collect(),
            )
            .await?;
        self.db.insert_programme(&programme, &first).await?;
        let unit = programme.unit;
        self.committer
            .configure(move |book| book.set_policy(unit, policy))
            .await?;
        Ok((programme, first))
    }

    /// Adds a version of the rules, in force from `effective_from` (now if absent; never in
    /// the past, since entries already made were judged by the rules of their day).
    pub async fn change_rules(
        &self,
        id: ProgrammeId,
        effective_from: Option<i64>,
        rules: ProgrammeRules,
    ) -> Result<RuleVersion, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let programme = self.get(id).await?;
        rules.validate()?;
        let now = self.now_ms();
        let effective_from = effective_from.unwrap_or(now);
        if effective_from < now {
            return Err(invalid(
                "effective_from",
                "a rule change cannot take effect in the past",
            ));
        }
        let mut versions = self.db.rule_versions(id).await?;
        if versions.iter().any(|v| v.effective_from == effective_from) {
            return Err(invalid(
                "effective_from",
                "another version takes effect at that exact time",
            ));
        }
        let version = self
            .db
            .add_rule_version(id, effective_from, &rules, now)
            .await?;
        versions.push(version.clone());
        let policy = programme.policy(&versions)?;
        let unit = programme.unit;
        self.committer
            .configure(move |book| book.set_policy(unit, policy))
            .await?;
        Ok(version)
    }

    /// Enrols households: new references are added with an account each, changed details
    /// are updated, identical rows change nothing. Households are stored first and their
    /// accounts opened after, so a crash between the two is repaired by importing again
    /// (missing accounts are opened then).
    pub async fn enrol(
        &self,
        id: ProgrammeId,
        rows: Vec<HouseholdInput>,
    ) -> Result<EnrolmentOutcome, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let programme = self.get(id).await?;
        let existing: HashMap<String, EnrolledHousehold> = self
            .db
            .households(id)
            .await?
            .into_iter()
            .map(|h| (h.reference.to_ascii_uppercase(), h))
            .collect();
        let now = self.now_ms();
        let mut outcome = EnrolmentOutcome::default();
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for mut row in rows {
            // References compare ignoring case (a register exported twice may differ only
            // in case); they are stored in upper case.
            row.reference = row.reference.to_ascii_uppercase();
            if !programme.areas.contains(&row.area) {
                return Err(invalid(
                    "area",
                    format!("household {}: unknown area {:?}", row.reference, row.area),
                ));
            }
            if !programme.languages.contains(&row.language) {
                return Err(invalid(
                    "language",
                    format!(
                        "household {}: unsupported language {:?}",
                        row.reference, row.language
                    ),
                ));
            }
            match existing.get(&row.reference) {
                Some(old) => {
                    let updated = EnrolledHousehold {
                        name: row.name,
                        dependents: row.dependents,
                        area: row.area,
                        phone: row.phone,
                        language: row.language,
                        ..old.clone()
                    };
                    if updated == *old {
                        outcome.unchanged = outcome.unchanged.saturating_add(1);
                    } else {
                        outcome.updated = outcome.updated.saturating_add(1);
                        changed.push(updated);
                    }
                }
                None => {
                    outcome.created = outcome.created.saturating_add(1);
                    new.push(EnrolledHousehold {
                        id: HouseholdId::new(),
                        programme: id,
                        reference: row.reference,
                        name: row.name,
                        dependents: row.dependents,
                        area: row.area,
                        phone: row.phone,
                        language: row.language,
                        account: AccountId::new(),
                        enrolled_at: now,
                    });
                }
            }
        }
        self.db.save_households(&new, &changed).await?;
        let missing: Vec<NewAccount> = {
            let view = self.committer.view().read();
            existing
                .values()
                .chain(new.iter())
                .filter(|h| view.account(h.account).is_none())
                .map(|h| NewAccount {
                    account: Account {
                        id: h.account,
                        ..Account::new(programme.unit, AccountKind::Holder, None)
                    },
                    owner: None,
                })
                .collect()
        };
        if !missing.is_empty() {
            self.committer.open_accounts(missing).await?;
        }
        Ok(outcome)
    }

    /// Records a merchant's application to programmes.
    pub async fn apply_merchant(
        &self,
        participant: ParticipantId,
        programmes: &[ProgrammeId],
    ) -> Result<(), ProgrammeError> {
        check_applied_programmes(programmes)?;
        for &programme in programmes {
            self.get(programme).await?;
            if self
                .db
                .programme_merchant(programme, participant)
                .await?
                .is_some()
            {
                return Err(ProgrammeError::Conflict(format!(
                    "participant {participant} has already applied to programme {programme}"
                )));
            }
        }
        self.db
            .apply_merchant(participant, programmes, self.now_ms())
            .await?;
        Ok(())
    }

    /// A programme manager's decision. Approval opens the merchant's account in the
    /// programme's unit (unless it has one) and registers it as a payee with its category;
    /// rejection after approval deregisters it.
    pub async fn decide_merchant(
        &self,
        programme_id: ProgrammeId,
        participant: ParticipantId,
        approve: bool,
    ) -> Result<ProgrammeMerchant, ProgrammeError> {
        let _one_at_a_time = self.exclusive.lock().await;
        let programme = self.get(programme_id).await?;
        let standing = self
            .db
            .programme_merchant(programme_id, participant)
            .await?
            .ok_or_else(|| {
                ProgrammeError::NotFound(format!(
                    "application of participant {participant} to programme {programme_id}"
                ))
            })?;
        let merchant = self
            .db
            .participant(participant)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("participant {participant}")))?;
        let now = self.now_ms();
        if !approve {
            self.db
                .decide_merchant(programme_id, participant, "rejected", None, now)
                .await?;
            if let Some(account) = standing.account {
                self.committer
                    .configure(move |book| book.set_payee(account, None))
                    .await?;
            }
            return self.standing(programme_id, participant).await;
        }
        let category = merchant
            .category_code
            .as_deref()
            .ok_or_else(|| {
                invalid(
                    "category_code",
                    "a merchant needs a category code before it can be approved",
                )
            })
            .and_then(|c| {
                CategoryCode::parse(c).map_err(|e| invalid("category_code", e.to_string()))
            })?;
        let existing = {
            let view = self.committer.view().read();
            view.accounts_of(participant)
                .find(|a| {
                    a.account.unit == programme.unit && a.account.kind == AccountKind::Merchant
                })
                .map(|a| a.account.id)
        };
        let account = match existing.or(standing.account) {
            Some(account) => account,
            None => {
                let account = Account::new(programme.unit, AccountKind::Merchant, None);
                let id = account.id;
                self.committer
                    .open_owned_account(account, Some(participant))
                    .await?;
                id
            }
        };
        self.db
            .decide_merchant(programme_id, participant, "approved", Some(account), now)
            .await?;
        self.committer
            .configure(move |book| book.set_payee(account, Some(category)))
            .await?;
        self.standing(programme_id, participant).await
    }

    async fn standing(
        &self,
        programme: ProgrammeId,
        participant: ParticipantId,
    ) -> Result<ProgrammeMerchant, ProgrammeError> {
        self.db
            .programme_merchant(programme, participant)
            .await?
            .ok_or_else(|| ProgrammeError::NotFound(format!("participant {participant}")))
    }

    /// Signs an entry as the programme's administrator and verifies it, ready to submit.
    pub(super) fn sign_entry(
        &self,
        programme: ProgrammeId,
        entry: ProgrammeEntry,
    ) -> Result<VerifiedIntent, ProgrammeError> {
        let ProgrammeEntry {
            intent_id,
            valid_from_ms,
            kind,
            legs,
            memo,
            tags,
        } = entry;
        let key = self.administrator(programme);
        let intent = Intent {
            intent_id,
            not_after: valid_from_ms
                .div_euclid(1000)
                .saturating_add(PROGRAMME_INTENT_VALIDITY_S),
            signer: PublicKey::of(&key),
            action: Action::Entry {
                kind,
                legs,
                memo,
                tags,
            },
        };
        let signed = SignedIntent::sign(intent, &key).map_err(CommitError::from)?;
        Ok(signed.verify(self.now_ms()).map_err(CommitError::from)?)
    }
}

/// An entry a programme signs: what it is, and the moment its validity counts from.
pub(super) struct ProgrammeEntry {
    pub(super) intent_id: IntentId,
    pub(super) valid_from_ms: i64,
    pub(super) kind: EntryKind,
    pub(super) legs: Vec<Leg>,
    pub(super) memo: String,
    pub(super) tags: Tags,
}

/// The programmes a merchant applies to: at least one, none twice.
pub fn check_applied_programmes(programmes: &[ProgrammeId]) -> Result<(), ProgrammeError> {
    if programmes.is_empty() {
        return Err(invalid("programmes", "name at least one programme"));
    }
    for (index, programme) in programmes.iter().enumerate() {
        if programmes[..index].contains(programme) {
            return Err(invalid(
                "programmes",
                format!("programme {programme} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Checks and normalises a bank account (IBAN checksum, BIC shape, a name).
fn validate_bank_account(account: BankAccount) -> Result<BankAccount, ProgrammeError> {
    let name = account.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 140 || name.chars().any(char::is_control) {
        return Err(invalid(
            "debtor.name",
            "must be 1 to 140 characters, with no control characters",
        ));
    }
    let iban = crate::redemption::pain001::normalise_iban(&account.iban)
        .map_err(|e| invalid("debtor.iban", e.to_string()))?;
    let bic = match account.bic.as_deref() {
        None => None,
        Some(text) => Some(
            crate::redemption::pain001::normalise_bic(text)
                .ok_or_else(|| invalid("debtor.bic", "must be 8 or 11 characters (ISO 9362)"))?,
        ),
    };
    Ok(BankAccount { name, iban, bic })
}

/// Trims, drops empties, refuses duplicates (case-insensitively) and empty lists.
fn clean_list(field: &str, items: &[String]) -> Result<Vec<String>, ProgrammeError> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() || item.chars().count() > 100 || item.chars().any(char::is_control) {
            return Err(invalid(
                field,
                "each entry must be 1 to 100 characters, with no control characters",
            ));
        }
        if out.iter().any(|o| o.eq_ignore_ascii_case(item)) {
            return Err(invalid(field, format!("{item:?} is listed twice")));
        }
        out.push(item.to_owned());
    }
    if out.is_empty() {
        return Err(invalid(field, "name at least one"));
    }
    Ok(out)
}
