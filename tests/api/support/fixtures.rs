//! Fixed inputs shared by several test files.

use serde_json::Value;

/// A customer id that is well formed but exists nowhere.
pub const MISSING_ID: &str = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E";

/// `tests/fixtures/full-customer.json`: a valid customer with every writable field set. The
/// property tests patch it, and so does the cargo-fuzz target (`fuzz/fuzz_targets/`), which
/// reads the same file.
pub const FULL_CUSTOMER_JSON: &str = include_str!("../../fixtures/full-customer.json");

pub fn full_customer() -> Value {
    serde_json::from_str(FULL_CUSTOMER_JSON).expect("the full customer fixture is JSON")
}
