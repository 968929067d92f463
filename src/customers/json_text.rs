//! The JSON members of a customer (policy, metadata) in one spelling whether they come from a
//! value the service built or straight from the database: objects with their keys in jsonb's
//! order (shorter keys first, then byte order), the order PostgreSQL gives them back in. So a
//! list page can pass the stored JSON through untouched (no parsing, no re-encoding) and still
//! show each customer byte for byte as GET and the write that made it did.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::Postgres;

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
#[derive(Debug)]
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
        let stored = <sqlx::types::Json<&RawValue> as sqlx::Decode<Postgres>>::decode(value)?;
        Ok(StoredJson(RawValue::from_string(compact(stored.0.get()))?))
    }
}

/// `json` without the whitespace outside its strings.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
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
