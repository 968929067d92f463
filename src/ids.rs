//! The ids that more than one layer knows: a customer's is made by the customers resource and
//! carried by its events, whose feed filters by it.

use chrono::{DateTime, Utc};

/// `cus_` + a ULID (26 Crockford base32 characters): unguessable (80 random bits) and ordered
/// by creation time. A value of this type is always well-formed, so an id that cannot exist is
/// answered without a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    /// A new id, and the instant its ULID carries (the customer's `createdAt`, so that ordering
    /// by (created_at, id) and by id agree).
    pub fn generate() -> (Self, DateTime<Utc>) {
        let ulid = ulid::Ulid::new();
        let created_at = DateTime::from_timestamp_millis(ulid.timestamp_ms() as i64)
            .unwrap_or_else(crate::clock::now);
        (Self(format!("cus_{ulid}")), created_at)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let ulid = s.strip_prefix("cus_")?;
        let well_formed = ulid.len() == 26
            && ulid
                .bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)));
        well_formed.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_not_validated() {
        assert!(CustomerId::parse("cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E").is_some());
        for bad in [
            "",
            "cus_",
            "01JD7Q4X2V6W8Y9Z0A1B2C3D4E",
            "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4",
            "cus_01jd7q4x2v6w8y9z0a1b2c3d4e",
            "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4I",
            "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4EE",
        ] {
            assert!(CustomerId::parse(bad).is_none(), "{bad}");
        }
        let (id, created_at) = CustomerId::generate();
        assert_eq!(CustomerId::parse(id.as_str()), Some(id));
        assert!(created_at <= Utc::now());
    }
}
