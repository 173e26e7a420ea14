//! Monte Carlo spending rounds: the textbook multiplier as a stochastic event stream.
//!
//! Day 0: every deposit goes to a household (round-robin). Day `r` (round `r`): every holder
//! that received money in round `r - 1` splits it into `payments_per_round` near-equal
//! payments; each goes to a uniformly drawn local merchant with probability `local_share`,
//! else it is redeemed. After the last round what is left is redeemed. So the expected local
//! spending of generation `g` is `p^(g+1) D` and the expected LM3 is `1 + p + p^2`, which the
//! measuring path must recover.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::{Book, BookError, Sink, UnitTotals};
use crate::events::{Dictionary, ParticipantKind, Reason};
use crate::measure::DAY_S;
use crate::scenario::Scenario;

/// Unit code used by the Monte Carlo model.
pub const UNIT: &str = "LOCAL";

/// The participants of a Monte Carlo run: an issuer, households, merchants, a clearing account.
pub fn dictionary(scenario: &Scenario) -> Result<Dictionary, crate::events::FieldError> {
    let mc = &scenario.monte_carlo;
    let mut d = Dictionary::new();
    d.unit(UNIT)?;
    d.participant("issuer", ParticipantKind::Issuer, "")?;
    d.participant("redemption", ParticipantKind::System, "")?;
    d.label("monte_carlo")?;
    for h in 0..mc.households {
        d.participant(&format!("h{h}"), ParticipantKind::Household, "")?;
    }
    for m in 0..mc.merchants {
        d.participant(&format!("m{m}"), ParticipantKind::Merchant, "shop")?;
    }
    Ok(d)
}

/// Runs the rounds on `dictionary` (from [`dictionary`]), sending every event to `sink`.
pub fn run(
    scenario: &Scenario,
    dictionary: &Dictionary,
    sink: &mut Sink<'_>,
) -> Result<Vec<UnitTotals>, BookError> {
    let mc = &scenario.monte_carlo;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let mut book = Book::new(dictionary);
    let (issuer, clearing, first_household) = (0u32, 1u32, 2u32);
    let first_merchant = first_household + mc.households;
    book.set_programme(1);
    book.set_time(scenario.start_s);
    // Holders with money to spend this round, and the amount, in order of receipt.
    let mut spenders: Vec<(u32, i64)> = Vec::new();
    for i in 0..mc.deposits {
        let household = first_household + i % mc.households;
        book.post(
            sink,
            Reason::Issuance,
            (issuer, household),
            0,
            mc.deposit_minor,
        )?;
        spenders.push((household, mc.deposit_minor));
    }
    let mut received = vec![0i64; dictionary.participants().len()];
    for round in 1..=mc.rounds {
        book.set_time(scenario.start_s + i64::from(round) * DAY_S);
        let mut next: Vec<u32> = Vec::new();
        for (holder, amount) in spenders.drain(..) {
            for payment in split(amount, mc.payments_per_round) {
                let local = round < mc.rounds && rng.gen_bool(mc.local_share);
                // A merchant re-spending never pays itself (the event format has no such
                // transfer): it pays the next merchant, or redeems if it is the only one.
                let merchant = local
                    .then(|| first_merchant + rng.gen_range(0..mc.merchants))
                    .and_then(|m| match (m == holder, mc.merchants) {
                        (false, _) => Some(m),
                        (true, 1) => None,
                        (true, n) => Some(first_merchant + (m - first_merchant + 1) % n),
                    });
                if let Some(merchant) = merchant {
                    book.post(sink, Reason::Payment, (holder, merchant), 0, payment)?;
                    if received[merchant as usize] == 0 {
                        next.push(merchant);
                    }
                    received[merchant as usize] += payment;
                } else {
                    book.post(sink, Reason::Redemption, (holder, clearing), 0, payment)?;
                }
            }
        }
        spenders.extend(
            next.into_iter()
                .map(|m| (m, std::mem::take(&mut received[m as usize]))),
        );
    }
    book.finish()
}

