//! Whether JSON text is already in canonical form, read in one pass without building a value.
//!
//! Clients sign the canonical form, and most send exactly it, so a server that can see that
//! the text it received is already canonical can use the text as the signed bytes and skip
//! building a `serde_json::Value` only to write it out again. The check is a promise one way
//! only: `true` means parsing `text` and canonicalising the value gives back `text` byte for
//! byte; `false` means nothing more than "take the general path". To stay short it is
//! stricter than RFC 8785 where being exact would cost code: object member names must be
//! printable ASCII without escapes (every name we sign is), so their byte order is their
//! UTF-16 order.

use super::{MAX_DEPTH, MAX_SAFE_INTEGER};

/// The most digits of an integer the writer can print: 2^53 - 1 has 16.
const MAX_INTEGER_DIGITS: usize = 16;

/// Whether `text` is exactly what [`super::to_canonical_bytes`] writes for the JSON value it
/// denotes: no whitespace, members in strictly increasing name order (so no duplicate names),
/// strings escaped as ECMAScript does, integers within ±(2^53 - 1) in shortest form, nesting
/// within [`MAX_DEPTH`].
pub fn is_canonical(text: &str) -> bool {
    let mut rest = text.as_bytes();
    value(&mut rest, 0) && rest.is_empty()
}

/// Consumes one value from the front of `rest`; false if it is not canonical.
fn value(rest: &mut &[u8], depth: usize) -> bool {
    // The same limit, counted the same way, as the writer's.
    if depth > MAX_DEPTH {
        return false;
    }
    let depth = depth.saturating_add(1);
    match rest.first() {
        Some(b'{') => object(rest, depth),
        Some(b'[') => array(rest, depth),
        Some(b'"') => string(rest),
        Some(b't') => literal(rest, b"true"),
        Some(b'f') => literal(rest, b"false"),
        Some(b'n') => literal(rest, b"null"),
        Some(b'-' | b'0'..=b'9') => integer(rest),
        _ => false,
    }
}

/// Consumes `byte` if it comes next.
fn eat(rest: &mut &[u8], byte: u8) -> bool {
    match rest.split_first() {
        Some((&first, tail)) if first == byte => {
            *rest = tail;
            true
        }
        _ => false,
    }
}

fn literal(rest: &mut &[u8], word: &[u8]) -> bool {
    match rest.strip_prefix(word) {
        Some(tail) => {
            *rest = tail;
            true
        }
        None => false,
    }
}

fn object(rest: &mut &[u8], depth: usize) -> bool {
    if !eat(rest, b'{') {
        return false;
    }
    if eat(rest, b'}') {
        return true;
    }
    let mut previous: Option<&[u8]> = None;
    loop {
        let Some(name) = member_name(rest) else {
            return false;
        };
        // Strictly increasing: sorted as the writer sorts, and no name twice (the general
        // path decides what a repeated name means).
        if previous.is_some_and(|p| p >= name) {
            return false;
        }
        previous = Some(name);
        if !eat(rest, b':') || !value(rest, depth) {
            return false;
        }
        if eat(rest, b'}') {
            return true;
        }
        if !eat(rest, b',') {
            return false;
        }
    }
}

/// A member name of printable ASCII without escapes, returned without its quotes.
fn member_name<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let text: &'a [u8] = rest;
    let tail = text.strip_prefix(b"\"")?;
    let end = tail.iter().position(|&b| b == b'"')?;
    let (name, after) = tail.split_at(end);
    if !name
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return None;
    }
    *rest = after.get(1..)?;
    Some(name)
}

fn array(rest: &mut &[u8], depth: usize) -> bool {
    if !eat(rest, b'[') {
        return false;
    }
    if eat(rest, b']') {
        return true;
    }
    loop {
        if !value(rest, depth) {
            return false;
        }
        if eat(rest, b']') {
            return true;
        }
        if !eat(rest, b',') {
            return false;
        }
    }
}

/// A string as ECMAScript's `JSON.stringify` writes it: only `"` and `\` and control
/// characters escaped, each in its one allowed form. The input is a `&str`, so bytes of 0x80
/// and above are parts of valid UTF-8 sequences, which the writer copies as they are.
fn string(rest: &mut &[u8]) -> bool {
    if !eat(rest, b'"') {
        return false;
    }
    loop {
        let Some((&byte, tail)) = rest.split_first() else {
            return false;
        };
        *rest = tail;
        match byte {
            b'"' => return true,
            b'\\' if !escape(rest) => return false,
            0x00..=0x1f => return false,
            _ => {}
        }
    }
}

/// The part of an escape after the backslash, if it is the writer's form for its character.
fn escape(rest: &mut &[u8]) -> bool {
    let Some((&kind, tail)) = rest.split_first() else {
        return false;
    };
    *rest = tail;
    match kind {
        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => true,
        b'u' => {
            // Only controls without a short form are written as `\u00xx`, in lowercase hex.
            let Some((hex, after)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            let code = match hex {
                [b'0', b'0', high @ (b'0' | b'1'), low] => {
                    let Some(low) = lower_hex(*low) else {
                        return false;
                    };
                    (high & 1).wrapping_shl(4) | low
                }
                _ => return false,
            };
            *rest = after;
            !matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
        }
        _ => false,
    }
}

fn lower_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => digit.checked_sub(b'0'),
        b'a'..=b'f' => digit.checked_sub(b'a').and_then(|d| d.checked_add(10)),
        _ => None,
    }
}

