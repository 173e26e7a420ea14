//! Prints a signed sample payment request (EMVCo merchant-presented payload), its pay link
//! and its QR code in the terminal, and writes `/tmp/payment-request.svg` and
//! `/tmp/payment-request.png`, to scan with a phone:
//! `cargo run -p merchant-terminal --example payment_request_qr`.

use ed25519_dalek::SigningKey;
use ledger::{AccountId, Amount, CategoryCode, PaymentRequestId, UnitCode};
use merchant_terminal::emv::{
    self, AlternateLanguage, Initiation, PaymentRequestPayload, RequestAmount,
};
use merchant_terminal::qr_render;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fixed demo key; a real terminal signs with the merchant's own key.
    let signing_key = SigningKey::from_bytes(&[7; 32]);
    let request = PaymentRequestId::new();
    let payload = PaymentRequestPayload {
        initiation: Initiation::Dynamic {
            amount: RequestAmount {
                value: Amount::from_minor(12_50)?,
                scale: 2,
            },
        },
        merchant_account: AccountId::new(),
        unit: UnitCode::new("SFAX-TND")?,
        category: CategoryCode::parse("5411")?,
        currency_numeric: emv::currency_numeric("TND")?,
        country: "TN".to_owned(),
        merchant_name: "Epicerie Ben Salah".to_owned(),
        city: "Sfax".to_owned(),
        reference: Some(request),
        terminal: Some("caisse-1".to_owned()),
        alternate: Some(AlternateLanguage {
            language: "ar".to_owned(),
            name: "بقالة بن صالح".to_owned(),
            city: Some("صفاقس".to_owned()),
        }),
    };
    let text = emv::encode(&payload, &signing_key)?;
    println!("{text}\n");
    println!(
        "{}\n",
        emv::pay_link("https://pay.example.invalid", request)
    );
    print!("{}", qr_render::unicode(&text)?);
    std::fs::write("/tmp/payment-request.svg", qr_render::svg(&text)?)?;
    std::fs::write("/tmp/payment-request.png", qr_render::png(&text, 8)?)?;
    println!("wrote /tmp/payment-request.svg and /tmp/payment-request.png");
    Ok(())
}
