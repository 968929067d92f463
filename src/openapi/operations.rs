//! What the operations share, declared once and added to the generated document ([`Shared`]):
//! per operation ([`OPERATIONS`]) the scope it needs, the errors it can answer (status and codes,
//! from `ApiError`'s one mapping), the `X-Request-Id`/`RateLimit-*`/`ETag`/`Idempotent-Replayed`
//! headers, and the `Idempotency-Key` and `If-Match` parameters, with texts built from the
//! limits and the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::ResponseError;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{Modify, PartialSchema};

use crate::auth::Scope;
use crate::error::{ApiError, FieldError};
use crate::limits::{MAX_BODY_BYTES, TOKEN_MAX_BYTES};

/// What an operation needs and can answer, besides its success.
struct OperationRules {
    id: &'static str,
    scope: Scope,
    /// Takes `Idempotency-Key` (its answers may be replays).
    keyed: bool,
    /// Takes `If-Match`.
    conditional: bool,
    /// Answers with one customer (and its `ETag`).
    one_customer: bool,
    /// The errors of its own; every operation may also answer 401, 403, 429, 500 and 503.
    errors: fn() -> Vec<ApiError>,
}

const OPERATIONS: &[OperationRules] = &[
    OperationRules {
        id: "listCustomerEvents",
        scope: Scope::Read,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: || {
            let mut errors = list_errors();
            errors.push(ApiError::not_found());
            errors
        },
    },
    OperationRules {
        id: "listEvents",
        scope: Scope::Read,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: list_errors,
    },
    OperationRules {
        id: "createCustomer",
        scope: Scope::Write,
        keyed: true,
        conditional: false,
        one_customer: true,
        errors: || body_errors(),
    },
    OperationRules {
        id: "listCustomers",
        scope: Scope::Read,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: list_errors,
    },
    OperationRules {
        id: "getCustomer",
        scope: Scope::Read,
        keyed: false,
        conditional: false,
        one_customer: true,
        errors: || {
            vec![
                invalid_parameter(),
                ApiError::not_found(),
                ApiError::HistoryUnavailable(String::new()),
            ]
        },
    },
    OperationRules {
        id: "updateCustomer",
        scope: Scope::Write,
        keyed: true,
        conditional: true,
        one_customer: true,
        errors: || {
            let mut errors = body_errors();
            errors.extend([ApiError::not_found(), ApiError::CustomerDeleted]);
            errors
        },
    },
    OperationRules {
        id: "deleteCustomer",
        scope: Scope::Write,
        keyed: true,
        conditional: true,
        one_customer: true,
        errors: || vec![ApiError::not_found()],
    },
    OperationRules {
        id: "activateCustomer",
        scope: Scope::Admin,
        keyed: true,
        conditional: true,
        one_customer: true,
        errors: || vec![ApiError::not_found(), ApiError::CustomerDeleted],
    },
    OperationRules {
        id: "listWebhooks",
        scope: Scope::WebhooksManage,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: list_errors,
    },
    OperationRules {
        id: "createWebhook",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: false,
        one_customer: true,
        errors: || {
            let mut errors = body_errors();
            errors.push(webhook_not_found());
            errors
        },
    },
    OperationRules {
        id: "getWebhook",
        scope: Scope::WebhooksManage,
        keyed: false,
        conditional: false,
        one_customer: true,
        errors: || vec![webhook_not_found()],
    },
    OperationRules {
        id: "updateWebhook",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: true,
        one_customer: true,
        errors: || {
            let mut errors = body_errors();
            errors.push(webhook_not_found());
            errors
        },
    },
    OperationRules {
        id: "deleteWebhook",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: true,
        one_customer: true,
        errors: || vec![webhook_not_found()],
    },
    OperationRules {
        id: "getWebhookSecret",
        scope: Scope::WebhooksManage,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: || vec![webhook_not_found()],
    },
    OperationRules {
        id: "rotateWebhookSecret",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: false,
        one_customer: true,
        errors: || {
            let mut errors = settable_body_errors();
            errors.push(webhook_not_found());
            errors
        },
    },
    OperationRules {
        id: "recoverWebhook",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: false,
        one_customer: false,
        errors: || {
            let mut errors = settable_body_errors();
            errors.push(webhook_not_found());
            errors
        },
    },
    OperationRules {
        id: "listWebhookDeliveries",
        scope: Scope::WebhooksManage,
        keyed: false,
        conditional: false,
        one_customer: false,
        errors: || {
            let mut errors = list_errors();
            errors.push(webhook_not_found());
            errors
        },
    },
    OperationRules {
        id: "retryWebhookDelivery",
        scope: Scope::WebhooksManage,
        keyed: true,
        conditional: false,
        one_customer: false,
        errors: || vec![webhook_not_found()],
    },
];

