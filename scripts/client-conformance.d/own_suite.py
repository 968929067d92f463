"""Every operation of the client generated from the service's own /openapi.json, with typed
calls only: our extensions too (updatedAt, hasMore, list filters, activate, If-Match,
Idempotency-Key, errors with details.errors) and the event routes (own_events.py), which check
the events of the writes made here.

The document's paths start with /v1, so this client's base_url is the service's root.
"""

import base64
import json
import re

import own_events
import own_webhooks
from own_client import AuthenticatedClient, api
from own_client.api.customers import (
    activate_customer,
    create_customer,
    delete_customer,
    get_customer,
    list_customers,
    update_customer,
)
from own_client.models import (
    Customer,
    CustomerIn,
    CustomerInMetadataType0,
    CustomerList,
    CustomerPatch,
    CustomerPatchMetadataType0,
    CustomerStatus,
    CustomerType,
    Error,
    Limits,
    NameIn,
    Policy,
)
from own_client.types import UNSET

from harness import Suite, describe_exception
from history import History
from own_errors import check_error
from tracker import Tracker, walk_pages

UNKNOWN_ID = "cus_00000000000000000000000000"
STALE_ETAG = '"999999"'
STRONG_ETAG = re.compile(r'"[^"]+"')


def idempotency_key(text):
    """A valid Idempotency-Key (visible ASCII, no spaces) named after what it is for."""
    return "conformance-" + "-".join(text.replace(",", "").split())


def make_suite(base_url, tokens, date_time_members):
    def client(hooks, token):
        return AuthenticatedClient(
            base_url=base_url, token=token, httpx_args={"event_hooks": hooks}
        )

    suite = Suite("own", client, tokens, date_time_members)
    suite.subs = {role: token_sub(token) for role, token in tokens.items()}
    return suite


def token_sub(token):
    """The `sub` claim of a JWT (read, not verified: events must record it as actor.sub)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims.get("sub")


class Context:
    """The suite, its tracker, the versions its writes made, the customers by scenario and
    their last ETags."""

    def __init__(self, suite):
        self.suite = suite
        self.tracker = Tracker(suite)
        self.history = History(suite, suite.subs)
        self.ids = {}  # scenario of a create -> the id of the customer it created
        self.creates = {}  # scenario of a create -> its Outcome
        self.etags = {}

    def remember_etag(self, scenario, outcome, customer_id):
        """The ETag of a successful customer response: present and strong (section 4.4)."""
        if outcome.status is None or not 200 <= outcome.status < 300:
            return None
        etag = outcome.header("ETag")
        self.suite.check(
            outcome.operation,
            scenario,
            etag is not None and STRONG_ETAG.fullmatch(etag),
            f"ETag {etag!r}, expected a strong ETag",
            outcome.exchange,
        )
        if etag:
            self.etags[customer_id] = etag
        return etag

    def if_match(self, customer_id):
        """The customer's current ETag (left out of the request when none was seen)."""
        return self.etags.get(customer_id, UNSET)


def full_policy(number):
    return Policy(
        require_intent=True,
        require_attestation=True,
        require_approval=False,
        lock_to_first_merchant=True,
        auto_approve_below=number(5000),
        attestation_window_minutes=number(15),
        cooldown_minutes=number(30),
        ttl_minutes=number(60),
        ttl_days=number(30),
        limits=Limits(per_auth=number(10000), per_day=number(50000), per_month=number(500000)),
        allowed_mccs=["5411", "5812"],
        blocked_mccs=["7995"],
        allowed_merchants=["Acme Books"],
    )


