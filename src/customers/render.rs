//! The JSON of a customer ([`CustomerOut`]'s serde form) and of a list page, written straight
//! into the answer's bytes. Why not serde: a stored policy or metadata can only go through a
//! serde serialiser as a `RawValue`, and making one parses the text again (a full parse per
//! member, 184k instructions of a list page of 50); here the stored text is copied as it is.
//! The bytes are the same as serde_json's (the tests compare them): same members in the same
//! order, strings escaped as serde_json escapes them.

use std::ops::Range;

use super::json_text::StoredJson;
use super::model::{write_timestamp, Customer, ListedCustomer, Member};

/// Where a customer's JSON members are in the bytes [`Customer::write_json`] wrote.
pub struct Spans {
    policy: Option<Range<usize>>,
    metadata: Range<usize>,
}

impl<J: Member> Customer<J> {
    /// The response body for this customer: `serde_json::to_vec(&self.out())`, without serde.
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_spans().0
    }

    /// [`Customer::to_json`], and where its JSON members are in it.
    pub fn to_json_spans(&self) -> (Vec<u8>, Spans) {
        let mut out = Vec::with_capacity(512);
        let spans = self.write_json(&mut out);
        (out, spans)
    }

    /// Appends this customer's JSON ([`CustomerOut`](super::schema::CustomerOut)) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Spans {
        out.extend_from_slice(b"{\"id\":");
        string(out, self.id.as_str());
        out.extend_from_slice(b",\"type\":");
        string(out, self.kind.as_str());
        out.extend_from_slice(b",\"status\":");
        string(out, self.status.as_str());
        out.extend_from_slice(b",\"email\":");
        optional_string(out, self.email.as_deref());
        out.extend_from_slice(b",\"phone\":");
        optional_string(out, self.phone.as_deref());
        // `name` is left out when neither part is set; `policy` when there is none.
        if self.first_name.is_some() || self.last_name.is_some() {
            out.extend_from_slice(b",\"name\":{\"first\":");
            optional_string(out, self.first_name.as_deref());
            out.extend_from_slice(b",\"last\":");
            optional_string(out, self.last_name.as_deref());
            out.push(b'}');
        }
        let policy = self.policy.as_ref().map(|policy| {
            out.extend_from_slice(b",\"policy\":");
            let start = out.len();
            policy.text().write(out);
            start..out.len()
        });
        out.extend_from_slice(b",\"metadata\":");
        let start = out.len();
        self.metadata.text().write(out);
        let metadata = start..out.len();
        out.extend_from_slice(b",\"createdAt\":\"");
        write_timestamp(out, &self.created_at);
        out.extend_from_slice(b"\",\"updatedAt\":\"");
        write_timestamp(out, &self.updated_at);
        out.push(b'"');
        out.push(b'}');
        Spans { policy, metadata }
    }
}

impl Customer {
    /// This customer with its JSON members as the text of them in `json`, its own JSON
    /// ([`Customer::to_json_spans`]): a write hands the version it wrote to the write cache so,
    /// without serialising its policy and metadata once more (the cache keeps the same text).
    pub fn into_shown(self, json: &[u8], spans: &Spans) -> ListedCustomer {
        let text = |span: &Range<usize>| {
            let text = std::str::from_utf8(&json[span.clone()]).expect("JSON text is UTF-8");
            StoredJson::written(text)
        };
        let Customer {
            id,
            kind,
            status,
            email,
            phone,
            first_name,
            last_name,
            policy: _,
            metadata: _,
            version,
            created_at,
            updated_at,
            xmin,
        } = self;
        Customer {
            id,
            kind,
            status,
            email,
            phone,
            first_name,
            last_name,
            policy: spans.policy.as_ref().map(text),
            metadata: text(&spans.metadata),
            version,
            created_at,
            updated_at,
            xmin,
        }
    }
}

/// A page of customers as `GET /v1/customers` answers it:
/// `{"data":[…],"nextCursor":…,"hasMore":…}`.
pub fn page<J: Member>(
    customers: &[Customer<J>],
    next_cursor: Option<&str>,
    has_more: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 640 * customers.len());
    out.extend_from_slice(b"{\"data\":[");
    for (i, customer) in customers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        customer.write_json(&mut out);
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    optional_string(&mut out, next_cursor);
    out.extend_from_slice(if has_more {
        b",\"hasMore\":true}"
    } else {
        b",\"hasMore\":false}"
    });
    out
}

fn optional_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"`, `\` and the control
/// characters below U+0020, nothing else. Nearly every string has none of them ([`plain`]); such
/// a string is copied at once.
pub fn string(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string always serialises");
    }
}

