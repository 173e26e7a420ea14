//! The coledger service: storage (SQLite or PostgreSQL through sqlx), the batched committer
//! that is the ledger's single writer, and the HTTP API.
//!
//! Invariants: only the committer writes ledger rows, and it replies only after the database
//! commit (a reply means durable); the Book in memory is always what storage says, verified
//! on every start and reloaded after any failed write; SQL lives only in [`db`]. Activation
//! codes ([`activation`]) are stored only as hashes and used at most once.

pub mod activation;
pub mod auth;
pub mod cards;
pub mod checkpoints;
pub mod clock;
pub mod committer;
pub mod db;
mod deadlines;
pub mod history;
pub mod http;
pub mod programme;
pub mod redemption;
pub mod research;
pub mod transparency;
pub mod verifier;
pub mod view;

pub use clock::{Clock, ManualClock, SystemClock};
pub use committer::{
    CommitError, Committed, Committer, CommitterConfig, CommitterTask, RequestClosure,
};
pub use db::Database;
/// Beneficiary enrolment files (the pure CSV parser, a crate of its own so that the fuzzer
/// can build it without the service).
pub use enrolment;
pub use verifier::Verifier;
