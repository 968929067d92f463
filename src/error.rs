//! The one error type of the API, its one HTTP mapping, and the one envelope type that both
//! renders every error body and describes it in the OpenAPI document (docs/api-rules.md#errors).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::limits::MAX_BODY_BYTES;
use crate::request_id;

/// One violation found in a request body, reported with the dotted path of the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub param: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            code,
            message: message.into(),
        }
    }
}

pub const PARAMETER_UNKNOWN: &str = "parameter_unknown";
pub const PARAMETER_NOT_UPDATABLE: &str = "parameter_not_updatable";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// A query or path parameter that is out of range (`param` names it).
    #[error("{message}")]
    InvalidParameter { param: String, message: String },
    /// Every violation found in a body, at once.
    #[error("the request body has {} invalid field(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("the cursor is not valid for this list")]
    InvalidCursor,
    #[error("{0}")]
    IdempotencyKeyInvalid(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this operation needs the {0} scope")]
    InsufficientScope(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the customer is deleted")]
    CustomerDeleted,
    #[error("a request with this idempotency key is still being processed; retry later")]
    IdempotencyInProgress,
    #[error("If-Match does not match the customer's current ETag")]
    PreconditionFailed,
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("this idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// An as-of read before the customer's recorded history begins (the instant it is known
    /// from is given).
    #[error("the customer's history is not known before {0}")]
    HistoryUnavailable(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// The cause is logged where the error is made; the client sees nothing of it.
    #[error("an internal error occurred")]
    Internal,
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable,
    /// `/readyz` of an instance that is stopping (`server.drain_delay`): every other route is
    /// still served.
    #[error("this instance is stopping (draining); send requests to another")]
    Draining,
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError::NotFound("no such customer")
    }

    /// An error that is this service's fault. The cause and where it was made go to the log
    /// (inside the request's span, so with its request id); the client sees nothing of them.
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "internal error");
        ApiError::Internal
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidParameter { .. } => "parameter_invalid",
            ApiError::Validation(errors) => validation_code(errors),
            ApiError::InvalidCursor => "invalid_cursor",
            ApiError::IdempotencyKeyInvalid(_) => "idempotency_key_invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::CustomerDeleted => "customer_deleted",
            ApiError::IdempotencyInProgress => "idempotency_request_in_progress",
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::HistoryUnavailable(_) => "history_unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal => "internal_error",
            ApiError::Unavailable | ApiError::Draining => "service_unavailable",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::InsufficientScope(_) => "permission_error",
            ApiError::IdempotencyKeyInvalid(_)
            | ApiError::IdempotencyInProgress
            | ApiError::IdempotencyKeyReused => "idempotency_error",
            ApiError::RateLimited { .. } => "rate_limit_error",
            ApiError::Internal | ApiError::Unavailable | ApiError::Draining => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// Outcomes of a request that ran: stored with an idempotency key and replayed
    /// (docs/api-rules.md#idempotency).
    /// Everything else leaves the key free for a retry.
    pub fn is_business_outcome(&self) -> bool {
        matches!(
            self,
            ApiError::NotFound(_) | ApiError::CustomerDeleted | ApiError::PreconditionFailed
        )
    }

    /// The violation the envelope's `param` and `message` describe: the first one of the
    /// envelope's code.
    fn primary(errors: &[FieldError]) -> Option<&FieldError> {
        let code = validation_code(errors);
        errors
            .iter()
            .find(|e| code == "parameter_invalid" || e.code == code)
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidParameter { param, .. } => Some(param),
            ApiError::Validation(errors) => Self::primary(errors).map(|e| e.param.as_str()),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Validation(errors) => match Self::primary(errors) {
                Some(first) if errors.len() == 1 => format!("{}: {}", first.param, first.message),
                Some(first) => format!(
                    "{}: {} (and {} more, see details.errors)",
                    first.param,
                    first.message,
                    errors.len() - 1
                ),
                None => self.to_string(),
            },
            other => other.to_string(),
        }
    }

    /// The JSON body of this error, with the current request's id.
    pub fn body(&self) -> Vec<u8> {
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                kind: self.error_type(),
                code: self.code(),
                message: self.message(),
                param: self.param(),
                details: match self {
                    ApiError::Validation(errors) => Some(ErrorDetails { errors }),
                    _ => None,
                },
                request_id: request_id::current(),
            },
        };
        serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// The body of every error response (Proxy's object form, extended with `param`, `details` and
/// `requestId`).
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    /// invalid_request_error, authentication_error, permission_error, idempotency_error,
    /// rate_limit_error or api_error.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A machine-readable code, e.g. parameter_invalid, not_found, idempotency_key_reused.
    pub code: &'static str,
    pub message: String,
    /// The dotted path of the offending field, e.g. policy.limits.perDay.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub details: Option<ErrorDetails<'a>>,
    /// The request's X-Request-Id.
    pub request_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetails<'a> {
    /// Every violation found.
    pub errors: &'a [FieldError],
}

/// The envelope code of a validation failure: the API has a code of its own for unknown
/// and read-only fields; any other violation is `parameter_invalid`.
fn validation_code(errors: &[FieldError]) -> &'static str {
    if errors.iter().any(|e| e.code == PARAMETER_NOT_UPDATABLE) {
        PARAMETER_NOT_UPDATABLE
    } else if errors.iter().any(|e| e.code == PARAMETER_UNKNOWN) {
        PARAMETER_UNKNOWN
    } else {
        "parameter_invalid"
    }
}

/// Marks a response whose body is already this API's error envelope, so the fallback in the
/// request middleware leaves it alone.
#[derive(Clone, Copy)]
pub struct RenderedError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidParameter { .. }
            | ApiError::Validation(_)
            | ApiError::InvalidCursor
            | ApiError::IdempotencyKeyInvalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::CustomerDeleted | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::IdempotencyKeyReused | ApiError::HistoryUnavailable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable | ApiError::Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/json");
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::InsufficientScope(scope) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                ));
            }
            ApiError::IdempotencyInProgress | ApiError::Unavailable | ApiError::Draining => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        let mut response = response.body(self.body());
        response.extensions_mut().insert(RenderedError);
        response
    }
}

impl From<sqlx::Error> for ApiError {
    /// `?` on a database error: unavailable → 503, a named constraint → 400, anything else is a
    /// bug (500, logged with the place of the `?`).
    #[track_caller]
    fn from(e: sqlx::Error) -> Self {
        crate::db::lost::note(&e);
        if crate::db::lost::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Unavailable;
        }
        if let Some(field_error) = constraint_violation(&e) {
            return ApiError::Validation(vec![field_error]);
        }
        ApiError::internal(e)
    }
}

/// Turns the violation of a named CHECK constraint into the client error it stands for. The
/// service validates first, so reaching one of these means validation and schema disagree; the
/// client still gets a 400 that names the field rather than a 500.
fn constraint_violation(e: &sqlx::Error) -> Option<FieldError> {
    let db = e.as_database_error()?;
    let (param, message) = match db.constraint()? {
        "customers_type_check" => ("type", "must be consumer or corporate"),
        "customers_policy_check" => ("policy", "must be an object"),
        "customers_metadata_check" => ("metadata", "must be an object"),
        _ => return None,
    };
    tracing::warn!(
        constraint = db.constraint(),
        "constraint violation reached the database"
    );
    Some(FieldError::new(param, "invalid_value", message))
}
