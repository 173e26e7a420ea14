//! The merchant QR terminal: EMVCo merchant-presented payment-request payloads, QR rendering,
//! the `/terminal` page and a CLI client that talks HTTP to the service.
//!
//! So far it holds:
//! - [`emv`]: payment requests as signed EMVCo merchant-presented QR payloads (encode, decode,
//!   verify) and https pay links;
//! - [`qr_render`]: any payload as a QR code in SVG (pages), PNG (print) or Unicode half
//!   blocks (terminals);
//! - [`card_sheet`]: printable A4 sheets of beneficiary cards (SVG and PDF);
//! - [`web`]: the `/terminal` and `/wallet` pages (HTML, CSS and JavaScript compiled in),
//!   which `coledger serve` publishes.
//!
//! The shell terminal (`coledger terminal`) lives in the binary, which does the HTTP. The
//! crate depends on `ledger` only, never on `wallet-api`, and does no I/O.
//!
//! Invariants: a payload [`emv::encode`] writes always decodes back to the same request, and
//! [`emv::decode`] refuses anything it could not have written (bad CRC, unknown data objects,
//! unsigned data after the signature), so a wallet never acts on half-understood QR codes.

pub mod card_sheet;
pub mod emv;
mod qr_matrix;
pub mod qr_render;
pub mod web;
