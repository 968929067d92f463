//! The stored customer, its API representation (`CustomerOut`), and the JSON document of its
//! writable fields that merge patches apply to.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::validation::{CustomerFields, Name, Policy};

/// One row of `customers`, as every query returns it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub policy: Option<Value>,
    pub metadata: Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Name)]
pub struct NameOut<'a> {
    pub first: Option<&'a str>,
    pub last: Option<&'a str>,
}

/// The Customer object of contract §2.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Customer)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOut<'a> {
    /// `cus_` + a ULID.
    #[schema(example = "cus_01JD7Q4X2V6W8Y9Z0A1B2C3D4E")]
    pub id: &'a str,
    #[serde(rename = "type")]
    #[schema(value_type = CustomerType)]
    pub kind: &'a str,
    #[schema(value_type = CustomerStatus)]
    pub status: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    /// Left out when neither first nor last name is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<NameOut>, nullable = false)]
    pub name: Option<NameOut<'a>>,
    /// The sparse spending policy: exactly the fields that were set; left out when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Policy>, nullable = false)]
    pub policy: Option<&'a Value>,
    #[schema(value_type = Object)]
    pub metadata: &'a Value,
    #[schema(format = DateTime, example = "2026-11-27T10:30:00.000Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-11-27T10:30:00.000Z")]
    pub updated_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes the API; values travel as strings
pub enum CustomerType {
    Consumer,
    Corporate,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // describes the API; values travel as strings
pub enum CustomerStatus {
    Pending,
    Active,
    Deleted,
}

/// The body of `POST /v1/customers`, for the OpenAPI document (bodies are parsed and checked
/// by `input` and `validation`, which report every violation at once).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CustomerIn {
    /// consumer (default) or corporate; fixed at creation.
    #[schema(value_type = Option<CustomerType>, nullable = false)]
    r#type: Option<String>,
    /// At most 254 characters, a valid address.
    email: Option<String>,
    /// E.164: + then 7 to 15 digits.
    #[schema(example = "+14155551234")]
    phone: Option<String>,
    /// null clears both parts (in a PATCH).
    #[schema(nullable = false)]
    name: Option<NameIn>,
    /// null removes the whole policy (in a PATCH); members set to null remove one field.
    #[schema(nullable = false)]
    policy: Option<Policy>,
    /// At most 50 keys of 1 to 40 characters; each value at most 500 bytes serialised.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A JSON merge patch (RFC 7396) of the writable fields: absent keeps, null clears, objects
/// merge, arrays replace. The merged customer is validated as a whole.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CustomerPatch {
    email: Option<String>,
    phone: Option<String>,
    /// null clears both parts (in a PATCH).
    #[schema(nullable = false)]
    name: Option<NameIn>,
    /// null removes the whole policy (in a PATCH); members set to null remove one field.
    #[schema(nullable = false)]
    policy: Option<Policy>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[derive(ToSchema)]
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

pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl CustomerRow {
    pub fn out(&self) -> CustomerOut<'_> {
        let name = (self.first_name.is_some() || self.last_name.is_some()).then_some(NameOut {
            first: self.first_name.as_deref(),
            last: self.last_name.as_deref(),
        });
        CustomerOut {
            id: &self.id,
            kind: &self.kind,
            status: &self.status,
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            name,
            policy: self.policy.as_ref(),
            metadata: &self.metadata,
            created_at: timestamp(&self.created_at),
            updated_at: timestamp(&self.updated_at),
        }
    }

    /// This customer as a successful compare-and-set of `values` leaves it: the next version,
    /// written at `updated_at`. Known before the write, so the response can be stored with it.
    pub fn patched(&self, values: &CustomerValues, updated_at: DateTime<Utc>) -> CustomerRow {
        CustomerRow {
            id: self.id.clone(),
            kind: self.kind.clone(),
            status: self.status.clone(),
            email: values.email.clone(),
            phone: values.phone.clone(),
            first_name: values.first_name.clone(),
            last_name: values.last_name.clone(),
            policy: values.policy.clone(),
            metadata: values.metadata.clone(),
            version: self.version + 1,
            created_at: self.created_at,
            updated_at,
        }
    }

    /// The response body for this customer.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.out()).expect("a customer always serialises")
    }

    /// The strong ETag of this customer's version (§4.4).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    pub fn is_deleted(&self) -> bool {
        self.status == "deleted"
    }

    /// The writable fields as the JSON document a merge patch applies to: a member is present
    /// exactly when it is set.
    pub fn writable_document(&self) -> Value {
        let mut doc = Map::new();
        if let Some(email) = &self.email {
            doc.insert("email".into(), Value::String(email.clone()));
        }
        if let Some(phone) = &self.phone {
            doc.insert("phone".into(), Value::String(phone.clone()));
        }
        let mut name = Map::new();
        if let Some(first) = &self.first_name {
            name.insert("first".into(), Value::String(first.clone()));
        }
        if let Some(last) = &self.last_name {
            name.insert("last".into(), Value::String(last.clone()));
        }
        if !name.is_empty() {
            doc.insert("name".into(), Value::Object(name));
        }
        if let Some(policy) = &self.policy {
            doc.insert("policy".into(), policy.clone());
        }
        doc.insert("metadata".into(), self.metadata.clone());
        Value::Object(doc)
    }
}

/// Brings a merged document to its one canonical spelling: empty `name`, `policy` and
/// `policy.limits` objects mean "nothing set" and are dropped; metadata is always an object.
/// Two documents that mean the same customer are then equal, which is how a no-op is found.
pub fn normalize(doc: &mut Value) {
    let Some(map) = doc.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(policy)) = map.get_mut("policy") {
        if matches!(policy.get("limits"), Some(Value::Object(l)) if l.is_empty()) {
            policy.remove("limits");
        }
    }
    for key in ["name", "policy"] {
        if matches!(map.get(key), Some(Value::Object(o)) if o.is_empty()) {
            map.remove(key);
        }
    }
    if !matches!(map.get("metadata"), Some(Value::Object(_))) {
        map.insert("metadata".into(), Value::Object(Map::new()));
    }
}

/// The columns a write stores, from validated fields.
pub struct CustomerValues {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub policy: Option<Value>,
    pub metadata: Value,
}

impl From<CustomerFields> for CustomerValues {
    fn from(fields: CustomerFields) -> Self {
        let Name { first, last } = fields.name.unwrap_or_default();
        let policy = fields
            .policy
            .filter(|p| *p != Policy::default())
            .map(|p| serde_json::to_value(p).expect("a policy always serialises"));
        Self {
            email: fields.email,
            phone: fields.phone,
            first_name: first,
            last_name: last,
            policy,
            metadata: Value::Object(fields.metadata),
        }
    }
}
