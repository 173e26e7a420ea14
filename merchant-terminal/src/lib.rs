//! The merchant QR terminal: EMVCo merchant-presented payment-request payloads, QR rendering,
//! the `/terminal` page and a CLI client that talks HTTP to the service.
//!
//! Nothing is implemented here yet (see the merchant terminal issue); the crate exists so the
//! workspace has its final shape. It will depend on `ledger` only, never on `wallet-api`.
