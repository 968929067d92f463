//! Numbers that are not an integer of cents or minutes in range.

use super::*;

/// Numbers that are not an integer of cents or minutes, or not one in range. (Integers written
/// as `12.0`, `1e3` or `-0` are integers: see `integers.rs`.)
pub(super) fn numbers() -> Vec<BodyCase> {
    let values: &[(&str, Expect)] = &[
        ("1e400", INVALID_JSON),
        ("-1e400", INVALID_JSON),
        ("9007199254740993", PARAM_INVALID),
        ("12.5", PARAM_INVALID),
        ("1e-400", PARAM_INVALID),
        ("-1", PARAM_INVALID),
        ("1000000000001", PARAM_INVALID),
        ("9223372036854775807", PARAM_INVALID),
        ("9223372036854775808", PARAM_INVALID),
        ("18446744073709551615", PARAM_INVALID),
        ("18446744073709551616", PARAM_INVALID),
        ("-9223372036854775808", PARAM_INVALID),
        ("-9223372036854775809", PARAM_INVALID),
        ("123456789012345678901234567890", PARAM_INVALID),
        ("0.000000000000000000001", PARAM_INVALID),
    ];
    INT_FIELDS
        .iter()
        .flat_map(|path| {
            values
                .iter()
                .map(move |(raw, expect)| field_case("number", path, raw, *expect))
        })
        .collect()
}
