//! Per-request context: the request id (echoed or made), the one log line per request, and the
//! fallback that turns any framework error response into this API's JSON envelope.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use tracing::Instrument;

use crate::error::{ApiError, RenderedError};
use crate::rate_limit::Allowance;
use crate::request_id;
use crate::tenant::Tenant;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A client-sent id is echoed when it is short and plain; anything else gets a fresh one, so
/// that a hostile header never reaches a log line.
fn request_id_for(req: &ServiceRequest) -> String {
    let sent = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        });
    match sent {
        Some(id) => id.to_owned(),
        None => {
            // `req_` and the ULID in lower case, written in place (one allocation).
            let mut text = [0u8; ulid::ULID_LEN];
            let text = ulid::Ulid::new().array_to_str(&mut text);
            text.make_ascii_lowercase();
            let mut id = String::with_capacity(4 + ulid::ULID_LEN);
            id.push_str("req_");
            id.push_str(text);
            id
        }
    }
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = request_id_for(&req);
    // Everything logged while serving the request (an internal error deep in a write, say)
    // carries its id.
    let span = request_span(&request_id, &req);
    let method = req.method().clone();
    let served = request_id::scope(request_id.clone(), async {
        match next.call(req).await {
            Ok(response) => Ok(envelope_framework_errors(response.map_into_boxed_body())),
            // Errors that escape as Err (the request's time bound, say) are rendered here,
            // inside the request's scope, so that they carry the envelope and the id too, and
            // are logged and counted like any answer.
            Err(e) => {
                let api = api_error_for_status(e.as_response_error().status_code());
                let mut res = api.error_response();
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    res.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                let line = LogLine {
                    method: method.as_str(),
                    route: "unanswered",
                    status: res.status().as_u16(),
                    request_id: &request_id,
                    tenant: None,
                };
                line.write(started);
                Err(actix_web::error::InternalError::from_response(e.to_string(), res).into())
            }
        }
    });
    let result: Result<ServiceResponse<BoxBody>, actix_web::Error> =
        served.instrument(span.clone()).await;
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let allowance = response.request().extensions().get::<Allowance>().copied();
    if let Some(allowance) = allowance {
        allowance.write_headers(response.headers_mut());
    }
    log_request(&response, &request_id, started, &span);
    Ok(response)
}

/// The request's span: it carries the request id into everything logged while serving it, and,
/// when traces are exported, is the trace's server span (docs/operations.md#tracing), a child of
/// the request's `traceparent` when it sent one. Its OpenTelemetry fields exist only then: the
/// log lines pay nothing for them.
fn request_span(request_id: &str, req: &ServiceRequest) -> tracing::Span {
    if !crate::telemetry::exporting() {
        return tracing::info_span!("request", request_id = %request_id);
    }
    // The route template (never the path, which holds ids), matched against the app's routes
    // before routing: an OpenTelemetry span is named when it starts.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, req.headers());
    span
}

/// Replaces the plain-text body of a framework error (no route, wrong method, payload errors,
/// bad path) with the JSON envelope of the matching API error.
fn envelope_framework_errors(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response
            .response()
            .extensions()
            .get::<RenderedError>()
            .is_some()
    {
        return response;
    }
    let allow = response
        .headers()
        .get(actix_web::http::header::ALLOW)
        .cloned();
    let api = api_error_for_status(status);
    if matches!(api, ApiError::Internal) {
        tracing::error!(status = status.as_u16(), "framework error response");
    }
    let mut res = api.error_response();
    if let Some(allow) = allow {
        res.headers_mut()
            .insert(actix_web::http::header::ALLOW, allow);
    }
    response.into_response(res)
}

fn api_error_for_status(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("no route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported content type".into())
        }
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable,
        s if s.is_client_error() => ApiError::InvalidRequest("the request is not valid".into()),
        _ => ApiError::Internal,
    }
}

/// The route template of a resource, carried as its app data so that the log line and metrics
/// of a request name it without matching the path against every route again
/// (`HttpRequest::match_pattern`, which runs the router's regexes a second time).
#[derive(Debug, Clone, Copy)]
struct RouteTemplate(&'static str);

/// A resource whose requests are logged and counted under `template`.
pub fn resource(template: &'static str) -> actix_web::Resource {
    actix_web::web::resource(template).app_data(RouteTemplate(template))
}

/// One line per request: method, route template (never the raw path, which holds ids), status,
/// latency, request id and tenant. No body, no header values, no personal data.
fn log_request(
    response: &ServiceResponse<BoxBody>,
    request_id: &str,
    started: Instant,
    span: &tracing::Span,
) {
    let req = response.request();
    let route = match req.app_data::<RouteTemplate>() {
        Some(RouteTemplate(template)) => std::borrow::Cow::Borrowed(*template),
        None => req.match_pattern().map_or(
            std::borrow::Cow::Borrowed("unmatched"),
            std::borrow::Cow::Owned,
        ),
    };
    let extensions = req.extensions();
    let line = LogLine {
        method: req.method().as_str(),
        route: &route,
        status: response.status().as_u16(),
        request_id,
        tenant: extensions.get::<Tenant>(),
    };
    span.record("http.response.status_code", i64::from(line.status));
    line.write(started);
}

struct LogLine<'a> {
    method: &'a str,
    route: &'a str,
    status: u16,
    request_id: &'a str,
    /// Written as `org/mode`, only when the line is logged.
    tenant: Option<&'a Tenant>,
}

/// `org/mode`, or nothing when the request had no tenant.
struct TenantLabel<'a>(Option<&'a Tenant>);

impl std::fmt::Display for TenantLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(t) => write!(f, "{}/{}", t.org, t.mode.as_str()),
            None => Ok(()),
        }
    }
}

impl LogLine<'_> {
    /// Counts the request in the metrics and writes its log line.
    fn write(&self, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        crate::metrics::observe_request(self.route, self.method, self.status, elapsed);
        if !tracing::enabled!(target: "http", tracing::Level::INFO) {
            return;
        }
        let latency_ms = elapsed * 1000.0;
        tracing::info!(
            target: "http",
            method = %self.method,
            route = %self.route,
            status = self.status,
            latency_ms = format_args!("{latency_ms:.2}"),
            request_id = self.request_id,
            tenant = %TenantLabel(self.tenant),
            "request"
        );
    }
}