fn webhook_not_found() -> ApiError {
    ApiError::NotFound("no such webhook")
}

/// The errors of a route whose body has no read-only members (an action's parameters).
fn settable_body_errors() -> Vec<ApiError> {
    body_errors()
        .into_iter()
        .filter(|e| e.code() != crate::error::PARAMETER_NOT_UPDATABLE)
        .collect()
}

/// The errors of a route that reads a JSON body.
fn body_errors() -> Vec<ApiError> {
    vec![
        ApiError::InvalidJson(String::new()),
        ApiError::InvalidRequest(String::new()),
        invalid_parameter(),
        unknown_parameter(),
        ApiError::Validation(vec![FieldError::new(
            "",
            crate::error::PARAMETER_NOT_UPDATABLE,
            "",
        )]),
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType(String::new()),
    ]
}

/// The errors of a paged list.
fn list_errors() -> Vec<ApiError> {
    vec![
        ApiError::InvalidRequest(String::new()),
        invalid_parameter(),
        unknown_parameter(),
        ApiError::InvalidCursor,
    ]
}

fn invalid_parameter() -> ApiError {
    ApiError::InvalidParameter {
        param: String::new(),
        message: String::new(),
    }
}

fn unknown_parameter() -> ApiError {
    ApiError::Validation(vec![FieldError::new(
        "",
        crate::error::PARAMETER_UNKNOWN,
        "",
    )])
}

impl OperationRules {
    /// Every error this operation can answer.
    fn all_errors(&self) -> Vec<ApiError> {
        let mut errors = vec![
            ApiError::Unauthorized(""),
            ApiError::InsufficientScope(""),
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Internal,
            ApiError::Unavailable,
        ];
        errors.extend((self.errors)());
        if self.keyed {
            errors.extend([
                ApiError::IdempotencyKeyInvalid(""),
                ApiError::IdempotencyInProgress,
                ApiError::IdempotencyKeyReused,
            ]);
        }
        if self.conditional {
            errors.extend([
                ApiError::InvalidRequest(String::new()),
                ApiError::PreconditionFailed,
            ]);
        }
        errors
    }

    /// Status → the codes this operation answers with it, each once, in a stable order.
    fn errors_by_status(&self) -> BTreeMap<u16, Vec<&'static str>> {
        let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
        for error in self.all_errors() {
            let codes = by_status.entry(error.status_code().as_u16()).or_default();
            if !codes.contains(&error.code()) {
                codes.push(error.code());
            }
        }
        by_status
    }
}

/// What a code means, for the response descriptions.
fn explain(code: &str) -> String {
    match code {
        "unauthorized" => {
            "missing, malformed, badly signed or expired token (WWW-Authenticate: Bearer)".into()
        }
        "insufficient_scope" => "the token lacks the scope this operation needs".into(),
        "not_found" => {
            "no such resource in your tenant (those of other tenants look the same)".into()
        }
        "customer_deleted" => "the customer is deleted".into(),
        "idempotency_request_in_progress" => {
            "a request with this key is still running (Retry-After: 1)".into()
        }
        "idempotency_key_reused" => "the key was used with a different request".into(),
        "idempotency_key_invalid" => format!(
            "the key is not 1 to {TOKEN_MAX_BYTES} visible ASCII characters, or was sent twice"
        ),
        "precondition_failed" => "If-Match does not match the current ETag".into(),
        "payload_too_large" => format!("body over {} KiB", MAX_BODY_BYTES / 1024),
        "rate_limited" => "the tenant's rate limit is exhausted (Retry-After)".into(),
        "service_unavailable" => "the database cannot be reached (Retry-After)".into(),
        "invalid_cursor" => {
            "a cursor this listing did not issue, or used with other filters".into()
        }
        "invalid_request" => {
            "the request (a header, the query string, the body's shape) is not valid".into()
        }
        _ => String::new(),
    }
}

