//! The query of `GET /v1/customers`: page size, cursor and filters, each checked with an error
//! that names it; an unknown or repeated parameter is an error too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::domain::{CustomerStatus, CustomerType};
use super::repo::ListFilter;
use crate::error::ApiError;
use crate::limits::{EMAIL_MAX_CHARS, PAGE_SIZE_DEFAULT};
use crate::query;
use crate::tenant::Tenant;

/// The listing's parameters, for the OpenAPI document (`src/openapi/` checks the numbers against
/// `limits`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page, used with the same filters.
    cursor: Option<String>,
    /// Only customers in this status (deleted ones are left out otherwise).
    status: Option<CustomerStatus>,
    /// Only customers of this type.
    r#type: Option<CustomerType>,
    /// Only customers with this email, ignoring case.
    email: Option<String>,
}

/// Where a page of customers ends: the last one's (created_at, id).
#[derive(Serialize, Deserialize)]
pub struct ListPosition {
    /// created_at in microseconds since the epoch.
    t: i64,
    i: String,
}

impl ListPosition {
    pub fn new(created_at: DateTime<Utc>, id: &str) -> Self {
        Self {
            t: created_at.timestamp_micros(),
            i: id.to_owned(),
        }
    }

    pub fn keyset(&self) -> Result<(DateTime<Utc>, &str), ApiError> {
        let created_at = DateTime::from_timestamp_micros(self.t).ok_or(ApiError::InvalidCursor)?;
        Ok((created_at, &self.i))
    }
}

pub struct ListQuery {
    pub limit: i64,
    pub cursor: Option<String>,
    pub filter: ListFilter,
}

impl ListQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut out = ListQuery {
            limit: PAGE_SIZE_DEFAULT,
            cursor: None,
            filter: ListFilter::default(),
        };
        for pair in query::pairs(query)? {
            let (name, value) = pair?;
            match name.as_str() {
                "limit" => out.limit = query::limit(&value)?,
                "cursor" => out.cursor = Some(value),
                "status" => {
                    let status = CustomerStatus::parse(&value).ok_or_else(|| {
                        query::invalid("status", "must be pending, active or deleted")
                    })?;
                    out.filter.status = Some(status);
                }
                "type" => {
                    let kind = CustomerType::parse(&value)
                        .ok_or_else(|| query::invalid("type", "must be consumer or corporate"))?;
                    out.filter.kind = Some(kind);
                }
                "email" => {
                    if value.is_empty()
                        || value.chars().count() as u64 > EMAIL_MAX_CHARS
                        || value.contains('\0')
                    {
                        return Err(query::invalid(
                            "email",
                            &format!("must be 1 to {EMAIL_MAX_CHARS} characters"),
                        ));
                    }
                    out.filter.email = Some(value);
                }
                other => return Err(query::unknown(other)),
            }
        }
        Ok(out)
    }

    /// What a cursor of this listing is bound to: the tenant and the filters.
    pub fn cursor_scope(&self, tenant: &Tenant) -> String {
        let filter = &self.filter;
        format!(
            "{}\n{}\nstatus={}\ntype={}\nemail={}",
            tenant.org,
            tenant.mode.as_str(),
            filter.status.map_or("", CustomerStatus::as_str),
            filter.kind.map_or("", CustomerType::as_str),
            filter
                .email
                .as_deref()
                .map(str::to_lowercase)
                .unwrap_or_default()
        )
    }
}
