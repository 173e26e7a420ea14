//! Writes a sample card sheet, `/tmp/cards-sample.pdf` and `/tmp/cards-sample-N.svg`, with
//! Spanish, Greek, Arabic and Portuguese cards, to look at:
//! `cargo run -p merchant-terminal --example card_sheet_sample`.

use merchant_terminal::card_sheet::{CardFace, render_pdf, render_svg_pages};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let people = [
        ("es", "Moneda Social Sevilla", "Lucía Fernández Ruiz"),
        ("el", "Κοινωνικό Νόμισμα Αθήνας", "Ελένη Παπαδοπούλου"),
        ("ar", "Moneda Social Sevilla", "فاطمة الزهراء بن علي"),
        ("pt", "Moeda Social Lisboa", "João Gonçalves"),
        ("ar", "عملة إشبيلية الاجتماعية", "Youssef El Amrani"),
        ("es", "Moneda Social Sevilla", "O'Brien & <Sons>"),
    ];
    let cards: Vec<CardFace> = (0..13u64)
        .map(|i| {
            let (language, scheme, name) = people[(i as usize) % people.len()];
            let card_number = format!("{:016}", 6_012_345_678_901_200 + i);
            CardFace {
                scheme_name: scheme.to_owned(),
                holder_name: name.to_owned(),
                qr_payload: format!("https://pay.example.invalid/c/{card_number}"),
                card_number,
                language: language.to_owned(),
            }
        })
        .collect();
    std::fs::write("/tmp/cards-sample.pdf", render_pdf(&cards)?)?;
    for (i, page) in render_svg_pages(&cards)?.iter().enumerate() {
        std::fs::write(format!("/tmp/cards-sample-{}.svg", i + 1), page)?;
    }
    println!("wrote /tmp/cards-sample.pdf and /tmp/cards-sample-{{1,2}}.svg");
    Ok(())
}
