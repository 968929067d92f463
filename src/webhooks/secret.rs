//! Signing secrets: their form (`whsec_` + base64 of 24 to 64 random bytes, as Standard Webhooks
//! has them), their encryption at rest (ChaCha20-Poly1305 under `webhooks.secrets_key`) and the
//! signature of a delivery.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::tenant::Tenant;

const PREFIX: &str = "whsec_";
/// Bytes of a generated secret (Standard Webhooks allows 24 to 64).
const GENERATED_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

/// A webhook's signing secret. Its `Debug` shows nothing of it, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A secret given by a client: `whsec_` + standard base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.strip_prefix(PREFIX)?).ok()?;
        (24..=64).contains(&bytes.len()).then_some(Self(bytes))
    }

    /// The form clients see: `whsec_…`.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 of HMAC-SHA256(secret, "id.timestamp.body")>`, one entry of
    /// `webhook-signature`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Encrypts and decrypts the secrets stored in `webhook_secrets`: seals under
/// `webhooks.secrets_key`, opens under it or any of `webhooks.previous_secrets_keys`, so that the
/// key can be changed without making the stored secrets unreadable (`webhooks::reseal` then
/// seals them again under the new one).
pub struct SecretBox {
    /// The current key's cipher first, then the previous keys' in the order configured.
    ciphers: Vec<ChaCha20Poly1305>,
}

/// Which key opened a sealed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedUnder {
    Current,
    Previous,
}

impl SecretBox {
    /// Each key is the SHA-256 of the configured text (at least 32 bytes, checked at start-up).
    pub fn new<'a>(secrets_key: &'a str, previous: impl IntoIterator<Item = &'a str>) -> Self {
        let cipher = |text: &str| {
            let key = Sha256::digest(text.as_bytes());
            ChaCha20Poly1305::new(&Key::from(<[u8; 32]>::from(key)))
        };
        Self {
            ciphers: std::iter::once(secrets_key)
                .chain(previous)
                .map(cipher)
                .collect(),
        }
    }

    /// Whether previous keys are configured (secrets sealed under one of them may remain).
    pub fn has_previous_keys(&self) -> bool {
        self.ciphers.len() > 1
    }

    /// The secret bound to its webhook: the tenant and id are the associated data, so a sealed
    /// secret copied to another webhook's row does not open.
    fn associated(tenant: &Tenant, webhook_id: &str) -> Vec<u8> {
        format!("{}/{}/{webhook_id}", tenant.mode.as_str(), tenant.org).into_bytes()
    }

    /// nonce || ciphertext (with its tag).
    pub fn seal(&self, tenant: &Tenant, webhook_id: &str, secret: &SigningSecret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::associated(tenant, webhook_id);
        let sealed = self.ciphers[0]
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &secret.0,
                    aad: &aad,
                },
            )
            .expect("encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The secret, or `None` when it does not open (another key, another webhook, altered).
    pub fn open(&self, tenant: &Tenant, webhook_id: &str, sealed: &[u8]) -> Option<SigningSecret> {
        self.open_telling_key(tenant, webhook_id, sealed)
            .map(|(secret, _)| secret)
    }

    /// As `open`, and whether the current key or a previous one opened it.
    pub fn open_telling_key(
        &self,
        tenant: &Tenant,
        webhook_id: &str,
        sealed: &[u8],
    ) -> Option<(SigningSecret, SealedUnder)> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::from(<[u8; NONCE_BYTES]>::try_from(nonce).ok()?);
        let aad = Self::associated(tenant, webhook_id);
        self.ciphers.iter().enumerate().find_map(|(i, cipher)| {
            let payload = Payload {
                msg: ciphertext,
                aad: &aad,
            };
            let secret = SigningSecret(cipher.decrypt(&nonce, payload).ok()?);
            let under = if i == 0 {
                SealedUnder::Current
            } else {
                SealedUnder::Previous
            };
            Some((secret, under))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Mode;

    fn tenant(org: &str) -> Tenant {
        Tenant {
            org: org.into(),
            mode: Mode::Test,
        }
    }

    #[test]
    fn a_secret_has_the_standard_form() {
        let secret = SigningSecret::generate();
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&text), Some(secret.clone()));
        // 23 bytes is too short, 65 too long, no prefix or bad base64 is not a secret.
        for bad in [
            format!("whsec_{}", STANDARD.encode([1u8; 23])),
            format!("whsec_{}", STANDARD.encode([1u8; 65])),
            STANDARD.encode([1u8; 32]),
            "whsec_not base64!".into(),
        ] {
            assert!(SigningSecret::parse(&bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_signature_is_the_standard_one() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_webhook_and_key() {
        let secrets = SecretBox::new("a key of thirty-two bytes or more, surely", []);
        let secret = SigningSecret::generate();
        let sealed = secrets.seal(&tenant("a"), "whk_1", &secret);
        assert_eq!(secrets.open(&tenant("a"), "whk_1", &sealed), Some(secret));
        assert!(secrets.open(&tenant("b"), "whk_1", &sealed).is_none());
        assert!(secrets.open(&tenant("a"), "whk_2", &sealed).is_none());
        let other = SecretBox::new("another key of thirty-two bytes or more", []);
        assert!(other.open(&tenant("a"), "whk_1", &sealed).is_none());
    }

    /// After the key changes, secrets sealed under the old one open while it is listed among
    /// the previous keys, and say so; new seals use the new key.
    #[test]
    fn a_previous_key_opens_what_it_sealed() {
        let old_key = "the old key of thirty-two bytes or more";
        let old = SecretBox::new(old_key, []);
        let secret = SigningSecret::generate();
        let sealed = old.seal(&tenant("a"), "whk_1", &secret);
        let rotated = SecretBox::new("the new key of thirty-two bytes or more", [old_key]);
        assert!(rotated.has_previous_keys());
        assert_eq!(
            rotated.open_telling_key(&tenant("a"), "whk_1", &sealed),
            Some((secret.clone(), SealedUnder::Previous))
        );
        let resealed = rotated.seal(&tenant("a"), "whk_1", &secret);
        assert_eq!(
            rotated.open_telling_key(&tenant("a"), "whk_1", &resealed),
            Some((secret, SealedUnder::Current))
        );
        assert!(old.open(&tenant("a"), "whk_1", &resealed).is_none());
        // Still bound to its webhook under a previous key.
        assert!(rotated.open(&tenant("a"), "whk_2", &sealed).is_none());
    }
}
