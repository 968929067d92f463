//! The event object: what changed, on which customer, by whom, with which request; and
//! `data.previous`, the merge patch that turns the customer after the change back into the
//! customer before it.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::customers::model::{timestamp, Customer};

/// The four kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "customer.created")]
    Created,
    #[serde(rename = "customer.updated")]
    Updated,
    #[serde(rename = "customer.deleted")]
    Deleted,
    #[serde(rename = "customer.activated")]
    Activated,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Created,
        EventType::Updated,
        EventType::Deleted,
        EventType::Activated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "customer.created",
            EventType::Updated => "customer.updated",
            EventType::Deleted => "customer.deleted",
            EventType::Activated => "customer.activated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Who made a change and with which request: recorded in its event.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The token's `sub`, if it has one.
    pub actor: Option<String>,
    pub request_id: String,
    pub idempotency_key: Option<String>,
    /// Whether events are recorded at all: always, but for a benchmark that measures their
    /// cost (`events.record`, refused by the production profile).
    pub record: bool,
}

impl Origin {
    /// The event of the change from `before` (none for a creation) to `after`, whose JSON (as
    /// GET shows it) is `object`; `None` only where recording is switched off.
    pub fn event(
        &self,
        kind: EventType,
        before: Option<&Customer>,
        after: &Customer,
        object: &[u8],
    ) -> Option<NewEvent> {
        self.record
            .then(|| NewEvent::of(kind, before, after, object, self))
    }
}

/// An event as a write statement binds it (all NULL where recording is switched off, and the
/// statement then records nothing).
pub struct EventRecord<'a>(pub Option<&'a NewEvent>);

impl EventRecord<'_> {
    pub fn id(&self) -> Option<&str> {
        self.0.map(|e| e.id.as_str())
    }
    pub fn kind(&self) -> Option<&'static str> {
        self.0.map(|e| e.kind.as_str())
    }
    pub fn body(&self) -> Option<&str> {
        self.0.map(|e| e.body.as_str())
    }
}

/// An event about to be written with its change: its id and its JSON, final before the write
/// so that the feed and NATS get these exact bytes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: EventType,
    pub body: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: EventType,
    customer_id: &'a str,
    version: i64,
    occurred_at: String,
    actor: Actor<'a>,
    request_id: &'a str,
    idempotency_key: Option<&'a str>,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    sub: Option<&'a str>,
}

#[derive(Serialize)]
struct Data<'a> {
    object: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Value>,
}

impl NewEvent {
    /// The event of the change from `before` (none for a creation) to `after`, whose JSON (as
    /// GET shows it) is `object`.
    pub fn of(
        kind: EventType,
        before: Option<&Customer>,
        after: &Customer,
        object: &[u8],
        origin: &Origin,
    ) -> NewEvent {
        let id = format!("evt_{}", ulid::Ulid::new());
        let object: &RawValue = serde_json::from_slice(object).expect("a customer's own JSON");
        let previous = before.map(|before| {
            let before = serde_json::to_value(before.out()).expect("a customer serialises");
            let after = serde_json::from_str(object.get()).expect("a customer's own JSON");
            previous(&before, &after)
        });
        let body = serde_json::to_string(&EventOut {
            id: &id,
            kind,
            customer_id: after.id.as_str(),
            version: after.version.get(),
            occurred_at: timestamp(&after.updated_at),
            actor: Actor {
                sub: origin.actor.as_deref(),
            },
            request_id: &origin.request_id,
            idempotency_key: origin.idempotency_key.as_deref(),
            data: Data { object, previous },
        })
        .expect("an event serialises");
        NewEvent { id, kind, body }
    }
}

/// The merge patch that takes `after` back to `before` (both JSON objects): each member that
/// differs holds its old value, a member that did not exist before is `null`, and objects that
/// exist on both sides are compared member by member.
pub fn previous(before: &Value, after: &Value) -> Value {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return before.clone();
    };
    let mut patch = Map::new();
    for (key, old) in before {
        match after.get(key) {
            Some(new) if new == old => {}
            Some(new @ Value::Object(_)) if old.is_object() => {
                patch.insert(key.clone(), previous(old, new));
            }
            _ => {
                patch.insert(key.clone(), old.clone());
            }
        }
    }
    for key in after.keys() {
        if !before.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn previous_holds_only_what_changed_with_its_old_value() {
        let before = json!({
            "email": "a@example.com", "phone": null,
            "policy": {"requireIntent": true, "limits": {"perDay": 50000}},
            "metadata": {"plan": "pro", "n": {"a": 1}}, "status": "pending",
            "updatedAt": "1"
        });
        let after = json!({
            "email": "a@example.com", "phone": "+14155550100",
            "name": {"first": "Ada", "last": null},
            "policy": {"limits": {"perDay": 70000, "perMonth": 900000}},
            "metadata": {"n": {"a": 2}}, "status": "pending",
            "updatedAt": "2"
        });
        assert_eq!(
            previous(&before, &after),
            json!({
                "phone": null,
                "name": null,
                "policy": {"requireIntent": true, "limits": {"perDay": 50000, "perMonth": null}},
                "metadata": {"plan": "pro", "n": {"a": 1}},
                "updatedAt": "1"
            })
        );
    }

    #[test]
    fn a_member_that_was_absent_is_null_at_the_highest_level() {
        let before = json!({"metadata": {}});
        let after = json!({"policy": {"limits": {"perDay": 1}}, "metadata": {}});
        assert_eq!(previous(&before, &after), json!({"policy": null}));
        let before = json!({"policy": {"requireIntent": true}});
        let after = json!({"policy": {"requireIntent": true, "limits": {"perDay": 1}}});
        assert_eq!(
            previous(&before, &after),
            json!({"policy": {"limits": null}})
        );
    }
}
