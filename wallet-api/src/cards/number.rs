//! Card numbers: 16 decimal digits, a fixed 6-digit scheme prefix, 9 random digits and a Luhn
//! check digit last.
//!
//! People type card numbers at a shop terminal, so parsing accepts spaces and dashes and the
//! check digit catches every single-digit typo and every adjacent transposition except
//! `09` <-> `90` (Luhn's one blind spot). A [`CardNumber`] that exists is well formed: 16
//! ASCII digits with a correct check digit.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits in a card number, check digit included.
pub const CARD_NUMBER_DIGITS: usize = 16;
/// Digits in the scheme prefix that starts every card number of a deployment.
pub const CARD_PREFIX_DIGITS: usize = 6;
/// Random digits between the prefix and the check digit.
const BODY_DIGITS: usize = CARD_NUMBER_DIGITS - CARD_PREFIX_DIGITS - 1;
/// Digits an error message shows; the rest of a number stays out of logs and screens.
const SHOWN_DIGITS: usize = 4;

/// Why a typed card number or prefix was refused. Messages are for the person at the terminal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardNumberError {
    /// Not 16 digits once spaces and dashes are removed.
    #[error("a card number has 16 digits, but {found} were typed")]
    WrongLength {
        /// How many digits were typed.
        found: usize,
    },
    /// Something other than a digit, a space or a dash.
    #[error(
        "a card number has only digits (spaces and dashes are fine), but character {position} is {character:?}"
    )]
    NonDigit {
        /// The offending character.
        character: char,
        /// Its 1-based position in the typed text.
        position: usize,
    },
    /// 16 digits whose Luhn check digit does not match: almost always a typo.
    #[error("card number {start}… has a wrong check digit; check for a typo")]
    WrongCheckDigit {
        /// The first four digits, enough to recognise the card without showing all of it.
        start: String,
    },
    /// A scheme prefix that is not exactly 6 digits (a configuration mistake).
    #[error("a card number prefix is exactly 6 digits, like 990001")]
    BadPrefix,
}

/// The 6-digit scheme prefix that every card number of a deployment starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CardPrefix([u8; CARD_PREFIX_DIGITS]);

impl CardPrefix {
    /// Parses exactly six ASCII digits, such as `990001`.
    pub fn parse(text: &str) -> Result<Self, CardNumberError> {
        let bytes: [u8; CARD_PREFIX_DIGITS] = text
            .as_bytes()
            .try_into()
            .map_err(|_| CardNumberError::BadPrefix)?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(CardNumberError::BadPrefix);
        }
        Ok(Self(bytes))
    }

    /// The six digits.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.0)
    }
}

impl fmt::Display for CardPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A card number: 16 ASCII digits, Luhn-valid. Displays grouped (`9900 0112 3456 7897`);
/// [`CardNumber::as_str`] and serde use the 16 digits without separators.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardNumber([u8; CARD_NUMBER_DIGITS]);

impl CardNumber {
    /// A new number: `prefix`, 9 digits drawn uniformly from `rng`, then the check digit.
    /// Uniqueness is the database's job (a unique index); collisions are rare (1 in 10^9 per
    /// pair) and the caller retries.
    pub fn generate<R: Rng + ?Sized>(prefix: &CardPrefix, rng: &mut R) -> Self {
        let mut digits = [b'0'; CARD_NUMBER_DIGITS];
        digits[..CARD_PREFIX_DIGITS].copy_from_slice(&prefix.0);
        for digit in &mut digits[CARD_PREFIX_DIGITS..CARD_PREFIX_DIGITS + BODY_DIGITS] {
            *digit = b'0' + rng.gen_range(0..10u8);
        }
        digits[CARD_NUMBER_DIGITS - 1] = b'0' + luhn_check_digit(&digits[..CARD_NUMBER_DIGITS - 1]);
        Self(digits)
    }

    /// Parses a typed number. Spaces and dashes anywhere are ignored; anything else that is
    /// not a digit is refused, then the length, then the check digit.
    pub fn parse(text: &str) -> Result<Self, CardNumberError> {
        let mut digits = [b'0'; CARD_NUMBER_DIGITS];
        let mut found = 0usize;
        for (index, character) in text.chars().enumerate() {
            match character {
                ' ' | '-' => {}
                '0'..='9' => {
                    if let Some(slot) = digits.get_mut(found) {
                        *slot = character as u8;
                    }
                    found += 1;
                }
                _ => {
                    return Err(CardNumberError::NonDigit {
                        character,
                        position: index + 1,
                    });
                }
            }
        }
        if found != CARD_NUMBER_DIGITS {
            return Err(CardNumberError::WrongLength { found });
        }
        let check = digits[CARD_NUMBER_DIGITS - 1] - b'0';
        if luhn_check_digit(&digits[..CARD_NUMBER_DIGITS - 1]) != check {
            return Err(CardNumberError::WrongCheckDigit {
                start: ascii_str(&digits[..SHOWN_DIGITS]).to_owned(),
            });
        }
        Ok(Self(digits))
    }

