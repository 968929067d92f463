//! One rule of a valid customer broken on purpose, and where the violation must be reported.

use super::*;

/// One rule broken on purpose, and the `param` (and envelope code) it must be reported under.
#[derive(Debug, Clone)]
pub(super) enum Break {
    Email(String),
    Phone(String),
    Name(&'static str, String),
    Int(usize, i64),
    Limit(usize, i64),
    LimitOrder(usize, i64),
    McCode(&'static str, String),
    MccRepeat(&'static str),
    TooManyMccs,
    MccConflict,
    Merchant(String),
    MerchantRepeat,
    TooManyMerchants,
    TooManyKeys,
    MetaKey(String),
    MetaValueSize,
    Nul(&'static str),
    Unknown(&'static str),
    WrongType(&'static str, Value),
    ReadOnly(&'static str),
}

pub(super) fn one_break() -> impl Strategy<Value = Break> {
    prop_oneof![
        bad_email().prop_map(Break::Email),
        bad_phone().prop_map(Break::Phone),
        (prop::sample::select(vec!["first", "last"]), bad_name())
            .prop_map(|(p, n)| Break::Name(p, n)),
        (0..INT_RULES.len()).prop_flat_map(|i| {
            let (_, min, max) = INT_RULES[i];
            int_outside(min, max).prop_map(move |v| Break::Int(i, v))
        }),
        (0..3usize, int_outside(0, MAX_CENTS)).prop_map(|(i, v)| Break::Limit(i, v)),
        (0..3usize, 0..MAX_CENTS).prop_map(|(i, v)| Break::LimitOrder(i, v)),
        (
            prop::sample::select(vec!["allowedMccs", "blockedMccs"]),
            prop::sample::select(vec!["541", "54111", "abcd", "", "5 11", "５４１１"]),
        )
            .prop_map(|(k, c)| Break::McCode(k, c.to_owned())),
        prop::sample::select(vec!["allowedMccs", "blockedMccs"]).prop_map(Break::MccRepeat),
        Just(Break::TooManyMccs),
        Just(Break::MccConflict),
        prop::sample::select(vec![String::new(), "m".repeat(201)]).prop_map(Break::Merchant),
        Just(Break::MerchantRepeat),
        Just(Break::TooManyMerchants),
        Just(Break::TooManyKeys),
        prop::sample::select(vec![
            String::new(),
            "k".repeat(41),
            "a[b".to_owned(),
            "]".to_owned()
        ])
        .prop_map(Break::MetaKey),
        Just(Break::MetaValueSize),
        prop::sample::select(vec![
            "email",
            "phone",
            "name.first",
            "name.last",
            "metadata.k",
            "policy.allowedMerchants.0"
        ])
        .prop_map(Break::Nul),
        prop::sample::select(vec![
            "emial",
            "name.middle",
            "policy.requireIntnet",
            "policy.limits.perWeek"
        ])
        .prop_map(Break::Unknown),
        prop::sample::select(vec![
            ("email", json!(1)),
            ("phone", json!(true)),
            ("name", json!("Alice")),
            ("name.first", json!(["A"])),
            ("policy", json!([])),
            ("policy.requireIntent", json!("yes")),
            ("policy.limits", json!(5)),
            ("policy.limits.perDay", json!(12.5)),
            ("policy.ttlDays", json!("7")),
            ("policy.allowedMccs", json!("5411")),
            ("metadata", json!([1])),
            ("type", json!(1)),
        ])
        .prop_map(|(p, v)| Break::WrongType(p, v)),
        prop::sample::select(vec!["id", "status", "createdAt", "updatedAt"])
            .prop_map(Break::ReadOnly),
    ]
}

/// The object at a dotted path, made when missing (or when not an object).
pub(super) fn object_at<'a>(doc: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut node = doc;
    for segment in path {
        let map = node.as_object_mut().expect("objects on the way");
        let child = map.entry(*segment).or_insert_with(|| json!({}));
        if !child.is_object() {
            *child = json!({});
        }
        node = child;
    }
    node.as_object_mut().expect("an object")
}

pub(super) fn set(doc: &mut Value, path: &str, value: Value) {
    let segments: Vec<&str> = path.split('.').collect();
    let (last, parents) = segments.split_last().expect("a path");
    object_at(doc, parents).insert((*last).to_owned(), value);
}

/// Breaks one rule of a valid body; returns the param and the envelope code it must get.
pub(super) fn break_rule(body: &mut Value, rule: &Break) -> (String, &'static str) {
    let invalid = "parameter_invalid";
    match rule {
        Break::Email(e) => {
            set(body, "email", json!(e));
            ("email".into(), invalid)
        }
        Break::Phone(p) => {
            set(body, "phone", json!(p));
            ("phone".into(), invalid)
        }
        Break::Name(part, n) => {
            set(body, &format!("name.{part}"), json!(n));
            (format!("name.{part}"), invalid)
        }
        Break::Int(i, v) => {
            let field = INT_RULES[*i].0;
            set(body, &format!("policy.{field}"), json!(v));
            (format!("policy.{field}"), invalid)
        }
        Break::Limit(i, v) => {
            // Alone, so that no ordering rule fires as well.
            set(body, "policy.limits", json!({LIMITS[*i]: v}));
            (format!("policy.limits.{}", LIMITS[*i]), invalid)
        }
        Break::LimitOrder(pair, v) => {
            let (low, high) = [
                ("perAuth", "perDay"),
                ("perAuth", "perMonth"),
                ("perDay", "perMonth"),
            ][*pair];
            set(body, "policy.limits", json!({low: v + 1, high: v}));
            (format!("policy.limits.{low}"), invalid)
        }
        Break::McCode(key, code) => {
            object_at(body, &["policy"]).remove("allowedMccs");
            object_at(body, &["policy"]).remove("blockedMccs");
            set(body, &format!("policy.{key}"), json!(["5411", code]));
            (format!("policy.{key}"), invalid)
        }
        Break::MccRepeat(key) => {
            object_at(body, &["policy"]).remove("allowedMccs");
            object_at(body, &["policy"]).remove("blockedMccs");
            set(
                body,
                &format!("policy.{key}"),
                json!(["5411", "5812", "5411"]),
            );
            (format!("policy.{key}"), invalid)
        }
        Break::TooManyMccs => {
            object_at(body, &["policy"]).remove("blockedMccs");
            let codes: Vec<String> = (0..1001).map(|i| format!("{i:04}")).collect();
            set(body, "policy.allowedMccs", json!(codes));
            ("policy.allowedMccs".into(), invalid)
        }
        Break::MccConflict => {
            set(body, "policy.allowedMccs", json!(["5411", "5812"]));
            set(body, "policy.blockedMccs", json!(["7995", "5812"]));
            ("policy.blockedMccs".into(), invalid)
        }
        Break::Merchant(n) => {
            set(body, "policy.allowedMerchants", json!(["Acme", n]));
            ("policy.allowedMerchants".into(), invalid)
        }
        Break::MerchantRepeat => {
            set(
                body,
                "policy.allowedMerchants",
                json!(["Acme", "Globex", "aCME"]),
            );
            ("policy.allowedMerchants".into(), invalid)
        }
        Break::TooManyMerchants => {
            let names: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
            set(body, "policy.allowedMerchants", json!(names));
            ("policy.allowedMerchants".into(), invalid)
        }
        Break::TooManyKeys => {
            set(
                body,
                "metadata",
                Value::Object((0..51).map(|i| (format!("k{i}"), json!(i))).collect()),
            );
            ("metadata".into(), invalid)
        }
        Break::MetaKey(key) => {
            set(body, "metadata", json!({"ok": 1, key.as_str(): 1}));
            (format!("metadata.{key}"), invalid)
        }
        Break::MetaValueSize => {
            set(body, "metadata.big", json!("v".repeat(499)));
            ("metadata.big".into(), invalid)
        }
        Break::Nul(path) => {
            let value = if path.ends_with(".0") {
                set(body, "policy.allowedMerchants", json!(["Ac\u{0}me"]));
                None
            } else {
                Some(json!("a\u{0}b"))
            };
            if let Some(v) = value {
                set(body, path, v);
            }
            ((*path).into(), invalid)
        }
        Break::Unknown(path) => {
            set(body, path, json!(1));
            ((*path).into(), "parameter_unknown")
        }
        Break::WrongType(path, v) => {
            set(body, path, v.clone());
            ((*path).into(), invalid)
        }
        Break::ReadOnly(field) => {
            set(body, field, json!("x"));
            ((*field).into(), "parameter_not_updatable")
        }
    }
}
