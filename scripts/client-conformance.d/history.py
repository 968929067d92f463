"""The versions this suite's writes made, and what their events must hold (contract section 10,
docs/api-rules.md "Events").

Every change (a create, a PATCH that changes something, a delete of a customer that was not
deleted, an activate of a pending one) records exactly one event, whose `data.object` is the
customer after the change exactly as the write's response (and GET) showed it, and whose
`data.previous` (absent on customer.created), merged into `data.object`, gives back the customer
before the change. The versions are recorded from the wire by an observer of every typed call:
a successful write whose response is not a replay and differs from the last version seen made a
new version; anything else (a no-op, a replay, a refused write) made none.
"""

import dataclasses
import datetime
import json
import re

import customers
from compare import json_differences

KINDS = {
    "createCustomer": "customer.created",
    "updateCustomer": "customer.updated",
    "deleteCustomer": "customer.deleted",
    "activateCustomer": "customer.activated",
}
EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")
EVENT_MEMBERS = (
    "id",
    "type",
    "customerId",
    "version",
    "occurredAt",
    "actor",
    "requestId",
    "idempotencyKey",
    "data",
)


@dataclasses.dataclass
class Version:
    """One version of a customer, as the write that made it answered."""

    kind: str  # the event type the write must have recorded
    customer: dict  # the response body
    number: int | None  # from the response's ETag ("N")
    etag: str | None
    request_id: str | None
    idempotency_key: str | None
    sub: str | None  # the `sub` of the token the write was made with
    scenario: str

    @property
    def customer_id(self):
        return self.customer.get("id")

    @property
    def key(self):
        return (self.customer_id, self.number)

    @property
    def updated_at(self):
        return instant(self.customer.get("updatedAt"))


