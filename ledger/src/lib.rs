//! The pure domain of coledger: a double-entry ledger for complementary currencies.
//!
//! Nothing here does IO, spawns tasks or touches a database; the service (`wallet-api`)
//! feeds it values and persists what it returns. The invariants this crate guarantees:
//!
//! - an [`Amount`] is a non-negative whole number of a unit's minor units, never a float,
//!   and arithmetic on it is checked;
//! - a [`JournalEntry`] is a non-empty set of [`Posting`]s, each moving one amount from a debit
//!   account to a different credit account of the same unit, so every entry balances per unit
//!   by construction;
//! - every entry is authorised by a signed [`Intent`] (ed25519 over `"coledger/v1\n"` + RFC 8785
//!   canonical JSON), and an `intent_id` is applied at most once;
//! - the [`Book`] applies an entry wholly or not at all; after every apply, per unit the sum of
//!   all balances is zero and every balance is within its account's limits;
//! - the [`journal`] links committed entries per unit into a SHA-256 hash chain.
#![deny(clippy::arithmetic_side_effects)]

pub mod account;
pub mod amount;
pub mod book;
pub mod canonical;
pub mod entry;
pub mod ids;
pub mod intent;
pub mod journal;
pub mod keys;
pub mod policy;
pub mod unit;

pub use account::{Account, AccountKind, AccountStatus, Limits};
pub use amount::{Amount, AmountError, Balance};
pub use book::{Book, BookError, InvariantViolation};
pub use entry::{Authorisation, EntryError, EntryKind, JournalEntry, Leg, Posting, Tags};
pub use ids::{
    AccountId, EntryId, HouseholdId, IntentId, ParticipantId, PaymentRequestId, ProgrammeId, RunId,
};
pub use intent::{Action, Intent, IntentError, SignedIntent, VerifiedIntent};
pub use journal::{ChainHead, Digest, JournalLink};
pub use keys::{PublicKey, Signature};
pub use policy::{CategoryCode, RedemptionRule, SpendingRule, SpendingRules, UnitPolicy};
pub use unit::{Unit, UnitCode, UnitError, UnitKind};

/// A moment in time as milliseconds since the Unix epoch (UTC). The ledger never reads the
/// clock itself: callers pass time in, so expiry and ordering are testable.
pub type TimestampMs = i64;
