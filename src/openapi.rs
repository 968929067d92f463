//! The service's own OpenAPI 3.1 document, generated from the handlers' annotations and the API
//! types (utoipa), and the `/docs` page that renders it with a vendored Swagger UI, so it works
//! with no internet.
//!
//! A handler's annotation says only what is its own (path, body, success response). What many
//! operations share is declared once, in [`OPERATIONS`] and [`Shared`]: the scope each needs,
//! the errors each can answer (status and codes, from `ApiError`'s one mapping), the
//! `X-Request-Id`/`RateLimit-*`/`ETag`/`Idempotent-Replayed` headers, and the `Idempotency-Key`
//! and `If-Match` parameters, with texts built from the limits and the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{web, HttpResponse, ResponseError};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{Modify, OpenApi, PartialSchema};

use crate::auth::Scope;
use crate::configuration::Settings;
use crate::customers::domain::{CustomerStatus, CustomerType};
use crate::customers::handlers;
use crate::customers::model::{CustomerIn, CustomerList, CustomerOut, CustomerPatch, NameOut};
use crate::customers::validation::{Limits, Policy};
use crate::error::{ApiError, ErrorBody, ErrorDetails, ErrorEnvelope, FieldError};
use crate::events::handlers::{self as events_handlers, Event, EventActor, EventData, EventList};
use crate::events::EventType;
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
];

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
            "no such customer in your tenant (customers of other tenants look the same)".into()
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

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "A JWT with claims sub, org, mode (test|live), scope (customers:read, customers:write, customers:admin) and exp, chosen by kid. customers:write implies customers:read; customers:admin implies both.".into(),
        );
        components.add_security_scheme("BearerAuth", SecurityScheme::Http(scheme));
    }
}

/// A nullable member (`Option<T>` of a schema, as `policy` and `limits` in a PATCH) is a `oneOf`
/// of `null` and the schema, and utoipa puts `null` first; Swagger UI builds a body's example
/// from the first alternative, so the PATCH example would read `"policy": null`. The schema goes
/// first; the alternatives, and so what the document accepts, stay the same.
struct NullLast;

impl Modify for NullLast {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::Object(object)) = schema else {
                continue;
            };
            for member in object.properties.values_mut() {
                if let RefOr::T(Schema::OneOf(one_of)) = member {
                    // Stable: the other alternatives keep their order.
                    one_of.items.sort_by_key(is_null);
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// Adds what operations share (see the module's documentation).
struct Shared {
    retention: Duration,
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
                    header(string_schema(), "Strong ETag of the customer's version"),
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

#[derive(OpenApi)]
#[openapi(
    info(
        title = "customers-api",
        version = "1.0.0",
        description = "Customers and their spending policies. Compatible with the Customers part of the Proxy API; see docs/api-rules.md for the rules."
    ),
    paths(
        handlers::create,
        handlers::list,
        handlers::retrieve,
        handlers::update,
        handlers::delete,
        handlers::activate,
        events_handlers::history,
        events_handlers::feed
    ),
    components(schemas(
        CustomerOut, CustomerIn, CustomerPatch, CustomerList, NameOut, Policy, Limits,
        CustomerType, CustomerStatus, ErrorEnvelope, ErrorBody, ErrorDetails, FieldError,
        EventList, Event, EventActor, EventData, EventType
    )),
    modifiers(&BearerAuth, &NullLast),
    security(("BearerAuth" = [])),
    tags(
        (name = "Customers", description = "Manage customers who own agents and cards"),
        (name = "Events", description = "Every change to a customer: its history, as-of reads, and the tenant's feed")
    )
)]
struct ApiDoc;

/// The document as served, built once at start-up from the configuration it quotes.
pub struct OpenApiDocument {
    json: String,
}

impl OpenApiDocument {
    pub fn build(settings: &Settings) -> Self {
        Self {
            json: Self::value(settings)
                .to_pretty_json()
                .expect("the OpenAPI document serialises"),
        }
    }

    fn value(settings: &Settings) -> utoipa::openapi::OpenApi {
        let mut doc = ApiDoc::openapi();
        Shared {
            retention: settings.idempotency.retention,
        }
        .modify(&mut doc);
        doc
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::request_context::resource("/openapi.json").route(web::get().to(openapi_json)),
    )
    .service(web::resource(["/docs", "/docs/"]).route(web::get().to(docs_page)))
    .service(
        crate::request_context::resource("/docs/assets/{file}").route(web::get().to(docs_asset)),
    );
}

async fn openapi_json(document: web::Data<OpenApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(document.json.clone())
}

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>customers-api — API reference</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/docs.js"></script>
</body>
</html>
"#;

/// Swagger UI's start-up: the document from this service, operations listed, models expanded.
const DOCS_JS: &str = r##"window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 2,
  defaultModelExpandDepth: 3,
  validatorUrl: null
});
"##;

