//! The merchant QR terminal: EMVCo merchant-presented payment-request payloads, QR rendering,
//! the `/terminal` page and a CLI client that talks HTTP to the service.
//!
//! So far it holds [`card_sheet`], printable A4 sheets of beneficiary cards (SVG and PDF).
//! The terminal itself is not implemented yet (see the merchant terminal issue). The crate
//! depends on `ledger` only, never on `wallet-api`.

pub mod card_sheet;