def create_bodies():
    return {
        "full customer, float numbers as the model types them": CustomerIn(
            type_=CustomerType.CORPORATE,
            email="ada@example.com",
            phone="+14155550101",
            name=NameIn(first="Ada", last="Lovelace"),
            policy=full_policy(float),
            metadata=CustomerInMetadataType0.from_dict({"plan": "pro", "seats": 3}),
        ),
        "full customer, integer numbers": CustomerIn(
            type_=CustomerType.CONSUMER,
            email="grace@example.com",
            phone="+14155550102",
            name=NameIn(first="Grace", last="Hopper"),
            policy=full_policy(int),
            metadata=CustomerInMetadataType0.from_dict({"plan": "basic"}),
        ),
        "only an email": CustomerIn(email="only.email@example.com"),
        "a name but no policy": CustomerIn(name=NameIn(first="Name", last="Only")),
        "a policy but no name": CustomerIn(
            email="policy.only@example.com",
            policy=Policy(require_intent=True, limits=Limits(per_day=20000)),
        ),
    }


def run(suite):
    context = Context(suite)
    create_all(context)
    idempotent_creates(context)
    get_all(context)
    list_all(context, "list holding every customer")
    update_all(context)
    preconditions_and_errors(context)
    activate_all(context)
    delete_all(context)
    filtered_lists(context)
    list_all(context, "list after every write")
    own_events.run(context)
    not_found(context)
    authentication_and_scope(context)
    own_webhooks.run(context)
    suite.check_coverage(api)


# -- create -------------------------------------------------------------------------------------


def create(context, scenario, body, key=None):
    arguments = {"idempotency_key": key} if key is not None else {}
    outcome = context.suite.call(
        scenario, create_customer, body=body, expect=201, model=Customer, **arguments
    )
    customer_id = context.tracker.created(scenario, outcome)
    if customer_id is not None:
        context.remember_etag(scenario, outcome, customer_id)
    return outcome, customer_id


def create_all(context):
    for scenario, body in create_bodies().items():
        key = idempotency_key(f"create {scenario}")
        context.creates[scenario], context.ids[scenario] = create(context, scenario, body, key)


def idempotent_creates(context):
    suite = context.suite
    target = "full customer, integer numbers"
    scenario = "create replayed with the same Idempotency-Key and body"
    again = suite.call(
        scenario,
        create_customer,
        body=create_bodies()[target],
        idempotency_key=idempotency_key(f"create {target}"),
        expect=201,
        model=Customer,
    )
    suite.check_replay(scenario, context.creates[target], again)

    # Contract section 8 (revised): a retry that differs only in a number's notation is the
    # same request. The first create sent perDay 20000; this one sends 20000.0.
    target = "a policy but no name"
    scenario = "create replayed with the same key, a number written 20000.0 instead of 20000"
    body = CustomerIn(
        email="policy.only@example.com",
        policy=Policy(require_intent=True, limits=Limits(per_day=20000.0)),
    )
    again = suite.call(
        scenario,
        create_customer,
        body=body,
        idempotency_key=idempotency_key(f"create {target}"),
        expect=201,
        model=Customer,
    )
    suite.check_replay(scenario, context.creates[target], again)

    scenario = "the same Idempotency-Key with a different body"
    reused = suite.call(
        scenario,
        create_customer,
        body=CustomerIn(email="other@example.com"),
        idempotency_key=idempotency_key("create only an email"),
        expect=422,
        model=Error,
    )
    check_error(suite, scenario, reused, "idempotency_key_reused")


# -- read ---------------------------------------------------------------------------------------


def get_all(context, scenario="get each"):
    for customer_id in context.tracker.ids():
        outcome = context.suite.call(
            scenario, get_customer, customer_id, expect=200, model=Customer
        )
        context.tracker.unchanged(scenario, outcome, customer_id)
        before = context.etags.get(customer_id)
        etag = context.remember_etag(scenario, outcome, customer_id)
        context.suite.check(
            outcome.operation,
            scenario,
            etag == before,
            f"ETag {etag!r}, the last write gave {before!r}",
            outcome.exchange,
        )


def list_all(context, scenario):
    for limit in (2, 100):
        walk(context, f"{scenario}, limit {limit}", limit)


