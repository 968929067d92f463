//! The spending policy: flags, amounts in cents and their order, minute and day ranges,
//! merchant category codes and allowed merchants.

use serde_json::json;

use super::*;

#[tokio::test]
async fn policy_flags_are_booleans() {
    let app = spawn_app().await;
    let flags = [
        "requireIntent",
        "requireAttestation",
        "requireApproval",
        "lockToFirstMerchant",
    ];
    for flag in flags {
        for value in [true, false] {
            let ok = accepted(&app, policy_at(&[flag], json!(value))).await;
            assert_eq!(ok["policy"], json!({ flag: value }));
        }
        for value in [
            json!("true"),
            json!(1),
            json!(0),
            json!("yes"),
            json!([]),
            json!({}),
        ] {
            invalid_at(&app, policy_at(&[flag], value), &format!("policy.{flag}")).await;
        }
    }
    // All four at once.
    let ok = accepted(
        &app,
        json!({"policy": {"requireIntent": true, "requireAttestation": false,
                          "requireApproval": true, "lockToFirstMerchant": false}}),
    )
    .await;
    assert_eq!(ok["policy"]["lockToFirstMerchant"], false);
}

#[tokio::test]
async fn cents_are_integers_from_0_to_a_trillion() {
    let app = spawn_app().await;
    let fields: [&[&str]; 4] = [
        &["autoApproveBelow"],
        &["limits", "perAuth"],
        &["limits", "perDay"],
        &["limits", "perMonth"],
    ];
    for path in fields {
        let param = format!("policy.{}", path.join("."));
        for value in [0i64, 1, 12_345, 1_000_000_000_000] {
            let ok = accepted(&app, policy_at(path, json!(value))).await;
            let shown = path.iter().fold(&ok["policy"], |v, k| &v[*k]);
            assert_eq!(*shown, json!(value), "{param}");
        }
        for value in [
            json!(12.5),
            json!(0.5),
            json!(-1),
            json!(-1_000_000),
            json!(1_000_000_000_001i64),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e20),
            json!("100"),
            json!(true),
            json!([100]),
        ] {
            invalid_at(&app, policy_at(path, value), &param).await;
        }
    }
}

#[tokio::test]
async fn limits_are_ordered_per_auth_per_day_per_month() {
    let app = spawn_app().await;
    for limits in [
        json!({"perAuth": 100, "perDay": 100, "perMonth": 100}),
        json!({"perAuth": 100, "perDay": 200, "perMonth": 300}),
        json!({"perAuth": 100, "perMonth": 300}),
        json!({"perAuth": 0, "perDay": 5}),
        json!({"perDay": 5, "perMonth": 5}),
        json!({"perAuth": 1_000_000_000_000i64, "perDay": 1_000_000_000_000i64,
               "perMonth": 1_000_000_000_000i64}),
    ] {
        let ok = accepted(&app, json!({"policy": {"limits": limits}})).await;
        assert_eq!(ok["policy"]["limits"], limits);
    }

    // perAuth above perDay names perAuth.
    let error = invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 90000, "perDay": 50000}}}),
        "policy.limits.perAuth",
    )
    .await;
    assert_eq!(error["param"], "policy.limits.perAuth");
    invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 300, "perMonth": 200}}}),
        "policy.limits.perAuth",
    )
    .await;
    invalid_at(
        &app,
        json!({"policy": {"limits": {"perAuth": 1, "perDay": 0}}}),
        "policy.limits.perAuth",
    )
    .await;
    // perDay above perMonth: the error names one of the two.
    for limits in [
        json!({"perDay": 300, "perMonth": 200}),
        json!({"perAuth": 100, "perDay": 300, "perMonth": 200}),
    ] {
        let error = create_rejected(
            &app,
            json!({"policy": {"limits": limits}}),
            "parameter_invalid",
        )
        .await;
        let params = error_params(&error);
        assert!(
            params
                .iter()
                .any(|p| p == "policy.limits.perDay" || p == "policy.limits.perMonth"),
            "{error}"
        );
        assert!(
            params.iter().all(|p| p.starts_with("policy.limits.")),
            "{error}"
        );
    }
}

async fn check_range(field: &str, min: i64, max: i64) {
    let app = spawn_app().await;
    let param = format!("policy.{field}");
    for value in [min, min + 1, max - 1, max] {
        let ok = accepted(&app, policy_at(&[field], json!(value))).await;
        assert_eq!(ok["policy"], json!({ field: value }));
    }
    for value in [
        json!(min - 1),
        json!(max + 1),
        json!(-1_000),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(min as f64 + 0.5),
        json!("10"),
        json!(false),
    ] {
        invalid_at(&app, policy_at(&[field], value), &param).await;
    }
    // Validated on PATCH as well.
    let id = app.create_id(policy_at(&[field], json!(max))).await;
    let error = patch_rejected(
        &app,
        &id,
        policy_at(&[field], json!(max + 1)),
        "parameter_invalid",
    )
    .await;
    assert_eq!(error["param"], param.as_str());
}

