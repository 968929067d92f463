//! Query strings of the list routes: each parameter at most once, `limit` in range, unknown
//! parameters refused with an error that names them.

use actix_web::web;

use crate::error::{ApiError, FieldError, PARAMETER_UNKNOWN};
use crate::limits::PAGE_SIZE_MAX;

/// The parameters of a query string, in order; the second of a parameter given twice is an
/// error, met where it stands (so the first error of a query is the one answered).
pub fn pairs(
    query: &str,
) -> Result<impl Iterator<Item = Result<(String, String), ApiError>>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|_| ApiError::InvalidRequest("the query string is not valid".into()))?
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    Ok(pairs.into_iter().map(move |(name, value)| {
        if seen.insert(name.clone()) {
            Ok((name, value))
        } else {
            Err(invalid(&name, "is given more than once"))
        }
    }))
}

/// 400 `parameter_invalid` naming `param`.
pub fn invalid(param: &str, message: &str) -> ApiError {
    ApiError::InvalidParameter {
        param: param.to_owned(),
        message: format!("{param} {message}"),
    }
}

/// 400 `parameter_unknown` naming `param`.
pub fn unknown(param: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new(
        param,
        PARAMETER_UNKNOWN,
        format!("{param} is not a known query parameter"),
    )])
}

/// A page size: an integer from 1 to `PAGE_SIZE_MAX`.
pub fn limit(value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=PAGE_SIZE_MAX).contains(n))
        .ok_or_else(|| {
            invalid(
                "limit",
                &format!("must be an integer from 1 to {PAGE_SIZE_MAX}"),
            )
        })
}
