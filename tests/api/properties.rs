//! Property tests (proptest) of the body parser, the merge patch and validation, through the
//! library's public API: `json_body::parse_strict`, `customers::patch::apply` (which checks the
//! shape with `input`, merges, normalises with `model::normalize` and validates with
//! `validation`), and `validation::CustomerFields`.
//!
//! The expected results come from code written here from the RFC and the contract, not from
//! the service: an RFC 7396 merge, the "empty objects normalise away" rule of the README, and
//! the rules of contract §3. Generated emails and names come from pools whose validity the
//! reference can decide without reimplementing the `validator` crate.

use std::collections::BTreeSet;

use customers_api::customers::input::BodyKind;
use customers_api::customers::model::{normalize, CustomerValues};
use customers_api::customers::patch::{apply, Outcome};
use customers_api::customers::validation::CustomerFields;
use customers_api::error::ApiError;
use customers_api::json_body::parse_strict;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

const CASES: u32 = 256;

/// serde_json's recursion limit: 127 nested arrays or objects parse, the 128th level is refused.
/// (The README words it as "deeper than 128 levels"; the boundary is one lower.)
const MAX_DEPTH: usize = 127;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failure prints its minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------------

/// RFC 7396 §2, transcribed.
fn merge_ref(target: &Value, patch: &Value) -> Value {
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

/// The README's canonical form: empty `name`, `policy` and `policy.limits` mean "not set";
/// `metadata` is always an object.
fn normalize_ref(mut doc: Value) -> Value {
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

const VALID_TLDS: [&str; 3] = ["com", "org", "io"];

/// Decides the generated emails only (see `email`): `local[.part]@domain.tld`, lower case.
fn email_ok(s: &str) -> bool {
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

/// E.164 as §3 words it.
fn phone_ok(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

fn name_ok(s: &str) -> bool {
    (1..=100).contains(&s.chars().count()) && !s.trim().is_empty()
}

const MAX_CENTS: i64 = 1_000_000_000_000;
const INT_RULES: [(&str, i64, i64); 5] = [
    ("autoApproveBelow", 0, MAX_CENTS),
    ("attestationWindowMinutes", 1, 60),
    ("cooldownMinutes", 0, 525_600),
    ("ttlMinutes", 1, 525_600),
    ("ttlDays", 1, 3_650),
];
const LIMITS: [&str; 3] = ["perAuth", "perDay", "perMonth"];
const FLAGS: [&str; 4] = [
    "requireIntent",
    "requireAttestation",
    "requireApproval",
    "lockToFirstMerchant",
];

/// The `param`s of every §3 violation in a merged document of well-typed fields.
fn violations_ref(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
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
    if let Some(policy) = doc.get("policy").and_then(Value::as_object) {
        for (field, min, max) in INT_RULES {
            if let Some(v) = policy.get(field).and_then(Value::as_i64) {
                if !(min..=max).contains(&v) {
                    out.insert(format!("policy.{field}"));
                }
            }
        }
        if let Some(limits) = policy.get("limits").and_then(Value::as_object) {
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
    if let Some(metadata) = doc.get("metadata").and_then(Value::as_object) {
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
    out
}

/// The stored document a successful write produces, rebuilt from the values it stores.
fn stored_document(values: &CustomerValues) -> Value {
    let mut doc = Map::new();
    if let Some(email) = &values.email {
        doc.insert("email".into(), json!(email));
    }
    if let Some(phone) = &values.phone {
        doc.insert("phone".into(), json!(phone));
    }
    let mut name = Map::new();
    if let Some(first) = &values.first_name {
        name.insert("first".into(), json!(first));
    }
    if let Some(last) = &values.last_name {
        name.insert("last".into(), json!(last));
    }
    if !name.is_empty() {
        doc.insert("name".into(), Value::Object(name));
    }
    if let Some(policy) = &values.policy {
        doc.insert("policy".into(), policy.clone());
    }
    doc.insert("metadata".into(), values.metadata.clone());
    Value::Object(doc)
}

fn params(errors: &[customers_api::error::FieldError]) -> BTreeSet<String> {
    errors.iter().map(|e| e.param.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Any JSON, keys from a small alphabet so that patches and targets overlap.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Decimals of up to six significant digits: serde_json, as the service builds it (without
        // its float_roundtrip feature), reads longer ones only to within one ULP.
        (-100_000i64..100_000, 0i32..4).prop_map(|(m, e)| Value::from(m as f64 / 10f64.powi(e))),
        "[a-z\u{e9}\u{1F600} ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", any_json(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z]{1,8}",
        prop::option::of("[a-z]{1,5}"),
        "[a-z]{1,8}",
        prop::sample::select(VALID_TLDS.to_vec()),
    )
        .prop_map(|(a, b, domain, tld)| match b {
            Some(b) => format!("{a}.{b}@{domain}.{tld}"),
            None => format!("{a}@{domain}.{tld}"),
        })
}

fn bad_email() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "plainaddress".to_owned(),
        "@example.com".to_owned(),
        "a@".to_owned(),
        "a b@example.com".to_owned(),
        " a@example.com".to_owned(),
        "a@example.com ".to_owned(),
        "a@@example.com".to_owned(),
        format!("{}@example.com", "a".repeat(250)),
    ])
}

fn phone() -> impl Strategy<Value = String> {
    "\\+[1-9][0-9]{6,14}"
}

fn bad_phone() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "+",
        "+0123456789",
        "14155551234",
        "+123456",
        "+1234567890123456",
        "+1415555123a",
        "+ 4155551234",
        "+１４１５５５５１２３４",
    ])
    .prop_map(str::to_owned)
}

fn name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z\u{e9}\u{df}\u{20ac}\u{1F600}]",
        "[a-zA-Z\u{e9}\u{df}\u{20ac}\u{1F600} ]{0,99}",
    )
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