def walk(context, scenario, limit, include=None, **filters):
    pages = walk_pages(context.suite, scenario, list_customers, CustomerList, limit, **filters)
    for page in pages:
        body = page.body if isinstance(page.body, dict) else {}
        context.suite.check(
            page.operation,
            scenario,
            body.get("hasMore") is (body.get("nextCursor") is not None),
            f"hasMore {body.get('hasMore')!r} with nextCursor {body.get('nextCursor')!r}",
            page.exchange,
        )
    if include is None:
        context.tracker.listed(scenario, pages, limit)
    else:
        context.tracker.listed(scenario, pages, limit, include)


def filtered_lists(context):
    email = create_bodies()["only an email"].email
    walk(
        context,
        "list filtered by email, in other case",
        2,
        lambda c: (c.get("email") or "").lower() == email.lower() and c.get("status") != "deleted",
        email=email.upper(),
    )
    walk(
        context,
        "list filtered by type",
        2,
        lambda c: c.get("type") == "corporate" and c.get("status") != "deleted",
        type_=CustomerType.CORPORATE,
    )
    for status in ("pending", "active", "deleted"):
        walk(
            context,
            f"list filtered by status {status}",
            2,
            lambda c, s=status: c.get("status") == s,
            status=CustomerStatus(status),
        )


# -- update -------------------------------------------------------------------------------------


def patch(context, scenario, target, body, expect=200, model=Customer, **headers):
    customer_id = context.ids.get(target)
    if customer_id is None:
        context.suite.check(
            "updateCustomer", scenario, False, f"not run: the customer '{target}' was not created"
        )
        return None, None
    outcome = context.suite.call(
        scenario, update_customer, customer_id, body=body, expect=expect, model=model, **headers
    )
    return outcome, customer_id


def update_all(context):
    tracker = context.tracker
    target = "full customer, integer numbers"
    scenario = "float-typed limit, with the current ETag as If-Match"
    before = context.if_match(context.ids.get(target))
    outcome, customer_id = patch(
        context,
        scenario,
        target,
        CustomerPatch(policy=Policy(limits=Limits(per_day=80000.0))),
        if_match=before,
    )
    if outcome is not None:
        tracker.patched(scenario, outcome, customer_id)
        etag = context.remember_etag(scenario, outcome, customer_id)
        context.suite.check(
            outcome.operation,
            scenario,
            outcome.status != 200 or etag != before,
            f"the ETag stayed {etag!r} after a change",
            outcome.exchange,
        )

    changes = [
        (
            "only an email",
            "float-typed limits on a customer with no policy",
            CustomerPatch(policy=Policy(limits=Limits(per_day=80000.0, per_month=900000.0))),
        ),
        (
            "a policy but no name",
            "a first name on a customer with a policy but no name",
            CustomerPatch(name=NameIn(first="Late")),
        ),
        (
            "a policy but no name",
            "a last name beside the first",
            CustomerPatch(name=NameIn(last="Name")),
        ),
        (
            "a name but no policy",
            "an email and a phone where there were none",
            CustomerPatch(email="name.only@example.com", phone="+14155550103"),
        ),
        (
            "full customer, integer numbers",
            "null clears the email and one policy field",
            CustomerPatch(email=None, policy=Policy(cooldown_minutes=None)),
        ),
        (
            "a name but no policy",
            "metadata on a customer with a name but no policy",
            CustomerPatch(metadata=CustomerPatchMetadataType0.from_dict({"tier": 2})),
        ),
    ]
    for target, scenario, body in changes:
        outcome, customer_id = patch(context, scenario, target, body)
        if outcome is not None:
            tracker.patched(scenario, outcome, customer_id)
            context.remember_etag(scenario, outcome, customer_id)

    clears(context)

    # No change, so no new version and no event (own_events checks the histories).
    no_changes = [
        ("a policy but no name", "an empty patch changes nothing", CustomerPatch()),
        (
            "full customer, integer numbers",
            "a patch that sets what is already there changes nothing",
            CustomerPatch(phone="+14155550102", policy=Policy(cooldown_minutes=None)),
        ),
        (
            "a policy but no name",
            "name None where there is no name changes nothing",
            CustomerPatch(name=None),
        ),
    ]
    for target, scenario, body in no_changes:
        outcome, customer_id = patch(context, scenario, target, body)
        if outcome is not None:
            tracker.unchanged(scenario, outcome, customer_id)
            same = context.etags.get(customer_id)
            etag = context.remember_etag(scenario, outcome, customer_id)
            context.suite.check(
                outcome.operation,
                scenario,
                etag == same,
                f"the ETag went from {same!r} to {etag!r}",
                outcome.exchange,
            )

    idempotent_patch(context)


