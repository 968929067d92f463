"""The customers one suite created, what each must look like now, and the list checks.

Bookkeeping only comes from the wire: when a typed call raised while parsing, the id and
nextCursor are read from the raw body so that the operations after it are still exercised
(the failure itself is already recorded by the suite).
"""

import customers
from compare import json_differences

MAX_PAGES = 200


class Tracker:
    def __init__(self, suite):
        self.suite = suite
        self.expected = {}  # id -> writable members as stored (merge of the bodies sent)
        self.latest = {}  # id -> the customer object last seen

    def ids(self):
        return list(self.expected)

    # -- writes -------------------------------------------------------------------------------

    def created(self, scenario, outcome):
        """After a create: the new customer's id, or None when there is none."""
        body = outcome.body
        if outcome.status != 201 or not isinstance(body, dict) or "id" not in body:
            return None
        sent = outcome.exchange.request_json() or {}
        customer_id = body["id"]
        self.expected[customer_id] = customers.merge_patch({}, _writable(sent))
        self.check(
            scenario, outcome, customer_id, status="pending", type=sent.get("type", "consumer")
        )
        location = outcome.header("Location")
        self.suite.check(
            outcome.operation,
            scenario,
            location == f"/v1/customers/{customer_id}",
            f"Location is {location!r}, expected /v1/customers/{customer_id}",
            outcome.exchange,
        )
        return customer_id

    def patched(self, scenario, outcome, customer_id):
        """After a PATCH: its result must be the merge of the stored customer and the patch."""
        if outcome.status == 200:
            sent = outcome.exchange.request_json() or {}
            self.expected[customer_id] = customers.merge_patch(
                self.expected[customer_id], _writable(sent)
            )
            self.check(scenario, outcome, customer_id)

    def check(self, scenario, outcome, customer_id, **fixed):
        """The customer object of a response against the contract and the writes made."""
        body = outcome.body
        problems = customers.invariant_problems(body)
        if isinstance(body, dict):
            problems += (
                [f"id {body.get('id')!r}, expected {customer_id}"]
                if body.get("id") != customer_id
                else []
            )
            problems += customers.view_differences(self.expected[customer_id], body)
            problems += [
                f"{member} {body.get(member)!r}, expected {value!r}"
                for member, value in fixed.items()
                if body.get(member) != value
            ]
            self.latest[customer_id] = body
        self.suite.check(
            outcome.operation,
            scenario,
            not problems,
            "the customer is not what the writes made it (contract: section 2 "
            "members, section 3 integers, section 4.1 merge patch):\n      "
            + "\n      ".join(problems),
            outcome.exchange,
        )

    def unchanged(self, scenario, outcome, customer_id):
        """The response holds the customer exactly as last seen (same updatedAt too)."""
        before = self.latest.get(customer_id)
        body = outcome.body
        differences = json_differences(before, body, "last seen", "now")
        self.suite.check(
            outcome.operation,
            scenario,
            not differences,
            "the customer changed:\n      " + "\n      ".join(differences),
            outcome.exchange,
        )
        if isinstance(body, dict):
            self.latest[customer_id] = body

    # -- lists --------------------------------------------------------------------------------

    def listed(self, scenario, pages, limit, include=lambda c: c.get("status") != "deleted"):
        """Checks the pages of one walk through a list (each an Outcome) against the customers
        this suite knows: those for which `include` is true (by default all but the deleted
        ones) each shown exactly once, newest first, each as last seen; no page longer than
        `limit`."""
        suite = self.suite
        shown = []
        for page in pages:
            data = page.body.get("data") or [] if isinstance(page.body, dict) else []
            suite.check(
                page.operation,
                scenario,
                len(data) <= limit,
                f"a page of {len(data)} customers with limit {limit}",
                page.exchange,
            )
            for customer in data:
                shown.append(customer)
                last = self.latest.get(customer.get("id"))
                differences = json_differences(last, customer, "last seen", "listed")
                suite.check(
                    page.operation,
                    scenario,
                    not differences,
                    f"customer {customer.get('id')} in the list differs from the one "
                    "last seen:\n      " + "\n      ".join(differences),
                    page.exchange,
                )
        want = customers.newest_first([c for c in self.latest.values() if include(c)])
        got = [customer.get("id") for customer in shown]
        suite.check(
            pages[-1].operation if pages else "list",
            scenario,
            got == want,
            f"the pages list {got}, expected (newest first) {want}",
        )


def _writable(body):
    return {key: value for key, value in body.items() if key in customers.WRITABLE}


def walk_pages(suite, scenario, list_module, model, limit, **filters):
    """Calls a list operation page after page, following nextCursor; returns the Outcomes."""
    pages, cursors, cursor = [], set(), None
    for _ in range(MAX_PAGES):
        arguments = dict(filters, limit=limit)
        if cursor is not None:
            arguments["cursor"] = cursor
        page = suite.call(scenario, list_module, expect=200, model=model, **arguments)
        pages.append(page)
        cursor = page.body.get("nextCursor") if isinstance(page.body, dict) else None
        if cursor is None:
            return pages
        if not suite.check(
            page.operation,
            scenario,
            cursor not in cursors,
            f"nextCursor {cursor!r} was already given",
            page.exchange,
        ):
            return pages
        cursors.add(cursor)
    suite.check(pages[-1].operation, scenario, False, f"more than {MAX_PAGES} pages")
    return pages
