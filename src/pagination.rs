//! Opaque cursors: the keyset position of the last item of a page, bound to a scope (the
//! tenant and the filters, spelled by the listing), **encrypted** with XChaCha20-Poly1305. A
//! position can say more than the page showed (the feed's `seq` is shared by every tenant, so a
//! readable one would let a tenant count other tenants' events), so a cursor's contents are
//! unreadable as well as unforgeable: base64url of a random 192-bit nonce, the encrypted
//! position and the 128-bit tag, with the scope as associated data. A cursor the service did not
//! issue, one altered in any bit, or one used with other filters or by another tenant fails to
//! decrypt: `invalid_cursor`. Two cursors of the same position differ (the nonce).
//!
//! The key is derived from `pagination.cursor_secret` (HMAC-SHA256 of a fixed label), so every
//! instance that shares the secret opens every instance's cursors.
//!
//! Cursors issued before encryption (`<base64 payload>.<base64 HMAC tag>`, readable) are still
//! opened, so that a feed consumer's stored cursor survives the upgrade; none is issued any more.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The part of a signed (pre-encryption) cursor's tag that is checked.
const LEGACY_TAG_BYTES: usize = 16;

/// XChaCha20's nonce: random, and long enough that two cursors never share one.
const NONCE_BYTES: usize = 24;

/// Poly1305's tag.
const TAG_BYTES: usize = 16;

/// A cursor's text is at most this long (a position is a few numbers or short strings); longer
/// input is refused before any decoding.
const MAX_CURSOR_CHARS: usize = 1024;

/// Which key the secret gives: a key of its own for encryption, not the secret itself.
const KEY_LABEL: &[u8] = b"customers-api cursor encryption key v1";

pub struct Cursors {
    cipher: XChaCha20Poly1305,
    /// The secret itself: the HMAC key of cursors issued before encryption.
    legacy: Vec<u8>,
}

impl Cursors {
    pub fn new(secret: &[u8]) -> Self {
        let mut kdf =
            <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        kdf.update(KEY_LABEL);
        let key = kdf.finalize().into_bytes();
        Self {
            cipher: XChaCha20Poly1305::new(&key),
            legacy: secret.to_vec(),
        }
    }

    /// A cursor for `position`, valid only with `scope`.
    pub fn issue<P: Serialize>(&self, position: &P, scope: &str) -> String {
        let payload = serde_json::to_vec(position).expect("a position always serialises");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &payload,
                    aad: scope.as_bytes(),
                },
            )
            .expect("encryption of a short payload cannot fail");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position a cursor holds, if this service issued it for `scope`.
    pub fn open<P: DeserializeOwned>(&self, cursor: &str, scope: &str) -> Result<P, ApiError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let payload = if cursor.contains('.') {
            self.open_signed(cursor, scope)?
        } else {
            let bytes = URL_SAFE_NO_PAD
                .decode(cursor)
                .map_err(|_| ApiError::InvalidCursor)?;
            if bytes.len() < NONCE_BYTES + TAG_BYTES {
                return Err(ApiError::InvalidCursor);
            }
            let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
            let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at the nonce's length");
            self.cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: sealed,
                        aad: scope.as_bytes(),
                    },
                )
                .map_err(|_| ApiError::InvalidCursor)?
        };
        serde_json::from_slice(&payload).map_err(|_| ApiError::InvalidCursor)
    }

    /// A cursor issued before encryption: its payload, if its HMAC tag holds for `scope`.
    fn open_signed(&self, cursor: &str, scope: &str) -> Result<Vec<u8>, ApiError> {
        let (payload, tag) = cursor.split_once('.').ok_or(ApiError::InvalidCursor)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ApiError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        if tag.len() != LEGACY_TAG_BYTES {
            return Err(ApiError::InvalidCursor);
        }
        // Constant-time comparison of the truncated tag.
        self.legacy_mac(&payload, scope)
            .verify_truncated_left(&tag)
            .map_err(|_| ApiError::InvalidCursor)?;
        Ok(payload)
    }

    fn legacy_mac(&self, payload: &[u8], scope: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.legacy).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        mac
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

    const SECRET: &[u8] = b"a secret of the cursors, thirty-two+";

    #[test]
    fn a_cursor_opens_only_in_its_scope_and_with_its_secret() {
        let cursors = Cursors::new(SECRET);
        let cursor = cursors.issue(&At { n: 7 }, "tenant a");
        assert_eq!(
            cursors.open::<At>(&cursor, "tenant a").unwrap(),
            At { n: 7 }
        );
        assert!(cursors.open::<At>(&cursor, "tenant b").is_err());
        let other = Cursors::new(b"another secret of thirty-two bytes");
        assert!(other.open::<At>(&cursor, "tenant a").is_err());
    }

    #[test]
    fn a_cursor_shows_nothing_of_its_position_and_is_never_the_same_twice() {
        let cursors = Cursors::new(SECRET);
        let position = At {
            n: 1_234_567_890_123,
        };
        let a = cursors.issue(&position, "tenant a");
        let b = cursors.issue(&position, "tenant a");
        assert_ne!(a, b, "two cursors of one position differ");
        for cursor in [&a, &b] {
            assert!(cursor
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            let bytes = URL_SAFE_NO_PAD.decode(cursor).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("1234567890123") && !text.contains("\"n\""));
            assert!(!bytes
                .windows(8)
                .any(|w| w == 1_234_567_890_123i64.to_le_bytes()
                    || w == 1_234_567_890_123i64.to_be_bytes()));
        }
    }

    #[test]
    fn any_altered_bit_is_refused() {
        let cursors = Cursors::new(SECRET);
        let cursor = cursors.issue(&At { n: 7 }, "tenant a");
        let bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(altered);
            assert!(
                cursors.open::<At>(&altered, "tenant a").is_err(),
                "byte {i}"
            );
        }
        assert!(cursors
            .open::<At>(&cursor[..cursor.len() - 1], "tenant a")
            .is_err());
        assert!(cursors.open::<At>("", "tenant a").is_err());
        assert!(cursors.open::<At>(&"A".repeat(5000), "tenant a").is_err());
    }

    #[test]
    fn a_signed_cursor_of_before_encryption_still_opens_and_only_with_its_tag() {
        let cursors = Cursors::new(SECRET);
        let payload = br#"{"n":7}"#;
        let tag = cursors
            .legacy_mac(payload, "tenant a")
            .finalize()
            .into_bytes();
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..LEGACY_TAG_BYTES])
        );
        assert_eq!(
            cursors.open::<At>(&signed, "tenant a").unwrap(),
            At { n: 7 }
        );
        assert!(cursors.open::<At>(&signed, "tenant b").is_err());
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"n":8}"#),
            URL_SAFE_NO_PAD.encode(&tag[..LEGACY_TAG_BYTES])
        );
        assert!(cursors.open::<At>(&forged, "tenant a").is_err());
    }
}
