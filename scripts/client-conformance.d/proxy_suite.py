"""Every operation of the client generated from Proxy's OpenAPI file, with typed calls only.

This is the client a Proxy user already has: base_url ends in /v1, numbers are typed float,
and its models know nothing of our extensions (they must keep them as additional properties).
"""

from proxy_client import AuthenticatedClient, api
from proxy_client.api.customers import (
    create_customer,
    delete_customer,
    get_customer,
    list_customers,
    update_customer,
)
from proxy_client.models import (
    CreateCustomerRequest,
    CreateCustomerRequestMetadata,
    CreateCustomerRequestName,
    CreateCustomerRequestType,
    Customer,
    Error,
    ErrorErrorType1,
    ListCustomersResponse200,
    Policy,
    PolicyLimits,
    UpdateCustomerRequest,
    UpdateCustomerRequestMetadata,
    UpdateCustomerRequestName,
)

from harness import Suite
from tracker import Tracker, walk_pages

UNKNOWN_ID = "cus_00000000000000000000000000"


def make_suite(base_url, tokens, date_time_members):
    def client(hooks, token):
        return AuthenticatedClient(
            base_url=f"{base_url}/v1", token=token, httpx_args={"event_hooks": hooks}
        )

    return Suite("proxy", client, tokens, date_time_members)


def full_policy(number):
    """Every policy field; `number` makes the numbers int or float."""
    return Policy(
        require_intent=True,
        require_attestation=True,
        require_approval=False,
        auto_approve_below=number(5000),
        attestation_window_minutes=number(15),
        cooldown_minutes=number(0),
        ttl_minutes=number(60),
        ttl_days=number(30),
        limits=PolicyLimits(
            per_auth=number(10000), per_day=number(50000), per_month=number(500000)
        ),
        allowed_mccs=["5411", "5812"],
        blocked_mccs=["7995"],
        allowed_merchants=["Acme Books"],
        lock_to_first_merchant=True,
    )


def create_bodies():
    """scenario -> the typed body of a create."""
    return {
        "full customer, integer numbers": CreateCustomerRequest(
            type_=CreateCustomerRequestType.CORPORATE,
            email="ada@example.com",
            phone="+14155550101",
            name=CreateCustomerRequestName(first="Ada", last="Lovelace"),
            policy=full_policy(int),
            metadata=CreateCustomerRequestMetadata.from_dict({"plan": "pro", "seats": 3}),
        ),
        "full customer, float numbers as the model types them": CreateCustomerRequest(
            type_=CreateCustomerRequestType.CONSUMER,
            email="grace@example.com",
            phone="+14155550102",
            name=CreateCustomerRequestName(first="Grace", last="Hopper"),
            policy=full_policy(float),
            metadata=CreateCustomerRequestMetadata.from_dict({"plan": "basic"}),
        ),
        "only an email": CreateCustomerRequest(email="only.email@example.com"),
        "a name but no policy": CreateCustomerRequest(
            name=CreateCustomerRequestName(first="Name", last="Only"), phone="+14155550103"
        ),
        "a policy but no name": CreateCustomerRequest(
            email="policy.only@example.com",
            policy=Policy(require_intent=True, limits=PolicyLimits(per_day=20000)),
        ),
    }


def run(suite):
    tracker = Tracker(suite)
    by_scenario = create_all(suite, tracker)
    idempotent_create(suite, tracker)
    invalid_create(suite)
    get_all(suite, tracker)
    list_all(suite, tracker, "list holding every customer")
    update_all(suite, tracker, by_scenario)
    get_all(suite, tracker)
    delete_one(suite, tracker, by_scenario.get("a name but no policy"))
    list_all(suite, tracker, "list after a delete")
    not_found(suite)
    suite.check_coverage(api)


def create_all(suite, tracker):
    by_scenario = {}
    for scenario, body in create_bodies().items():
        outcome = suite.call(scenario, create_customer, body=body, expect=201, model=Customer)
        by_scenario[scenario] = tracker.created(scenario, outcome)
    return by_scenario


def idempotent_create(suite, tracker):
    """Proxy's file has the Idempotency-Key header too: a retry gets the stored response."""
    body = CreateCustomerRequest(email="keyed@example.com", phone="+14155550104")
    key = "conformance-proxy-keyed-create"
    scenario = "create with an Idempotency-Key"
    first = suite.call(
        scenario, create_customer, body=body, idempotency_key=key, expect=201, model=Customer
    )
    tracker.created(scenario, first)
    scenario = "create replayed with the same Idempotency-Key"
    again = suite.call(
        scenario, create_customer, body=body, idempotency_key=key, expect=201, model=Customer
    )
    suite.check_replay(scenario, first, again)