/// `amount` in `parts` near-equal positive pieces (fewer when the amount is small).
fn split(amount: i64, parts: u32) -> impl Iterator<Item = i64> {
    let parts = i64::from(parts).min(amount).max(1);
    let (base, extra) = (amount / parts, amount % parts);
    (0..parts).map(move |i| base + i64::from(i < extra))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::measure::{MeasureConfig, Measurer, lm_n_closed_form};

    #[test]
    fn its_event_stream_reads_back_and_measures() {
        let mut scenario = Scenario::default();
        scenario.model = crate::scenario::Model::MonteCarlo;
        let d = dictionary(&scenario).unwrap();
        let mut written = Vec::new();
        {
            let mut writer =
                crate::events::EventWriter::new(&mut written, crate::events::Format::Csv).unwrap();
            run(&scenario, &d, &mut |e| writer.write(e, &d).unwrap()).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("mc-read-back-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.csv");
        std::fs::write(&path, &written).unwrap();
        let measured = crate::measure_file(&path, &dir.join("out")).unwrap();
        assert!(measured.events > 100);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn split_is_exact() {
        assert_eq!(split(10, 4).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!(split(2, 4).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn measuring_a_synthetic_stream_recovers_its_local_share() {
        for p in [0.3, 0.5, 0.8] {
            let mut scenario = Scenario::default();
            scenario.monte_carlo.local_share = p;
            scenario.monte_carlo.rounds = 12;
            let d = dictionary(&scenario).unwrap();
            let mut measurer = Measurer::new(MeasureConfig::default()).unwrap();
            let totals = run(&scenario, &d, &mut |e| measurer.push(e, &d).unwrap()).unwrap();
            assert_eq!(totals[0].held_minor, 0);
            let m = measurer.finish(&d);
            let u = &m.units[0];
            // 4000 first-round payments: the standard error of p̂ is below 0.01; allow 0.03.
            let p_hat = u.recirculation_share.unwrap();
            assert!((p_hat - p).abs() < 0.03, "p {p} p̂ {p_hat}");
            let lm3 = u.lm3.unwrap();
            assert!(
                (lm3 - lm_n_closed_form(p, 3)).abs() < 0.05,
                "p {p} lm3 {lm3}"
            );
            assert!((lm3 - u.lm3_closed_form.unwrap()).abs() < 0.06);
            assert!((u.leakage.redemption - 1.0).abs() < 1e-12);
            assert!(u.balances_reconcile);
        }
    }

    /// Three 30-day periods with different local shares p, one run each, measured as one
    /// stream: each period's money does its daily rounds within the period (12 days; the rest
    /// is then redeemed), so each period's flow LM3 is its own money's, `1 + p + p^2` in
    /// expectation. Its standard error, with D the 4,000 deposits of a period: `S_0 / D` sums
    /// 32,000 first-round payments of D / 32,000, each local with probability p, so it is off
    /// by `sqrt(p(1-p)/32000)` <= 0.003, and `S_1` follows it (p times); `S_1` adds its own
    /// draw over about 3,200 merchant payments, `p sqrt(p(1-p)/3200)` <= 0.006. Together
    /// below 0.01 (over 12 seeds the errors were at most 0.013): allow 0.03. The periods' 1 + p + p² lie 0.5 apart, and the whole stream's
    /// LM3 (their mean) is far from the first and the last.
    #[test]
    fn per_period_lm3_recovers_each_periods_local_share() {
        let shares = [0.3, 0.6, 0.8];
        let mut scenario = Scenario::default();
        scenario.monte_carlo.deposits = 4000;
        scenario.monte_carlo.households = 4000;
        scenario.monte_carlo.merchants = 400;
        scenario.monte_carlo.payments_per_round = 8;
        scenario.monte_carlo.rounds = 12;
        let d = dictionary(&scenario).unwrap();
        // Default periods: 30 days from the first event's day, the first run's start.
        let mut measurer = Measurer::new(MeasureConfig::default()).unwrap();
        for (k, &p) in shares.iter().enumerate() {
            let mut period = scenario.clone();
            period.monte_carlo.local_share = p;
            period.start_s = scenario.start_s + k as i64 * 30 * DAY_S;
            period.seed = scenario.seed + k as u64;
            let totals = run(&period, &d, &mut |e| measurer.push(e, &d).unwrap()).unwrap();
            assert_eq!(totals[0].held_minor, 0);
        }
        let m = measurer.finish(&d);
        let u = &m.units[0];
        assert_eq!(u.lm_by_period.len(), shares.len());
        for (period, p) in u.lm_by_period.iter().zip(shares) {
            let (lm3, expected) = (period.lm3.unwrap(), lm_n_closed_form(p, 3));
            assert!(
                (lm3 - expected).abs() < 0.03,
                "p {p}: LM3 {lm3}, 1 + p + p² {expected}"
            );
        }
        let whole = u.lm3.unwrap();
        assert!((whole - lm_n_closed_form(0.3, 3)).abs() > 0.3);
        assert!((whole - lm_n_closed_form(0.8, 3)).abs() > 0.3);
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let scenario = Scenario::default();
        let d = dictionary(&scenario).unwrap();
        let collect = |seed| {
            let mut s = scenario.clone();
            s.seed = seed;
            let mut events = Vec::new();
            run(&s, &d, &mut |e| events.push(*e)).unwrap();
            events
        };
        assert_eq!(collect(7), collect(7));
        assert_ne!(collect(7), collect(8));
    }
}
