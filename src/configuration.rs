//! Settings: `config/default.toml`, then the profile file, then the environment.
//!
//! The files are compiled into the binary as well, so the service starts from any directory;
//! files in `CONFIG_DIR` (default `./config`) are laid over the compiled-in copies when present.
//! Every setting is validated at start-up and a bad one is reported by name.

use std::path::PathBuf;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const DEVELOPMENT_TOML: &str = include_str!("../config/development.toml");
const PRODUCTION_TOML: &str = include_str!("../config/production.toml");

/// The secrets shipped in `config/default.toml`; the production profile refuses them.
const DEV_SIGNING_SECRET: &str = "dev-signing-secret-do-not-use-in-production-0000";
const DEV_CURSOR_SECRET: &str = "dev-cursor-secret-do-not-use-in-production-00000";
const DEV_WEBHOOK_SECRETS_KEY: &str = "dev-webhook-secrets-key-do-not-use-in-production-0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Development,
    Production,
}

impl Profile {
    fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("APP_ENV").as_deref() {
            Err(_) | Ok("") | Ok("development") | Ok("dev") => Ok(Profile::Development),
            Ok("production") | Ok("prod") => Ok(Profile::Production),
            Ok(_) => Err(ConfigError::invalid(
                "APP_ENV",
                "must be \"development\" or \"production\"",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Production => "production",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

impl ConfigError {
    pub fn invalid(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// A string that never shows up in `Debug` output (and so never in a log line).
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip, default = "default_profile")]
    pub profile: Profile,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub idempotency: IdempotencySettings,
    pub pagination: PaginationSettings,
    pub rate_limit: RateLimitSettings,
    pub log: LogSettings,
    pub events: EventsSettings,
    pub cache: CacheSettings,
    pub webhooks: WebhooksSettings,
}

fn default_profile() -> Profile {
    Profile::Development
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `host:port` of a listener of its own for `/metrics` only; empty: `/metrics` is served on
    /// the main listener.
    #[serde(default)]
    pub metrics_address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub data_dir: PathBuf,
    pub max_connections: u32,
    pub min_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    pub migrate_on_start: bool,
    /// PostgreSQL ends a session of the pool that sits idle inside a transaction this long
    /// (`idle_in_transaction_session_timeout`): an open transaction holds back the feed's
    /// horizon for every tenant. Zero: never.
    #[serde(
        default = "default_idle_in_transaction_timeout",
        with = "humantime_serde"
    )]
    pub idle_in_transaction_timeout: Duration,
    /// Pooled connections one tenant may hold at once (0: three quarters of max_connections,
    /// at least 1); see `tenant_limit`.
    #[serde(default)]
    pub tenant_max_connections: u32,
    /// Requests of one tenant that may wait for one of its connections; past it, 429.
    #[serde(default = "default_tenant_queue")]
    pub tenant_queue: u32,
}

fn default_idle_in_transaction_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_tenant_queue() -> u32 {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub issuer: String,
    pub audience: String,
    pub jwks_file: String,
    pub signing_kid: String,
    #[serde(default)]
    pub keys: Vec<KeySettings>,
    /// An identity provider's JWKS, fetched at start-up and refreshed (src/auth/jwks.rs).
    #[serde(default)]
    pub jwks_url: String,
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// An OIDC issuer: its discovery document names the JWKS, and tokens must carry it as `iss`.
    #[serde(default)]
    pub oidc_issuer: String,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub kid: String,
    pub alg: String,
    #[serde(default)]
    pub secret: Secret,
    #[serde(default)]
    pub public_key_file: String,
    #[serde(default)]
    pub private_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    pub sweep_batch: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationSettings {
    pub cursor_secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Sustained requests per second per tenant, per instance.
    pub per_second: u32,
    /// Requests a tenant may send at once after being idle.
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// The memory, in MiB, each instance gives the customers it remembers as the guess of a
    /// write's current version (customers::recent); 0 turns it off. A budget of bytes, not a
    /// count of customers: a customer can weigh from a few hundred bytes to tens of KB.
    pub customers_mib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// NATS server to publish events to (`nats://host:4222`); empty: no publishing (the feed and
    /// the history still work).
    pub nats_url: Secret,
    /// The JetStream stream events are published to.
    pub stream: String,
    /// The first token of the events' subjects (`<prefix>.<mode>.<org>.<type>`); the stream
    /// takes `<prefix>.>`. Two streams cannot share subjects, so deployments (or tests) that
    /// share a NATS server need their own.
    pub subject_prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a republished duplicate.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Copies of the stream a JetStream cluster keeps (1 to 5): 1 on a single server, 3 on a
    /// cluster of three, so the stream survives the loss of any one server. Set when the
    /// service creates the stream (an existing stream's replicas are the operator's to change).
    pub stream_replicas: usize,
    /// Events published per batch.
    pub batch_size: i64,
    /// How often the relay looks for events written by other instances (events written by this
    /// one wake it at once).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long one publication may wait for JetStream's acknowledgement.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Events older than this are deleted (once published, when publishing); none: kept for
    /// ever, the default (they are the audit trail).
    #[serde(default, with = "humantime_serde::option")]
    pub retention: Option<Duration>,
    /// Record events with every change. Only a benchmark of their cost switches this off; the
    /// production profile refuses `false`.
    pub record: bool,
}

/// Webhook deliveries (docs/webhooks.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSettings {
    /// Encrypts the webhooks' signing secrets at rest (its SHA-256 is the AEAD key).
    pub secrets_key: Secret,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A TOML array of durations, or a comma-separated string (from the environment).
    #[serde(deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    pub allow_http: bool,
    pub allow_private_networks: bool,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub max_in_flight: usize,
    pub max_in_flight_per_webhook: usize,
    /// Ended deliveries (and their attempts) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
}

/// Durations as a list (`["5s", "5m"]`) or one comma-separated string (`"5s,5m"`).
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    let items = match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Text(text) if text.trim().is_empty() => Vec::new(),
        Form::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    items
        .iter()
        .map(|item| humantime::parse_duration(item).map_err(serde::de::Error::custom))
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// Reads the layered configuration and validates it. A setting nobody reads (a misspelt key
    /// in a file, an unknown `CUSTOMERS_API__…` variable) is refused by name: every settings
    /// struct denies unknown fields (see the test `an_unknown_setting_in_any_section_is_refused`).
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_layers(None, None)
    }

    /// [`Settings::load`] with, for tests, a TOML text laid over the files and the environment
    /// variables given instead of the process's own.
    fn load_layers(
        extra_toml: Option<&str>,
        environment: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let profile = Profile::from_env()?;
        let profile_toml = match profile {
            Profile::Development => DEVELOPMENT_TOML,
            Profile::Production => PRODUCTION_TOML,
        };
        let dir = std::env::var("CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let dir = PathBuf::from(dir);
        // Defaults, then the profile, each with the directory's copy over the compiled-in one: a
        // `config/default.toml` beside the binary must not undo what the profile sets.
        let mut builder = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .add_source(File::from(dir.join("default.toml")).required(false))
            .add_source(File::from_str(profile_toml, FileFormat::Toml))
            .add_source(File::from(dir.join(format!("{}.toml", profile.name()))).required(false))
            .add_source(File::from_str(extra_toml.unwrap_or(""), FileFormat::Toml))
            .add_source(
                Environment::with_prefix("CUSTOMERS_API")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(environment),
            );
        // The conventional short names win over everything else.
        for (env, key) in [
            ("HOST", "server.host"),
            ("PORT", "server.port"),
            ("DATABASE_URL", "database.url"),
        ] {
            if let Ok(value) = std::env::var(env) {
                builder = builder
                    .set_override(key, value)
                    .map_err(|e| ConfigError::invalid(env, e.to_string()))?;
            }
        }
        let config = builder
            .build()
            .map_err(|e| ConfigError::invalid("configuration", e.to_string()))?;
        let mut settings: Settings = config.try_deserialize().map_err(describe)?;
        settings.profile = profile;
        settings.validate()?;
        Ok(settings)
    }

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

/// Turns a deserialisation failure into a message that names the setting.
fn describe(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    // `unknown field `customers`, expected `customers_mib` for key `cache``: the setting is
    // `cache.customers`, which a file or the environment spelt.
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let section = text
            .rsplit_once("for key `")
            .and_then(|(_, rest)| rest.split('`').next())
            .filter(|section| !section.is_empty());
        let setting = match section {
            Some(section) => format!("{section}.{field}"),
            None => field.to_owned(),
        };
        let variable = format!(
            "CUSTOMERS_API__{}",
            setting.replace('.', "__").to_uppercase()
        );
        let expected = text
            .split_once(", expected ")
            .map(|(_, rest)| rest.rsplit_once(" for key").map_or(rest, |(e, _)| e))
            .unwrap_or("no setting of that name");
        return ConfigError::invalid(
            setting,
            format!(
                "unknown setting (a misspelt key in a configuration file, or the environment \
                 variable {variable}); expected {expected}"
            ),
        );
    }
    // config's messages read like `invalid type: ... for key `server.port``.
    let setting = text
        .rsplit_once("for key `")
        .and_then(|(_, rest)| rest.split('`').next())
        .map(str::to_owned)
        .or_else(|| {
            text.strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "configuration".into());
    ConfigError::invalid(setting, text)
}

#[cfg(test)]
#[path = "configuration_tests.rs"]
mod tests;