    /// The 16 digits without separators, as stored and sent over the API.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.0)
    }

    /// The scheme prefix: the first six digits.
    pub fn prefix(&self) -> &str {
        ascii_str(&self.0[..CARD_PREFIX_DIGITS])
    }

    /// Whether this number belongs to the scheme `prefix`. Check it after parsing a typed
    /// number: it also catches the one typo Luhn misses inside a prefix such as 990001
    /// (swapping its `90`).
    pub fn has_prefix(&self, prefix: &CardPrefix) -> bool {
        self.0[..CARD_PREFIX_DIGITS] == prefix.0
    }
}

impl fmt::Display for CardNumber {
    /// Four groups of four digits separated by spaces, as printed on the card.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, group) in self.0.chunks(4).enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            f.write_str(ascii_str(group))?;
        }
        Ok(())
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.as_str())
    }
}

impl FromStr for CardNumber {
    type Err = CardNumberError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for CardNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CardNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The Luhn check digit for `payload` (ASCII digits): doubling starts at the rightmost
/// payload digit, because the check digit will stand to its right.
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (index_from_right, digit) in payload.iter().rev().enumerate() {
        let mut value = u32::from(digit - b'0');
        if index_from_right % 2 == 0 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    // Below 10 by construction, so the narrowing cannot lose anything.
    ((10 - sum % 10) % 10) as u8
}

/// `bytes` as text; callers only ever pass ASCII digits, checked when the value was built.
fn ascii_str(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => unreachable!("card digits are ASCII by construction"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn prefix() -> CardPrefix {
        CardPrefix::parse("990001").unwrap()
    }

    fn sample_numbers(count: usize) -> Vec<CardNumber> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..count)
            .map(|_| CardNumber::generate(&prefix(), &mut rng))
            .collect()
    }

    #[test]
    fn generated_numbers_have_sixteen_digits_the_prefix_and_a_valid_check_digit() {
        for number in sample_numbers(1000) {
            assert_eq!(number.as_str().len(), 16);
            assert!(number.as_str().starts_with("990001"));
            assert_eq!(number.prefix(), "990001");
            assert_eq!(CardNumber::parse(number.as_str()).unwrap(), number);
        }
    }

    #[test]
    fn generation_is_deterministic_for_a_seeded_rng_and_varies_the_body() {
        let first = sample_numbers(50);
        assert_eq!(first, sample_numbers(50));
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(distinct.len(), 50);
    }

    #[test]
    fn known_luhn_numbers_are_accepted() {
        // Published test numbers that pass the Luhn check.
        for text in ["4111111111111111", "5555555555554444", "4012888888881881"] {
            assert_eq!(CardNumber::parse(text).unwrap().as_str(), text);
        }
        assert!(CardNumber::parse("4111111111111112").is_err());
    }

    #[test]
    fn spaces_and_dashes_are_ignored_when_parsing() {
        let number = CardNumber::parse("4111 1111-1111 1111").unwrap();
        assert_eq!(number.as_str(), "4111111111111111");
        assert_eq!(CardNumber::parse(" 4111-1111-1111-1111 ").unwrap(), number);
        assert_eq!("4111111111111111".parse::<CardNumber>().unwrap(), number);
    }

    #[test]
    fn display_groups_digits_in_fours() {
        let number = CardNumber::parse("4111111111111111").unwrap();
        assert_eq!(number.to_string(), "4111 1111 1111 1111");
        assert_eq!(CardNumber::parse(&number.to_string()).unwrap(), number);
    }

    #[test]
    fn wrong_length_is_its_own_error() {
        assert_eq!(
            CardNumber::parse("411111111111111"),
            Err(CardNumberError::WrongLength { found: 15 })
        );
        assert_eq!(
            CardNumber::parse("41111111111111111"),
            Err(CardNumberError::WrongLength { found: 17 })
        );
        assert_eq!(
            CardNumber::parse(""),
            Err(CardNumberError::WrongLength { found: 0 })
        );
        let message = CardNumber::parse("4111").unwrap_err().to_string();
        assert_eq!(message, "a card number has 16 digits, but 4 were typed");
    }

    #[test]
    fn non_digits_are_their_own_error_naming_the_character() {
        assert_eq!(
            CardNumber::parse("4111 1111 1111 111O"),
            Err(CardNumberError::NonDigit {
                character: 'O',
                position: 19
            })
        );
        assert_eq!(
            CardNumber::parse("٤١١١١١١١١١١١١١١١"),
            Err(CardNumberError::NonDigit {
                character: '٤',
                position: 1
            })
        );
        let message = CardNumber::parse("41x1").unwrap_err().to_string();
        assert!(message.contains("character 3 is 'x'"), "{message}");
    }