def instant(text):
    """An RFC 3339 timestamp of the service as an aware datetime (None when it is not one)."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def version_number(etag):
    match = re.fullmatch(r'"(\d+)"', etag or "")
    return int(match.group(1)) if match else None


def merge_previous(customer, previous):
    """The customer before a change: `previous` merged into `customer` by RFC 7396, then shown
    the way the service shows a customer (contract section 2): a cleared email or phone stays as
    null, a name with neither part set and an empty policy are left out, a name with one part
    shows the other as null, metadata is {} when empty."""
    merged = customers.merge_patch(customer, previous)
    if not isinstance(merged, dict):
        return merged
    fixed = {key: value for key, value in merged.items() if key not in customers.WRITABLE}
    return fixed | customers.expected_view(customers.writable_part(merged))


def redundant_members(previous, customer, path="previous"):
    """Members of `previous` that hold the value the customer already has (the patch must hold
    only what changed)."""
    found = []
    if not isinstance(previous, dict):
        return found
    for key, old in previous.items():
        where = f"{path}.{key}"
        new = customer.get(key) if isinstance(customer, dict) else None
        if isinstance(old, dict) and isinstance(new, dict):
            found += redundant_members(old, new, where)
        elif (
            isinstance(customer, dict)
            and key in customer
            and not json_differences(old, new, "", "")
        ):
            found.append(
                f"{where} holds {json.dumps(old)[:100]}, the value it has after the change"
            )
    return found


class History:
    """The versions of the customers of one tenant, in the order they were written."""

    def __init__(self, suite, subs):
        """subs maps a role of the suite ("admin", "write") to the `sub` of its token."""
        self.suite = suite
        self.subs = subs
        self.by_customer = {}  # customer id -> [Version], oldest first
        self.order = []  # every Version, in the order the writes were answered
        self.events = {}  # event id -> the event JSON first seen (then checked)
        self.event_of = {}  # (customer id, version) -> event id
        suite.observers.append(self.observe)

    # -- recording ------------------------------------------------------------------------------

    def observe(self, scenario, outcome, role):
        kind = KINDS.get(outcome.operation)
        body = outcome.body
        if kind is None or outcome.status not in (200, 201) or not isinstance(body, dict):
            return
        if outcome.header("Idempotent-Replayed") == "true":
            return
        versions = self.by_customer.setdefault(body.get("id"), [])
        if versions and not json_differences(versions[-1].customer, body, "", ""):
            return  # nothing changed: no event
        version = Version(
            kind=kind,
            customer=body,
            number=version_number(outcome.header("ETag")),
            etag=outcome.header("ETag"),
            request_id=outcome.header("X-Request-Id"),
            idempotency_key=outcome.exchange.request_headers.get("idempotency-key"),
            sub=self.subs.get(role),
            scenario=scenario,
        )
        versions.append(version)
        self.order.append(version)

    def version(self, customer_id, number):
        for version in self.by_customer.get(customer_id, []):
            if version.number == number:
                return version
        return None

    def before(self, version):
        versions = self.by_customer.get(version.customer_id, [])
        index = versions.index(version)
        return versions[index - 1] if index > 0 else None

    def as_of(self, customer_id, at):
        """The version the customer had at the instant `at`: the last whose updatedAt is at or
        before it (None: it did not exist yet)."""
        found = None
        for version in self.by_customer.get(customer_id, []):
            if version.updated_at is not None and version.updated_at <= at:
                found = version
        return found

    # -- events ---------------------------------------------------------------------------------

    def check_event(self, scenario, page, event):
        """One event of a page against the version it names. The first time an event is seen
        it is checked in full; after that (in the feed, in another page size) it must be the
        same JSON as then."""
        suite = self.suite
        if not isinstance(event, dict):
            suite.check(
                page.operation, scenario, False, f"an event is {event!r:.200}", page.exchange
            )
            return None
        event_id = event.get("id")
        first = self.events.get(event_id)
        if first is not None:
            differences = json_differences(first, event, "first seen", "now")
            suite.check(
                page.operation,
                scenario,
                not differences,
                f"event {event_id} differs from the same event seen before:\n      "
                + "\n      ".join(differences),
                page.exchange,
            )
            return self.version(event.get("customerId"), event.get("version"))
        self.events[event_id] = event
        key = (event.get("customerId"), event.get("version"))
        other = self.event_of.setdefault(key, event_id)
        version = self.version(*key)
        if version is None:
            suite.check(
                page.operation,
                scenario,
                False,
                f"event {event_id} ({event.get('type')}) names version {key[1]} of {key[0]}, "
                "which no write of this test made (no event for a no-op, a replay or a "
                "refused write)",
                page.exchange,
            )
            return None
        problems = (
            [f"version {key[1]} has two events, {other} and {event_id}"]
            if other != event_id
            else []
        )
        problems += self.event_problems(event, version)
        suite.check(
            page.operation,
            scenario,
            not problems,
            f"event {event_id} ({event.get('type')} of {key[0]} version {key[1]}, made by "
            f"'{version.scenario}') is not what the write made:\n      "
            + "\n      ".join(problems),
            page.exchange,
        )
        return version

    def event_problems(self, event, version):
        problems = []
        if not EVENT_ID.fullmatch(str(event.get("id"))):
            problems.append(f"id {event.get('id')!r} is not evt_ + a ULID")
        missing = [member for member in EVENT_MEMBERS if member not in event]
        if missing:
            problems.append(f"members missing: {', '.join(missing)}")
        customer = version.customer
        expected = {
            "type": version.kind,
            "customerId": version.customer_id,
            "occurredAt": customer.get("updatedAt"),  # the version's updatedAt, same spelling
            "actor": {"sub": version.sub},
            "requestId": version.request_id,
            "idempotencyKey": version.idempotency_key,
        }
        for member, value in expected.items():
            if member in event:
                problems += json_differences(
                    value, event[member], "expected", "the event", (), f"{member}"
                )
        if version.number is None:
            problems.append(f"the write's ETag {version.etag!r} names no version")
        data = event.get("data")
        if not isinstance(data, dict):
            return problems + [f"data is {data!r:.200}"]
        extra = sorted(set(data) - {"object", "previous"})
        if extra:
            problems.append(f"data has members {extra} beside object and previous")
        problems += json_differences(
            customer, data.get("object"), "the write's response", "data.object", (), "data.object"
        )
        if not problems and json.dumps(customer) != json.dumps(data.get("object")):
            problems.append(
                "data.object is the same JSON as the write's response, in another member order"
            )
        before = self.before(version)
        if version.kind == "customer.created" or before is None:
            if "previous" in data:
                shown = json.dumps(data["previous"])[:200]
                problems.append(f"data.previous is present on {version.kind}: {shown}")
            return problems
        previous = data.get("previous")
        if not isinstance(previous, dict):
            return problems + [
                f"data.previous is {previous!r:.200}, expected a merge patch (object)"
            ]
        merged = merge_previous(data.get("object"), previous)
        problems += [
            line
            for line in json_differences(
                before.customer,
                merged,
                "the version before (as its write answered)",
                "data.object merged with data.previous",
                (),
                "before",
            )
        ]
        problems += redundant_members(previous, data.get("object"))
        return problems