/// Whether no byte of `bytes` needs escaping in a JSON string: 8 bytes at a time, with the
/// byte tests of "Bit Twiddling Hacks" (exact as a yes or no).
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Whether a byte of `x` is below `n` (n ≤ 128).
    let has_less = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let has_byte = |x: u64, b: u8| has_less(x ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if has_less(x, 0x20) || has_byte(x, b'"') || has_byte(x, b'\\') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customers::domain::{CustomerStatus, CustomerType};
    use crate::customers::json_text::StoredJson;
    use crate::customers::model::{CustomerValues, ListedCustomer};
    use crate::ids::CustomerId;
    use chrono::{TimeZone, Utc};
    use serde_json::{json, Value};

    #[test]
    fn plain_is_no_byte_to_escape_at_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = b >= 0x20 && b != b'"' && b != b'\\';
                    assert_eq!(plain(&bytes), expected, "{b:#x} at {at} of {len}");
                }
            }
            assert!(plain(&vec![0xe9; len]));
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u32..=0x7f)
            .chain([0x80, 0xe9, 0x2028, 0x2029, 0xfeff, 0x1f600])
            .map(|c| format!("a{}b", char::from_u32(c).unwrap()))
            .collect();
        cases.extend(
            [
                "",
                "\"",
                "\\",
                "\\\"",
                "日本語",
                "tab\there",
                "\u{7f}",
                "x\u{0}y",
                "cus_01JD",
            ]
            .map(str::to_owned),
        );
        for s in cases {
            let mut out = Vec::new();
            string(&mut out, &s);
            assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    /// Customers of every shape: with and without each optional member, strings that need
    /// escaping, non-ASCII text, nested policy and metadata.
    fn customers() -> Vec<Customer> {
        let values = |email: Option<&str>,
                      phone: Option<&str>,
                      first: Option<&str>,
                      last: Option<&str>,
                      policy: Option<Value>,
                      metadata: Value| CustomerValues {
            email: email.map(str::to_owned),
            phone: phone.map(str::to_owned),
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            policy,
            metadata,
        };
        let all = [
            values(None, None, None, None, None, json!({})),
            values(
                Some("a@example.com"),
                Some("+14155551234"),
                Some("Ada"),
                Some("Lovelace"),
                Some(
                    json!({"requireIntent": true, "limits": {"perMonth": 9, "perDay": 5},
                             "allowedMccs": ["5411", "5734"], "ttlDays": 30}),
                ),
                json!({"plan": "pro", "n": {"b": [1, 2.5, null, true], "a": "x"}, "": ""}),
            ),
            values(
                Some("quote\"back\\slash@example.com"),
                None,
                Some("Zoë \u{1}\n"),
                None,
                None,
                json!({"k\"ey": "va\\lue\u{2028}", "日本": ["語", {"z": {}, "y": []}]}),
            ),
            values(
                None,
                None,
                None,
                Some("Ritchie"),
                Some(json!({"ttlDays": 1})),
                json!({}),
            ),
        ];
        let created = Utc.with_ymd_and_hms(2026, 12, 6, 10, 30, 0).unwrap();
        all.into_iter()
            .enumerate()
            .map(|(i, v)| {
                let kind = [CustomerType::Consumer, CustomerType::Corporate][i % 2];
                let mut c = Customer::new(CustomerId::generate().0, kind, v, created);
                c.status = [CustomerStatus::Pending, CustomerStatus::Active][i % 2];
                c.updated_at = created + chrono::Duration::milliseconds(1234 * i as i64);
                c
            })
            .collect()
    }

    /// The customer as a list reads it: its members as PostgreSQL's jsonb text, compacted.
    fn as_stored(c: &Customer) -> ListedCustomer {
        c.try_map_json(|v| Ok::<_, ()>(StoredJson::for_tests(&JsonText::Value(v).to_text())))
            .unwrap()
    }

    use crate::customers::json_text::JsonText;

    #[test]
    fn a_customer_is_written_as_serde_writes_it() {
        for c in customers() {
            assert_eq!(c.to_json(), serde_json::to_vec(&c.out()).unwrap());
            let stored = as_stored(&c);
            assert_eq!(stored.to_json(), serde_json::to_vec(&stored.out()).unwrap());
            assert_eq!(stored.to_json(), c.to_json());
        }
    }

    #[test]
    fn a_shown_customer_has_the_members_of_its_json() {
        for c in customers() {
            let (json, spans) = c.to_json_spans();
            assert_eq!(json, c.to_json());
            let shown = c.clone().into_shown(&json, &spans);
            assert_eq!(shown, as_stored(&c));
            assert_eq!(shown.to_json(), json);
        }
    }

    #[test]
    fn a_page_is_written_as_serde_writes_it() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Page<'a> {
            data: Vec<crate::customers::schema::CustomerOut<'a>>,
            next_cursor: Option<&'a str>,
            has_more: bool,
        }
        let rows: Vec<ListedCustomer> = customers().iter().map(as_stored).collect();
        for (n, cursor, has_more) in [
            (0, None, false),
            (1, Some("c\"ur/sor=="), true),
            (4, None, false),
        ] {
            let rows = &rows[..n];
            let serde = serde_json::to_vec(&Page {
                data: rows.iter().map(ListedCustomer::out).collect(),
                next_cursor: cursor,
                has_more,
            })
            .unwrap();
            assert_eq!(page(rows, cursor, has_more), serde);
        }
    }
}
