//! The service's own OpenAPI 3 document, generated from the handlers' annotations and the API
//! types (utoipa), and the `/docs` page that renders it with a vendored Swagger UI, so it works
//! with no internet.

use std::sync::LazyLock;

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::customers::handlers;
use crate::customers::model::{CustomerIn, CustomerList, CustomerOut, CustomerPatch, NameOut};
use crate::customers::validation::{Limits, Policy};
use crate::error::FieldError;

/// The error envelope of contract §6.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ErrorObject {
    /// invalid_request_error, authentication_error, permission_error, idempotency_error,
    /// rate_limit_error or api_error.
    #[serde(rename = "type")]
    kind: String,
    /// A machine-readable code, e.g. parameter_invalid, not_found, idempotency_key_reused.
    code: String,
    message: String,
    /// The dotted path of the offending field, e.g. policy.limits.perDay.
    param: Option<String>,
    details: Option<ErrorDetails>,
    /// The request's X-Request-Id.
    request_id: String,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetails {
    /// Every violation found.
    errors: Vec<FieldError>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "A JWT with claims sub, org, mode (test|live), scope (customers:read, customers:write, customers:admin) and exp, chosen by kid.".into(),
        );
        components.add_security_scheme("BearerAuth", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "customers-api",
        version = "1.0.0",
        description = "Customers and their spending policies. Compatible with the Customers part of the Proxy API; see the README for the rules."
    ),
    paths(
        handlers::create,
        handlers::list,
        handlers::retrieve,
        handlers::update,
        handlers::delete,
        handlers::activate
    ),
    components(schemas(
        CustomerOut, CustomerIn, CustomerPatch, CustomerList, NameOut, Policy, Limits,
        ErrorEnvelope, FieldError
    )),
    modifiers(&BearerAuth),
    security(("BearerAuth" = [])),
    tags((name = "Customers", description = "Manage customers who own agents and cards"))
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::request_context::resource("/openapi.json").route(web::get().to(openapi_json)),
    )
    .service(web::resource(["/docs", "/docs/"]).route(web::get().to(docs_page)))
    .service(
        crate::request_context::resource("/docs/assets/{file}").route(web::get().to(docs_asset)),
    );
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(DOCUMENT.as_str())
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
        _ => {
            return actix_web::ResponseError::error_response(&crate::error::ApiError::NotFound(
                "no such asset",
            ))
        }
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(3600),
        ]))
        .body(body)
}
