//! The event object: what changed, on which customer, by whom, with which request. What the
//! customer was before and after is handed over by the customers resource (`Change`): the core
//! serialises the event, it does not read customers.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

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
    /// The W3C trace context of the request, kept with its event so that the event's
    /// publication joins the request's trace; `None` when traces are not exported.
    pub traceparent: Option<String>,
    /// Whether events are recorded at all: always, but for a benchmark that measures their
    /// cost (`events.record`, refused by the production profile).
    pub record: bool,
}

impl Origin {
    /// The event of a change (`change` is called only when events are recorded); `None` only
    /// where recording is switched off.
    pub fn event<'a>(
        &self,
        kind: EventType,
        change: impl FnOnce() -> Change<'a>,
    ) -> Option<NewEvent> {
        self.record.then(|| NewEvent::new(kind, change(), self))
    }
}

/// What an event holds of the change, as the resource that changed hands it over.
pub struct Change<'a> {
    pub customer_id: &'a str,
    /// The version after the change.
    pub version: i64,
    /// When the change happened (the `updatedAt` of that version, as the API shows it).
    pub occurred_at: String,
    /// The JSON after the change, exactly as GET shows it.
    pub object: &'a [u8],
    /// The merge patch back to the state before the change; none for a creation.
    pub previous: Option<Value>,
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
    pub fn traceparent(&self) -> Option<&str> {
        self.0.and_then(|e| e.traceparent.as_deref())
    }
}

/// An event about to be written with its change: its id and its JSON, final before the write
/// so that the feed and NATS get these exact bytes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: EventType,
    pub body: String,
    /// Not part of the event: the trace its publication joins (see [`Origin::traceparent`]).
    pub traceparent: Option<String>,
}

/// The event object without its last member, `data`: [`NewEvent::new`] writes that one itself.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventHead<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: EventType,
    customer_id: &'a str,
    version: i64,
    occurred_at: String,
    actor: Actor<'a>,
    request_id: &'a str,
    idempotency_key: Option<&'a str>,
}

#[derive(Serialize)]
struct Actor<'a> {
    sub: Option<&'a str>,
}

impl NewEvent {
    /// The event of `change`, made by `origin`: its id and its JSON, the bytes that
    /// serde_json writes for the whole event object (a test compares them). `data.object` is the resource's own
    /// JSON, copied as it is: through serde it would be a `RawValue`, which parses it again.
    pub fn new(kind: EventType, change: Change<'_>, origin: &Origin) -> NewEvent {
        let id = format!("evt_{}", ulid::Ulid::new());
        // Room for the whole event at once: the object is most of it.
        let mut body = Vec::with_capacity(change.object.len() + 512);
        serde_json::to_writer(
            &mut body,
            &EventHead {
                id: &id,
                kind,
                customer_id: change.customer_id,
                version: change.version,
                occurred_at: change.occurred_at,
                actor: Actor {
                    sub: origin.actor.as_deref(),
                },
                request_id: &origin.request_id,
                idempotency_key: origin.idempotency_key.as_deref(),
            },
        )
        .expect("an event serialises");
        // `{…}` becomes `{…,"data":{"object":…,"previous":…}}`.
        body.pop();
        body.extend_from_slice(b",\"data\":{\"object\":");
        body.extend_from_slice(change.object);
        if let Some(previous) = &change.previous {
            body.extend_from_slice(b",\"previous\":");
            serde_json::to_writer(&mut body, previous).expect("a value serialises");
        }
        body.extend_from_slice(b"}}");
        let body = String::from_utf8(body).expect("JSON text and the resource's JSON are UTF-8");
        NewEvent {
            id,
            kind,
            body,
            traceparent: origin.traceparent.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::value::RawValue;

    /// The whole event object as serde writes it.
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
    struct Data<'a> {
        object: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<Value>,
    }

    #[test]
    fn the_body_is_the_event_object_as_serde_writes_it() {
        let object = br#"{"id":"cus_1","email":"a\"b@example.com","metadata":{"k":"\u00e9"}}"#;
        for (previous, actor, key) in [
            (None, None, None),
            (
                Some(json!({"email": null, "metadata": {"k": "x\ny"}})),
                Some("sub"),
                Some("k1"),
            ),
        ] {
            let origin = Origin {
                actor: actor.map(str::to_owned),
                request_id: "req_1".into(),
                idempotency_key: key.map(str::to_owned),
                traceparent: None,
                record: true,
            };
            let change = || Change {
                customer_id: "cus_1",
                version: 3,
                occurred_at: "2026-12-06T10:30:00.000Z".into(),
                object,
                previous: previous.clone(),
            };
            let event = NewEvent::new(EventType::Updated, change(), &origin);
            let change = change();
            let expected = serde_json::to_string(&EventOut {
                id: &event.id,
                kind: EventType::Updated,
                customer_id: change.customer_id,
                version: change.version,
                occurred_at: change.occurred_at,
                actor: Actor {
                    sub: origin.actor.as_deref(),
                },
                request_id: &origin.request_id,
                idempotency_key: origin.idempotency_key.as_deref(),
                data: Data {
                    object: serde_json::from_slice(change.object).unwrap(),
                    previous: change.previous,
                },
            })
            .unwrap();
            assert_eq!(event.body, expected);
        }
    }
}
