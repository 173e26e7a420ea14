//! Spending-multiplier research kit: measures velocity, holding time, LM3 / LM-n and leakage
//! on ledger event streams, and models (Monte Carlo spending rounds, an agent-based local
//! economy) that emit the same events, so one measuring path serves real and synthetic data.
//!
//! Invariants: money is integer minor units (`i64`) wherever it moves; floats appear only for
//! rates and reported measures. Models conserve money to the minor unit (deposits = balances
//! plus withdrawals, asserted) and are deterministic for a seed. The crate reads event files,
//! never the database.

pub mod agents;
pub mod book;
pub mod events;
pub mod lots;
pub mod measure;
pub mod montecarlo;
pub mod report;
pub mod run;
pub mod scenario;

pub use run::{
    RunSummary, SimError, SweepPoint, measure_file, measure_file_by_programme, measure_file_with,
    parse_range, run_scenario, simulate, simulate_with, sweep,
};
