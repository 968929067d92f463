//! What verifying a token checks: a key with the validation of its algorithm, and the claims
//! every key checks besides the signature. Shared by the configured keys (`keys`) and the fetched
//! ones (`jwks`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

pub(super) struct VerifyKey {
    pub(super) key: DecodingKey,
    pub(super) validation: Validation,
}

/// The checks every key applies besides its signature: leeway, issuer and audience.
pub(super) struct Checks {
    pub(super) leeway: u64,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
}

impl Checks {
    pub(super) fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            None => v.iss = None,
            Some(issuer) => {
                v.set_issuer(&[issuer]);
                required.push("iss");
            }
        }
        match &self.audience {
            None => v.validate_aud = false,
            Some(audience) => {
                v.set_audience(&[audience]);
                required.push("aud");
            }
        }
        v.set_required_spec_claims(&required);
        v
    }
}
