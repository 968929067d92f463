//! The JSON members of a customer (policy, metadata) in one spelling whether they come from a
//! value the service built or straight from the database: objects with their keys in jsonb's
//! order (shorter keys first, then byte order), the order PostgreSQL gives them back in. So a
//! list page can pass the stored JSON through untouched (no parsing, no re-encoding) and still
//! show each customer byte for byte as GET and the write that made it did.

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::Postgres;
use sqlx::TypeInfo;

/// A JSON member of a customer, built or as stored.
#[derive(Debug, Clone, Copy)]
pub enum JsonText<'a> {
    Value(&'a Value),
    /// Stored JSON as PostgreSQL returned it (jsonb: keys already in this order), compacted.
    Stored(&'a StoredJson),
}

impl JsonText<'_> {
    /// Appends the member's JSON to `out`: the stored text as it is, a value in jsonb's order.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            JsonText::Value(value) => serde_json::to_writer(&mut *out, &JsonbOrder(value))
                .expect("a value always serialises"),
            JsonText::Stored(stored) => out.extend_from_slice(stored.0.as_bytes()),
        }
    }

    /// The member's JSON as text (what [`JsonText::write`] appends).
    pub fn to_text(&self) -> String {
        match self {
            JsonText::Value(value) => {
                serde_json::to_string(&JsonbOrder(value)).expect("a value always serialises")
            }
            JsonText::Stored(stored) => stored.0.clone(),
        }
    }
}

/// For serde's serialisers (the OpenAPI examples, tests); the service's answers are written by
/// [`JsonText::write`], which does not parse stored text: serde can only take text as it is
/// through a `RawValue`, and making one parses it.
impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonText::Value(value) => JsonbOrder(value).serialize(serializer),
            JsonText::Stored(stored) => serde_json::from_str::<&RawValue>(&stored.0)
                .map_err(S::Error::custom)?
                .serialize(serializer),
        }
    }
}

/// A stored `jsonb` value as compact JSON text, read without building a value: PostgreSQL writes
/// jsonb with a space after each `:` and `,`, which is all that differs from the service's own
/// spelling (keys are already in jsonb's order).
///
/// The text is not parsed to check it: PostgreSQL writes `jsonb` itself from its binary form
/// (and checks `json` on input), so it is one valid JSON value by construction, and compacting
/// valid JSON keeps it valid. Checking it with `RawValue::from_string` was a full parse of every
/// member read, 184k instructions of a list page of 50 (docs/performance.md).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJson(String);

impl StoredJson {
    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A member as the service wrote it, compact and in jsonb's order ([`JsonText::write`]).
    pub fn written(text: &str) -> Self {
        StoredJson(text.to_owned())
    }

    /// The member as a read of `text` (jsonb's output, or any JSON) makes it.
    #[cfg(test)]
    pub fn for_tests(text: &str) -> Self {
        StoredJson(compact(text))
    }
}

impl sqlx::Type<Postgres> for StoredJson {
    fn type_info() -> PgTypeInfo {
        <sqlx::types::Json<&RawValue> as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <sqlx::types::Json<&RawValue> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for StoredJson {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let jsonb = value.format() == PgValueFormat::Binary
            && sqlx::ValueRef::type_info(&value).name() == "JSONB";
        let mut bytes = value.as_bytes()?;
        if jsonb {
            // jsonb's binary form is a version byte (1), then the text.
            bytes = match bytes.split_first() {
                Some((1, text)) => text,
                _ => return Err("unsupported jsonb format version".into()),
            };
        }
        let text = std::str::from_utf8(bytes)?;
        Ok(StoredJson(compact(text)))
    }
}

/// `json` without the whitespace outside its strings, copied in runs. Strings are skipped 8
/// bytes at a time ([`string_end`]): they are most of a member's text, and this runs on every
/// member of every customer a list page shows. Every cut is at an ASCII byte (whitespace or a
/// quote), never inside a multi-byte UTF-8 character, whose bytes are all non-ASCII.
fn compact(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut run, mut i) = (0, 0);
    while let Some(&b) = bytes.get(i) {
        if b == b'"' {
            i = string_end(bytes, i + 1);
        } else if b.is_ascii_whitespace() {
            out.push_str(&json[run..i]);
            i += 1;
            run = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&json[run..]);
    out
}

/// Where the JSON string whose contents start at `i` ends: just after its closing quote (the
/// end of `bytes` if it has none). Jumps 8 bytes at a time to the next quote or backslash.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        while let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let marks = byte_marks(word, b'"') | byte_marks(word, b'\\');
            if marks != 0 {
                // The lowest mark is the first such byte (little-endian: the lowest byte first).
                i += (marks.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match bytes.get(i) {
            None => return bytes.len(),
            Some(b'"') => return i + 1,
            // The escaped byte is skipped with it (it may be a quote).
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
        }
    }
}

/// The bytes of `word` that are `byte`, marked by their high bit: the zero-byte test of "Bit
/// Twiddling Hacks". Zero when there is none; otherwise its lowest mark is exact (a borrow can
/// only mark wrongly a byte above a true one).
fn byte_marks(word: u64, byte: u8) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// A value serialised with its objects' keys in jsonb's order.
struct JsonbOrder<'a>(&'a Value);