fn bad_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        String::new(),
        " ".to_owned(),
        "   ".to_owned(),
        "\t".to_owned(),
        "\u{2003}".to_owned(),
        "x".repeat(101),
        "\u{e9}".repeat(101),
    ])
}

fn int_in(min: i64, max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![Just(min), Just(max), min..=max]
}

fn int_outside(min: i64, max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![Just(min - 1), Just(max + 1), Just(i64::MIN), Just(i64::MAX)]
}

fn mcc() -> impl Strategy<Value = String> {
    "[0-9]{4}"
}

fn merchant() -> impl Strategy<Value = String> {
    "[a-z]{1,10}"
}

/// Free-form metadata values: never an object member that is null (a merge drops those).
fn meta_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z ]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(prop_oneof![inner.clone(), Just(Value::Null)], 0..3)
                .prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

/// A policy that satisfies §3, sparse; None when nothing is set.
fn policy() -> impl Strategy<Value = Option<Value>> {
    let flags = prop::collection::vec(prop::option::of(any::<bool>()), 4);
    let ints = (
        prop::option::of(int_in(0, MAX_CENTS)),
        prop::option::of(int_in(1, 60)),
        prop::option::of(int_in(0, 525_600)),
        prop::option::of(int_in(1, 525_600)),
        prop::option::of(int_in(1, 3_650)),
    );
    let limits = (
        prop::collection::vec(int_in(0, MAX_CENTS), 3),
        prop::collection::vec(any::<bool>(), 3),
    )
        .prop_map(|(mut values, present)| {
            values.sort_unstable();
            let map: Map<String, Value> = LIMITS
                .iter()
                .zip(values)
                .zip(present)
                .filter(|(_, p)| *p)
                .map(|((k, v), _)| ((*k).to_owned(), json!(v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        });
    let mccs = (
        prop::collection::btree_set(mcc(), 0..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(codes, allowed, blocked)| {
            let (a, b): (Vec<_>, Vec<_>) =
                codes.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
            let strip =
                |v: Vec<(usize, String)>| json!(v.into_iter().map(|(_, c)| c).collect::<Vec<_>>());
            (allowed.then(|| strip(a)), blocked.then(|| strip(b)))
        });
    let merchants =
        prop::option::of(prop::collection::btree_set(merchant(), 0..4)).prop_map(|set| {
            set.map(|s| {
                json!(s
                    .into_iter()
                    .enumerate()
                    // Mixed case, still distinct ignoring case.
                    .map(|(i, n)| if i % 2 == 0 { n.to_uppercase() } else { n })
                    .collect::<Vec<_>>())
            })
        });
    (flags, ints, limits, mccs, merchants).prop_map(
        |(flags, ints, limits, (allowed, blocked), merchants)| {
            let mut members: Vec<(&'static str, Option<Value>)> = FLAGS
                .iter()
                .zip(flags)
                .map(|(k, v)| (*k, v.map(Value::Bool)))
                .collect();
            let (a, b, c, d, e) = ints;
            for (k, v) in INT_RULES.iter().map(|r| r.0).zip([a, b, c, d, e]) {
                members.push((k, v.map(Value::from)));
            }
            members.push(("limits", limits));
            members.push(("allowedMccs", allowed));
            members.push(("blockedMccs", blocked));
            members.push(("allowedMerchants", merchants));
            let policy = object(members);
            (policy != json!({})).then_some(policy)
        },
    )
}

/// A stored customer's writable document, in canonical form.
fn customer() -> impl Strategy<Value = Value> {
    (
        prop::option::of(email()),
        prop::option::of(phone()),
        prop::option::of(name()),
        prop::option::of(name()),
        policy(),
        prop::collection::btree_map("[a-z]{1,10}", meta_value(), 0..5),
    )
        .prop_map(|(email, phone, first, last, policy, metadata)| {
            let name = object(vec![
                ("first", first.map(Value::String)),
                ("last", last.map(Value::String)),
            ]);
            object(vec![
                ("email", email.map(Value::String)),
                ("phone", phone.map(Value::String)),
                ("name", (name != json!({})).then_some(name)),
                ("policy", policy),
                (
                    "metadata",
                    Some(Value::Object(metadata.into_iter().collect())),
                ),
            ])
        })
}

/// A member of a patch: absent (None), null (clear), or a value.
fn member<S: Strategy<Value = Value> + 'static>(value: S) -> BoxedStrategy<Option<Value>> {
    prop_oneof![4 => Just(None), 1 => Just(Some(Value::Null)), 3 => value.prop_map(Some)].boxed()
}

fn string_of<S: Strategy<Value = String> + 'static>(s: S) -> BoxedStrategy<Value> {
    s.prop_map(Value::String).boxed()
}

/// Merge patches of well-typed fields whose values may break §3's rules.
fn patch() -> impl Strategy<Value = Value> {
    let email = member(prop_oneof![3 => string_of(email()), 1 => string_of(bad_email())]);
    let phone = member(prop_oneof![3 => string_of(phone()), 1 => string_of(bad_phone())]);
    let part = || member(prop_oneof![3 => string_of(name()), 1 => string_of(bad_name())]);
    let name = member((part(), part()).prop_map(|(f, l)| object(vec![("first", f), ("last", l)])));
    let int = |min: i64, max: i64| {
        member(prop_oneof![4 => int_in(min, max), 1 => int_outside(min, max)].prop_map(Value::from))
    };
    let limits = member(
        (int(0, MAX_CENTS), int(0, MAX_CENTS), int(0, MAX_CENTS))
            .prop_map(|(a, d, m)| object(vec![("perAuth", a), ("perDay", d), ("perMonth", m)])),
    );
    let codes = || {
        member(
            prop::collection::vec(
                prop_oneof![
                    6 => mcc(),
                    1 => prop::sample::select(vec!["541", "54111", "abcd", "5４11", "0000"]).prop_map(str::to_owned),
                ],
                0..5,
            )
            .prop_map(|v| json!(v)),
        )
    };
    let merchants = member(
        prop::collection::vec(
            prop_oneof![
                6 => merchant(),
                1 => prop::sample::select(vec!["", "Acme", "ACME", "acme"]).prop_map(str::to_owned),
                1 => Just("m".repeat(201)),
            ],
            0..4,
        )
        .prop_map(|v| json!(v)),
    );
    let flags = prop::collection::vec(member(any::<bool>().prop_map(Value::Bool)), 4);
    let ints = (
        int(0, MAX_CENTS),
        int(1, 60),
        int(0, 525_600),
        int(1, 525_600),
        int(1, 3_650),
    );
    let policy = member((flags, ints, limits, codes(), codes(), merchants).prop_map(
        |(flags, (a, b, c, d, e), limits, allowed, blocked, merchants)| {
            let mut members: Vec<(&'static str, Option<Value>)> =
                FLAGS.iter().copied().zip(flags).collect();
            for (k, v) in INT_RULES.iter().map(|r| r.0).zip([a, b, c, d, e]) {
                members.push((k, v));
            }
            members.push(("limits", limits));
            members.push(("allowedMccs", allowed));
            members.push(("blockedMccs", blocked));
            members.push(("allowedMerchants", merchants));
            object(members)
        },
    ));
    let meta_member = member(prop_oneof![
        6 => meta_value(),
        // Objects with nulls inside: RFC 7396 removes those members, at any depth.
        2 => prop::collection::btree_map("[a-c]", prop_oneof![Just(Value::Null), meta_value()], 1..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => Just(json!("v".repeat(600))),
    ]);
    let metadata = member(prop_oneof![
        8 => prop::collection::btree_map(
            prop::sample::select(vec!["plan", "tier", "a", "b", "c", "x[0]", "", "0123456789012345678901234567890123456789x"]),
            meta_member,
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))).collect())),
        1 => Just(Value::Object((0..51).map(|i| (format!("k{i}"), json!(i))).collect())),
    ]);
    (email, phone, name, policy, metadata).prop_map(|(email, phone, name, policy, metadata)| {
        object(vec![
            ("email", email),
            ("phone", phone),
            ("name", name),
            ("policy", policy),
            ("metadata", metadata),
        ])
    })
}

/// One rule broken on purpose, and the `param` (and envelope code) it must be reported under.
#[derive(Debug, Clone)]
enum Break {
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

fn one_break() -> impl Strategy<Value = Break> {
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
fn object_at<'a>(doc: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
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

fn set(doc: &mut Value, path: &str, value: Value) {
    let segments: Vec<&str> = path.split('.').collect();
    let (last, parents) = segments.split_last().expect("a path");
    object_at(doc, parents).insert((*last).to_owned(), value);
}

/// Breaks one rule of a valid body; returns the param and the envelope code it must get.
fn break_rule(body: &mut Value, rule: &Break) -> (String, &'static str) {
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
    /// satisfies §3, "unchanged" when the merge changes nothing, and otherwise exactly the §3
    /// violations of the merged customer.
    #[test]
    fn apply_is_the_reference_merge_then_validation(current in customer(), patch in patch()) {
        prop_assert_eq!(&normalize_ref(current.clone()), &current, "generated documents are canonical");
        let expected = normalize_ref(merge_ref(&current, &patch));
        // The library's normalisation agrees with the README's rule.
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

    /// Every customer that §3 allows is accepted as a create body, as is.
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
