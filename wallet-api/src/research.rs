//! The pseudonymised research export: the journal as `coledger-events` v1 CSV (the format of
//! `simulations/EVENTS.md`), for measuring LM3, velocity and leakage on real data.
//!
//! - **Pseudonyms** are keyed: HMAC-SHA256 under a key derived from the server secret, so
//!   they are stable from one export to the next yet cannot be recomputed, or linked to an
//!   account, without the secret. A household has one pseudonym for all its cards.
//! - **Time** is coarsened to a grain (default one hour) and never goes backwards.
//! - **Consent**: households and participants (time-bank members, shops) that withheld it are
//!   left out, with every event they are part of.
//! - **Mapping**: `issue` → deposit/issuance; `waste_reward` → deposit/reward; `payment` and
//!   `time_exchange` → transfer/payment; `redeem` → withdraw/redemption (to the clearing
//!   account) and withdraw/fee (to the fee account); `expire` → withdraw/expiry; `demurrage`
//!   → withdraw/demurrage and `fee` → withdraw/fee (to the scheme's accounts). Card
//!   replacements (a household paying itself) and other kinds are counted as skipped. So are
//!   conversions (points to vouchers): the points they take are not seen to leave, and the
//!   vouchers they give arrive unbacked.
//! - **Refunds** are netted into the payment they give back, since the format has no event
//!   for money flowing back: a payment is written for what was kept of it, a fully refunded
//!   one not at all, and the refund entries themselves are not written. Counting a refund as
//!   a shop's transfer to a household would invent a round of local spending, and leaving
//!   it out would keep spending that was undone.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use ledger::{AccountId, EntryId, EntryKind, HouseholdId, ProgrammeId, UnitCode};
use sha2::{Digest as _, Sha256};

use crate::cards::ServerSecret;
use crate::db::programmes::ResearchPosting;
use crate::db::{Database, DbError};

/// The export's first two lines.
pub const HEADER: &str = "# coledger-events v1\ntime,kind,reason,source,source_kind,source_category,target,target_kind,target_category,amount_minor,unit,programme,area\n";

/// Entries read per query.
const PAGE: i64 = 10_000;

/// How the export is made.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// Timestamps are rounded down to a multiple of this many seconds (at least 1).
    pub grain_s: i64,
}

/// What the export wrote and left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Events written.
    pub events: u64,
    /// Postings left out because a household or participant in them withheld consent.
    pub withheld: u64,
    /// Postings with no research meaning (card replacements, fees between system accounts…).
    pub skipped: u64,
    /// Refunds netted into their payments, plus payments refunded in full (not written).
    pub refunded: u64,
    /// Areas left out of the `area` column because fewer than
    /// [`crate::transparency::MIN_HOUSEHOLDS`] households of the export live there: with
    /// so few, an area and a pseudonym's pattern of spending point at a family.
    pub small_areas: u64,
}

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Who an account is, for the export.
struct Party {
    pseudonym: String,
    kind: &'static str,
    category: String,
    area: String,
    /// A household or participant that withheld consent.
    withheld: bool,
}

type Key = Hmac<Sha256>;

