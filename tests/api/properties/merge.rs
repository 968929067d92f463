//! Properties of the merge patch and validation: `patch::apply` is the reference merge followed
//! by the reference validation, idempotent, accepts every valid customer, names a single
//! violation under its field, and never panics.

use super::*;

/// The fixture (`tests/fixtures/full-customer.json`, patched by the cargo-fuzz target too) is
/// a valid customer in canonical form, with every writable field set.
#[test]
fn the_full_customer_is_valid_canonical_and_complete() {
    let full = full_customer();
    assert_eq!(normalize_ref(full.clone()), full, "canonical");
    assert_eq!(violations_ref(&full), BTreeSet::new(), "valid");
    let fields: CustomerFields = serde_json::from_value(full.clone()).expect("a typed customer");
    assert_eq!(fields.violations(), vec![]);
    for path in ["email", "phone", "name.first", "name.last", "metadata"] {
        let value = path.split('.').fold(&full, |v, k| &v[k]);
        assert!(!value.is_null(), "{path} is set");
    }
    let policy = full["policy"].as_object().expect("a policy");
    for field in FLAGS.iter().chain(INT_RULES.iter().map(|r| &r.0)).chain(&[
        "limits",
        "allowedMccs",
        "blockedMccs",
        "allowedMerchants",
    ]) {
        assert!(policy.contains_key(*field), "policy.{field} is set");
    }
    for limit in LIMITS {
        assert!(
            policy["limits"].get(limit).is_some(),
            "policy.limits.{limit} is set"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// The merge the service relies on (json_patch) is RFC 7396's, for any documents.
    #[test]
    fn json_merge_patch_is_rfc7396(target in any_json(), patch in any_json()) {
        let mut merged = target.clone();
        json_patch::merge(&mut merged, &patch);
        prop_assert_eq!(&merged, &merge_ref(&target, &patch));
        // Idempotence of RFC 7396 itself.
        prop_assert_eq!(merge_ref(&merged, &patch), merged);
    }

    /// `patch::apply` on a stored customer gives exactly the normalised RFC 7396 merge when that
    /// satisfies the rules, "unchanged" when the merge changes nothing, and otherwise exactly
    /// the rule violations of the merged customer.
    #[test]
    fn apply_is_the_reference_merge_then_validation(current in customer(), patch in patch()) {
        prop_assert_eq!(&normalize_ref(current.clone()), &current, "generated documents are canonical");
        let expected = normalize_ref(merge_ref(&current, &patch));
        // The library's normalisation agrees with the rule of docs/api-rules.md.
        let mut normalized = merge_ref(&current, &patch);
        normalize(&mut normalized);
        prop_assert_eq!(&normalized, &expected);
        let violations = violations_ref(&expected);
        let map = patch.as_object().expect("a patch is an object");
        match apply(&current, map, BodyKind::Patch) {
            Ok(Outcome::Unchanged) => prop_assert_eq!(&expected, &current),
            Ok(Outcome::Changed(values)) => {
                prop_assert!(violations.is_empty(), "accepted despite {:?}", violations);
                prop_assert_ne!(&expected, &current);
                prop_assert_eq!(stored_document(&values), expected);
            }
            Err(ApiError::Validation(errors)) => {
                prop_assert_eq!(params(&errors), violations);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    /// Applying a patch twice is applying it once: the second time changes nothing.
    #[test]
    fn applying_a_patch_twice_equals_applying_it_once(current in customer(), patch in patch()) {
        let map = patch.as_object().expect("an object");
        match apply(&current, map, BodyKind::Patch) {
            Ok(Outcome::Changed(values)) => {
                let once = stored_document(&values);
                prop_assert!(
                    matches!(apply(&once, map, BodyKind::Patch), Ok(Outcome::Unchanged)),
                    "the second application changed {}", once
                );
            }
            Ok(Outcome::Unchanged) => {
                prop_assert!(matches!(apply(&current, map, BodyKind::Patch), Ok(Outcome::Unchanged)));
            }
            Err(ApiError::Validation(first)) => match apply(&current, map, BodyKind::Patch) {
                Err(ApiError::Validation(second)) => prop_assert_eq!(first, second),
                other => prop_assert!(false, "not deterministic: {:?}", other.is_ok()),
            },
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    /// Every customer that the rules allow is accepted as a create body, as is.
    #[test]
    fn valid_customers_are_accepted(mut body in customer(), kind in prop::option::of(prop::sample::select(vec!["consumer", "corporate"]))) {
        prop_assert!(violations_ref(&body).is_empty());
        let fields: CustomerFields = serde_json::from_value(body.clone()).expect("a typed customer");
        prop_assert_eq!(fields.violations(), vec![]);
        if let Some(kind) = kind {
            body["type"] = json!(kind);
        }
        let empty = json!({"metadata": {}});
        match apply(&empty, body.as_object().expect("an object"), BodyKind::Create) {
            Ok(Outcome::Changed(values)) => {
                let mut expected = body.clone();
                expected.as_object_mut().expect("an object").remove("type");
                prop_assert_eq!(stored_document(&values), expected);
            }
            Ok(Outcome::Unchanged) => {
                let mut bare = body.clone();
                bare.as_object_mut().expect("an object").remove("type");
                prop_assert_eq!(bare, empty);
            }
            Err(e) => prop_assert!(false, "a valid customer was refused: {:?}", e),
        }
    }

    /// One broken rule is reported once, under its field, with the envelope's code; the same
    /// holds when the broken body is sent as a patch of a valid customer.
    #[test]
    fn a_single_violation_names_its_param(body in customer(), rule in one_break(), current in customer()) {
        let mut broken = body.clone();
        let (param, code) = break_rule(&mut broken, &rule);
        let empty = json!({"metadata": {}});
        let map = broken.as_object().expect("an object");
        match apply(&empty, map, BodyKind::Create) {
            Err(error @ ApiError::Validation(_)) => {
                let ApiError::Validation(errors) = &error else { unreachable!() };
                prop_assert_eq!(params(errors), BTreeSet::from([param.clone()]), "{:?}", errors);
                prop_assert_eq!(error.code(), code);
            }
            other => prop_assert!(false, "{:?} was not refused: {:?}", rule, other.map(|_| ())),
        }
        // As a patch: read-only and type errors are the same; the rest is merged into a valid
        // customer, whose own fields may then take part (a patch of limits meets stored limits),
        // so only the presence of the param is certain.
        match apply(&current, map, BodyKind::Patch) {
            Err(ApiError::Validation(errors)) => {
                prop_assert!(params(&errors).contains(&param), "{:?}: {:?}", rule, errors);
            }
            other => prop_assert!(false, "{:?} was not refused as a patch: {:?}", rule, other.map(|_| ())),
        }
    }

    /// Whatever the object, `apply` answers (no panic) with a result or a validation error.
    #[test]
    fn apply_never_panics_on_any_object(current in customer(), body in any_object()) {
        let map = body.as_object().expect("an object");
        for (doc, kind) in [(json!({"metadata": {}}), BodyKind::Create), (current, BodyKind::Patch)] {
            match apply(&doc, map, kind) {
                Ok(_) | Err(ApiError::Validation(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }

    /// What the cargo-fuzz target checks, on the same fully populated customer: any patch of it,
    /// valid or not, is applied as the reference merge says, and a patch that changed it changes
    /// nothing when applied again.
    #[test]
    fn patches_of_the_full_customer_apply_once(patch in patch(), other in any_object()) {
        let full = full_customer();
        for body in [&patch, &other] {
            let map = body.as_object().expect("an object");
            match apply(&full, map, BodyKind::Patch) {
                Ok(Outcome::Changed(values)) => {
                    let once = stored_document(&values);
                    prop_assert!(
                        matches!(apply(&once, map, BodyKind::Patch), Ok(Outcome::Unchanged)),
                        "the second application changed {}", once
                    );
                }
                Ok(Outcome::Unchanged) | Err(ApiError::Validation(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
        let map = patch.as_object().expect("an object");
        let expected = normalize_ref(merge_ref(&full, &patch));
        match apply(&full, map, BodyKind::Patch) {
            Ok(Outcome::Changed(values)) => prop_assert_eq!(stored_document(&values), expected),
            Ok(Outcome::Unchanged) => prop_assert_eq!(expected, full),
            Err(ApiError::Validation(errors)) => prop_assert_eq!(params(&errors), violations_ref(&expected)),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