/// An integer as the writer prints an `i64`: an optional minus, no leading zero, no `-0`, at
/// most 2^53 - 1 in magnitude. A fraction or exponent after it is left in `rest`, where the
/// enclosing value refuses it.
fn integer(rest: &mut &[u8]) -> bool {
    let negative = eat(rest, b'-');
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, after) = rest.split_at(digits);
    let in_form = match number {
        [] => false,
        [b'0'] => !negative,
        [b'0', ..] => false,
        _ => digits <= MAX_INTEGER_DIGITS,
    };
    if !in_form {
        return false;
    }
    let mut magnitude: i64 = 0;
    for &digit in number {
        // At most 16 digits: no overflow, but the lint wants it said.
        magnitude = magnitude
            .saturating_mul(10)
            .saturating_add(i64::from(digit.saturating_sub(b'0')));
    }
    *rest = after;
    // Nor a fraction or exponent.
    !matches!(rest.first(), Some(b'.' | b'e' | b'E')) && magnitude <= MAX_SAFE_INTEGER
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::canonical::to_canonical_bytes;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The promise: accepted text is its own canonical form.
    fn promise_holds(text: &str) -> bool {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => to_canonical_bytes(&value).is_ok_and(|bytes| bytes == text.as_bytes()),
            Err(_) => false,
        }
    }

    #[test]
    fn canonical_text_is_recognised() {
        for text in [
            r#"{"a":[true,false,null,"x",-3,0,9007199254740991],"b":{},"c":[]}"#,
            r#"{"memo":"pan \"y\" leche\\ \b\f\n\r\t\u0001\u001f é€ 😀 ","n":-9007199254740991}"#,
            "\"\u{7f}\u{2028}\"",
            "0",
        ] {
            assert!(is_canonical(text), "{text}");
            assert!(promise_holds(text), "{text}");
        }
    }

    #[test]
    fn text_that_is_not_canonical_goes_the_general_way() {
        for text in [
            r#"{"b":1,"a":2}"#,           // order
            r#"{"a":1,"a":2}"#,           // a repeated name
            r#"{"a": 1}"#,                // whitespace
            r#" {"a":1}"#,                // leading whitespace
            r#"{"a":1} "#,                // trailing whitespace
            r#"{"a":1.5}"#,               // a fraction
            r#"{"a":1e3}"#,               // an exponent
            r#"{"a":-0}"#,                // minus zero
            r#"{"a":01}"#,                // a leading zero
            r#"{"a":9007199254740992}"#,  // beyond 2^53 - 1
            r#"{"a":-9007199254740992}"#, // beyond -(2^53 - 1)
            r#"{"a":12345678901234567}"#, // too many digits
            r#"{"a":"\u00e9"}"#,          // an escape the writer never uses
            r#"{"a":"\/"}"#,              // the same
            r#"{"a":"\u000a"}"#,          // a control with a short form
            r#"{"a":"\u001F"}"#,          // uppercase hex
            "{\"a\":\"\u{1}\"}",          // a raw control character
            r#"{"\u0061":1}"#,            // an escaped name
            r#"{"é":1}"#,                 // a name beyond ASCII
            r#"{"a":tru}"#,               // not JSON
            r#"{"a":1,}"#,                // not JSON
            r#"[1 ,2]"#,                  // whitespace in an array
            r#"{"a""#,                    // cut short
            r#""abc"#,                    // cut short
            "",
        ] {
            assert!(!is_canonical(text), "{text}");
        }
    }

    #[test]
    fn nesting_is_limited_as_the_writer_limits_it() {
        let nested = |levels: usize| format!("{}0{}", "[".repeat(levels), "]".repeat(levels));
        assert!(is_canonical(&nested(MAX_DEPTH)));
        assert!(promise_holds(&nested(MAX_DEPTH)));
        assert!(!is_canonical(&nested(MAX_DEPTH + 1)));
        assert!(!promise_holds(&nested(MAX_DEPTH + 1)));
    }

    /// JSON values like intents: small objects with ASCII names, strings with any characters,
    /// integers around the safe limit.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-MAX_SAFE_INTEGER - 2..=MAX_SAFE_INTEGER + 2).prop_map(Value::from),
            (-1000_i64..1000).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[ -~\u{0}-\u{1f}\u{e9}\u{1f600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[ -~]{0,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_text_of_any_value_is_recognised(value in json_value()) {
            if let Ok(bytes) = to_canonical_bytes(&value) {
                let text = String::from_utf8(bytes).unwrap();
                // Names with `"` or `\` are escaped, which the check leaves to the general path.
                let plain_names = !text.contains("\\\"") && !text.contains("\\\\");
                prop_assert!(is_canonical(&text) || !plain_names, "{text}");
            }
        }

        #[test]
        fn accepted_text_is_always_its_own_canonical_form(
            value in json_value(),
            pretty in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            // The text, a prefix of it, and it with one byte changed.
            let mut candidates = vec![text.clone()];
            let at = cut.index(text.len().max(1));
            if text.is_char_boundary(at) {
                candidates.push(text[..at].to_owned());
                let mut changed = text.clone().into_bytes();
                if let Some(b) = changed.get_mut(at) {
                    *b = byte;
                }
                if let Ok(changed) = String::from_utf8(changed) {
                    candidates.push(changed);
                }
            }
            for candidate in candidates {
                if is_canonical(&candidate) {
                    prop_assert!(promise_holds(&candidate), "{candidate}");
                }
            }
        }
    }
}