async fn docs_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(DOCS_HTML)
}

async fn docs_asset(file: web::Path<String>) -> HttpResponse {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "swagger-ui-bundle.js" => (
            include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
            "text/javascript; charset=utf-8",
        ),
        "swagger-ui.css" => (
            include_bytes!("../assets/swagger-ui/swagger-ui.css"),
            "text/css; charset=utf-8",
        ),
        "docs.js" => (DOCS_JS.as_bytes(), "text/javascript; charset=utf-8"),
        _ => return ApiError::NotFound("no such asset").error_response(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(3600),
        ]))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_CENTS, PAGE_SIZE_MAX};
    use serde_json::Value;

    fn document() -> Value {
        let settings = Settings::load().expect("the default configuration loads");
        serde_json::from_str(&OpenApiDocument::build(&settings).json).unwrap()
    }

    /// The numbers the schema attributes carry (utoipa takes literals there) are the limits the
    /// code enforces.
    #[test]
    fn the_document_quotes_the_limits() {
        let doc = document();
        let limit = doc["paths"]["/v1/customers"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["maximum"], PAGE_SIZE_MAX);
        assert_eq!(limit["schema"]["minimum"], 1);
        let limits = &doc["components"]["schemas"]["Limits"]["properties"];
        for field in ["perAuth", "perDay", "perMonth"] {
            assert_eq!(limits[field]["maximum"].as_f64(), Some(MAX_CENTS as f64));
        }
        let policy = &doc["components"]["schemas"]["Policy"]["properties"];
        assert_eq!(
            policy["autoApproveBelow"]["maximum"].as_f64(),
            Some(MAX_CENTS as f64)
        );
        let too_large = &doc["paths"]["/v1/customers"]["post"]["responses"]["413"];
        assert!(too_large["description"]
            .as_str()
            .unwrap()
            .contains(&format!("{} KiB", MAX_BODY_BYTES / 1024)));
    }

    /// Swagger UI's example of a body follows the first alternative of each `oneOf`.
    #[test]
    fn a_nullable_member_lists_its_schema_before_null() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (schema, member, target) in [
            ("CustomerPatch", "policy", "#/components/schemas/Policy"),
            ("CustomerPatch", "name", "#/components/schemas/NameIn"),
            ("Policy", "limits", "#/components/schemas/Limits"),
        ] {
            let one_of = schemas[schema]["properties"][member]["oneOf"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema}.{member} is not a oneOf"));
            assert_eq!(one_of.len(), 2, "{schema}.{member}: {one_of:?}");
            assert_eq!(one_of[0]["$ref"], target, "{schema}.{member}: {one_of:?}");
            assert_eq!(one_of[1]["type"], "null", "{schema}.{member}: {one_of:?}");
        }
    }

    #[test]
    fn the_idempotency_key_quotes_the_configured_retention() {
        let mut settings = Settings::load().unwrap();
        settings.idempotency.retention = Duration::from_secs(3 * 3600);
        let doc: Value = serde_json::from_str(&OpenApiDocument::build(&settings).json).unwrap();
        let parameters = doc["paths"]["/v1/customers"]["post"]["parameters"]
            .as_array()
            .unwrap();
        let key = parameters
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap();
        assert!(
            key["description"].as_str().unwrap().contains("kept 3h"),
            "{key}"
        );
    }
}
