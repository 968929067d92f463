//! Logging with `tracing`: readable text in development, JSON lines in production.

use tracing_subscriber::{fmt, EnvFilter};

use crate::configuration::LogFormat;

/// Installs the global subscriber once; later calls (tests) are no-ops. `RUST_LOG` overrides
/// the configured level.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