def clears(context):
    """Contract section 4.1: null clears name (both parts), policy.limits and policy. The
    document says so ("null clears both parts (in a PATCH)"), so its typed models must be able
    to send it: CustomerPatch(name=None) must give {"name": null}. When a model cannot (the
    member is not nullable in the document, so to_dict() calls None.to_dict()), that is
    reported once, naming the schema member, and the PATCH is not sent."""
    changes = [
        (
            "a policy but no name",
            "name None clears both parts",
            "CustomerPatch.name",
            lambda: CustomerPatch(name=None),
        ),
        (
            "full customer, integer numbers",
            "policy.limits None removes every limit",
            "Policy.limits",
            lambda: CustomerPatch(policy=Policy(limits=None)),
        ),
        (
            "only an email",
            "policy None removes the policy",
            "CustomerPatch.policy",
            lambda: CustomerPatch(policy=None),
        ),
    ]
    for target, scenario, member, make_body in changes:
        body = make_body()
        try:
            body.to_dict()
        except Exception as error:
            context.suite.check(
                "updateCustomer",
                scenario,
                False,
                f"{member} must be nullable in /openapi.json (null is valid there, contract "
                f"section 4.1), but the generated model cannot send null: to_dict() raised "
                f"{describe_exception(error)}",
            )
            continue
        outcome, customer_id = patch(context, scenario, target, body)
        if outcome is not None:
            context.tracker.patched(scenario, outcome, customer_id)
            context.remember_etag(scenario, outcome, customer_id)


def idempotent_patch(context):
    """Contract section 8 (revised): the replay of a keyed PATCH whose body differs only in a
    number's notation (90 then 90.0) is the stored response."""
    target = "a name but no policy"
    key = idempotency_key("patch ttlDays")
    scenario = "keyed PATCH"
    first, customer_id = patch(
        context, scenario, target, CustomerPatch(policy=Policy(ttl_days=90)), idempotency_key=key
    )
    if first is None:
        return
    context.tracker.patched(scenario, first, customer_id)
    context.remember_etag(scenario, first, customer_id)
    scenario = "keyed PATCH replayed, a number written 90.0 instead of 90"
    again, _ = patch(
        context, scenario, target, CustomerPatch(policy=Policy(ttl_days=90.0)), idempotency_key=key
    )
    context.suite.check_replay(scenario, first, again)


def preconditions_and_errors(context):
    suite = context.suite
    target = "full customer, integer numbers"
    customer_id = context.ids.get(target)

    scenario = "a stale If-Match"
    outcome, _ = patch(
        context,
        scenario,
        target,
        CustomerPatch(phone="+14155550199"),
        expect=412,
        model=Error,
        if_match=STALE_ETAG,
    )
    if outcome is not None:
        check_error(suite, scenario, outcome, "precondition_failed")
        still(context, scenario, customer_id)

    scenario = "an invalid patch reports every violation"
    outcome, _ = patch(
        context,
        scenario,
        target,
        CustomerPatch(
            email="not-an-email", policy=Policy(limits=Limits(per_auth=900000.0, per_day=500.0))
        ),
        expect=400,
        model=Error,
    )
    if outcome is not None:
        check_error(
            suite, scenario, outcome, "parameter_invalid", params={"email", "policy.limits.perAuth"}
        )
        still(context, scenario, customer_id)


def still(context, scenario, customer_id):
    """The customer is as it was (a refused write changed nothing)."""
    outcome = context.suite.call(
        f"{scenario}: nothing changed", get_customer, customer_id, expect=200, model=Customer
    )
    context.tracker.unchanged(f"{scenario}: nothing changed", outcome, customer_id)


# -- activate and delete ------------------------------------------------------------------------


