//! The request-body extractor of the write routes: content type (415), size (413), strict JSON
//! (400 `invalid_json`: duplicate keys and over-deep nesting included) and "must be an object"
//! (400 `invalid_request`), each answered with the API's envelope.

use std::fmt;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub use crate::limits::MAX_BODY_BYTES;

/// A JSON object body. An empty body reads as `{}`. The bytes as sent are kept beside the parsed
/// object: a number's spelling (`80000.0`, `8e4`) is only known from them.
#[derive(Debug)]
pub struct JsonObject {
    pub object: Map<String, Value>,
    pub raw: actix_web::web::Bytes,
}

/// The body of a write route, not read yet: a handler reads it with [`JsonBody::read`] after it
/// has checked the caller's scope, so that a caller without the scope gets 403 whatever it
/// sent.
pub struct JsonBody {
    declared_too_large: bool,
    content_type_ok: Option<bool>,
    payload: Payload,
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_too_large = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES as u64);
        let content_type_ok = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(is_json_content_type);
        std::future::ready(Ok(JsonBody {
            declared_too_large,
            content_type_ok,
            payload: payload.take(),
        }))
    }
}

impl JsonBody {
    /// Reads and parses the body: 413 past the limit, 415 for another content type, 400 for
    /// anything but one strict JSON object.
    pub async fn read(self) -> Result<JsonObject, ApiError> {
        let JsonBody {
            declared_too_large,
            content_type_ok,
            mut payload,
        } = self;
        if declared_too_large {
            return Err(ApiError::PayloadTooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::InvalidRequest(format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Ok(JsonObject {
                object: Map::new(),
                raw: Default::default(),
            });
        }
        if content_type_ok != Some(true) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be sent as application/json or application/merge-patch+json".into(),
            ));
        }
        match parse_strict(&body)? {
            Value::Object(object) => Ok(JsonObject {
                object,
                raw: body.into(),
            }),
            _ => Err(ApiError::InvalidRequest(
                "the request body must be a JSON object".into(),
            )),
        }
    }
}

fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/merge-patch+json")
}

/// Parses JSON, refusing duplicate object keys (which parsers resolve differently, so a limit
/// could mean one thing to us and another to the client). serde_json's recursion limit turns
/// absurd nesting into an error instead of a stack overflow.
pub fn parse_strict(body: &[u8]) -> Result<Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_invalid_json() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_strict(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_strict(br#"{"a":1,"b":2}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
    }

    #[test]
    fn huge_numbers_and_lone_surrogates_are_refused() {
        assert!(parse_strict(b"{\"a\":1e400}").is_err());
        assert!(parse_strict(br#"{"a":"\ud800"}"#).is_err());
    }
}
