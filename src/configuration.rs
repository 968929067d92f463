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
    /// After SIGTERM or SIGINT, how long the instance goes on serving while `/readyz` answers
    /// 503 (draining), so that a load balancer stops sending it requests before it stops
    /// accepting them. Zero: stop accepting at once.
    #[serde(default, with = "humantime_serde")]
    pub drain_delay: Duration,
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
    /// GETs of one customer by id that arrive while another GET of the same tenant is in flight
    /// wait for it and then go to the database together, as one statement
    /// (`customers::coalesce`).
    #[serde(default = "default_coalesce_reads")]
    pub coalesce_reads: bool,
}

fn default_idle_in_transaction_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_coalesce_reads() -> bool {
    true
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
    /// Keys that sealed secrets before `secrets_key` changed: they still open them, and each
    /// instance seals them again under `secrets_key` (`webhooks::reseal`). A TOML array, or a
    /// comma-separated string (from the environment).
    #[serde(default, deserialize_with = "secrets")]
    pub previous_secrets_keys: Vec<Secret>,
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
    /// Writes a second (committed on this instance) from which deliveries yield to them; 0:
    /// always (docs/webhooks.md#yielding-to-writes).
    pub busy_writes_per_second: u32,
    /// Attempts a second each instance starts at most while it is busy with writes (at least 1).
    pub busy_deliveries_per_second: u32,
    /// Ended deliveries (and their attempts) older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
}

/// Durations as a list (`["5s", "5m"]`) or one comma-separated string (`"5s,5m"`).
/// A setting that is a list: a TOML array, or (from the environment, where every value is text)
/// a comma-separated string; an empty string is the empty list.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Text(text) if text.trim().is_empty() => Vec::new(),
        Form::Text(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
    })
}

fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    list_or_commas(d)?
        .iter()
        .map(|item| humantime::parse_duration(item).map_err(serde::de::Error::custom))
        .collect()
}

fn secrets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    Ok(list_or_commas(d)?.into_iter().map(Secret::new).collect())
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

mod validation;

#[cfg(test)]
#[path = "configuration_tests.rs"]
mod tests;
