//! Property tests (proptest) of the body parser, the merge patch and validation, through the
//! library's public API: `json_body::parse_strict`, `customers::patch::apply` (which checks the
//! shape with `input`, merges, normalises with `model::normalize` and validates with
//! `validation`), and `validation::CustomerFields`.
//!
//! The expected results come from code written here (`reference`) from RFC 7396 and the rules of
//! `docs/api-rules.md`, not from the service: an RFC 7396 merge, the "empty objects normalise
//! away" rule, and the validation rules. Generated emails and names (`generators`) come from
//! pools whose validity the reference can decide without reimplementing the `validator` crate;
//! `breaks` breaks one rule of a valid customer on purpose. The properties are in `merge` (the
//! merge patch and validation) and `parse` (the strict parser).

mod breaks;
mod generators;
mod merge;
mod parse;
mod reference;

use std::collections::BTreeSet;

// The library items these properties exercise, named here only.
use customers_api::customers::input::BodyKind;
use customers_api::customers::model::normalize;
use customers_api::customers::patch::{apply, Outcome};
use customers_api::customers::validation::CustomerFields;
use customers_api::error::{ApiError, FieldError};
use customers_api::json_body::parse_strict;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

use crate::support::{full_customer, stored_document};

use breaks::*;
use generators::*;
use reference::*;

const CASES: u32 = 256;

/// serde_json's recursion limit: 127 nested arrays or objects parse, the 128th level is refused.
/// (docs/api-rules.md words it as "128 levels or more"; 127 parse.)
const MAX_DEPTH: usize = 127;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failure prints its minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn params(errors: &[FieldError]) -> BTreeSet<String> {
    errors.iter().map(|e| e.param.clone()).collect()
}