    #[test]
    fn wrong_check_digit_message_shows_only_the_first_four_digits() {
        let error = CardNumber::parse("4111 1111 1111 1112").unwrap_err();
        assert_eq!(
            error,
            CardNumberError::WrongCheckDigit {
                start: "4111".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "card number 4111… has a wrong check digit; check for a typo"
        );
    }

    #[test]
    fn every_single_digit_typo_is_caught() {
        for number in sample_numbers(200) {
            let digits = number.as_str().as_bytes();
            for position in 0..CARD_NUMBER_DIGITS {
                for replacement in b'0'..=b'9' {
                    if replacement == digits[position] {
                        continue;
                    }
                    let mut typo = digits.to_vec();
                    typo[position] = replacement;
                    let typo = String::from_utf8(typo).unwrap();
                    assert!(
                        matches!(
                            CardNumber::parse(&typo),
                            Err(CardNumberError::WrongCheckDigit { .. })
                        ),
                        "{typo} was accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_but_09_and_90_is_caught() {
        let mut caught = 0usize;
        let mut missed = 0usize;
        for number in sample_numbers(500) {
            let digits = number.as_str().as_bytes();
            for position in 0..CARD_NUMBER_DIGITS - 1 {
                let (left, right) = (digits[position], digits[position + 1]);
                if left == right {
                    continue;
                }
                let mut swapped = digits.to_vec();
                swapped.swap(position, position + 1);
                let swapped = String::from_utf8(swapped).unwrap();
                let blind_spot = matches!((left, right), (b'0', b'9') | (b'9', b'0'));
                match CardNumber::parse(&swapped) {
                    Ok(_) => {
                        assert!(blind_spot, "{swapped} (from {number:?}) was accepted");
                        missed += 1;
                    }
                    Err(_) => {
                        assert!(!blind_spot, "Luhn is not expected to catch {swapped}");
                        caught += 1;
                    }
                }
            }
        }
        // "Most": about 97 % of the transpositions of differing digits are caught (the prefix
        // 990001 itself holds a `90`, which the prefix comparison below catches instead).
        assert!(caught > 8 * missed, "caught {caught}, missed {missed}");
    }

    #[test]
    fn a_transposition_luhn_misses_in_the_prefix_changes_the_prefix() {
        let number = sample_numbers(1)[0];
        let mut swapped = number.as_str().as_bytes().to_vec();
        swapped.swap(1, 2);
        let swapped = CardNumber::parse(std::str::from_utf8(&swapped).unwrap()).unwrap();
        assert_eq!(swapped.prefix(), "909001");
        assert!(!swapped.has_prefix(&prefix()));
        assert!(number.has_prefix(&prefix()));
    }

    #[test]
    fn in_the_random_digits_over_95_percent_of_transpositions_are_caught() {
        let (mut caught, mut tried) = (0usize, 0usize);
        for number in sample_numbers(500) {
            let digits = number.as_str().as_bytes();
            for position in CARD_PREFIX_DIGITS..CARD_NUMBER_DIGITS - 1 {
                if digits[position] == digits[position + 1] {
                    continue;
                }
                let mut swapped = digits.to_vec();
                swapped.swap(position, position + 1);
                tried += 1;
                if CardNumber::parse(std::str::from_utf8(&swapped).unwrap()).is_err() {
                    caught += 1;
                }
            }
        }
        assert!(caught * 100 > tried * 95, "caught {caught} of {tried}");
    }

    #[test]
    fn prefix_must_be_six_digits() {
        assert_eq!(prefix().as_str(), "990001");
        assert_eq!(prefix().to_string(), "990001");
        for bad in ["99000", "9900011", "99000a", "", "９９０００１"] {
            assert_eq!(
                CardPrefix::parse(bad),
                Err(CardNumberError::BadPrefix),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_uses_the_ungrouped_digits_and_checks_on_the_way_in() {
        let number = CardNumber::parse("4111 1111 1111 1111").unwrap();
        let json = serde_json::to_string(&number).unwrap();
        assert_eq!(json, "\"4111111111111111\"");
        let back: CardNumber = serde_json::from_str(&json).unwrap();
        assert_eq!(back, number);
        let bad = serde_json::from_str::<CardNumber>("\"4111111111111112\"").unwrap_err();
        assert!(bad.to_string().contains("wrong check digit"), "{bad}");
        assert!(serde_json::from_str::<CardNumber>("4111111111111111").is_err());
    }
}
