//! A customer's events: what the event of a change holds of the customer (`change`), and
//! `data.previous`, the merge patch that turns the customer after the change back into the
//! customer before it. The event core (`crate::events`) stores and serialises what this hands
//! it.

use serde_json::{Map, Value};

use super::model::{timestamp, Customer};
use crate::events::Change;

/// What the event of the change from `before` (none for a creation) to `after` holds; `object`
/// is `after`'s JSON as GET shows it.
pub fn change<'a>(before: Option<&Customer>, after: &'a Customer, object: &'a [u8]) -> Change<'a> {
    Change {
        customer_id: after.id.as_str(),
        version: after.version.get(),
        occurred_at: timestamp(&after.updated_at),
        object,
        previous: before.map(|before| previous_of(before, after)),
    }
}

/// [`previous`] of two versions of a customer, from their fields: each member of their JSON
/// that can change (`id`, `type` and `createdAt` never do) is compared as `previous` compares
/// the whole objects, without building either object (on every write, where the JSON of both
/// would cost more than the rest of the event); only the old values that go into the patch
/// are built.
fn previous_of(before: &Customer, after: &Customer) -> Value {
    let mut patch = Map::new();
    // Members that are always there, a string or null: the old value when it differs.
    let text =
        |patch: &mut Map<String, Value>, key: &str, old: &Option<String>, new: &Option<String>| {
            if old != new {
                patch.insert(key.into(), Value::from(old.clone()));
            }
        };
    if before.status != after.status {
        patch.insert("status".into(), Value::from(before.status.as_str()));
    }
    text(&mut patch, "email", &before.email, &after.email);
    text(&mut patch, "phone", &before.phone, &after.phone);
    // `name`, when there, has both parts (null when not set).
    let has_name = |c: &Customer| c.first_name.is_some() || c.last_name.is_some();
    match (has_name(before), has_name(after)) {
        (true, true) => {
            let mut parts = Map::new();
            text(&mut parts, "first", &before.first_name, &after.first_name);
            text(&mut parts, "last", &before.last_name, &after.last_name);
            if !parts.is_empty() {
                patch.insert("name".into(), Value::Object(parts));
            }
        }
        (true, false) => {
            let mut parts = Map::new();
            parts.insert("first".into(), Value::from(before.first_name.clone()));
            parts.insert("last".into(), Value::from(before.last_name.clone()));
            patch.insert("name".into(), Value::Object(parts));
        }
        (false, true) => {
            patch.insert("name".into(), Value::Null);
        }
        (false, false) => {}
    }
    let updated_at = timestamp(&before.updated_at);
    if updated_at != timestamp(&after.updated_at) {
        patch.insert("updatedAt".into(), Value::from(updated_at));
    }
    member(
        &mut patch,
        "policy",
        before.policy.as_ref(),
        after.policy.as_ref(),
    );
    member(
        &mut patch,
        "metadata",
        Some(&before.metadata),
        Some(&after.metadata),
    );
    Value::Object(patch)
}

/// One member of [`previous`]: `old` and `new` are its values before and after (`None`: absent).
fn member(patch: &mut Map<String, Value>, key: &str, old: Option<&Value>, new: Option<&Value>) {
    match (old, new) {
        (Some(old), Some(new)) if old == new => {}
        (Some(old), Some(new)) => {
            patch.insert(key.into(), previous(old, new));
        }
        (Some(old), None) => {
            patch.insert(key.into(), old.clone());
        }
        (None, Some(_)) => {
            patch.insert(key.into(), Value::Null);
        }
        (None, None) => {}
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

    /// `previous_of` (from the fields) is `previous` of the two customers' whole JSON.
    #[test]
    fn previous_from_the_fields_is_previous_of_the_whole_objects() {
        use crate::customers::domain::{CustomerStatus, CustomerType};
        use crate::customers::model::CustomerValues;
        use crate::ids::CustomerId;
        use chrono::{Duration, Utc};

        let values = |email: Option<&str>,
                      first: Option<&str>,
                      last: Option<&str>,
                      policy: Option<Value>,
                      metadata: Value| CustomerValues {
            email: email.map(str::to_owned),
            // Set in some versions, independently of the email.
            phone: first.map(|_| "+14155551234".to_owned()),
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            policy,
            metadata,
        };
        let versions = [
            values(None, None, None, None, json!({})),
            values(
                Some("a@example.com"),
                Some("Ada"),
                None,
                Some(json!({"requireIntent": true})),
                json!({"a": 1}),
            ),
            values(
                Some("a@example.com"),
                Some("Ada"),
                Some("L"),
                Some(json!({"requireIntent": true, "limits": {"perDay": 5}})),
                json!({"a": {"b": [1, 2]}}),
            ),
            values(
                Some("b@example.com"),
                None,
                Some("L"),
                Some(json!({"limits": {"perDay": 6, "perMonth": 9}})),
                json!({"a": {"b": [1, 2]}, "c": 1.5}),
            ),
            values(None, None, None, None, json!({})),
        ];
        let created = Utc::now();
        let mut customers = Vec::new();
        for (i, v) in versions.into_iter().enumerate() {
            let at = created + Duration::milliseconds(i as i64);
            let mut c = Customer::new(CustomerId::generate().0, CustomerType::Consumer, v, created);
            c.updated_at = at;
            if i == 3 {
                c.status = CustomerStatus::Deleted;
            }
            customers.push(c);
        }
        let whole = |c: &Customer| serde_json::to_value(c.out()).unwrap();
        for before in &customers {
            for after in &customers {
                let mut after = after.clone();
                after.id = before.id.clone();
                after.created_at = before.created_at;
                assert_eq!(
                    previous_of(before, &after),
                    previous(&whole(before), &whole(&after)),
                    "{} → {}",
                    whole(before),
                    whole(&after)
                );
            }
        }
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
