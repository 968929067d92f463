//! Properties of the strict JSON parser: it agrees with serde_json, refuses repeated keys and
//! bounds nesting.

use super::*;

proptest! {
    #![proptest_config(config())]

    /// Strict parsing reads back what serde_json writes, and agrees with serde_json on any bytes
    /// it accepts.
    #[test]
    fn parse_strict_round_trips(value in any_json()) {
        let text = serde_json::to_vec(&value).expect("serialises");
        prop_assert_eq!(parse_strict(&text).expect("valid JSON parses"), value.clone());
        let pretty = serde_json::to_vec_pretty(&value).expect("serialises");
        prop_assert_eq!(parse_strict(&pretty).expect("valid JSON parses"), value);
    }

    /// Any float is read as serde_json reads it (the strict parser adds no rounding of its own).
    #[test]
    fn parse_strict_reads_floats_as_serde_json_does(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let text = json!({"metadata": {"x": x}}).to_string();
        let plain: Value = serde_json::from_str(&text).expect("serde_json reads it");
        prop_assert_eq!(parse_strict(text.as_bytes()).expect("valid JSON"), plain);
    }

    #[test]
    fn parse_strict_agrees_with_serde_json_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(value) = parse_strict(&bytes) {
            let plain: Value = serde_json::from_slice(&bytes).expect("serde_json accepts it too");
            prop_assert_eq!(value, plain);
        }
    }

    /// A repeated key anywhere is invalid JSON, whatever else the document holds.
    #[test]
    fn a_repeated_key_is_refused(doc in any_object(), key in "[a-e]", first in any_json(), second in any_json(), depth in 0usize..4) {
        let mut text = doc.to_string();
        text.pop();
        let sep = if text.len() > 1 { "," } else { "" };
        let k = json!(key);
        let mut inner = format!("{text}{sep}{k}:{first},{k}:{second}}}");
        for _ in 0..depth {
            inner = format!("{{\"metadata\":[{inner}]}}");
        }
        prop_assert!(matches!(parse_strict(inner.as_bytes()), Err(ApiError::InvalidJson(_))), "{}", inner);
    }

    /// Nesting is bounded: shallow documents parse, deep ones are an error (never a crash).
    #[test]
    fn nesting_is_bounded(depth in 1usize..2_000, objects in any::<bool>()) {
        let text = if objects {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        };
        let parsed = parse_strict(text.as_bytes());
        if depth <= MAX_DEPTH {
            prop_assert!(parsed.is_ok(), "depth {}", depth);
        } else {
            prop_assert!(matches!(parsed, Err(ApiError::InvalidJson(_))), "depth {}", depth);
        }
    }
}
