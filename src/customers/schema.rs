//! The customer as the API shows it ([`CustomerOut`], what [`Customer::out`] makes) and the types
//! that describe request bodies and pages in the OpenAPI document (`XxxIn`, `XxxPatch`,
//! `XxxOut`). The service writes a customer's JSON by hand (`super::render`), byte for byte what
//! serde makes of [`CustomerOut`].

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::domain::{CustomerStatus, CustomerType};
use super::json_text::JsonText;
use super::model::{timestamp, Customer, Member};
use super::validation::Policy;

impl<J: Member> Customer<J> {
    pub fn out(&self) -> CustomerOut<'_> {
        CustomerOut {
            id: self.id.as_str(),
            kind: self.kind,
            status: self.status,
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            name: (self.first_name.is_some() || self.last_name.is_some()).then_some(NameOut {
                first: self.first_name.as_deref(),
                last: self.last_name.as_deref(),
            }),
            policy: self.policy.as_ref().map(J::text),
            metadata: self.metadata.text(),
            created_at: timestamp(&self.created_at),
            updated_at: timestamp(&self.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Name)]
pub struct NameOut<'a> {
    pub first: Option<&'a str>,
    pub last: Option<&'a str>,
}

/// The Customer object (docs/api-rules.md#the-customer-object).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Customer)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOut<'a> {
    /// `cus_` + a ULID.
    #[schema(example = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: CustomerType,
    pub status: CustomerStatus,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    /// Left out when neither first nor last name is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<NameOut>, nullable = false)]
    pub name: Option<NameOut<'a>>,
    /// The sparse spending policy: exactly the fields that were set; left out when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Policy>, nullable = false)]
    pub policy: Option<JsonText<'a>>,
    #[schema(value_type = Object)]
    pub metadata: JsonText<'a>,
    #[schema(format = DateTime, example = "2026-11-27T10:30:00.000Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-11-27T10:30:00.000Z")]
    pub updated_at: String,
}

/// The body of `POST /v1/customers`, for the OpenAPI document (bodies are parsed and checked
/// by `input` and `validation`, which report every violation at once).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CustomerIn {
    /// consumer (default) or corporate; fixed at creation.
    #[schema(nullable = false)]
    r#type: Option<CustomerType>,
    /// At most 254 characters, a valid address.
    email: Option<String>,
    /// E.164: + then 7 to 15 digits.
    #[schema(example = "+14155551234")]
    phone: Option<String>,
    #[schema(nullable = false)]
    name: Option<NameIn>,
    #[schema(nullable = false)]
    policy: Option<Policy>,
    /// At most 50 keys of 1 to 40 characters; each value at most 500 bytes serialised.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A JSON merge patch (RFC 7396) of the writable fields: absent keeps, null clears, objects
/// merge, arrays replace. The merged customer is validated as a whole.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CustomerPatch {
    /// null clears it.
    email: Option<String>,
    /// null clears it.
    phone: Option<String>,
    /// null clears both parts; a part set to null clears that part.
    name: Option<NameIn>,
    /// null removes the whole policy; a member set to null removes that member.
    policy: Option<Policy>,
    /// null empties it; a key set to null removes that key.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NameIn {
    /// 1 to 100 characters, not only spaces.
    first: Option<String>,
    last: Option<String>,
}

/// A page of customers, newest first.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CustomerList {
    #[schema(value_type = Vec<CustomerOut>)]
    data: Vec<Value>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    has_more: bool,
}
