//! Tokens signed with the configured signing key: `customers-api token`, and the tests.

use std::time::Duration;

use jsonwebtoken::Header;

use super::{Claims, KeyRing, Mode};

/// What `customers-api token` puts in a token.
pub struct TokenRequest {
    pub org: String,
    pub mode: Mode,
    pub scope: String,
    pub ttl: Duration,
    pub sub: String,
}

/// Signs a token with the configured signing key (`auth.signing_kid`).
///
/// ```
/// use std::time::Duration;
/// use customers_api::auth::{mint_token, KeyRing, Mode, TokenRequest};
/// use customers_api::configuration::Settings;
///
/// let ring = KeyRing::from_settings(&Settings::load()?.auth)?;
/// let request = TokenRequest {
///     org: "org_demo".into(),
///     mode: Mode::Test,
///     scope: "customers:read".into(),
///     ttl: Duration::from_secs(60),
///     sub: "docs".into(),
/// };
/// let token = mint_token(&ring, &request)?;
/// let claims = ring.verify(&token).expect("the ring verifies its own tokens");
/// assert_eq!((claims.org.as_str(), claims.mode), ("org_demo", Mode::Test));
/// assert!(ring.verify(&format!("{token}x")).is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn mint_token(ring: &KeyRing, request: &TokenRequest) -> anyhow::Result<String> {
    let (kid, alg, key) = ring
        .signing
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("auth.signing_kid does not name a configured key"))?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: Some(request.sub.clone()),
        org: request.org.clone(),
        mode: request.mode,
        scope: request.scope.clone(),
        exp: now + request.ttl.as_secs(),
        iat: Some(now),
        nbf: None,
        iss: ring.issuer.clone(),
        aud: ring.audience.clone(),
    };
    let mut header = Header::new(*alg);
    header.kid = Some(kid.clone());
    Ok(jsonwebtoken::encode(&header, &claims, key)?)
}
