//! Generators: any JSON, valid customers in canonical form, and merge patches of well-typed
//! fields whose values may break the rules.

use super::*;

/// Any JSON, keys from a small alphabet so that patches and targets overlap.
pub(super) fn any_json() -> impl Strategy<Value = Value> {
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

pub(super) fn any_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", any_json(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

pub(super) fn email() -> impl Strategy<Value = String> {
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

pub(super) fn bad_email() -> impl Strategy<Value = String> {
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

pub(super) fn phone() -> impl Strategy<Value = String> {
    "\\+[1-9][0-9]{6,14}"
}

pub(super) fn bad_phone() -> impl Strategy<Value = String> {
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

pub(super) fn name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z\u{e9}\u{df}\u{20ac}\u{1F600}]",
        "[a-zA-Z\u{e9}\u{df}\u{20ac}\u{1F600} ]{0,99}",
    )
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

pub(super) fn bad_name() -> impl Strategy<Value = String> {
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

pub(super) fn int_in(min: i64, max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![Just(min), Just(max), min..=max]
}

pub(super) fn int_outside(min: i64, max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![Just(min - 1), Just(max + 1), Just(i64::MIN), Just(i64::MAX)]
}

pub(super) fn mcc() -> impl Strategy<Value = String> {
    "[0-9]{4}"
}

pub(super) fn merchant() -> impl Strategy<Value = String> {
    "[a-z]{1,10}"
}

/// Free-form metadata values: never an object member that is null (a merge drops those).
pub(super) fn meta_value() -> impl Strategy<Value = Value> {
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

pub(super) fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

/// A policy that satisfies the rules, sparse; None when nothing is set.
pub(super) fn policy() -> impl Strategy<Value = Option<Value>> {
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
pub(super) fn customer() -> impl Strategy<Value = Value> {
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
pub(super) fn member<S: Strategy<Value = Value> + 'static>(
    value: S,
) -> BoxedStrategy<Option<Value>> {
    prop_oneof![4 => Just(None), 1 => Just(Some(Value::Null)), 3 => value.prop_map(Some)].boxed()
}

pub(super) fn string_of<S: Strategy<Value = String> + 'static>(s: S) -> BoxedStrategy<Value> {
    s.prop_map(Value::String).boxed()
}

/// Merge patches of well-typed fields whose values may break the rules.
pub(super) fn patch() -> impl Strategy<Value = Value> {
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
