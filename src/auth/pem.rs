//! Keys of the configuration (`auth.keys`): HS256 secrets and PEM files.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::configuration::{ConfigError, KeySettings};

pub(super) fn parse_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

pub(super) fn read_file(setting: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::invalid(setting, format!("cannot read {path}: {e}")))
}

pub(super) fn decoding_key(
    setting: &str,
    alg: Algorithm,
    k: &KeySettings,
) -> Result<DecodingKey, ConfigError> {
    let file = || read_file(&format!("{setting}.public_key_file"), &k.public_key_file);
    let bad = |e: jsonwebtoken::errors::Error| {
        ConfigError::invalid(format!("{setting}.public_key_file"), e.to_string())
    };
    Ok(match alg {
        Algorithm::HS256 => DecodingKey::from_secret(k.secret.expose().as_bytes()),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(&file()?).map_err(bad)?,
        Algorithm::ES256 => DecodingKey::from_ec_pem(&file()?).map_err(bad)?,
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&file()?).map_err(bad)?,
        _ => {
            return Err(ConfigError::invalid(
                format!("{setting}.alg"),
                "unsupported",
            ))
        }
    })
}

pub(super) fn encoding_key(
    setting: &str,
    alg: Algorithm,
    k: &KeySettings,
) -> Result<EncodingKey, ConfigError> {
    let name = format!("{setting}.private_key_file");
    let pem = || {
        if k.private_key_file.is_empty() {
            Err(ConfigError::invalid(
                &name,
                "auth.signing_kid names this key, so it needs a private key to sign with",
            ))
        } else {
            read_file(&name, &k.private_key_file)
        }
    };
    let bad = |e: jsonwebtoken::errors::Error| ConfigError::invalid(&name, e.to_string());
    Ok(match alg {
        Algorithm::HS256 => EncodingKey::from_secret(k.secret.expose().as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem()?).map_err(bad)?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem()?).map_err(bad)?,
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem()?).map_err(bad)?,
        _ => {
            return Err(ConfigError::invalid(
                format!("{setting}.alg"),
                "unsupported",
            ))
        }
    })
}
