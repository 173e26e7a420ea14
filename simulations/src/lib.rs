//! Spending-multiplier research kit: measures velocity, holding time, LM3 / LM-n and leakage
//! on ledger event streams, and an agent-based local economy that emits the same events.
//!
//! Nothing is implemented here yet (see the research kit issue); the crate exists so the
//! workspace has its final shape. It reads event files, never the database.
