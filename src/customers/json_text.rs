//! The JSON members of a customer (policy, metadata) in one spelling whether they come from a
//! value the service built or straight from the database: objects with their keys in jsonb's
//! order (shorter keys first, then byte order), the order PostgreSQL gives them back in. So a
//! list page can pass the stored JSON through untouched (no parsing, no re-encoding) and still
//! show each customer byte for byte as GET and the write that made it did.

use serde::ser::{SerializeMap, SerializeSeq};
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

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonText::Value(value) => JsonbOrder(value).serialize(serializer),
            JsonText::Stored(stored) => stored.0.serialize(serializer),
        }
    }
}

/// A stored `jsonb` value as compact JSON text, read without building a value: PostgreSQL writes
/// jsonb with a space after each `:` and `,`, which is all that differs from the service's own
/// spelling (keys are already in jsonb's order).
#[derive(Debug, Clone)]
pub struct StoredJson(pub Box<RawValue>);

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
        // Parsed once, here: RawValue checks that the text is one JSON value.
        let text = std::str::from_utf8(bytes)?;
        Ok(StoredJson(RawValue::from_string(compact(text))?))
    }
}

/// `json` without the whitespace outside its strings, copied in runs: the bytes looked at are
/// all ASCII, and no byte of a multi-byte UTF-8 character is, so every cut is a char boundary.
fn compact(json: &str) -> String {
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
