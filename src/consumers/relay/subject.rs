//! NATS subjects of events: `<prefix>.<mode>.<org>.<type>`, e.g.
//! `customers.live.acme.customer.updated` (the type has a dot of its own; that is fine: a
//! consumer filters on `customers.live.acme.>` or `customers.*.*.customer.updated`).
//!
//! An organisation id is 1 to 255 visible ASCII characters, but a NATS subject token cannot
//! hold `.` (the token separator) nor be or contain the wildcards `*` and `>`. So `<org>` is the
//! org id **percent-encoded**: `%`, `.`, `*`, `>` and any byte outside visible ASCII
//! (0x21–0x7E; none today, but the rule is total) become `%` and two upper-case hex digits,
//! everything else stays as it is. `org.eu` → `org%2Eeu`, `50%` → `50%25`. The encoding is
//! reversible ([`decode_org`]); an org id without those characters is its own token.

use std::borrow::Cow;

/// Whether `b` stands for itself in an encoded org token.
fn is_plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b'.' | b'*' | b'>')
}

/// The org id as a subject token (see the module documentation).
pub fn encode_org(org: &str) -> Cow<'_, str> {
    if org.bytes().all(is_plain) {
        return Cow::Borrowed(org);
    }
    let mut out = String::with_capacity(org.len() + 8);
    for b in org.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    Cow::Owned(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A token that [`encode_org`] cannot have produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an encoded org id")]
pub struct NotAnOrgToken;

/// The org id a subject token stands for: the inverse of [`encode_org`]. Strict: a `%` must be
/// followed by two hex digits, and a character that [`encode_org`] would have escaped must not
/// appear bare, so that every org id has exactly one token.
pub fn decode_org(token: &str) -> Result<String, NotAnOrgToken> {
    let bytes = token.as_bytes();
    if bytes.is_empty() {
        return Err(NotAnOrgToken);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(NotAnOrgToken);
            };
            let decoded = hi << 4 | lo;
            if is_plain(decoded) {
                // encode_org leaves it bare: this token is not one it made.
                return Err(NotAnOrgToken);
            }
            out.push(decoded);
            i += 3;
        } else if is_plain(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(NotAnOrgToken);
        }
    }
    String::from_utf8(out).map_err(|_| NotAnOrgToken)
}

/// Upper-case hex only: the encoding writes upper case, and one spelling per org keeps
/// subjects comparable.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The subject an event is published to.
pub fn subject(prefix: &str, mode: &str, org: &str, event_type: &str) -> String {
    format!("{prefix}.{mode}.{}.{event_type}", encode_org(org))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_org_ids_are_their_own_token() {
        for org in [
            "org_a",
            "acme",
            "A-1",
            "x~y",
            "(weird)!#$&'+,/:;<=?@[]^`{|}",
        ] {
            assert!(matches!(encode_org(org), Cow::Borrowed(_)), "{org}");
            assert_eq!(encode_org(org), org);
            assert_eq!(decode_org(org).unwrap(), org);
        }
    }

    #[test]
    fn the_characters_nats_reserves_and_the_escape_itself_are_percent_encoded() {
        assert_eq!(encode_org("org.eu"), "org%2Eeu");
        assert_eq!(encode_org("a*b"), "a%2Ab");
        assert_eq!(encode_org(">"), "%3E");
        assert_eq!(encode_org("50%"), "50%25");
        assert_eq!(encode_org("%2E"), "%252E");
        assert_eq!(encode_org("a b\u{e9}"), "a%20b%C3%A9");
    }

    #[test]
    fn every_visible_ascii_org_round_trips_and_makes_one_valid_token() {
        let visible: Vec<u8> = (0x21..=0x7e).collect();
        let mut orgs: Vec<String> = visible.iter().map(|&b| char::from(b).to_string()).collect();
        orgs.push(String::from_utf8(visible.clone()).unwrap());
        orgs.push(".".repeat(255));
        orgs.push("%25%2E".into());
        for org in orgs {
            let token = encode_org(&org);
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'.' | b'*' | b'>')),
                "{org:?} -> {token:?}"
            );
            assert_eq!(decode_org(&token).as_deref(), Ok(org.as_str()), "{org:?}");
        }
    }

    #[test]
    fn decoding_is_strict() {
        for token in [
            "", "%", "%2", "%2e", "%G0", "a.b", "a*", ">", "a b", "%41", "%7E",
        ] {
            assert_eq!(decode_org(token), Err(NotAnOrgToken), "{token:?}");
        }
        // Bytes that are not UTF-8 once decoded.
        assert_eq!(decode_org("%FF"), Err(NotAnOrgToken));
    }

    #[test]
    fn subjects_have_the_documented_shape() {
        assert_eq!(
            subject("customers", "live", "acme.eu", "customer.updated"),
            "customers.live.acme%2Eeu.customer.updated"
        );
    }
}
