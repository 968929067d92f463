//! The expected results, written from RFC 7396 and the rules rather than taken from the
//! service: the merge, the canonical form, and the violations of a merged document.

use super::*;

/// RFC 7396 §2, transcribed.
pub(super) fn merge_ref(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.get(name).cloned().unwrap_or(Value::Null);
            target.insert(name.clone(), merge_ref(&current, value));
        }
    }
    Value::Object(target)
}

/// The canonical form (docs/api-rules.md): empty `name`, `policy` and `policy.limits` mean "not set";
/// `metadata` is always an object.
pub(super) fn normalize_ref(mut doc: Value) -> Value {
    let map = doc.as_object_mut().expect("a document is an object");
    if let Some(Value::Object(policy)) = map.get_mut("policy") {
        if policy.get("limits") == Some(&json!({})) {
            policy.remove("limits");
        }
    }
    for key in ["name", "policy"] {
        if map.get(key) == Some(&json!({})) {
            map.remove(key);
        }
    }
    if !map.get("metadata").is_some_and(Value::is_object) {
        map.insert("metadata".into(), json!({}));
    }
    doc
}

pub(super) const VALID_TLDS: [&str; 3] = ["com", "org", "io"];

/// Decides the generated emails only (see `email`): `local[.part]@domain.tld`, lower case.
pub(super) fn email_ok(s: &str) -> bool {
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.chars().count() <= 254
        && local.len() <= 64
        && local.split('.').all(lower)
        && domain
            .split_once('.')
            .is_some_and(|(d, tld)| lower(d) && VALID_TLDS.contains(&tld))
}

/// E.164, as the phone rule words it.
pub(super) fn phone_ok(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

pub(super) fn name_ok(s: &str) -> bool {
    (1..=100).contains(&s.chars().count()) && !s.trim().is_empty()
}

pub(super) const MAX_CENTS: i64 = 1_000_000_000_000;

pub(super) const INT_RULES: [(&str, i64, i64); 5] = [
    ("autoApproveBelow", 0, MAX_CENTS),
    ("attestationWindowMinutes", 1, 60),
    ("cooldownMinutes", 0, 525_600),
    ("ttlMinutes", 1, 525_600),
    ("ttlDays", 1, 3_650),
];

pub(super) const LIMITS: [&str; 3] = ["perAuth", "perDay", "perMonth"];

pub(super) const FLAGS: [&str; 4] = [
    "requireIntent",
    "requireAttestation",
    "requireApproval",
    "lockToFirstMerchant",
];

/// The `param`s of every rule violation in a merged document of well-typed fields.
pub(super) fn violations_ref(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    contact_violations(doc, &mut out);
    if let Some(policy) = doc.get("policy").and_then(Value::as_object) {
        policy_violations(policy, &mut out);
    }
    if let Some(metadata) = doc.get("metadata").and_then(Value::as_object) {
        metadata_violations(metadata, &mut out);
    }
    out
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Email, phone and the parts of the name.
fn contact_violations(doc: &Value, out: &mut BTreeSet<String>) {
    if let Some(email) = text(doc, "email") {
        if !email_ok(&email) {
            out.insert("email".to_owned());
        }
    }
    if let Some(phone) = text(doc, "phone") {
        if !phone_ok(&phone) {
            out.insert("phone".to_owned());
        }
    }
    if let Some(name) = doc.get("name") {
        for part in ["first", "last"] {
            if text(name, part).is_some_and(|s| !name_ok(&s)) {
                out.insert(format!("name.{part}"));
            }
        }
    }
}

/// The integer ranges, the limits and their order, the codes and the merchants.
fn policy_violations(policy: &Map<String, Value>, out: &mut BTreeSet<String>) {
    for (field, min, max) in INT_RULES {
        if let Some(v) = policy.get(field).and_then(Value::as_i64) {
            if !(min..=max).contains(&v) {
                out.insert(format!("policy.{field}"));
            }
        }
    }
    if let Some(limits) = policy.get("limits").and_then(Value::as_object) {
        limit_violations(limits, out);
    }
    let strings = |key: &str| -> Option<Vec<String>> {
        policy.get(key).and_then(Value::as_array).map(|items| {
            items
                .iter()
                .map(|i| i.as_str().expect("generated items are strings").to_owned())
                .collect()
        })
    };
    for key in ["allowedMccs", "blockedMccs"] {
        if let Some(codes) = strings(key) {
            let distinct: BTreeSet<&String> = codes.iter().collect();
            let bad_code = codes
                .iter()
                .any(|c| c.len() != 4 || !c.bytes().all(|b| b.is_ascii_digit()));
            if codes.len() > 1000 || bad_code || distinct.len() != codes.len() {
                out.insert(format!("policy.{key}"));
            }
        }
    }
    if let (Some(allowed), Some(blocked)) = (strings("allowedMccs"), strings("blockedMccs")) {
        if blocked.iter().any(|c| allowed.contains(c)) {
            out.insert("policy.blockedMccs".to_owned());
        }
    }
    if let Some(names) = strings("allowedMerchants") {
        let distinct: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let bad = names
            .iter()
            .any(|n| !(1..=200).contains(&n.chars().count()));
        if names.len() > 100 || bad || distinct.len() != names.len() {
            out.insert("policy.allowedMerchants".to_owned());
        }
    }
}

/// Each limit in range, and perAuth ≤ perDay ≤ perMonth (the lower one is named).
fn limit_violations(limits: &Map<String, Value>, out: &mut BTreeSet<String>) {
    let get = |k: &str| limits.get(k).and_then(Value::as_i64);
    for field in LIMITS {
        if get(field).is_some_and(|v| !(0..=MAX_CENTS).contains(&v)) {
            out.insert(format!("policy.limits.{field}"));
        }
    }
    for (low, high) in [
        ("perAuth", "perDay"),
        ("perAuth", "perMonth"),
        ("perDay", "perMonth"),
    ] {
        if let (Some(l), Some(h)) = (get(low), get(high)) {
            if l > h {
                out.insert(format!("policy.limits.{low}"));
            }
        }
    }
}

/// At most 50 keys of 1 to 40 characters without brackets, values of at most 500 bytes.
fn metadata_violations(metadata: &Map<String, Value>, out: &mut BTreeSet<String>) {
    if metadata.len() > 50 {
        out.insert("metadata".to_owned());
    }
    for (key, value) in metadata {
        let key_ok = (1..=40).contains(&key.chars().count()) && !key.contains(['[', ']']);
        let size = serde_json::to_vec(value).expect("serialises").len();
        if !key_ok || size > 500 {
            out.insert(format!("metadata.{key}"));
        }
    }
}