def activate(context, scenario, customer_id, expect=200, model=Customer, **headers):
    return context.suite.call(
        scenario, activate_customer, customer_id, expect=expect, model=model, **headers
    )


def activate_all(context):
    suite, tracker = context.suite, context.tracker
    customer_id = context.ids.get("only an email")
    if customer_id is not None:
        scenario = "activate with the current ETag as If-Match"
        outcome = activate(context, scenario, customer_id, if_match=context.if_match(customer_id))
        tracker.check(scenario, outcome, customer_id, status="active")
        context.remember_etag(scenario, outcome, customer_id)
        scenario = "activate an active customer changes nothing"
        outcome = activate(context, scenario, customer_id)
        tracker.unchanged(scenario, outcome, customer_id)

    customer_id = context.ids.get("a policy but no name")
    if customer_id is not None:
        scenario = "activate with an Idempotency-Key"
        key = idempotency_key("activate once")
        first = activate(context, scenario, customer_id, idempotency_key=key)
        tracker.check(scenario, first, customer_id, status="active")
        scenario = "activate replayed with the same Idempotency-Key"
        again = activate(context, scenario, customer_id, idempotency_key=key)
        suite.check_replay(scenario, first, again)

    customer_id = context.ids.get("a name but no policy")
    if customer_id is not None:
        scenario = "activate with a stale If-Match"
        outcome = activate(
            context, scenario, customer_id, expect=412, model=Error, if_match=STALE_ETAG
        )
        check_error(suite, scenario, outcome, "precondition_failed")
        still(context, scenario, customer_id)


def delete_all(context):
    suite, tracker = context.suite, context.tracker
    customer_id = context.ids.get("a name but no policy")
    if customer_id is None:
        suite.check("deleteCustomer", "delete", False, "not run: no customer to delete")
        return
    scenario = "delete with the current ETag as If-Match"
    outcome = suite.call(
        scenario,
        delete_customer,
        customer_id,
        expect=200,
        model=Customer,
        if_match=context.if_match(customer_id),
    )
    tracker.check(scenario, outcome, customer_id, status="deleted")
    scenario = "delete a deleted customer changes nothing"
    outcome = suite.call(scenario, delete_customer, customer_id, expect=200, model=Customer)
    tracker.unchanged(scenario, outcome, customer_id)
    scenario = "update a deleted customer"
    outcome = suite.call(
        scenario,
        update_customer,
        customer_id,
        body=CustomerPatch(email="late@example.com"),
        expect=409,
        model=Error,
    )
    check_error(suite, scenario, outcome, "customer_deleted")
    scenario = "activate a deleted customer"
    outcome = activate(context, scenario, customer_id, expect=409, model=Error)
    check_error(suite, scenario, outcome, "customer_deleted")
    still(context, "get a deleted customer", customer_id)


def not_found(context):
    calls = [
        (get_customer, {}),
        (update_customer, {"body": CustomerPatch(email="nobody@example.com")}),
        (delete_customer, {}),
        (activate_customer, {}),
    ]
    for module, arguments in calls:
        outcome = context.suite.call(
            "unknown id", module, UNKNOWN_ID, expect=404, model=Error, **arguments
        )
        check_error(context.suite, "unknown id", outcome, "not_found")


def authentication_and_scope(context):
    suite = context.suite
    scenario = "a malformed token"
    outcome = suite.call(scenario, list_customers, expect=401, model=Error, role="malformed token")
    check_error(suite, scenario, outcome, "unauthorized")
    challenge = outcome.header("WWW-Authenticate") or ""
    suite.check(
        outcome.operation,
        scenario,
        challenge.startswith("Bearer"),
        f"WWW-Authenticate is {challenge!r}, expected Bearer",
        outcome.exchange,
    )
    scenario = "activate with a customers:write token"
    customer_id = context.ids.get("full customer, integer numbers") or UNKNOWN_ID
    outcome = activate(context, scenario, customer_id, expect=403, model=Error, role="write")
    check_error(suite, scenario, outcome, "insufficient_scope")
