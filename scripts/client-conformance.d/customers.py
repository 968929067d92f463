"""What the contract (../shared/design/api-contract.md) says a customer looks like.

The expected customer is computed from the request bodies the generated client actually sent
(taken from the wire), by the contract's rules: RFC 7396 merge patch (section 4.1), `name` and
`policy` left out when nothing is set in them and `email`/`phone` null when unset (section 2),
and integral numbers in integer fields stored and returned as JSON integers (section 3).
"""

import re

import compare

WRITABLE = ("email", "phone", "name", "policy", "metadata")

# Contract section 3: the integer fields of a policy (cents and minutes/days). Proxy's file
# types them `number`, so a generated client sends floats such as 80000.0.
INTEGER_POLICY_FIELDS = (
    "autoApproveBelow",
    "attestationWindowMinutes",
    "cooldownMinutes",
    "ttlMinutes",
    "ttlDays",
)
INTEGER_LIMIT_FIELDS = ("perAuth", "perDay", "perMonth")

# Contract section 2: RFC 3339, UTC, millisecond precision, Z.
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ID = re.compile(r"cus_[0-9A-Za-z]{20,}")


def merge_patch(target, patch):
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def writable_part(customer):
    """The members of a customer object a write can set, as stored: absent when unset."""
    return {
        key: customer[key]
        for key in WRITABLE
        if isinstance(customer, dict) and customer.get(key) is not None
    }


def _as_integer(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integral_policy(policy):
    policy = dict(policy)
    for field in INTEGER_POLICY_FIELDS:
        if field in policy:
            policy[field] = _as_integer(policy[field])
    if isinstance(policy.get("limits"), dict):
        policy["limits"] = {
            key: _as_integer(value) if key in INTEGER_LIMIT_FIELDS else value
            for key, value in policy["limits"].items()
        }
    return policy


def expected_view(writable):
    """The writable members as the service must show them (contract sections 2 and 3)."""
    view = {
        "email": writable.get("email"),
        "phone": writable.get("phone"),
        "metadata": writable.get("metadata") or {},
    }
    name = writable.get("name") or {}
    if any(name.get(part) is not None for part in ("first", "last")):
        view["name"] = {"first": name.get("first"), "last": name.get("last")}
    policy = writable.get("policy") or {}
    if policy:
        view["policy"] = _integral_policy(policy)
    return view


def actual_view(customer):
    """The writable members of a customer object as the service sent them (a member that is
    left out stays left out, so a null is told apart from an absent member)."""
    return {key: customer[key] for key in WRITABLE if key in customer}


def view_differences(expected_writable, customer):
    """Differences between what the writes should have produced and the customer sent."""
    return compare.json_differences(
        expected_view(expected_writable), actual_view(customer), "expected", "the service"
    )


def invariant_problems(customer, statuses=("pending", "active", "deleted")):
    """The fixed shape of every customer object (contract section 2)."""
    problems = []
    if not isinstance(customer, dict):
        return [f"not a JSON object: {customer!r:.200}"]
    if not ID.fullmatch(str(customer.get("id"))):
        problems.append(f"id {customer.get('id')!r} is not cus_ + an identifier")
    if customer.get("type") not in ("consumer", "corporate"):
        problems.append(f"type {customer.get('type')!r}")
    if customer.get("status") not in statuses:
        problems.append(f"status {customer.get('status')!r}, expected one of {statuses}")
    for member in ("createdAt", "updatedAt"):
        if not TIMESTAMP.fullmatch(str(customer.get(member))):
            problems.append(
                f"{member} {customer.get(member)!r} is not RFC 3339 UTC with milliseconds and Z"
            )
    return problems


def newest_first(customers):
    """Ids in the contract's list order: newest first, ties broken by id (descending)."""
    ordered = sorted(customers, key=lambda c: (c["createdAt"], c["id"]), reverse=True)
    return [customer["id"] for customer in ordered]
