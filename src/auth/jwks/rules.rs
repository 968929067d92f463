//! Which URLs keys may come from, and the rules of the settings that name them.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::configuration::{AuthSettings, ConfigError};

/// `http` is accepted only to a loopback address (development and tests); everything else is
/// `https`, so that nobody on the path can hand the service keys of their own.
pub(super) fn check_url(setting: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{setting}: not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        _ => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(format!(
            "{setting}: http is accepted only to a loopback address (127.0.0.1, ::1); use https"
        )),
        other => Err(format!("{setting}: the scheme must be https, not {other}")),
    }
}

/// The rules of `auth.jwks_url`, `auth.jwks_refresh` and `auth.oidc_issuer`.
///
/// ```
/// use customers_api::auth::validate_remote_keys;
/// use customers_api::configuration::Settings;
///
/// let mut auth = Settings::load()?.auth;
/// auth.jwks_url = "http://127.0.0.1:8081/jwks.json".into();
/// assert!(validate_remote_keys(&auth).is_ok());
/// // Keys fetched in clear text from another machine could be anybody's.
/// auth.jwks_url = "http://idp.example/jwks.json".into();
/// assert_eq!(validate_remote_keys(&auth).unwrap_err().setting, "auth.jwks_url");
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn validate_remote_keys(auth: &AuthSettings) -> Result<(), ConfigError> {
    if !auth.jwks_url.is_empty() && !auth.oidc_issuer.is_empty() {
        return Err(ConfigError::invalid(
            "auth.jwks_url",
            "set auth.jwks_url or auth.oidc_issuer, not both (the issuer names its own JWKS)",
        ));
    }
    if !auth.jwks_url.is_empty() {
        check_url("auth.jwks_url", &auth.jwks_url)
            .map_err(|e| ConfigError::invalid("auth.jwks_url", e))?;
    }
    if !auth.oidc_issuer.is_empty() {
        check_url("auth.oidc_issuer", &auth.oidc_issuer)
            .map_err(|e| ConfigError::invalid("auth.oidc_issuer", e))?;
        if !auth.issuer.is_empty() && auth.issuer != auth.oidc_issuer {
            return Err(ConfigError::invalid(
                "auth.issuer",
                "must be empty or equal to auth.oidc_issuer (the issuer tokens must carry)",
            ));
        }
    }
    if auth.jwks_refresh < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "auth.jwks_refresh",
            "must be at least 1s",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_accepted_only_to_a_loopback_address() {
        for ok in [
            "https://idp.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(check_url("auth.jwks_url", ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://idp.example/jwks.json",
            "http://localhost/jwks.json",
            "http://10.0.0.1/jwks.json",
            "ftp://127.0.0.1/jwks.json",
            "/jwks.json",
        ] {
            assert!(check_url("auth.jwks_url", refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn settings_are_refused_by_name() {
        let mut auth = crate::configuration::Settings::load()
            .expect("the default settings load")
            .auth;
        auth.jwks_refresh = Duration::from_millis(500);
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.jwks_refresh"
        );
        auth.jwks_refresh = Duration::from_secs(1);
        auth.jwks_url = "https://idp.example/jwks.json".into();
        auth.oidc_issuer = "https://idp.example/".into();
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.jwks_url"
        );
        auth.jwks_url.clear();
        auth.issuer = "https://other.example/".into();
        assert_eq!(
            validate_remote_keys(&auth).unwrap_err().setting,
            "auth.issuer"
        );
        auth.issuer.clear();
        assert!(validate_remote_keys(&auth).is_ok());
    }
}
