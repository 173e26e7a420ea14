//! RFC 8785 (JSON Canonicalization Scheme) for the JSON we sign and hash.
//!
//! Object members are sorted by their names' UTF-16 code units, strings are escaped exactly as
//! ECMAScript's `JSON.stringify` does, and no whitespace is emitted. We only ever sign integers,
//! so numbers are restricted to integers with |n| <= 2^53 - 1: those print identically in every
//! language's JSON, whereas a float or a larger integer would need ES6 double formatting and
//! could silently change value in a JavaScript or Python client.

use serde_json::Value;

mod check;
pub use check::is_canonical;

/// The largest integer every JSON implementation represents exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// The deepest nesting accepted; intents are two or three levels deep.
pub const MAX_DEPTH: usize = 16;

/// Why a JSON value cannot be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A fraction or exponent; signed data holds integers only.
    #[error("number {0} is not an integer; amounts are sent as integer minor units")]
    NotAnInteger(String),
    /// An integer beyond 2^53 - 1 in magnitude.
    #[error("integer {0} is outside ±(2^53 - 1) and would not survive a JavaScript client")]
    UnsafeInteger(String),
    /// Nesting beyond [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The canonical bytes of `value`.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError::TooDeep);
    }
    let depth = depth.saturating_add(1);
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_value(out, item, depth)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) -> Result<(), CanonicalError> {
    let integer = n.as_i64().or_else(|| {
        n.as_u64()
            .and_then(|u| i64::try_from(u).ok())
            .filter(|_| n.is_u64())
    });
    match integer {
        Some(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => {
            out.extend_from_slice(i.to_string().as_bytes());
            Ok(())
        }
        Some(_) => Err(CanonicalError::UnsafeInteger(n.to_string())),
        None if n.is_f64() => Err(CanonicalError::NotAnInteger(n.to_string())),
        None => Err(CanonicalError::UnsafeInteger(n.to_string())),
    }
}

/// Writes a JSON string the way ECMAScript does: `"` and `\` escaped, the five short control
/// escapes, other controls as lowercase `\u00xx`, everything else (including non-ASCII) as is.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for ch in text.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0C}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(value: Value) -> String {
        String::from_utf8(to_canonical_bytes(&value).unwrap()).unwrap()
    }

    #[test]
    fn members_are_sorted_and_whitespace_dropped() {
        assert_eq!(
            canon(json!({"b": 1, "a": [true, null, "x"], "c": {"z": 0, "y": -3}})),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":-3,"z":0}}"#
        );
    }

    #[test]
    fn sort_order_is_by_utf16_code_units() {
        // U+1F600 is D83D DE00 in UTF-16, which sorts before U+FB01 (FB01); in UTF-8 it is after.
        let value = json!({"\u{FB01}": 1, "\u{1F600}": 2});
        assert_eq!(canon(value), "{\"\u{1F600}\":2,\"\u{FB01}\":1}");
    }

    #[test]
    fn strings_are_escaped_like_ecmascript() {
        assert_eq!(
            canon(json!("a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{7f}é€")),
            "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\u{7f}é€\""
        );
    }

    #[test]
    fn floats_and_unsafe_integers_are_refused() {
        assert!(matches!(
            to_canonical_bytes(&json!(1.5)),
            Err(CanonicalError::NotAnInteger(_))
        ));
        assert!(matches!(
            to_canonical_bytes(&json!(9_007_199_254_740_992_i64)),
            Err(CanonicalError::UnsafeInteger(_))
        ));
        assert!(matches!(
            to_canonical_bytes(&json!(u64::MAX)),
            Err(CanonicalError::UnsafeInteger(_))
        ));
        assert_eq!(
            canon(json!(-9_007_199_254_740_991_i64)),
            "-9007199254740991"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut value = json!(0);
        for _ in 0..20 {
            value = json!([value]);
        }
        assert_eq!(to_canonical_bytes(&value), Err(CanonicalError::TooDeep));
    }
}
