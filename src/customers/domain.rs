//! The customer's own types: its type, status and version (the ETag), each parsed once at the
//! edge and carried typed from there (its id, which its events carry too, is `crate::ids`).

use actix_web::http::header::{HeaderMap, IF_MATCH};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Declares a closed set of lowercase words stored as `text` (with a CHECK in the schema).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Self::parse(text).ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)).into())
            }
        }
    };
}

text_enum! {
    /// `consumer` (the default) or `corporate`; fixed at creation.
    CustomerType { Consumer = "consumer", Corporate = "corporate" }
}

text_enum! {
    /// `pending` (new), `active` (after activate), `deleted` (after DELETE).
    CustomerStatus { Pending = "pending", Active = "active", Deleted = "deleted" }
}

/// The transaction that wrote a stored version of a customer: PostgreSQL's `xmin` of its row,
/// read with every customer. A write that starts from a remembered customer (a guess) makes its
/// compare-and-set on the version *and* this, so a guess only wins when it is the very row
/// version that committed, never a version of the same number with other content — one that
/// never committed (a write whose COMMIT failed), or one lost with a failed-over primary
/// (docs/reliability.md#the-write-cache explains why this is sound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Xmin(i64);

impl Xmin {
    pub fn get(self) -> i64 {
        self.0
    }

    #[cfg(test)]
    pub fn new_for_tests(xmin: i64) -> Self {
        Xmin(xmin)
    }
}

/// The customer's version: 1 at creation, one more with every change. Its strong ETag is the
/// number in quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Version(i64);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn new(version: i64) -> Version {
        Version(version)
    }

    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// `"7"`. Written digit by digit rather than with `format!`, whose machinery cost about 500
    /// instructions on every answer.
    pub fn etag(self) -> String {
        let Ok(mut n) = u64::try_from(self.0) else {
            return format!("\"{}\"", self.0);
        };
        let mut tag = [b'"'; 22];
        let mut at = tag.len() - 1;
        loop {
            at -= 1;
            tag[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        std::str::from_utf8(&tag[at - 1..])
            .expect("ASCII")
            .to_owned()
    }

    /// The version a strong ETag names; `None` for anything else (a weak tag included).
    fn from_etag(tag: &str) -> Option<Self> {
        let number = tag.strip_prefix('"')?.strip_suffix('"')?;
        // Only the canonical spelling: "007" is not the ETag "7".
        let version: i64 = number.parse().ok()?;
        (version.to_string() == number).then_some(Version(version))
    }
}

/// `If-Match` on a write: `*` matches any existing customer; otherwise one of the listed
/// strong ETags must be the current one. Weak tags (`W/"…"`) never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Absent,
    Any,
    /// The versions the listed strong tags name (tags that name none are dropped: they can
    /// never match, but their presence still makes the header a condition).
    Versions(Vec<Version>),
}

impl IfMatch {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut versions = Vec::new();
        let mut conditional = false;
        for value in headers.get_all(IF_MATCH) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::InvalidRequest("If-Match is not valid".into()))?;
            for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if tag == "*" {
                    return Ok(IfMatch::Any);
                }
                conditional = true;
                versions.extend(Version::from_etag(tag));
            }
        }
        Ok(if conditional {
            IfMatch::Versions(versions)
        } else {
            IfMatch::Absent
        })
    }

    /// 412 unless `current` is a version the header accepts.
    pub fn check(&self, current: Version) -> Result<(), ApiError> {
        match self {
            IfMatch::Absent | IfMatch::Any => Ok(()),
            IfMatch::Versions(versions) if versions.contains(&current) => Ok(()),
            IfMatch::Versions(_) => Err(ApiError::PreconditionFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn if_match(values: &[&str]) -> IfMatch {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(IF_MATCH, HeaderValue::from_str(v).unwrap());
        }
        IfMatch::from_headers(&headers).unwrap()
    }

    #[test]
    fn an_etag_is_the_version_in_quotes() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            1 << 40,
            i64::MAX,
            -1,
            i64::MIN,
        ] {
            assert_eq!(Version(v).etag(), format!("\"{v}\""));
        }
    }

    #[test]
    fn if_match_takes_strong_tags_only() {
        assert_eq!(if_match(&[]), IfMatch::Absent);
        assert_eq!(if_match(&["*"]), IfMatch::Any);
        let tags = if_match(&["\"3\", W/\"4\"", "\"5\""]);
        assert!(tags.check(Version(3)).is_ok());
        assert!(tags.check(Version(5)).is_ok());
        assert!(tags.check(Version(4)).is_err(), "a weak tag never matches");
        assert!(if_match(&["\"007\""]).check(Version(7)).is_err());
        assert!(if_match(&["W/\"1\""]).check(Version(1)).is_err());
        assert_eq!(Version(12).etag(), "\"12\"");
    }
}
