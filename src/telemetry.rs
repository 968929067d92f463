//! Logging and tracing with `tracing`: readable text in development, JSON lines in production;
//! and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! OpenTelemetry traces exported over OTLP/HTTP (docs/operations.md#tracing).
//!
//! What a trace holds: a server span per request (its parent is the request's W3C
//! `traceparent`, else it starts a trace), a client span per database statement, named by what
//! the statement does and never holding its parameters, and a producer span per event the relay
//! publishes, whose parent is the request that made the change (the event row keeps its
//! `traceparent`, which the NATS message carries too). Those spans are at `debug` level under
//! the target [`SPANS`], and only the OpenTelemetry layer enables them: with export off they are
//! never created, so tracing costs nothing then.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

use crate::configuration::LogFormat;

/// The target of the spans that exist only for traces (statements, publication).
pub const SPANS: &str = "customers_api::spans";

/// Whether traces are exported (set once, by [`init`]).
static EXPORTING: OnceLock<bool> = OnceLock::new();

/// True when traces are exported: only then is a request's `traceparent` read.
pub fn exporting() -> bool {
    EXPORTING.get().copied().unwrap_or(false)
}

/// Ends tracing when dropped: exports what is still buffered.
#[must_use = "dropping it at once stops the export of traces"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("OpenTelemetry: exporting the last spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber once; later calls (tests) are no-ops. `RUST_LOG` overrides
/// the configured level. Traces are exported when the standard OpenTelemetry environment
/// variables ask for it; an unusable setting there is reported and tracing stays off (logs
/// are never lost over it).
pub fn init(format: LogFormat, level: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = fmt::layer().with_writer(std::io::stdout);
    let logs = match format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => logs.compact().with_filter(filter).boxed(),
    };
    let provider = match tracer_provider() {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("OpenTelemetry: traces are not exported: {e}");
            None
        }
    };
    let traces = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("customers-api");
        // The service's own spans: requests (info), statements and publication (debug).
        let spans = Targets::new()
            .with_target("customers_api", tracing::Level::INFO)
            .with_target(SPANS, tracing::Level::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans)
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        // A subscriber was already there (tests): nothing of ours exports.
        return Telemetry { provider: None };
    }
    let _ = EXPORTING.set(provider.is_some());
    Telemetry { provider }
}

/// The tracer provider the OpenTelemetry environment variables ask for: `None` when no OTLP
/// endpoint is set (the default: nothing is exported).
fn tracer_provider() -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let protocol = protocol(
        std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .ok()
            .as_deref(),
    )?;
    // The endpoint, headers and timeout come from the standard variables, read by the exporter.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "customers-api".into()),
        )
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the specification's default) or `http/json`.
fn protocol(value: Option<&str>) -> Result<Protocol, String> {
    match value.map(str::trim) {
        None | Some("") | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some(other) => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use http/protobuf or http/json"
        )),
    }
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`, `tracestate`),
/// when traces are exported and the request sent one.
pub fn continue_trace(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    if !exporting() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// The W3C `traceparent` of `span`, to carry the trace to where the work goes on later (an
/// event's publication); `None` when traces are not exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// Makes `span` a child of a stored `traceparent` (the request that made an event).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| exporting()) else {
        return;
    };
    let parent = TraceContextPropagator::new().extract(&Stored(traceparent));
    let _ = span.set_parent(parent);
}

/// The producer span of one event's publication to `subject` (the tenant's org and the event
/// type: no personal data). Created only when traces are exported.
pub fn publication_span(subject: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "customers_api::spans",
        "publish",
        otel.name = "CUSTOMER_EVENTS publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = subject,
    )
}

/// A span for one database statement, named by what it does (`customers.update`); no
/// parameters, ever. Created only when traces are exported.
#[macro_export]
macro_rules! statement_span {
    ($name:literal) => {
        tracing::debug_span!(
            target: "customers_api::spans",
            "db",
            otel.name = $name,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = $name,
        )
    };
}

struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Takes the `traceparent` the propagator writes; `tracestate` is not kept.
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

struct Stored<'a>(&'a str);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_the_specifications_or_refused_by_name() {
        assert!(matches!(protocol(None), Ok(Protocol::HttpBinary)));
        assert!(matches!(
            protocol(Some("http/protobuf")),
            Ok(Protocol::HttpBinary)
        ));
        assert!(matches!(
            protocol(Some("http/json")),
            Ok(Protocol::HttpJson)
        ));
        let refused = protocol(Some("grpc")).unwrap_err();
        assert!(refused.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{refused}");
    }
}
