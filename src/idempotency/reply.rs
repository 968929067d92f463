//! The answer of a write, in the form that is stored under an idempotency key and replayed
//! byte for byte.

use actix_web::http::header::{HeaderValue, ETAG, LOCATION};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::IDEMPOTENT_REPLAYED;
use crate::error::{ApiError, RenderedError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    /// The JSON body exactly as sent.
    pub body: Vec<u8>,
    pub location: Option<String>,
    pub etag: Option<String>,
}

impl Reply {
    /// A business outcome that is an error (404, 409, 412): stored and replayed like a success.
    pub fn from_error(e: &ApiError) -> Self {
        use actix_web::ResponseError;
        Self {
            status: e.status_code(),
            body: e.body(),
            location: None,
            etag: None,
        }
    }

    pub fn into_http(self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        if let Some(location) = self.location {
            response.insert_header((LOCATION, location));
        }
        if let Some(etag) = self.etag {
            response.insert_header((ETAG, etag));
        }
        if replayed {
            response.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
        }
        let mut response = response.body(self.body);
        if !self.status.is_success() {
            // Already this API's envelope (a stored business error).
            response.extensions_mut().insert(RenderedError);
        }
        response
    }
}
