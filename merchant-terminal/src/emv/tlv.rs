//! EMV data objects: a 2-digit ID, a 2-digit length in characters and the value, read from
//! and written to text. Knows nothing about what the IDs mean.

use super::decode::DecodeError;
use super::encode::EncodeError;

/// The longest value a data object holds, in characters: its length has two digits.
pub(crate) const MAX_VALUE_CHARS: usize = 99;

/// One data object found in a payload or template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DataObject<'a> {
    /// The ID, 0-99.
    pub id: u8,
    /// The value, exactly `length` characters.
    pub value: &'a str,
    /// Byte offset of the ID's first digit in the text read.
    pub start: usize,
    /// Byte offset of the value's first character in the text read.
    pub value_start: usize,
}

/// Where a data object was read, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The payload itself.
    Payload,
    /// Inside the template with this ID.
    Template(u8),
}

impl Scope {
    /// "the payload" or "template 62", as errors say it.
    pub fn describe(self) -> String {
        match self {
            Scope::Payload => "the payload".to_owned(),
            Scope::Template(id) => format!("template {id:02}"),
        }
    }

    /// The path of a data object found here: `59`, or `62/05` inside template 62.
    pub fn path(self, id: u8) -> String {
        match self {
            Scope::Payload => format!("{id:02}"),
            Scope::Template(template) => format!("{template:02}/{id:02}"),
        }
    }
}

/// Splits `text` into data objects, in order. Every ID and length must be two ASCII digits,
/// lengths 01-99, and each value must end within `text`; anything else is an error naming
/// the character position (counted in characters from the start of `text`).
pub(crate) fn parse(text: &str, scope: Scope) -> Result<Vec<DataObject<'_>>, DecodeError> {
    let mut objects = Vec::new();
    let mut position = 0;
    while position < text.len() {
        let at = || text[..position].chars().count();
        let id = two_digits(text, position).map_err(|found| match found {
            None => DecodeError::Truncated {
                scope: scope.describe(),
                at: at(),
            },
            Some(found) => DecodeError::BadId {
                scope: scope.describe(),
                at: at(),
                found,
            },
        })?;
        let length = match two_digits(text, position + 2) {
            Ok(length) if length > 0 => usize::from(length),
            Err(None) => {
                return Err(DecodeError::Truncated {
                    scope: scope.describe(),
                    at: at(),
                });
            }
            Ok(_) | Err(Some(_)) => {
                return Err(DecodeError::BadLength {
                    scope: scope.describe(),
                    at: at(),
                    found: text[position + 2..].chars().take(2).collect(),
                });
            }
        };
        let value_start = position + 4;
        let rest = &text[value_start..];
        // The byte offset just past `length` characters, or how many characters there are.
        let value_end = match rest.char_indices().nth(length) {
            Some((offset, _)) => value_start + offset,
            None => {
                let remaining = rest.chars().count();
                if remaining < length {
                    return Err(DecodeError::LengthPastEnd {
                        path: scope.path(id),
                        length,
                        remaining,
                    });
                }
                text.len()
            }
        };
        objects.push(DataObject {
            id,
            value: &text[value_start..value_end],
            start: position,
            value_start,
        });
        position = value_end;
    }
    Ok(objects)
}

/// The number written as two ASCII digits at byte `offset`; `Err(None)` when the text ends
/// first, `Err(Some(found))` when they are not digits.
fn two_digits(text: &str, offset: usize) -> Result<u8, Option<String>> {
    let bytes = text.as_bytes();
    match bytes.get(offset..offset + 2) {
        Some(&[tens, ones]) if tens.is_ascii_digit() && ones.is_ascii_digit() => {
            Ok((tens - b'0') * 10 + (ones - b'0'))
        }
        // `offset` follows whole characters (two ASCII digits or a value), so slicing is safe.
        Some(_) => Err(Some(text[offset..].chars().take(2).collect())),
        None => Err(None),
    }
}

/// Appends the data object `id` holding `value`; a value of more than 99 characters, or
/// none, cannot be written.
pub(crate) fn push(out: &mut String, id: u8, value: &str) -> Result<(), EncodeError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_VALUE_CHARS || id > 99 {
        return Err(EncodeError::ValueTooLong { id, chars });
    }
    out.push_str(&format!("{id:02}{chars:02}"));
    out.push_str(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut out = String::new();
        push(&mut out, 1, "Αθήνα").unwrap();
        push(&mut out, 2, "صفاقس").unwrap();
        assert_eq!(out, "0105Αθήνα0205صفاقس");
        let objects = parse(&out, Scope::Payload).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].value, "Αθήνα");
        assert_eq!(objects[1].value, "صفاقس");
        assert_eq!(objects[1].start, "0105Αθήνα".len());
    }

    #[test]
    fn value_running_past_the_end_is_refused() {
        assert_eq!(
            parse("0005abc", Scope::Payload),
            Err(DecodeError::LengthPastEnd {
                path: "00".into(),
                length: 5,
                remaining: 3
            })
        );
    }

    #[test]
    fn ids_and_lengths_must_be_two_digits() {
        assert!(matches!(
            parse("0a02ab", Scope::Payload),
            Err(DecodeError::BadId { .. })
        ));
        assert!(matches!(
            parse("00x2ab", Scope::Payload),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            parse("0000", Scope::Payload),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            parse("0002ab01", Scope::Payload),
            Err(DecodeError::Truncated { at: 6, .. })
        ));
        assert!(matches!(
            parse("0002ab0", Scope::Payload),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            parse("0é02ab", Scope::Template(62)),
            Err(DecodeError::BadId { .. })
        ));
    }

    #[test]
    fn empty_or_overlong_values_are_not_written() {
        let mut out = String::new();
        assert!(push(&mut out, 59, "").is_err());
        assert!(push(&mut out, 59, &"x".repeat(100)).is_err());
        assert!(push(&mut out, 59, &"x".repeat(99)).is_ok());
    }
}
