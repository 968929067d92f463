//! Integer fields written in another notation. Proxy's OpenAPI file types amounts and minutes as
//! `number`, so generated clients send `80000.0`; the API rules (docs/api-rules.md) say a
//! number with no fractional part is that integer however it is written: `80000`, `80000.0`,
//! `8e4` and `-0` are stored and returned as the integer, and two bodies that differ only so
//! are the same request for idempotency.
//!
//! The decision is made on the number as written, not on its `f64` value: `1e-400` and
//! `80000.000000000000000001` are not integers although their nearest `f64`s are.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::input::integer_fields;
use crate::json_body::JsonObject;

/// A create or PATCH body, with its integer fields in their one spelling (`8e4` → `80000`), so
/// that the merge, validation and the idempotency fingerprint all see the integer.
pub fn canonical_body(body: JsonObject) -> Map<String, Value> {
    let JsonObject { mut object, raw } = body;
    canonical_integers(&mut object, &raw);
    object
}

/// What a JSON number lexeme is, as a mathematical value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Integral {
    Exact(i64),
    /// An integer beyond 64 bits; `true` when negative.
    OutOfRange(bool),
    NotAnInteger,
}

/// Rewrites every integer field of `body` whose value was written with a fraction or an
/// exponent as the integer it denotes. `raw` is the body exactly as sent. Fields whose number
/// is not an integer are left alone for the shape check to report; an integer too large for 64
/// bits becomes `i64::MAX` (or `MIN`), which every range check refuses.
pub fn canonical_integers(body: &mut Map<String, Value>, raw: &[u8]) {
    let needs_spelling = |body: &Map<String, Value>, path: &[&str]| {
        member(body, path)
            .is_some_and(|v| matches!(v, Value::Number(n) if !n.is_i64() && !n.is_u64()))
    };
    let pending: Vec<&'static [&'static str]> = integer_fields()
        .iter()
        .map(Vec::as_slice)
        .filter(|path| needs_spelling(body, path))
        .collect();
    if pending.is_empty() {
        return;
    }
    let spelled = spellings(raw);
    for path in pending {
        let Some(lexeme) = spelled.get(path) else {
            continue;
        };
        let replacement = match integral(lexeme) {
            Some(Integral::Exact(n)) => Value::from(n),
            Some(Integral::OutOfRange(negative)) => {
                Value::from(if negative { i64::MIN } else { i64::MAX })
            }
            Some(Integral::NotAnInteger) | None => continue,
        };
        if let Some(slot) = member_mut(body, path) {
            *slot = replacement;
        }
    }
}

fn member<'a>(body: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut map = body;
    for segment in parents {
        map = map.get(*segment)?.as_object()?;
    }
    map.get(*last)
}

fn member_mut<'a>(body: &'a mut Map<String, Value>, path: &[&str]) -> Option<&'a mut Value> {
    let (last, parents) = path.split_last()?;
    let mut map = body;
    for segment in parents {
        map = map.get_mut(*segment)?.as_object_mut()?;
    }
    map.get_mut(*last)
}

/// The number lexemes of the body's integer fields, by path, read from the bytes as sent. Any
/// level that is not an object is skipped (the shape check reports it).
fn spellings(raw: &[u8]) -> HashMap<&'static [&'static str], String> {
    type Members<'a> = HashMap<String, &'a RawValue>;
    let mut out = HashMap::new();
    let Ok(top) = serde_json::from_slice::<Members>(raw) else {
        return out;
    };
    for path in integer_fields() {
        let mut level = top.clone();
        let (last, parents) = path.split_last().expect("paths are not empty");
        let mut found = true;
        for segment in parents {
            match level
                .get(*segment)
                .and_then(|v| serde_json::from_str::<Members>(v.get()).ok())
            {
                Some(inner) => level = inner,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if let (true, Some(value)) = (found, level.get(*last)) {
            out.insert(path.as_slice(), value.get().trim().to_owned());
        }
    }
    out
}

/// Reads a JSON number lexeme (`-?int(.frac)?([eE][+-]?exp)?`) exactly. `None` when it is not
/// one.
fn integral(lexeme: &str) -> Option<Integral> {
    let (negative, rest) = match lexeme.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, lexeme),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || (mantissa.contains('.') && !all_digits(frac_part)) {
        return None;
    }
    // The exponent saturates: beyond a few hundred digits every answer is the same.
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (sign, digits) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if !all_digits(digits) {
                return None;
            }
            let magnitude = digits.bytes().fold(0i64, |acc, b| {
                (acc * 10 + i64::from(b - b'0')).min(1_000_000)
            });
            sign * magnitude
        }
    };
    // value = digits × 10^scale
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(Integral::Exact(0));
    }
    let mut scale = exponent - frac_part.len() as i64;
    let mut digits = digits;
    while scale < 0 && digits.ends_with('0') {
        digits = &digits[..digits.len() - 1];
        scale += 1;
    }
    if scale < 0 {
        return Some(Integral::NotAnInteger);
    }
    if digits.len() as i64 + scale > 19 {
        return Some(Integral::OutOfRange(negative));
    }
    let mut value: i128 = digits
        .bytes()
        .fold(0i128, |acc, b| acc * 10 + i128::from(b - b'0'));
    for _ in 0..scale {
        value *= 10;
    }
    if negative {
        value = -value;
    }
    Some(match i64::try_from(value) {
        Ok(n) => Integral::Exact(n),
        Err(_) => Integral::OutOfRange(negative),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lexemes_are_read_exactly() {
        use Integral::*;
        for (lexeme, expected) in [
            ("80000", Exact(80000)),
            ("80000.0", Exact(80000)),
            ("8e4", Exact(80000)),
            ("8E+4", Exact(80000)),
            ("800000e-1", Exact(80000)),
            ("-0", Exact(0)),
            ("-0.0", Exact(0)),
            ("0e5", Exact(0)),
            ("1.5e1", Exact(15)),
            ("12.5", NotAnInteger),
            ("1e-400", NotAnInteger),
            ("80000.000000000000000001", NotAnInteger),
            ("0.000000000000000000001", NotAnInteger),
            ("1e13", Exact(10_000_000_000_000)),
            ("9223372036854775807", Exact(i64::MAX)),
            ("9223372036854775808", OutOfRange(false)),
            ("-9223372036854775809", OutOfRange(true)),
            ("1e300", OutOfRange(false)),
            ("1e999999999999", OutOfRange(false)),
        ] {
            assert_eq!(integral(lexeme), Some(expected), "{lexeme}");
        }
        for not_a_number in ["", "-", "1.", ".5", "1e", "e5", "\"5\"", "true"] {
            assert_eq!(integral(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn only_integer_fields_are_rewritten() {
        let raw = br#"{"policy":{"limits":{"perDay":8e4,"perAuth":12.5},"ttlDays":3.0},"metadata":{"x":1.0}}"#;
        let mut body = match crate::json_body::parse_strict(raw).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        canonical_integers(&mut body, raw);
        assert_eq!(
            Value::Object(body),
            json!({"policy":{"limits":{"perDay":80000,"perAuth":12.5},"ttlDays":3},"metadata":{"x":1.0}})
        );
    }
}
