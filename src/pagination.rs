//! Opaque list cursors: the keyset position (an instant and an id) of the last item of a page,
//! bound to a scope (the tenant and the filters, spelled by the listing), signed with
//! HMAC-SHA256. A cursor the service did not issue, or one used with other filters or by
//! another tenant, fails the signature check.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The part of a cursor's signature that is checked; 128 bits is plenty against forgery.
const TAG_BYTES: usize = 16;

#[derive(Serialize, Deserialize)]
struct Position {
    /// created_at in microseconds since the epoch.
    t: i64,
    i: String,
}

pub struct Cursors {
    secret: Vec<u8>,
}

impl Cursors {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn tag(&self, payload: &[u8], scope: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// `scope` names the tenant and the filters the cursor may be used with.
    pub fn issue(&self, created_at: DateTime<Utc>, id: &str, scope: &str) -> String {
        let payload = serde_json::to_vec(&Position {
            t: created_at.timestamp_micros(),
            i: id.to_owned(),
        })
        .expect("a position always serialises");
        let tag = self.tag(&payload, scope);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    pub fn open(&self, cursor: &str, scope: &str) -> Result<(DateTime<Utc>, String), ApiError> {
        let (payload, tag) = cursor.split_once('.').ok_or(ApiError::InvalidCursor)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ApiError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(&payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        if tag.len() != TAG_BYTES {
            return Err(ApiError::InvalidCursor);
        }
        let position: Position =
            serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidCursor)?;
        let created_at =
            DateTime::from_timestamp_micros(position.t).ok_or(ApiError::InvalidCursor)?;
        Ok((created_at, position.i))
    }
}