/// Adds what operations share (see the module's documentation).
pub(super) struct Shared {
    pub(super) retention: Duration,
}

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let id = operation.operation_id.as_deref().unwrap_or_default();
                if let Some(rules) = OPERATIONS.iter().find(|r| r.id == id) {
                    self.apply(rules, operation);
                }
            }
        }
    }
}

fn string_schema() -> RefOr<Schema> {
    String::schema()
}

fn integer_schema() -> RefOr<Schema> {
    i64::schema()
}

fn header(schema: RefOr<Schema>, description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

fn header_parameter(name: &str, description: String) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(string_schema()))
        .build()
}

impl Shared {
    fn apply(&self, rules: &OperationRules, operation: &mut Operation) {
        let scope = rules.scope.as_str();
        operation.security = Some(vec![SecurityRequirement::new("BearerAuth", [scope])]);
        let note = format!("Needs the scope `{scope}`.");
        operation.description = Some(match operation.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
            _ => note,
        });
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        if rules.keyed {
            parameters.push(header_parameter(
                "Idempotency-Key",
                format!(
                    "1 to {TOKEN_MAX_BYTES} visible ASCII characters; makes retries of this write safe (kept {})",
                    humantime::format_duration(self.retention)
                ),
            ));
        }
        if rules.conditional {
            parameters.push(header_parameter(
                "If-Match",
                "Strong ETag(s) the customer must have, or *".into(),
            ));
        }
        for (status, codes) in rules.errors_by_status() {
            let description = codes
                .iter()
                .map(|code| match explain(code) {
                    text if text.is_empty() => (*code).to_owned(),
                    text => format!("{code}: {text}"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build();
            operation
                .responses
                .responses
                .insert(status.to_string(), RefOr::T(response));
        }
        for (status, response) in operation.responses.responses.iter_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            let status: u16 = status.parse().unwrap_or(0);
            let success = (200..300).contains(&status);
            let headers = &mut response.headers;
            headers.insert(
                "X-Request-Id".into(),
                header(
                    string_schema(),
                    "The request's id: the client's own when it sent a valid one",
                ),
            );
            if status != 401 {
                for (name, text) in [
                    ("RateLimit-Limit", "The tenant's bucket size"),
                    ("RateLimit-Remaining", "Requests left in the bucket"),
                    ("RateLimit-Reset", "Seconds until the bucket is full again"),
                ] {
                    headers.insert(name.into(), header(integer_schema(), text));
                }
            }
            if success && rules.one_customer {
                headers.insert(
                    "ETag".into(),
                    header(string_schema(), "Strong ETag of the resource's version"),
                );
            }
            let replayable = success || matches!(status, 404 | 409 | 412);
            if rules.keyed && replayable {
                headers.insert(
                    "Idempotent-Replayed".into(),
                    header(
                        string_schema(),
                        "true when this is the stored answer replayed for a repeated Idempotency-Key",
                    ),
                );
            }
            if matches!(status, 409 | 429 | 503) {
                headers.insert(
                    "Retry-After".into(),
                    header(integer_schema(), "Seconds to wait before retrying"),
                );
            }
            if matches!(status, 401 | 403) {
                headers.insert(
                    "WWW-Authenticate".into(),
                    header(string_schema(), "Bearer, with the missing scope on 403"),
                );
            }
        }
    }
}