fn pseudonym(key: &Key, what: &[u8]) -> String {
    let mut mac = key.clone();
    mac.update(what);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(25);
    text.push('p');
    for byte in &digest[..12] {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Keeps a label within the format's alphabet (`[A-Za-z0-9_.:-]`, 64 bytes). Characters
/// outside it become `_`, and then, so that two names cannot become one label ("Κέντρο" and
/// "Λιμάνι" are both six `_`), the label ends in `:` and eight hex digits of the name's
/// SHA-256: the same name always gives the same label, in every export.
fn label(text: &str) -> String {
    const WHOLE: usize = 64;
    const SUFFIX: usize = 9;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if text.len() <= WHOLE && text.chars().all(allowed) {
        return text.to_owned();
    }
    let mut out: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(WHOLE - SUFFIX)
        .collect();
    out.push(':');
    for byte in &Sha256::digest(text.as_bytes())[..4] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Which areas of each programme may be named in the export, from the households of each
/// (programme, area) that it holds; and how many it leaves unnamed. An area of fewer than
/// [`crate::transparency::MIN_HOUSEHOLDS`] households is not named: with so few, an area and
/// a pseudonym's spending point at a family. Nor, when that leaves a single area of a
/// programme unnamed, is the programme's next smallest: the programme's areas are public, so
/// events with no area would otherwise all be that one area's.
fn named_areas(
    living: &HashMap<(ProgrammeId, &str), HashSet<HouseholdId>>,
) -> (HashSet<(ProgrammeId, String)>, u64) {
    let mut by_programme: HashMap<ProgrammeId, Vec<(&str, usize)>> = HashMap::new();
    for (&(programme, area), homes) in living {
        by_programme
            .entry(programme)
            .or_default()
            .push((area, homes.len()));
    }
    let mut named = HashSet::new();
    let mut unnamed = 0u64;
    for (programme, mut areas) in by_programme {
        // Smallest first (ties by name, so the choice is the same every time).
        areas.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        let mut small = areas
            .iter()
            .filter(|(_, homes)| *homes < crate::transparency::MIN_HOUSEHOLDS)
            .count();
        if small == 1 && areas.len() > 1 {
            small = 2;
        }
        unnamed = unnamed.saturating_add(small as u64);
        for (area, _) in areas.iter().skip(small) {
            named.insert((programme, (*area).to_owned()));
        }
    }
    (named, unnamed)
}

/// Writes the export of `db` to `out`.
pub async fn export(
    db: &Database,
    secret: &ServerSecret,
    options: ExportOptions,
    out: &mut impl std::io::Write,
) -> Result<ExportReport, ExportError> {
    let key = Key::new_from_slice(&secret.derive_key(b"coledger/v1/research-pseudonyms"))
        .map_err(|_| std::io::Error::other("HMAC refused the key"))?;
    // The export is of the journal up to this position, however much is written meanwhile:
    // everything below is read bounded by it (a refund committed after it would otherwise
    // take money off a payment it exports whole, or the other way round), and what is read
    // unbounded (accounts, households) only grows.
    let last = db.max_position().await?;
    let accounts = db.research_accounts().await?;
    let households = db.research_households().await?;
    let all_programmes = db.programmes().await?;
    let programmes: HashMap<UnitCode, String> = all_programmes
        .iter()
        .map(|p| (p.unit, label(&p.id.to_string())))
        .collect();
    // A redemption's leg to the programme's fee account is the fee; the rest is redeemed.
    let fee_accounts: HashSet<AccountId> = all_programmes.iter().map(|p| p.accounts.fees).collect();
    // Areas are named only where at least k exported households live (DESIGN §5's k, as for
    // the transparency report); the others' events carry no area.
    let active = db.accounts_with_postings(last).await?;
    let mut living: HashMap<(ProgrammeId, &str), HashSet<HouseholdId>> = HashMap::new();
    for h in &households {
        if !h.withheld && active.contains(&h.account) {
            living
                .entry((h.programme, h.area.as_str()))
                .or_default()
                .insert(h.household);
        }
    }
    let (named, small_areas) = named_areas(&living);
    let by_account: HashMap<AccountId, (HouseholdId, String, bool)> = households
        .into_iter()
        .map(|h| {
            let area = if named.contains(&(h.programme, h.area.clone())) {
                h.area
            } else {
                String::new()
            };
            (h.account, (h.household, area, h.withheld))
        })
        .collect();
    // What was given back of each refunded payment, and which entries are those refunds.
    let mut refunded: HashMap<EntryId, i64> = HashMap::new();
    let mut refunds: HashSet<EntryId> = HashSet::new();
    for (refund, payment, amount) in db.research_refunds(last).await? {
        let total = refunded.entry(payment).or_default();
        *total = total.saturating_add(amount);
        refunds.insert(refund);
    }
    let mut parties: HashMap<AccountId, Party> = HashMap::new();
    for account in accounts {
        let party = match by_account.get(&account.account) {
            Some((household, area, withheld)) => Party {
                pseudonym: pseudonym(&key, household.as_bytes()),
                kind: "household",
                category: String::new(),
                area: if area.is_empty() {
                    String::new()
                } else {
                    label(area)
                },
                withheld: *withheld || account.withheld,
            },
            None => Party {
                pseudonym: pseudonym(&key, account.account.as_bytes()),
                kind: match account.kind.as_str() {
                    "issuer" => "issuer",
                    "holder" => "household",
                    "merchant" | "collector" if account.social_enterprise => "social_enterprise",
                    "merchant" | "collector" => "merchant",
                    _ => "system",
                },
                category: account.category.map(|c| label(&c)).unwrap_or_default(),
                area: String::new(),
                withheld: account.withheld,
            },
        };
        parties.insert(account.account, party);
    }
    let grain = options.grain_s.max(1);
    let mut report = ExportReport {
        small_areas,
        ..ExportReport::default()
    };
    let mut last_time = i64::MIN;
    out.write_all(HEADER.as_bytes())?;
    let mut after = 0;
    let mut line = String::new();
    while after < last {
        let up_to = after.saturating_add(PAGE).min(last);
        for posting in db.research_postings(after, up_to).await? {
            let ResearchPosting {
                entry,
                kind,
                created_at,
                unit,
                debit,
                credit,
                amount_minor: mut amount,
            } = posting;
            let (Some(from), Some(to)) = (parties.get(&debit), parties.get(&credit)) else {
                report.skipped += 1;
                continue;
            };
            if from.withheld || to.withheld {
                report.withheld += 1;
                continue;
            }
            let Some(kind) = EntryKind::parse(&kind) else {
                report.skipped += 1;
                continue;
            };
            match kind {
                EntryKind::Reversal if refunds.contains(&entry) => {
                    report.refunded += 1;
                    continue;
                }
                EntryKind::Payment => {
                    // A refunded payment is single-posting (the Book refuses any other
                    // refund), so the whole refund comes off this one posting.
                    amount = amount.saturating_sub(refunded.get(&entry).copied().unwrap_or(0));
                    if amount <= 0 {
                        report.refunded += 1;
                        continue;
                    }
                }
                _ => {}
            }
            let local =
                |p: &Party| matches!(p.kind, "household" | "merchant" | "social_enterprise");
            // The scheme's own accounts: where money enters from and leaves to.
            let scheme = |p: &Party| matches!(p.kind, "issuer" | "system");
            let (event, reason) = match kind {
                EntryKind::Issue if local(to) => ("deposit", "issuance"),
                EntryKind::WasteReward if scheme(from) && local(to) => ("deposit", "reward"),
                EntryKind::Payment | EntryKind::TimeExchange if local(from) && local(to) => {
                    ("transfer", "payment")
                }
                EntryKind::Redeem if local(from) && to.kind == "system" => {
                    ("withdraw", "redemption")
                }
                EntryKind::Expire if local(from) => ("withdraw", "expiry"),
                EntryKind::Demurrage if local(from) && scheme(to) => ("withdraw", "demurrage"),
                EntryKind::Fee if local(from) && scheme(to) => ("withdraw", "fee"),
                _ => {
                    report.skipped += 1;
                    continue;
                }
            };
            if from.pseudonym == to.pseudonym {
                report.skipped += 1;
                continue;
            }
            let reason = if kind == EntryKind::Redeem && fee_accounts.contains(&credit) {
                "fee"
            } else {
                reason
            };
            let time = (created_at.div_euclid(1000) / grain * grain).max(last_time);
            last_time = time;
            let programme = if event == "deposit" {
                programmes.get(&unit).cloned().unwrap_or_default()
            } else {
                String::new()
            };
            let area = if to.kind == "household" {
                &to.area
            } else {
                &from.area
            };
            line.clear();
            let _ = writeln!(
                line,
                "{time},{event},{reason},{},{},{},{},{},{},{amount},{},{programme},{area}",
                from.pseudonym,
                from.kind,
                from.category,
                to.pseudonym,
                to.kind,
                to.category,
                label(unit.as_str()),
            );
            out.write_all(line.as_bytes())?;
            report.events += 1;
        }
        after = up_to;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn homes(n: usize) -> HashSet<HouseholdId> {
        (0..n).map(|_| HouseholdId::new()).collect()
    }

    #[test]
    fn small_areas_go_unnamed_with_a_second_where_one_would_be_found() {
        let (sevilla, cadiz) = (ProgrammeId::new(), ProgrammeId::new());
        let living: HashMap<(ProgrammeId, &str), HashSet<HouseholdId>> = [
            ((sevilla, "Macarena"), homes(10)),
            ((sevilla, "Triana"), homes(6)),
            ((sevilla, "Alamillo"), homes(2)),
            // Cádiz's Centro is not Sevilla's: counted apart, three households.
            ((cadiz, "Centro"), homes(3)),
            ((cadiz, "Viña"), homes(3)),
            ((cadiz, "Puerta Tierra"), homes(20)),
        ]
        .into_iter()
        .collect();
        let (named, unnamed) = named_areas(&living);
        let mut shown: Vec<(bool, &str)> = named
            .iter()
            .map(|(p, area)| (*p == sevilla, area.as_str()))
            .collect();
        shown.sort();
        // Sevilla: Alamillo alone would be "the one with no area", so Triana goes too.
        // Cádiz: two small areas already hide each other.
        assert_eq!(shown, [(false, "Puerta Tierra"), (true, "Macarena")]);
        assert_eq!(unnamed, 4);
        // A programme whose only area is small names nothing; one of large areas names all.
        let lonely = ProgrammeId::new();
        let living: HashMap<(ProgrammeId, &str), HashSet<HouseholdId>> =
            [((lonely, "Norte"), homes(4))].into_iter().collect();
        assert_eq!(named_areas(&living), (HashSet::new(), 1));
        let big: HashMap<(ProgrammeId, &str), HashSet<HouseholdId>> =
            [((lonely, "Norte"), homes(5)), ((lonely, "Sur"), homes(7))]
                .into_iter()
                .collect();
        assert_eq!(named_areas(&big).1, 0);
    }

    #[test]
    fn labels_stay_in_the_alphabet() {
        assert_eq!(label("PGI-EUR"), "PGI-EUR");
        // Names the alphabet cannot hold keep a readable part and a digest of the whole.
        let triana = label("Triana Sur/1");
        assert!(
            triana.starts_with("Triana_Sur_1:") && triana.len() == 21,
            "{triana}"
        );
        assert_eq!(
            label("Triana Sur/1"),
            triana,
            "the same name, the same label"
        );
        let (centre, harbour) = (label("Κέντρο"), label("Λιμάνι"));
        assert!(centre.starts_with("______:"), "{centre}");
        assert_ne!(centre, harbour, "two Greek areas stay two areas");
        assert_ne!(label("San José"), label("San Josè"));
        let long = label(&"x".repeat(80));
        assert_eq!(long.len(), 64);
        assert_ne!(long, label(&"x".repeat(81)));
        for text in ["Κέντρο", "حي الزيتون", &"x".repeat(80)] {
            assert!(
                label(text)
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)),
                "{text}"
            );
        }
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let key = |k: &[u8]| Key::new_from_slice(k).unwrap_or_else(|e| panic!("{e}"));
        let id = Uuid::nil();
        assert_eq!(
            pseudonym(&key(b"a"), id.as_bytes()),
            pseudonym(&key(b"a"), id.as_bytes())
        );
        assert_ne!(
            pseudonym(&key(b"a"), id.as_bytes()),
            pseudonym(&key(b"b"), id.as_bytes())
        );
        assert_eq!(pseudonym(&key(b"a"), id.as_bytes()).len(), 25);
    }
}
