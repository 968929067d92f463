//! Opaque cursors: the keyset position of the last item of a page, bound to a scope (the
//! tenant and the filters, spelled by the listing), signed with HMAC-SHA256. A cursor the
//! service did not issue, or one used with other filters or by another tenant, fails the
//! signature check.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The part of a cursor's signature that is checked; 128 bits is plenty against forgery.
const TAG_BYTES: usize = 16;

pub struct Cursors {
    secret: Vec<u8>,
}

impl Cursors {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, payload: &[u8], scope: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        mac
    }

    /// A cursor for `position`, valid only with `scope`.
    pub fn issue<P: Serialize>(&self, position: &P, scope: &str) -> String {
        let payload = serde_json::to_vec(position).expect("a position always serialises");
        let tag = self.mac(&payload, scope).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The position a cursor holds, if this service issued it for `scope`.
    pub fn open<P: DeserializeOwned>(&self, cursor: &str, scope: &str) -> Result<P, ApiError> {
        let (payload, tag) = cursor.split_once('.').ok_or(ApiError::InvalidCursor)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ApiError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        if tag.len() != TAG_BYTES {
            return Err(ApiError::InvalidCursor);
        }
        // Constant-time comparison of the truncated tag.
        self.mac(&payload, scope)
            .verify_truncated_left(&tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct At {
        n: i64,
    }

    #[test]
    fn a_cursor_opens_only_in_its_scope() {
        let cursors = Cursors::new(b"a secret of the cursors, thirty-two+");
        let cursor = cursors.issue(&At { n: 7 }, "tenant a");
        assert_eq!(
            cursors.open::<At>(&cursor, "tenant a").unwrap(),
            At { n: 7 }
        );
        assert!(cursors.open::<At>(&cursor, "tenant b").is_err());
        let other = Cursors::new(b"another secret of thirty-two bytes");
        assert!(other.open::<At>(&cursor, "tenant a").is_err());
        let (payload, _) = cursor.split_once('.').unwrap();
        assert!(cursors
            .open::<At>(&format!("{payload}.AAAA"), "tenant a")
            .is_err());
    }
}