def invalid_create(suite):
    """A 400 parses into Proxy's Error, in its object form, with the details kept."""
    scenario = "an invalid email and perAuth above perDay"
    body = CreateCustomerRequest(
        email="not-an-email", policy=Policy(limits=PolicyLimits(per_auth=900, per_day=500))
    )
    outcome = suite.call(scenario, create_customer, body=body, expect=400, model=Error)
    check_error(suite, scenario, outcome, "parameter_invalid")
    details = getattr(getattr(outcome.parsed, "error", None), "details", None)
    errors = details.additional_properties.get("errors") if details else None
    named = {error.get("param") for error in errors or [] if isinstance(error, dict)}
    suite.check(
        outcome.operation,
        scenario,
        outcome.parsed is None or {"email", "policy.limits.perAuth"} <= named,
        f"details.errors names {sorted(named)}, expected email and policy.limits.perAuth",
        outcome.exchange,
    )


def check_error(suite, scenario, outcome, code):
    """Proxy's Error: `error` in the object form (not the string form) with `code`."""
    if outcome.parsed is None:
        return  # the call's own checks have reported it
    error = getattr(outcome.parsed, "error", None)
    suite.check(
        outcome.operation,
        scenario,
        isinstance(error, ErrorErrorType1) and error.code == code,
        f"error {error!r:.300}, expected the object form with code {code}",
        outcome.exchange,
    )


def get_all(suite, tracker):
    for customer_id in tracker.ids():
        outcome = suite.call("get each", get_customer, customer_id, expect=200, model=Customer)
        tracker.unchanged("get each", outcome, customer_id)


def list_all(suite, tracker, scenario):
    for limit in (2, 50):
        pages = walk_pages(
            suite, f"{scenario}, limit {limit}", list_customers, ListCustomersResponse200, limit
        )
        tracker.listed(f"{scenario}, limit {limit}", pages, limit)


def update_all(suite, tracker, by_scenario):
    updates = [
        (
            "full customer, integer numbers",
            "float-typed limit on a full customer",
            UpdateCustomerRequest(policy=Policy(limits=PolicyLimits(per_day=80000.0))),
        ),
        (
            "only an email",
            "float-typed limits on a customer with no policy",
            UpdateCustomerRequest(
                policy=Policy(limits=PolicyLimits(per_day=80000.0, per_month=900000.0))
            ),
        ),
        (
            "a policy but no name",
            "a name on a customer with a policy but no name",
            UpdateCustomerRequest(name=UpdateCustomerRequestName(first="Late", last="Name")),
        ),
        (
            "a name but no policy",
            "email and metadata on a customer with a name but no policy",
            UpdateCustomerRequest(
                email="named@example.com",
                metadata=UpdateCustomerRequestMetadata.from_dict({"tier": 2}),
            ),
        ),
        ("a policy but no name", "an empty update changes nothing", UpdateCustomerRequest()),
    ]
    for target, scenario, body in updates:
        customer_id = by_scenario.get(target)
        if customer_id is None:
            suite.check(
                "updateCustomer",
                scenario,
                False,
                f"not run: the customer '{target}' was not created",
            )
            continue
        outcome = suite.call(
            scenario, update_customer, customer_id, body=body, expect=200, model=Customer
        )
        if body.to_dict():
            tracker.patched(scenario, outcome, customer_id)
        else:
            tracker.unchanged(scenario, outcome, customer_id)


def delete_one(suite, tracker, customer_id):
    scenario = "delete"
    if customer_id is None:
        suite.check("deleteCustomer", scenario, False, "not run: no customer to delete")
        return
    outcome = suite.call(scenario, delete_customer, customer_id, expect=200, model=Customer)
    tracker.check(scenario, outcome, customer_id, status="deleted")
    again = suite.call(
        "get a deleted customer", get_customer, customer_id, expect=200, model=Customer
    )
    tracker.unchanged("get a deleted customer", again, customer_id)


def not_found(suite):
    calls = [
        (get_customer, {}),
        (update_customer, {"body": UpdateCustomerRequest(email="nobody@example.com")}),
        (delete_customer, {}),
    ]
    for module, arguments in calls:
        outcome = suite.call("unknown id", module, UNKNOWN_ID, expect=404, model=Error, **arguments)
        check_error(suite, "unknown id", outcome, "not_found")
    outcome = suite.call(
        "a malformed token", list_customers, expect=401, model=Error, role="malformed token"
    )
    check_error(suite, "a malformed token", outcome, "unauthorized")
