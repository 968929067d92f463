//! The checks every setting passes at start-up, each refusal naming its setting; the
//! production profile's refusals (development keys, plain HTTP to webhooks) among them.

use std::time::Duration;

use super::*;

impl Settings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.host.trim().is_empty() {
            return Err(ConfigError::invalid(
                "server.host (HOST)",
                "must not be empty",
            ));
        }
        if self.server.shutdown_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "server.shutdown_timeout",
                "must be above zero",
            ));
        }
        let db = &self.database;
        if db.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if db.min_connections > db.max_connections {
            return Err(ConfigError::invalid(
                "database.min_connections",
                "must not exceed database.max_connections",
            ));
        }
        for (name, d) in [
            ("database.acquire_timeout", db.acquire_timeout),
            ("database.statement_timeout", db.statement_timeout),
            ("idempotency.retention", self.idempotency.retention),
            ("idempotency.wait", self.idempotency.wait),
            (
                "idempotency.sweep_interval",
                self.idempotency.sweep_interval,
            ),
            (
                "events.retention",
                self.events.retention.unwrap_or(Duration::MAX),
            ),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(name, "must be above zero"));
            }
        }
        let metrics = self.server.metrics_address.trim();
        if !metrics.is_empty() && metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "server.metrics_address",
                "must be empty or an address and port, such as 127.0.0.1:9090",
            ));
        }
        let url = db.url.expose();
        if !url.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(ConfigError::invalid(
                "database.url (DATABASE_URL)",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        if !url.is_empty() {
            // One host or several (`h1:5432,h2:5432`); the message never repeats the URL.
            crate::db::Hosts::parse(url)
                .map_err(|e| ConfigError::invalid("database.url (DATABASE_URL)", e.to_string()))?;
        }
        if !(1..=100_000).contains(&self.idempotency.sweep_batch) {
            return Err(ConfigError::invalid(
                "idempotency.sweep_batch",
                "must be 1 to 100000",
            ));
        }
        if self.pagination.cursor_secret.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "pagination.cursor_secret",
                "must be at least 32 bytes",
            ));
        }
        if self.rate_limit.enabled
            && (self.rate_limit.per_second == 0 || self.rate_limit.burst == 0)
        {
            return Err(ConfigError::invalid(
                "rate_limit.per_second / rate_limit.burst",
                "must be above zero when rate_limit.enabled is true",
            ));
        }
        crate::auth::validate_remote_keys(&self.auth)?;
        if self.auth.keys.is_empty()
            && self.auth.jwks_file.is_empty()
            && self.auth.jwks_url.is_empty()
            && self.auth.oidc_issuer.is_empty()
        {
            return Err(ConfigError::invalid(
                "auth.keys",
                "at least one verification key is needed",
            ));
        }
        let mut kids = std::collections::HashSet::new();
        for (i, key) in self.auth.keys.iter().enumerate() {
            let name = |field: &str| format!("auth.keys[{i}].{field}");
            if key.kid.is_empty() {
                return Err(ConfigError::invalid(name("kid"), "must not be empty"));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(ConfigError::invalid(
                    name("kid"),
                    format!("duplicate kid {:?}", key.kid),
                ));
            }
            match key.alg.as_str() {
                "HS256" => {
                    if key.secret.expose().len() < 32 {
                        return Err(ConfigError::invalid(
                            name("secret"),
                            "an HS256 secret must be at least 32 bytes",
                        ));
                    }
                }
                "RS256" | "ES256" | "EdDSA" => {
                    if key.public_key_file.is_empty() {
                        return Err(ConfigError::invalid(
                            name("public_key_file"),
                            "is required for this alg",
                        ));
                    }
                }
                other => {
                    return Err(ConfigError::invalid(
                        name("alg"),
                        format!("{other:?} is not one of HS256, RS256, ES256, EdDSA"),
                    ))
                }
            }
        }
        let events = &self.events;
        if !(1..=10_000).contains(&events.batch_size) {
            return Err(ConfigError::invalid(
                "events.batch_size",
                "must be 1 to 10000",
            ));
        }
        for (name, d) in [
            ("events.poll_interval", events.poll_interval),
            ("events.publish_timeout", events.publish_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(name, "must be above zero"));
            }
        }
        if !(1..=5).contains(&events.stream_replicas) {
            return Err(ConfigError::invalid(
                "events.stream_replicas",
                "must be 1 to 5 (JetStream's limit)",
            ));
        }
        if events.duplicate_window < Duration::from_secs(120) {
            return Err(ConfigError::invalid(
                "events.duplicate_window",
                "must be at least 2m",
            ));
        }
        let url = events.nats_url.expose();
        if !url.is_empty() && !url.starts_with("nats://") && !url.starts_with("tls://") {
            return Err(ConfigError::invalid(
                "events.nats_url",
                "must be empty or a nats:// or tls:// URL",
            ));
        }
        if events.stream.is_empty()
            || !events
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid(
                "events.stream",
                "must be letters, digits, _ or -",
            ));
        }
        if events.subject_prefix.is_empty()
            || !events
                .subject_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid(
                "events.subject_prefix",
                "must be letters, digits, _ or -",
            ));
        }
        if self.profile == Profile::Production {
            if !events.record {
                return Err(ConfigError::invalid(
                    "events.record",
                    "switching events off is for benchmarks; the production profile refuses it",
                ));
            }
            if self
                .auth
                .keys
                .iter()
                .any(|k| k.secret.expose() == DEV_SIGNING_SECRET)
            {
                return Err(ConfigError::invalid(
                    "auth.keys",
                    "the development signing key is refused in the production profile",
                ));
            }
            if self.pagination.cursor_secret.expose() == DEV_CURSOR_SECRET {
                return Err(ConfigError::invalid(
                    "pagination.cursor_secret",
                    "the development cursor secret is refused in the production profile",
                ));
            }
        }
        self.validate_webhooks()?;
        Ok(())
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let webhooks = &self.webhooks;
        if webhooks.secrets_key.expose().len() < 32 {
            return Err(ConfigError::invalid(
                "webhooks.secrets_key",
                "must be at least 32 bytes",
            ));
        }
        for previous in &webhooks.previous_secrets_keys {
            if previous.expose().len() < 32 {
                return Err(ConfigError::invalid(
                    "webhooks.previous_secrets_keys",
                    "each must be at least 32 bytes",
                ));
            }
            if previous == &webhooks.secrets_key {
                return Err(ConfigError::invalid(
                    "webhooks.previous_secrets_keys",
                    "must not hold webhooks.secrets_key itself",
                ));
            }
        }
        for (name, d) in [
            ("webhooks.timeout", webhooks.timeout),
            ("webhooks.disable_after", webhooks.disable_after),
            ("webhooks.poll_interval", webhooks.poll_interval),
            ("webhooks.log_retention", webhooks.log_retention),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(name, "must be above zero"));
            }
        }
        if webhooks.retry_schedule.len() > 50 {
            return Err(ConfigError::invalid(
                "webhooks.retry_schedule",
                "must have at most 50 steps",
            ));
        }
        if webhooks.max_in_flight == 0 || webhooks.max_in_flight_per_webhook == 0 {
            return Err(ConfigError::invalid(
                "webhooks.max_in_flight / webhooks.max_in_flight_per_webhook",
                "must be at least 1",
            ));
        }
        if webhooks.busy_deliveries_per_second == 0 {
            return Err(ConfigError::invalid(
                "webhooks.busy_deliveries_per_second",
                "must be at least 1 (deliveries never stop for writes)",
            ));
        }
        if self.profile == Profile::Production {
            if webhooks.secrets_key.expose() == DEV_WEBHOOK_SECRETS_KEY {
                return Err(ConfigError::invalid(
                    "webhooks.secrets_key",
                    "the development key is refused in the production profile",
                ));
            }
            if webhooks.allow_http || webhooks.allow_private_networks {
                return Err(ConfigError::invalid(
                    "webhooks.allow_http / webhooks.allow_private_networks",
                    "are for development and tests; the production profile refuses them",
                ));
            }
        }
        Ok(())
    }
}