impl Serialize for JsonbOrder<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|(a, _), (b, _)| {
                    a.len()
                        .cmp(&b.len())
                        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
                });
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &JsonbOrder(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&JsonbOrder(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_json_loses_only_the_spaces_outside_strings() {
        assert_eq!(
            compact(r#"{"a": [1, {"b c": "x \" y, z"}], "dd": null}"#),
            r#"{"a":[1,{"b c":"x \" y, z"}],"dd":null}"#
        );
        // Multi-byte characters next to cuts, an escaped backslash before a closing quote.
        assert_eq!(
            compact("{\"é\": \"ü ß\", \"k\\\\\": [\"日本 \", 2] }"),
            "{\"é\":\"ü ß\",\"k\\\\\":[\"日本 \",2]}"
        );
    }

    /// The first version of [`compact`], byte by byte: the reference for the fast one.
    fn compact_bytewise(json: &str) -> String {
        let mut out = String::with_capacity(json.len());
        let (mut in_string, mut escaped) = (false, false);
        let mut run = 0;
        for (i, b) in json.bytes().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else if b.is_ascii_whitespace() {
                out.push_str(&json[run..i]);
                run = i + 1;
            } else if b == b'"' {
                in_string = true;
            }
        }
        out.push_str(&json[run..]);
        out
    }

    #[test]
    fn compact_is_the_bytewise_compact_at_every_offset() {
        // Quotes, backslashes and escaped quotes at every offset from a string's start and
        // across the 8-byte steps, next to spaces that are inside and outside strings.
        let pieces = [
            "a",
            " ",
            "\\\"",
            "\\\\",
            "\\\\\\\"",
            "é",
            "日本",
            "\\u00e9",
            "\\n",
            ",",
            ": ",
            "xxxxxxxxx",
        ];
        let mut cases = Vec::new();
        for pad in 0..17 {
            for piece in pieces {
                for tail in ["", " ", "  ", "\"k\": [1, 2]"] {
                    let inner = format!("{}{piece}{}", "p".repeat(pad), "q".repeat(16 - pad));
                    cases.push(format!(
                        "{{\"{inner}\": \"{inner}\"{tail}, \"n\" : [ 1 , \"{piece}\" ]}}"
                    ));
                    cases.push(format!("[\"{inner}\",\t\"{piece}\"\n]{tail}"));
                }
            }
        }
        // Unterminated strings and a trailing backslash (never from PostgreSQL): both versions
        // copy the rest as it is.
        cases.extend(
            [
                "\"abc",
                "\"abc\\",
                "\"abcdefghijk\\\"",
                "\"",
                "",
                " ",
                "\"\\",
            ]
            .map(str::to_owned),
        );
        // Whole documents, pretty-printed (newlines, indentation) and as jsonb writes them.
        let value = serde_json::json!({
            "a": [1, {"b c": "x \" y, z", "é": "ü ß"}], "dd": null, "long string key": "0123456789abcdef\\",
            "nested": {"deep": {"deeper": ["日本 ", 2.5, true, false, "\"quoted\" and \\back\\slashed\t"]}}
        });
        cases.push(serde_json::to_string_pretty(&value).unwrap());
        cases.push(
            serde_json::to_string(&value)
                .unwrap()
                .replace(",\"", ", \"")
                .replace("\":", "\": "),
        );
        for case in &cases {
            assert_eq!(compact(case), compact_bytewise(case), "{case:?}");
        }
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(compact(&pretty), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn byte_marks_find_the_first_byte_at_every_position() {
        let first = |word: [u8; 8], byte: u8| {
            let marks = byte_marks(u64::from_le_bytes(word), byte);
            (marks != 0).then(|| marks.trailing_zeros() as usize / 8)
        };
        for byte in [b'"', b'\\', 0, 0x01, 0x80, 0xff] {
            assert_eq!(first(*b"abcdefgh", byte), None);
            for fill in [
                b'a',
                0,
                0x01,
                0x7f,
                0x80,
                0xff,
                byte.wrapping_add(1),
                byte.wrapping_sub(1),
            ] {
                let mut word = [fill; 8];
                assert_eq!(first(word, byte), (fill == byte).then_some(0));
                if fill == byte {
                    continue;
                }
                for at in (0..8).rev() {
                    // Also with the same byte again further up.
                    word[at] = byte;
                    assert_eq!(first(word, byte), Some(at), "{byte} at {at} in {fill}");
                }
            }
        }
    }

    #[test]
    fn keys_come_shorter_first_then_in_byte_order_at_every_depth() {
        let value = json!({
            "ttlDays": 1, "limits": {"perMonth": 3, "perDay": 2, "perAuth": 1},
            "cooldownMinutes": 2, "allowedMccs": ["5411"], "z": [{"bb": 1, "a": 2}]
        });
        assert_eq!(
            serde_json::to_string(&JsonText::Value(&value)).unwrap(),
            r#"{"z":[{"a":2,"bb":1}],"limits":{"perDay":2,"perAuth":1,"perMonth":3},"ttlDays":1,"allowedMccs":["5411"],"cooldownMinutes":2}"#
        );
    }
}