#[tokio::test]
async fn attestation_window_minutes_is_1_to_60() {
    check_range("attestationWindowMinutes", 1, 60).await;
}

#[tokio::test]
async fn cooldown_minutes_is_0_to_525600() {
    check_range("cooldownMinutes", 0, 525_600).await;
}

#[tokio::test]
async fn ttl_minutes_is_1_to_525600() {
    check_range("ttlMinutes", 1, 525_600).await;
}

#[tokio::test]
async fn ttl_days_is_1_to_3650() {
    check_range("ttlDays", 1, 3_650).await;
}

fn codes(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{i:04}")).collect()
}

#[tokio::test]
async fn mcc_lists_hold_at_most_1000_distinct_four_digit_codes() {
    let app = spawn_app().await;
    for field in ["allowedMccs", "blockedMccs"] {
        let param = format!("policy.{field}");
        for list in [
            json!([]),
            json!(["5411"]),
            json!(["0000", "9999", "5812"]),
            json!(codes(0..1000)),
        ] {
            let ok = accepted(&app, policy_at(&[field], list.clone())).await;
            assert_eq!(ok["policy"][field], list);
        }
        for list in [
            json!(codes(0..1001)),
            json!(["541"]),
            json!(["54111"]),
            json!(["54a1"]),
            json!([" 541"]),
            json!(["5411 "]),
            json!(["-541"]),
            json!(["５４１１"]),
            json!(["٥٤١١"]),
            json!(["5411", "5812", "5411"]),
            json!([5411]),
            json!([null]),
            json!("5411"),
            json!({"5411": true}),
        ] {
            invalid_at(&app, policy_at(&[field], list), &param).await;
        }
    }
}

#[tokio::test]
async fn no_mcc_is_both_allowed_and_blocked() {
    let app = spawn_app().await;
    let ok = accepted(
        &app,
        json!({"policy": {"allowedMccs": ["5411", "5812"], "blockedMccs": ["7995"]}}),
    )
    .await;
    assert_eq!(ok["policy"]["blockedMccs"], json!(["7995"]));
    let id = ok["id"].as_str().unwrap().to_owned();

    let error = create_rejected(
        &app,
        json!({"policy": {"allowedMccs": ["5411", "5812"], "blockedMccs": ["5812", "7995"]}}),
        "parameter_invalid",
    )
    .await;
    let params = error_params(&error);
    assert!(
        params
            .iter()
            .all(|p| is_under(p, "policy.allowedMccs") || is_under(p, "policy.blockedMccs")),
        "{error}"
    );
    assert!(!params.is_empty());

    // The merged result is checked: blocking a code that is stored as allowed.
    let error = patch_rejected(
        &app,
        &id,
        json!({"policy": {"blockedMccs": ["5411"]}}),
        "parameter_invalid",
    )
    .await;
    let param = error["param"].as_str().unwrap();
    assert!(
        is_under(param, "policy.allowedMccs") || is_under(param, "policy.blockedMccs"),
        "{error}"
    );
}

#[tokio::test]
async fn allowed_merchants_are_at_most_100_names_of_1_to_200_characters_no_repeats() {
    let app = spawn_app().await;
    let hundred: Vec<String> = (0..100).map(|i| format!("Merchant {i}")).collect();
    let hundred_one: Vec<String> = (0..101).map(|i| format!("Merchant {i}")).collect();
    for list in [
        json!([]),
        json!(["Amazon", "eBay"]),
        json!(["a"]),
        json!(["x".repeat(200)]),
        json!(["é".repeat(200)]),
        json!(["Amazon", "Amazon UK"]),
        json!(hundred),
    ] {
        let ok = accepted(&app, json!({"policy": {"allowedMerchants": list}})).await;
        assert_eq!(ok["policy"]["allowedMerchants"], list);
    }
    for list in [
        json!(hundred_one),
        json!([""]),
        json!(["Amazon", ""]),
        json!(["x".repeat(201)]),
        json!(["é".repeat(201)]),
        json!(["Amazon", "eBay", "Amazon"]),
        json!(["Amazon", "amazon"]),
        json!(["EBAY", "eBay"]),
        json!(["Ärzte", "ärzte"]),
        json!([5]),
        json!("Amazon"),
    ] {
        invalid_at(
            &app,
            json!({"policy": {"allowedMerchants": list}}),
            "policy.allowedMerchants",
        )
        .await;
    }
}
