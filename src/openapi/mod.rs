//! The service's own OpenAPI 3.1 document, generated from the handlers' annotations and the API
//! types (utoipa), and the `/docs` page that renders it with a vendored Swagger UI
//! ([`docs_page`]), so it works with no internet.
//!
//! A handler's annotation says only what is its own (path, body, success response). What many
//! operations share is declared once, in [`operations`]: the scope each needs, the errors each
//! can answer (status and codes, from `ApiError`'s one mapping), the
//! `X-Request-Id`/`RateLimit-*`/`ETag`/`Idempotent-Replayed` headers, and the `Idempotency-Key`
//! and `If-Match` parameters, with texts built from the limits and the configuration.

mod docs_page;
mod operations;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::configuration::Settings;
use crate::customers::domain::{CustomerStatus, CustomerType};
use crate::customers::schema::{CustomerIn, CustomerList, CustomerOut, CustomerPatch, NameOut};
use crate::customers::validation::{Limits, Policy};
use crate::customers::{handlers, history};
use crate::error::{ErrorBody, ErrorDetails, ErrorEnvelope, FieldError};
use crate::events::handlers::{self as events_handlers, Event, EventActor, EventData, EventList};
use crate::events::EventType;
use crate::webhooks::handlers as webhooks_handlers;
use crate::webhooks::log::{self as webhook_log, AttemptOut, DeliveryList, DeliveryOut};
use crate::webhooks::model::{
    RecoverIn, RecoverOut, RotateIn, WebhookInDoc, WebhookList, WebhookOut, WebhookPatchDoc,
    WebhookSecretOut,
};
use operations::Shared;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some(
            "A JWT with claims sub, org, mode (test|live), scope (customers:read, customers:write, customers:admin, webhooks:manage) and exp, chosen by kid. customers:write implies customers:read; customers:admin implies both; webhooks:manage stands alone.".into(),
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
        history::history,
        events_handlers::feed,
        webhooks_handlers::list,
        webhooks_handlers::create,
        webhooks_handlers::retrieve,
        webhooks_handlers::update,
        webhooks_handlers::delete,
        webhooks_handlers::secret,
        webhooks_handlers::rotate,
        webhook_log::deliveries,
        webhook_log::retry,
        webhooks_handlers::recover
    ),
    components(schemas(
        CustomerOut, CustomerIn, CustomerPatch, CustomerList, NameOut, Policy, Limits,
        CustomerType, CustomerStatus, ErrorEnvelope, ErrorBody, ErrorDetails, FieldError,
        EventList, Event, EventActor, EventData, EventType,
        WebhookOut, WebhookInDoc, WebhookPatchDoc, WebhookList, WebhookSecretOut, RotateIn,
        RecoverIn, RecoverOut, DeliveryOut, DeliveryList, AttemptOut
    )),
    modifiers(&BearerAuth, &NullLast),
    security(("BearerAuth" = [])),
    tags(
        (name = "Customers", description = "Manage customers who own agents and cards"),
        (name = "Events", description = "Every change to a customer: its history, as-of reads, and the tenant's feed"),
        (name = "Webhooks", description = "Signed deliveries of the events to your endpoints (Standard Webhooks)")
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
    .service(web::resource(["/docs", "/docs/"]).route(web::get().to(docs_page::page)))
    .service(
        crate::request_context::resource("/docs/assets/{file}")
            .route(web::get().to(docs_page::asset)),
    );
}

async fn openapi_json(document: web::Data<OpenApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(document.json.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_BODY_BYTES, MAX_CENTS, PAGE_SIZE_MAX};
    use serde_json::Value;
    use std::time::Duration;

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
