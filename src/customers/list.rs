//! The query of `GET /v1/customers`: page size, cursor and filters, each checked with an error
//! that names it; an unknown or repeated parameter is an error too.

use actix_web::web;
use utoipa::IntoParams;

use super::domain::{CustomerStatus, CustomerType};
use super::repo::ListFilter;
use crate::error::{ApiError, FieldError, PARAMETER_UNKNOWN};
use crate::limits::{EMAIL_MAX_CHARS, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use crate::tenant::Tenant;

/// The listing's parameters, for the OpenAPI document (`openapi.rs` checks the numbers against
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

pub struct ListQuery {
    pub limit: i64,
    pub cursor: Option<String>,
    pub filter: ListFilter,
}

impl ListQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| ApiError::InvalidRequest("the query string is not valid".into()))?
            .into_inner();
        let mut out = ListQuery {
            limit: PAGE_SIZE_DEFAULT,
            cursor: None,
            filter: ListFilter::default(),
        };
        let mut seen = std::collections::HashSet::new();
        let invalid = |param: &str, message: &str| ApiError::InvalidParameter {
            param: param.to_owned(),
            message: format!("{param} {message}"),
        };
        for (name, value) in pairs {
            if !seen.insert(name.clone()) {
                return Err(invalid(&name, "is given more than once"));
            }
            match name.as_str() {
                "limit" => {
                    out.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=PAGE_SIZE_MAX).contains(n))
                        .ok_or_else(|| {
                            invalid(
                                "limit",
                                &format!("must be an integer from 1 to {PAGE_SIZE_MAX}"),
                            )
                        })?;
                }
                "cursor" => out.cursor = Some(value),
                "status" => {
                    let status = CustomerStatus::parse(&value)
                        .ok_or_else(|| invalid("status", "must be pending, active or deleted"))?;
                    out.filter.status = Some(status);
                }
                "type" => {
                    let kind = CustomerType::parse(&value)
                        .ok_or_else(|| invalid("type", "must be consumer or corporate"))?;
                    out.filter.kind = Some(kind);
                }
                "email" => {
                    if value.is_empty()
                        || value.chars().count() as u64 > EMAIL_MAX_CHARS
                        || value.contains('\0')
                    {
                        return Err(invalid(
                            "email",
                            &format!("must be 1 to {EMAIL_MAX_CHARS} characters"),
                        ));
                    }
                    out.filter.email = Some(value);
                }
                other => {
                    return Err(ApiError::Validation(vec![FieldError::new(
                        other,
                        PARAMETER_UNKNOWN,
                        format!("{other} is not a known query parameter"),
                    )]))
                }
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
